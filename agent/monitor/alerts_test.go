package monitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/hal"
)

// TestSensorHysteresis: a temperature alarm raised at the limit clears only
// once the reading is temp_hysteresis_c below it.
func TestSensorHysteresis(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Monitor.AlertMinInterval = 0 })
	steps := []struct {
		temp float64
		want string // "raised", "cleared" or "" for no alert
	}{
		{70, ""}, {79.9, ""}, {80, "raised"}, {79, ""}, {77.5, ""}, {80.5, ""},
		{77.1, ""}, {76.9, "cleared"}, {79.9, ""}, {81, "raised"},
	}
	for i, s := range steps {
		r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(s.temp)} })
		r.sensorsAt(time.Minute)
		got := alerts(r.sink.take(), "")
		switch {
		case s.want == "" && len(got) != 0:
			t.Errorf("step %d (%g °C): unexpected alert %v", i, s.temp, got[0].Payload["message"])
		case s.want != "" && (len(got) != 1 || got[0].Payload["state"] != s.want):
			t.Errorf("step %d (%g °C): got %d alerts %v, want one %s", i, s.temp, len(got), payloadStrings(got, "state"), s.want)
		}
		if s.want == "raised" && len(got) == 1 {
			p := got[0].Payload
			if p["condition"] != "over_temperature" || p["threshold"] != 80.0 || p["unit"] != "°C" || got[0].Severity != event.SeverityWarning {
				t.Errorf("raised payload %v severity %d", p, got[0].Severity)
			}
			if want := `coretemp temp2 "Core 0" at 80 °C is at or above its upper limit 80 °C`; s.temp == 80 && p["message"] != want {
				t.Errorf("message %q, want %q", p["message"], want)
			}
		}
		if s.want == "cleared" && len(got) == 1 && got[0].Payload["condition"] != "over_temperature" {
			t.Errorf("cleared alert names condition %v", got[0].Payload["condition"])
		}
	}
}

// TestSensorHysteresisLevels: critical over warning, and a voltage band in
// percent of the limit.
func TestSensorHysteresisLevels(t *testing.T) {
	prev := sensorCond{}
	cfg := config.Default().Monitor
	s := tempSensor(96)
	c := classify(&s, prev, &cfg)
	if c.rank != rankCritical || c.limit != "crit" {
		t.Fatalf("96 °C: %+v", c)
	}
	s = tempSensor(93)
	if c = classify(&s, c, &cfg); c.rank != rankCritical {
		t.Errorf("93 °C right after 96 should stay critical within the band: %+v", c)
	}
	s = tempSensor(91)
	if c = classify(&s, c, &cfg); c.rank != rankWarning || c.limit != "max" {
		t.Errorf("91 °C: %+v", c)
	}
	v := hal.Sensor{Chip: "nct6779", Kind: hal.SensorVoltage, Index: 1, Value: hal.F64(11.3), Min: hal.F64(11.4), Max: hal.F64(12.6)}
	c = classify(&v, sensorCond{}, &cfg)
	if c.rank != rankWarning || c.condition != "under_voltage" {
		t.Fatalf("11.3 V: %+v", c)
	}
	v.Value = hal.F64(11.8) // inside, but within 5 % of 11.4 (0.57 V)
	if c = classify(&v, c, &cfg); c.rank != rankWarning {
		t.Errorf("11.8 V should stay in alarm: %+v", c)
	}
	v.Value = hal.F64(12.0)
	if c = classify(&v, c, &cfg); c.rank != rankNormal {
		t.Errorf("12.0 V should clear: %+v", c)
	}
	fan := hal.Sensor{Chip: "nct6779", Kind: hal.SensorFan, Index: 2, Value: hal.F64(0), Min: hal.F64(300)}
	if c = classify(&fan, sensorCond{}, &cfg); c.condition != "fan_stopped" || c.rank != rankCritical {
		t.Errorf("stopped fan: %+v", c)
	}
	unused := hal.Sensor{Chip: "nct6779", Kind: hal.SensorFan, Index: 3, Value: hal.F64(0)}
	if c = classify(&unused, sensorCond{}, &cfg); c.rank != rankNormal {
		t.Errorf("a fan header with no minimum and no alarm is not an alarm: %+v", c)
	}
	chip := hal.Sensor{Chip: "nct6779", Kind: hal.SensorVoltage, Index: 0, Value: hal.F64(1.1), Alarm: true}
	if c = classify(&chip, sensorCond{}, &cfg); c.condition != "sensor_alarm" {
		t.Errorf("chip alarm: %+v", c)
	}
	gone := hal.Sensor{Chip: "coretemp", Kind: hal.SensorTemp, Index: 2, Unreadable: "EIO"}
	hot := sensorCond{rank: rankCritical, condition: "over_temperature", limit: "crit", over: true, threshold: 95}
	if c = classify(&gone, hot, &cfg); c != hot {
		t.Errorf("an unreadable sensor cleared its alarm: %+v", c)
	}
}

