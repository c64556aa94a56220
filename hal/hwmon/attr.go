package hwmon

import (
	"fmt"
	"math"
	"strings"

	"github.com/dcagent/dcagent/hal"
)

// Kinds hwmon reports beyond the ones hal names.
const (
	// KindEnergy is an energy counter in joules (energyN_input).
	KindEnergy hal.SensorKind = "energy"
	// KindIntrusion is a chassis intrusion switch (intrusionN_alarm); it has
	// no value, only an alarm.
	KindIntrusion hal.SensorKind = "intrusion"
)

// kindInfo is what the reader knows about one sensor class of the kernel's
// hwmon sysfs ABI (Documentation/hwmon/sysfs-interface.rst): the file name
// prefix, the divisor from the file's integer to SI units, and the range a
// working sensor of that class can read. A value outside the range comes
// from a disconnected input or a broken chip, not from the hardware being
// measured: -128 °C is what many chips report for an open thermal diode,
// and 0xffff fan tachometer counts turn into absurd RPMs.
type kindInfo struct {
	kind     hal.SensorKind
	prefix   string
	divisor  float64
	unit     string
	min, max float64
}

var kinds = []kindInfo{
	{hal.SensorTemp, "temp", 1000, "°C", -100, 250},
	{hal.SensorVoltage, "in", 1000, "V", -500, 500},
	{hal.SensorCurrent, "curr", 1000, "A", -2000, 2000},
	{hal.SensorPower, "power", 1e6, "W", -100000, 100000},
	{KindEnergy, "energy", 1e6, "J", 0, math.MaxFloat64},
	{hal.SensorFan, "fan", 1, "RPM", 0, 50000},
	{KindIntrusion, "intrusion", 1, "", 0, 1},
}

// kindOrder is the order sensors of one chip are listed in.
func kindOrder(k hal.SensorKind) int {
	for i, ki := range kinds {
		if ki.kind == k {
			return i
		}
	}
	return len(kinds)
}

func infoFor(k hal.SensorKind) *kindInfo {
	for i := range kinds {
		if kinds[i].kind == k {
			return &kinds[i]
		}
	}
	return nil
}

// Unit returns the SI unit a kind's values are in ("°C", "V", "RPM"...).
func Unit(k hal.SensorKind) string {
	if ki := infoFor(k); ki != nil {
		return ki.unit
	}
	return ""
}

// attrName is a parsed attribute file name such as "temp2_crit_alarm".
type attrName struct {
	kind  *kindInfo
	index int
	item  string // "input", "crit_alarm", "label"...
}

// parseAttrName splits an hwmon attribute file name into class, channel
// number and item. Names that are not sensor attributes (name, uevent,
// pwm1_enable, update_interval, ...) give ok == false.
func parseAttrName(name string) (a attrName, ok bool) {
	for i := range kinds {
		k := &kinds[i]
		if !strings.HasPrefix(name, k.prefix) {
			continue
		}
		rest := name[len(k.prefix):]
		n, digits := 0, 0
		for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
			n = n*10 + int(rest[digits]-'0')
			digits++
			if digits > 6 { // no chip has a million channels
				return attrName{}, false
			}
		}
		if digits == 0 || digits >= len(rest) || rest[digits] != '_' || digits+1 == len(rest) {
			// "in" is a prefix of "intrusion": try the other classes.
			continue
		}
		return attrName{kind: k, index: n, item: rest[digits+1:]}, true
	}
	return attrName{}, false
}

// parseInt reads a sysfs integer attribute: optional sign, decimal digits,
// optional trailing newline. Anything else is garbage and is reported as
// such, quoted, so a person sees what the driver printed.
func parseInt(b []byte) (int64, error) {
	s := strings.TrimRight(string(b), "\n")
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("the file is empty")
	}
	neg := false
	digits := s
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		digits = s[1:]
	}
	if digits == "" || len(digits) > 18 {
		return 0, fmt.Errorf("%q is not a number the kernel would print", clip(s))
	}
	var v int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", clip(s))
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, nil
}

// parseLabel cleans a label: trimmed, control characters and invalid
// UTF-8 replaced, at most 64 characters (the kernel's own labels are short).
func parseLabel(b []byte) string {
	s := strings.TrimSpace(string(b))
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64])
	}
	return s
}

// clip shortens garbage for an error message.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if r := []rune(s); len(r) > 24 {
		return string(r[:24]) + "…"
	}
	return s
}

// scale turns a raw integer into SI units and says whether it is in the
// range a working sensor of the kind can read.
func (k *kindInfo) scale(raw int64) (v float64, inRange bool) {
	v = float64(raw) / k.divisor
	return v, v >= k.min && v <= k.max
}

// ParseValue parses the text of one attribute file (e.g. "temp1_input" and
// "45000\n") into SI units, as the reader does. It is exported for tests
// and tools that hold attribute text without a tree.
func ParseValue(attr string, text []byte) (float64, error) {
	a, ok := parseAttrName(attr)
	if !ok {
		return 0, fmt.Errorf("hwmon: %q is not a sensor attribute name", clip(attr))
	}
	raw, err := parseInt(text)
	if err != nil {
		return 0, fmt.Errorf("hwmon: %s: %w", attr, err)
	}
	v, in := a.kind.scale(raw)
	if !in {
		return v, fmt.Errorf("hwmon: %s: %s", attr, outOfRange(a.kind, v))
	}
	return v, nil
}

func outOfRange(k *kindInfo, v float64) string {
	return fmt.Sprintf("value %s %s is outside what a working %s sensor reads (%s to %s %s); the input is probably disconnected or the chip faulty",
		fmtNum(v), k.unit, k.prefix, fmtNum(k.min), fmtNum(k.max), k.unit)
}

func fmtNum(v float64) string {
	if v == math.MaxFloat64 {
		return "any"
	}
	return fmt.Sprintf("%g", v)
}
