package monitor

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/hwmon"
)

// Sensor alarm ranks.
const (
	rankNormal   = 0
	rankWarning  = 1
	rankCritical = 2
)

// sensorCond is a sensor's state after hysteresis.
type sensorCond struct {
	rank      int
	condition string  // over_temperature, fan_stopped, under_voltage, sensor_alarm, ...
	limit     string  // the limit crossed: max, crit, min ("" for the chip's alarm flag)
	over      bool    // crossed upwards (max, crit) rather than downwards (min)
	threshold float64 // the limit's value
}

var kindNoun = map[hal.SensorKind]string{
	hal.SensorTemp: "temperature", hal.SensorVoltage: "voltage",
	hal.SensorCurrent: "current", hal.SensorPower: "power",
}

// classify judges a reading against its limits. A limit once crossed stays
// crossed until the reading is back inside it by the hysteresis band
// ([monitor] temp_hysteresis_c for temperatures, hysteresis_pct of the
// limit otherwise), so a value hovering at a limit does not flap. An
// unreadable sensor keeps its previous state: a sensor that stops
// answering has not recovered.
func classify(s *hal.Sensor, prev sensorCond, cfg *config.Monitor) sensorCond {
	if s.Value == nil || math.IsNaN(*s.Value) {
		return prev
	}
	v := *s.Value
	band := func(limit float64) float64 {
		if s.Kind == hal.SensorTemp {
			return cfg.TempHysteresisC
		}
		return math.Abs(limit) * cfg.HysteresisPct / 100
	}
	// crossed reports whether the reading is past a limit, counting the
	// band when this limit was the one crossed before.
	crossed := func(limit *float64, name string, over bool) bool {
		if limit == nil || math.IsNaN(*limit) {
			return false
		}
		l := *limit
		held := prev.rank > rankNormal && prev.limit == name && prev.over == over
		if over {
			return v >= l || held && v > l-band(l)
		}
		return v <= l || held && v < l+band(l)
	}
	cond := func(rank int, condition, limit string, over bool, threshold *float64) sensorCond {
		return sensorCond{rank: rank, condition: condition, limit: limit, over: over, threshold: *threshold}
	}
	noun := kindNoun[s.Kind]
	switch s.Kind {
	case hal.SensorFan:
		// A fan header without a minimum may simply have no fan on it;
		// only a fan with a minimum, or the chip's alarm, says it matters.
		if s.Min != nil && *s.Min > 0 {
			if v <= 0 {
				return cond(rankCritical, "fan_stopped", "min", false, s.Min)
			}
			if crossed(s.Min, "min", false) {
				return cond(rankWarning, "fan_slow", "min", false, s.Min)
			}
		} else if s.Alarm && v <= 0 {
			return sensorCond{rank: rankCritical, condition: "fan_stopped"}
		}
	default:
		if noun == "" {
			break
		}
		if crossed(s.Crit, "crit", true) {
			return cond(rankCritical, "over_"+noun, "crit", true, s.Crit)
		}
		if crossed(s.Max, "max", true) {
			return cond(rankWarning, "over_"+noun, "max", true, s.Max)
		}
		if s.Kind != hal.SensorTemp && crossed(s.Min, "min", false) {
			return cond(rankWarning, "under_"+noun, "min", false, s.Min)
		}
	}
	if s.Alarm {
		return sensorCond{rank: rankWarning, condition: "sensor_alarm"}
	}
	return sensorCond{}
}

// sensorKey names a sensor uniquely and stably.
func sensorKey(s *hal.Sensor) string {
	return s.Chip + "|" + s.DevicePath + "|" + string(s.Kind) + strconv.Itoa(s.Index)
}

// describeSensor names a sensor for a person: `coretemp temp2 "Core 0"`.
func describeSensor(s *hal.Sensor) string {
	var b strings.Builder
	b.WriteString(s.Chip)
	b.WriteByte(' ')
	b.WriteString(string(s.Kind))
	b.WriteString(strconv.Itoa(s.Index))
	if s.Label != "" {
		fmt.Fprintf(&b, " %q", s.Label)
	}
	return b.String()
}

func formatValue(v float64, unit string) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if math.Abs(v) >= 100 || v == math.Trunc(v) {
		s = strconv.FormatFloat(v, 'f', 0, 64)
	} else {
		s = strconv.FormatFloat(v, 'f', 2, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func unitOf(k hal.SensorKind) string { return hwmon.Unit(k) }

// sensorMessage says what happened to a sensor in plain words.
func sensorMessage(s *hal.Sensor, c sensorCond) string {
	name := describeSensor(s)
	unit := unitOf(s.Kind)
	val := "unreadable"
	if s.Value != nil {
		val = formatValue(*s.Value, unit)
	}
	if c.rank == rankNormal {
		return fmt.Sprintf("%s is back to normal at %s", name, val)
	}
	switch {
	case c.condition == "fan_stopped":
		return fmt.Sprintf("%s has stopped (%s)", name, val)
	case c.condition == "sensor_alarm":
		return fmt.Sprintf("%s: the chip raised its alarm at %s", name, val)
	case c.over:
		return fmt.Sprintf("%s at %s is at or above its %s limit %s", name, val, limitWord(c.limit), formatValue(c.threshold, unit))
	default:
		return fmt.Sprintf("%s at %s is at or below its %s limit %s", name, val, limitWord(c.limit), formatValue(c.threshold, unit))
	}
}

func limitWord(l string) string {
	switch l {
	case "crit":
		return "critical"
	case "max":
		return "upper"
	case "min":
		return "lower"
	}
	return l
}