// TestRateLimitFlapping: a sensor that flaps every minute for two hours
// sends at most one alert per alert_min_interval, and the alerts say how
// many changes were held.
func TestRateLimitFlapping(t *testing.T) {
	r := newRig(t, func(c *config.Config) {
		c.Monitor.AlertMinInterval = 15 * time.Minute
		c.Monitor.TempHysteresisC = 1
	})
	var sent []*event.Event
	for i := 0; i < 120; i++ {
		temp := 70.0
		if i%2 == 0 {
			temp = 85
		}
		r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(temp)} })
		r.sensorsAt(time.Minute)
		sent = append(sent, alerts(r.sink.take(), "")...)
	}
	if len(sent) > 2*60/15+1 {
		t.Errorf("%d alerts in two hours of flapping, want at most %d", len(sent), 2*60/15+1)
	}
	if len(sent) < 2 {
		t.Fatalf("only %d alerts: the flapping was hidden entirely", len(sent))
	}
	var held int64
	for i, e := range sent {
		held += e.Payload["suppressed"].(int64)
		if i > 0 {
			gap := e.Created.Sub(sent[i-1].Created)
			if gap < 15*time.Minute {
				t.Errorf("alerts %d and %d only %s apart", i-1, i, gap)
			}
		}
	}
	// 119 changes: each alert stands for one, and the changes after the
	// last alert (fewer than an interval's worth) are still held.
	if held+int64(len(sent)) < 119-15 {
		t.Errorf("the alerts account for %d held changes of 119", held)
	}
	st := r.m.Snapshot()
	t.Logf("%d alerts for 120 readings, %d changes held, %d flaps absorbed", len(sent), held, st.Stats.AlertsSuppressed)
}

// TestRateLimitEscalationAtOnce: a change to a higher severity is not held
// by the per-thing interval.
func TestRateLimitEscalationAtOnce(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Monitor.AlertMinInterval = time.Hour })
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(85)} })
	r.sensorsAt(time.Minute)
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(97)} })
	r.sensorsAt(time.Minute)
	got := alerts(r.sink.take(), "over_temperature")
	if len(got) != 2 || got[1].Severity != event.SeverityError || got[1].Payload["threshold"] != 95.0 {
		t.Fatalf("got %d alerts %v", len(got), payloadStrings(got, "message"))
	}
	// Back down to warning: held for the hour.
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(85)} })
	r.sensorsAt(time.Minute)
	if n := len(r.sink.take()); n != 0 {
		t.Errorf("a de-escalation went out after a minute (%d alerts)", n)
	}
	r.sensorsAt(time.Hour)
	got = alerts(r.sink.take(), "")
	if len(got) != 1 || got[0].Severity != event.SeverityWarning {
		t.Errorf("after the hour: %v", payloadStrings(got, "message"))
	}
}

