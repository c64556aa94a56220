package config

import "time"

// Monitor configures how hardware changes become alerts (agent/monitor):
// hysteresis, so a reading that hovers at a limit does not flap, and a rate
// limit, so a flapping sensor cannot flood the spool or the backend.
type Monitor struct {
	// AlertMinInterval is the least time between two alerts about one
	// thing (one sensor, one drive, one slot, one backplane). Changes in
	// between are held and the next alert says how many there were; a
	// change to a higher severity is sent at once.
	AlertMinInterval time.Duration `conf:"alert_min_interval"`
	// AlertMaxPerHour bounds the alerts below critical severity sent in
	// any hour, over everything; critical alerts always go.
	AlertMaxPerHour int `conf:"alert_max_per_hour"`
	// TempHysteresisC: a temperature alarm clears only once the reading is
	// this many °C below the limit it crossed.
	TempHysteresisC float64 `conf:"temp_hysteresis_c"`
	// HysteresisPct: any other sensor's alarm (fan, voltage, current,
	// power) clears only once the reading is this percentage of the limit
	// back inside it.
	HysteresisPct float64 `conf:"hysteresis_pct"`
}

func (m *Monitor) setDefaults() {
	m.AlertMinInterval = 15 * time.Minute
	m.AlertMaxPerHour = 30
	m.TempHysteresisC = 3
	m.HysteresisPct = 5
}

// Validate checks the section on its own, for callers that build one in
// code.
func (m *Monitor) Validate() error { return m.validate() }

func (m *Monitor) validate() error {
	switch {
	case m.AlertMinInterval > 24*time.Hour:
		return keyErr("alert_min_interval", "%s is more than a day: alerts would arrive too late to act on", m.AlertMinInterval)
	case m.AlertMaxPerHour < 1:
		return keyErr("alert_max_per_hour", "must be at least 1")
	case m.TempHysteresisC < 0 || m.TempHysteresisC > 30:
		return keyErr("temp_hysteresis_c", "%g is outside 0..30", m.TempHysteresisC)
	case m.HysteresisPct < 0 || m.HysteresisPct > 50:
		return keyErr("hysteresis_pct", "%g is outside 0..50", m.HysteresisPct)
	}
	return nil
}
