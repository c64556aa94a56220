package monitor

import (
	"sort"
	"time"

	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
)

// Stats count what the monitor did since it started.
type Stats struct {
	AlertsSent int `json:"alerts_sent"`
	// AlertsSuppressed counts changes that went back to the state last
	// sent before their alert was due: flaps the rate limit absorbed.
	AlertsSuppressed int `json:"alerts_suppressed"`
	// AlertsQueued counts alerts the sink refused that wait for it.
	AlertsQueued  int    `json:"alerts_queued"`
	HealthReports int    `json:"health_reports"`
	SinkErrors    int    `json:"sink_errors"`
	LastSinkError string `json:"last_sink_error,omitempty"`
}

// Status is what `dcagent status` shows of the hardware.
type Status struct {
	LastSensorRead   time.Time `json:"last_sensor_read"`
	LastDriveRead    time.Time `json:"last_drive_read"`
	LastHealthReport time.Time `json:"last_health_report"`
	// DrivesByRisk counts drives per level: {"ok": 10, "warn": 1}.
	DrivesByRisk map[string]int `json:"drives_by_risk"`
	// Drives are ordered by risk, the worst first.
	Drives       []DriveStatus              `json:"drives"`
	Backplanes   []predict.BackplaneSuspect `json:"backplanes,omitempty"`
	SensorAlarms []SensorAlarm              `json:"sensor_alarms"`
	SlotFaults   []hal.Slot                 `json:"slot_faults,omitempty"`
	// ReadErrors maps a source (sensors, drives, slots) to its last error.
	ReadErrors map[string]string `json:"read_errors,omitempty"`
	Stats      Stats             `json:"stats"`
}

// DriveStatus is one drive in Status.
type DriveStatus struct {
	Serial    string       `json:"serial,omitempty"`
	Model     string       `json:"model,omitempty"`
	Device    string       `json:"device,omitempty"`
	Enclosure string       `json:"enclosure,omitempty"`
	Slot      string       `json:"slot,omitempty"`
	Risk      predict.Risk `json:"risk"`
}

// SensorAlarm is one sensor in alarm.
type SensorAlarm struct {
	Sensor    string   `json:"sensor"`
	Condition string   `json:"condition"`
	Critical  bool     `json:"critical"`
	Value     *float64 `json:"value,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	Unit      string   `json:"unit,omitempty"`
	Message   string   `json:"message"`
}

// Snapshot returns the monitor's current view, for `dcagent status`. It
// never waits for the monitor (a slow sink or smartctl run): it returns the
// view published at the end of the last poll. Treat it as read-only.
func (m *Monitor) Snapshot() Status {
	if st := m.published.Load(); st != nil {
		return *st
	}
	return Status{DrivesByRisk: map[string]int{}, SensorAlarms: []SensorAlarm{}, Drives: []DriveStatus{}}
}

// publishLocked builds the view Snapshot returns; the caller holds m.mu.
func (m *Monitor) publishLocked() {
	st := Status{
		LastSensorRead: m.lastSensors, LastDriveRead: m.lastDrives, LastHealthReport: m.lastHealth,
		DrivesByRisk: map[string]int{}, SensorAlarms: []SensorAlarm{}, Drives: []DriveStatus{},
		Backplanes: append([]predict.BackplaneSuspect(nil), m.backplanes...), Stats: m.stats,
	}
	st.Stats.AlertsQueued = m.queueLen
	for i := range m.drives {
		d := &m.drives[i]
		st.DrivesByRisk[d.result.Risk.Level.String()]++
		st.Drives = append(st.Drives, DriveStatus{
			Serial: d.snap.Serial, Model: d.snap.Model, Device: d.device,
			Enclosure: d.result.Enclosure, Slot: d.result.Slot, Risk: d.result.Risk,
		})
	}
	sort.SliceStable(st.Drives, func(i, j int) bool { return st.Drives[i].Risk.Level > st.Drives[j].Risk.Level })
	for i := range m.sensors {
		s := &m.sensors[i]
		c := m.sensorConds[sensorKey(s)]
		if c.rank == rankNormal {
			continue
		}
		a := SensorAlarm{Sensor: describeSensor(s), Condition: c.condition, Critical: c.rank == rankCritical,
			Value: s.Value, Unit: unitOf(s.Kind), Message: sensorMessage(s, c)}
		if c.limit != "" {
			th := c.threshold
			a.Threshold = &th
		}
		st.SensorAlarms = append(st.SensorAlarms, a)
	}
	for _, s := range m.slots {
		if slotFaulty(&s) {
			st.SlotFaults = append(st.SlotFaults, s)
		}
	}
	for k, v := range m.readErrs {
		if v != "" {
			if st.ReadErrors == nil {
				st.ReadErrors = map[string]string{}
			}
			st.ReadErrors[k] = v
		}
	}
	m.published.Store(&st)
}