// TestGlobalRateLimit: many things changing at once are bounded per hour;
// critical alerts always go; the rest follow as the bucket refills.
func TestGlobalRateLimit(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Monitor.AlertMaxPerHour = 10 })
	var sensors []hal.Sensor
	for i := 0; i < 40; i++ {
		s := tempSensor(85)
		s.Index = i
		sensors = append(sensors, s)
	}
	r.hw.set(func(h *fakeHW) { h.sensors = sensors })
	r.sensorsAt(time.Minute)
	if n := len(r.sink.take()); n != 10 {
		t.Fatalf("%d alerts at once, want the bucket's 10", n)
	}
	// A failing drive is critical: it goes regardless.
	d := driveSnap("CRIT1", "/dev/sda")
	d.SmartPassed = ptrBool(false)
	r.hw.set(func(h *fakeHW) { h.drives = []hal.DriveSnapshot{d} })
	r.drivesAt(time.Second)
	if got := alerts(r.sink.take(), "drive_risk"); len(got) != 1 || got[0].Severity != event.SeverityCritical {
		t.Fatalf("critical drive alert held by the global limit: %d", len(got))
	}
	r.sensorsAt(30 * time.Minute)
	if n := len(r.sink.take()); n != 5 {
		t.Errorf("%d alerts after half an hour, want 5", n)
	}
	total := 15
	for i := 0; i < 6; i++ {
		r.sensorsAt(30 * time.Minute)
		total += len(r.sink.take())
	}
	if total != 40 {
		t.Errorf("%d of 40 alerts sent after three and a half hours", total)
	}
}

// TestSinkRefusalRetried: an alert the spool refuses is not lost.
func TestSinkRefusalRetried(t *testing.T) {
	r := newRig(t, nil)
	r.sink.setFail(errSpoolFull)
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(90)} })
	r.sensorsAt(time.Minute)
	if st := r.m.Snapshot(); st.Stats.SinkErrors < 1 || st.Stats.LastSinkError != errSpoolFull.Error() {
		t.Errorf("stats %+v", st.Stats)
	}
	r.sink.setFail(nil)
	r.sensorsAt(time.Minute)
	got := alerts(r.sink.take(), "over_temperature")
	if len(got) != 1 || got[0].Payload["state"] != "raised" {
		t.Fatalf("after the spool recovered: %d alerts", len(got))
	}
}

// TestSlotFault: an enclosure slot's fault raises and clears an alert.
func TestSlotFault(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Monitor.AlertMinInterval = 0 })
	slot := hal.Slot{Enclosure: "0:0:24:0", Slot: "Slot 03", Status: "OK", Device: "sdd"}
	r.hw.set(func(h *fakeHW) { h.slots = []hal.Slot{slot} })
	r.sensorsAt(time.Minute)
	slot.Status, slot.Fault = "critical", true
	r.hw.set(func(h *fakeHW) { h.slots = []hal.Slot{slot} })
	r.sensorsAt(time.Minute)
	got := alerts(r.sink.take(), "slot_fault")
	if len(got) != 1 || got[0].Severity != event.SeverityError || got[0].Payload["enclosure"] != "0:0:24:0" {
		t.Fatalf("fault: %v", payloadStrings(got, "message"))
	}
	if so := got[0].Payload["slot"].(map[string]any); so["slot"] != "Slot 03" || so["fault"] != true || so["device"] != "sdd" {
		t.Errorf("slot object %v", so)
	}
	if st := r.m.Snapshot(); len(st.SlotFaults) != 1 {
		t.Errorf("status slot faults %v", st.SlotFaults)
	}
	slot.Status, slot.Fault = "OK", false
	r.hw.set(func(h *fakeHW) { h.slots = []hal.Slot{slot} })
	r.sensorsAt(time.Minute)
	if got := alerts(r.sink.take(), "slot_fault"); len(got) != 1 || got[0].Payload["state"] != "cleared" {
		t.Errorf("clear: %v", payloadStrings(got, "state"))
	}
}

// TestRestartRemembersAlerts: a restart neither repeats an alert already
// sent nor forgets to clear it.
func TestRestartRemembersAlerts(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Monitor.AlertMinInterval = 0 })
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(90)} })
	r.sensorsAt(time.Minute)
	if n := len(r.sink.take()); n != 1 {
		t.Fatalf("%d alerts", n)
	}
	r.m = r.newMonitor(t)
	r.sensorsAt(time.Minute)
	if n := len(r.sink.take()); n != 0 {
		t.Errorf("the restart repeated %d alerts", n)
	}
	r.m = r.newMonitor(t)
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(60)} })
	r.sensorsAt(time.Minute)
	got := alerts(r.sink.take(), "")
	if len(got) != 1 || got[0].Payload["state"] != "cleared" || got[0].Payload["condition"] != "over_temperature" {
		t.Errorf("after restart, clearing: %v", payloadStrings(got, "message"))
	}
}

// TestCorruptStateFile: an unreadable state file is set aside, not fatal.
func TestCorruptStateFile(t *testing.T) {
	r := newRig(t, nil)
	if err := writeAtomic(r.m.statePath(), []byte("{broken")); err != nil {
		t.Fatal(err)
	}
	r.m = r.newMonitor(t)
	matches := globN(t, r.m.statePath()+".bad-*")
	if matches != 1 {
		t.Errorf("%d files set aside", matches)
	}
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(90)} })
	r.sensorsAt(time.Minute)
	if n := len(r.sink.take()); n != 1 {
		t.Errorf("%d alerts after starting afresh", n)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		tune func(*config.Config)
		want string
	}{
		{func(c *config.Config) { c.Monitor.AlertMaxPerHour = 0 }, "alert_max_per_hour"},
		{func(c *config.Config) { c.Monitor.HysteresisPct = 80 }, "hysteresis_pct"},
		{func(c *config.Config) { c.HAL.SensorInterval = 0 }, "sensor_interval"},
		{func(c *config.Config) { c.Upload.HealthReportInterval = 0 }, "health_report_interval"},
		{func(c *config.Config) { c.Predict.BackplaneMinDrives = 1 }, "backplane_min_drives"},
	} {
		cfg := testConfig(t, t.TempDir())
		c.tune(cfg)
		_, err := New(Options{Config: cfg, Sink: &recSink{t: t}, Sources: &Sources{}})
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %s", err, c.want)
		}
	}
	if _, err := New(Options{Config: testConfig(t, t.TempDir())}); err == nil {
		t.Error("no sink accepted")
	}
	_ = fmt.Sprint()
}

// TestClockWentBackAlerts: a clock set back does not hold alerts until it
// catches up.
func TestClockWentBackAlerts(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Monitor.AlertMinInterval = time.Hour })
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(85)} })
	r.sensorsAt(time.Minute)
	r.sink.take()
	r.clock.Advance(-365 * 24 * time.Hour)
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(60)} })
	r.sensorsAt(time.Minute)
	if got := alerts(r.sink.take(), ""); len(got) != 1 || got[0].Payload["state"] != "cleared" {
		t.Errorf("after the clock went back a year: %v", payloadStrings(got, "message"))
	}
}

type blockingSink struct{ release chan struct{} }

func (b *blockingSink) Put(*event.Event) error {
	<-b.release
	return nil
}

// TestSnapshotDoesNotWaitForSink: `dcagent status` answers while the
// spool is slow to take an alert.
func TestSnapshotDoesNotWaitForSink(t *testing.T) {
	r := newRig(t, nil)
	sink := &blockingSink{release: make(chan struct{})}
	m, err := New(Options{Config: r.cfg, Sources: &Sources{Sensors: r.hw}, Sink: sink, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{tempSensor(90)} })
	done := make(chan struct{})
	go func() { m.pollSensors(context.Background()); close(done) }()
	got := make(chan Status)
	go func() { got <- m.Snapshot() }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("Snapshot waited for the sink")
	}
	close(sink.release)
	<-done
	if st := m.Snapshot(); len(st.SensorAlarms) != 1 || st.Stats.AlertsSent != 1 {
		t.Errorf("after the sink took the alert: %+v", st)
	}
}
