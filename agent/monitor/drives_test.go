package monitor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/hal"
)

var enclosureSlots = []hal.Slot{
	{Enclosure: "0:0:24:0", Slot: "1", Status: "OK", Device: "sda"},
	{Enclosure: "0:0:24:0", Slot: "2", Status: "OK", Device: "sdb"},
	{Enclosure: "0:0:24:0", Slot: "3", Status: "OK", Device: "sdc"},
	{Enclosure: "0:0:24:0", Slot: "4", Status: "OK", Device: "sdd"},
}

// TestDriveRiskAlerts: a degrading drive raises an alert at each level it
// reaches, the last one critical with the part to replace, tied to its
// slot.
func TestDriveRiskAlerts(t *testing.T) {
	r := newRig(t, nil)
	r.hw.set(func(h *fakeHW) {
		h.slots = enclosureSlots
		h.drives = []hal.DriveSnapshot{driveSnap("A1", "/dev/sda"), driveSnap("B2", "/dev/sdb")}
	})
	r.drivesAt(0)
	if n := len(r.sink.take()); n != 0 {
		t.Fatalf("%d alerts for healthy drives", n)
	}
	var levels []string
	for i := 1; i <= 8; i++ {
		d := driveSnap("B2", "/dev/sdb")
		d.Counters.ReallocatedSectors = hal.U64(uint64(i * i))
		d.Counters.PendingSectors = hal.U64(uint64(3 * i))
		r.hw.set(func(h *fakeHW) { h.drives = []hal.DriveSnapshot{driveSnap("A1", "/dev/sda"), d} })
		r.drivesAt(30 * time.Minute)
		for _, e := range alerts(r.sink.take(), "drive_risk") {
			drive := e.Payload["drive"].(map[string]any)
			levels = append(levels, drive["risk"].(string))
			if drive["serial"] != "B2" || drive["slot"] != "2" || e.Payload["enclosure"] != "0:0:24:0" {
				t.Errorf("alert about the wrong drive or slot: %v", e.Payload)
			}
			if so := e.Payload["slot"].(map[string]any); so["device"] != "sdb" {
				t.Errorf("slot object %v", so)
			}
		}
	}
	if len(levels) == 0 || levels[len(levels)-1] != "fail" {
		t.Fatalf("levels alerted %v, want them to end at fail", levels)
	}
	st := r.m.Snapshot()
	if st.Drives[0].Serial != "B2" || st.Drives[0].Risk.Level.String() != "fail" || st.DrivesByRisk["ok"] != 1 || st.DrivesByRisk["fail"] != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestDriveFailAlertPayload pins the alert that opens a case.
func TestDriveFailAlertPayload(t *testing.T) {
	r := newRig(t, nil)
	d := driveSnap("F1", "/dev/sdc")
	r.hw.set(func(h *fakeHW) { h.slots = enclosureSlots; h.drives = []hal.DriveSnapshot{d} })
	r.drivesAt(0)
	d.SmartPassed = ptrBool(false)
	r.hw.set(func(h *fakeHW) { h.drives = []hal.DriveSnapshot{d} })
	r.drivesAt(30 * time.Minute)
	got := alerts(r.sink.take(), "drive_risk")
	if len(got) != 1 {
		t.Fatalf("%d alerts", len(got))
	}
	e := got[0]
	p := e.Payload
	drive := p["drive"].(map[string]any)
	if e.Severity != event.SeverityCritical || p["source"] != "drive" || p["state"] != "raised" || p["suspect"] != "drive" ||
		drive["risk"] != "fail" || drive["previous_risk"] != "ok" || drive["model"] != "TEST HDD 4TB" ||
		drive["capacity_bytes"] != uint64(4e12) || e.SystemID != "SYS-TEST-0001" {
		t.Errorf("alert %+v", e)
	}
	want := "drive TEST HDD 4TB serial F1 in enclosure 0:0:24:0 slot 3: risk rose from ok to fail: SMART overall health FAILED: the drive predicts its own failure (it passed 30 minutes ago)"
	if p["message"] != want {
		t.Errorf("message %q\nwant    %q", p["message"], want)
	}
}

// TestBackplaneAlert: CRC errors rising together behind one enclosure give
// one backplane alert naming the enclosure and slots, and no drive is
// called failing.
func TestBackplaneAlert(t *testing.T) {
	r := newRig(t, nil)
	devs := []string{"/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd"}
	for i := 0; i < 12; i++ {
		var drives []hal.DriveSnapshot
		for j, dev := range devs {
			d := driveSnap("S"+string(rune('A'+j)), dev)
			if j < 3 && i >= 6 {
				d.Counters.UDMACRCErrors = hal.U64(uint64(10 * (i - 5)))
			}
			drives = append(drives, d)
		}
		r.hw.set(func(h *fakeHW) { h.slots = enclosureSlots; h.drives = drives })
		r.drivesAt(30 * time.Minute)
	}
	evs := r.sink.take()
	bp := alerts(evs, "link_errors")
	if len(bp) != 1 {
		t.Fatalf("%d backplane alerts", len(bp))
	}
	p := bp[0].Payload
	if p["enclosure"] != "0:0:24:0" || p["suspect"] != "backplane_or_cable" || bp[0].Severity != event.SeverityError {
		t.Errorf("payload %v", p)
	}
	if ds := p["drives"].([]map[string]any); len(ds) != 3 {
		t.Errorf("%d drives named", len(ds))
	}
	if want := "backplane or cable suspected in enclosure 0:0:24:0: interface errors rose on slots 1, 2, 3 while their media stayed clean"; p["message"] != want {
		t.Errorf("message %q", p["message"])
	}
	for _, e := range alerts(evs, "drive_risk") {
		if risk := e.Payload["drive"].(map[string]any)["risk"]; risk != "watch" {
			t.Errorf("a drive behind the backplane is at %v", risk)
		}
	}
	if st := r.m.Snapshot(); len(st.Backplanes) != 1 || st.Backplanes[0].Enclosure != "0:0:24:0" {
		t.Errorf("status backplanes %+v", st.Backplanes)
	}

	// A day later the errors have stopped rising: the verdict clears.
	for i := 0; i < 50; i++ {
		r.drivesAt(30 * time.Minute)
	}
	cleared := alerts(r.sink.take(), "link_errors")
	if len(cleared) != 1 || cleared[0].Payload["state"] != "cleared" {
		t.Errorf("clearing: %v", payloadStrings(cleared, "message"))
	}
}

// TestReplacementAlert: a new drive in a slot is reported once.
func TestReplacementAlert(t *testing.T) {
	r := newRig(t, nil)
	r.hw.set(func(h *fakeHW) {
		h.slots = enclosureSlots
		h.drives = []hal.DriveSnapshot{driveSnap("OLD", "/dev/sdd")}
	})
	r.drivesAt(0)
	r.hw.set(func(h *fakeHW) { h.drives = []hal.DriveSnapshot{driveSnap("NEW", "/dev/sdd")} })
	r.drivesAt(time.Hour)
	r.drivesAt(time.Hour)
	got := alerts(r.sink.take(), "drive_replaced")
	if len(got) != 1 {
		t.Fatalf("%d replacement alerts", len(got))
	}
	p := got[0].Payload
	if p["message"] != "drive in enclosure 0:0:24:0 slot 4 replaced: serial NEW, before it OLD" ||
		p["drive"].(map[string]any)["serial"] != "NEW" || p["slot"].(map[string]any)["slot"] != "4" {
		t.Errorf("payload %v", p)
	}
}

// TestDriveReadFailureKeepsVerdicts: a pass that reads nothing does not
// clear anything.
func TestDriveReadFailureKeepsVerdicts(t *testing.T) {
	r := newRig(t, nil)
	d := driveSnap("K1", "/dev/sda")
	d.SmartPassed = ptrBool(false)
	r.hw.set(func(h *fakeHW) { h.drives = []hal.DriveSnapshot{d} })
	r.drivesAt(0)
	r.sink.take()
	r.hw.set(func(h *fakeHW) { h.drives, h.err = nil, errSpoolFull })
	r.drivesAt(time.Hour)
	if n := len(r.sink.take()); n != 0 {
		t.Errorf("%d alerts after a failed read", n)
	}
	st := r.m.Snapshot()
	if len(st.Drives) != 1 || st.ReadErrors["drives"] == "" {
		t.Errorf("status %+v", st)
	}
}

// TestRunSchedules runs the loops on a fake clock: a health report after
// the first drive pass, the next one a day later, another on "collect
// now", and sensors read every sensor_interval.
func TestRunSchedules(t *testing.T) {
	r := newRig(t, func(c *config.Config) {
		c.HAL.SensorInterval = 10 * time.Minute
		c.HAL.DriveInterval = 30 * time.Minute
		c.Upload.HealthReportInterval = 24 * time.Hour
	})
	reads, driveReads := 0, 0
	counting := &countingSensors{fakeHW: r.hw, n: &reads}
	countingD := &countingDrives{fakeHW: r.hw, mu: &counting.mu, n: &driveReads}
	m, err := New(Options{Config: r.cfg, Sources: &Sources{Sensors: counting, Drives: countingD, Slots: r.hw}, Sink: r.sink, Clock: r.clock,
		HealthExtra: func() map[string]any { return map[string]any{"agent_version": "test"} }})
	if err != nil {
		t.Fatal(err)
	}
	r.hw.set(func(h *fakeHW) {
		h.slots = enclosureSlots
		h.drives = []hal.DriveSnapshot{driveSnap("A1", "/dev/sda")}
		h.sensors = []hal.Sensor{tempSensor(40)}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	health := func() []*event.Event { return ofType(r.sink.take(), event.TypeHealthReport) }
	waitFor(t, "the first health report", func() bool { return r.sink.count() > 0 })
	reports := health()
	if len(reports) != 1 {
		t.Fatalf("%d health reports at start", len(reports))
	}
	p := reports[0].Payload
	if len(p["drives"].([]map[string]any)) != 1 || len(p["sensors"].([]map[string]any)) != 1 || len(p["slots"].([]map[string]any)) != 4 || p["agent_version"] != "test" {
		t.Errorf("health report %v", p)
	}

	// Walk a day in ten-minute steps; the loops must have parked on
	// their timers before each step.
	for i := 0; i < 24*6; i++ {
		waitFor(t, "the loops to wait", func() bool { return r.clock.waiting() >= 2 })
		r.clock.Advance(10 * time.Minute)
	}
	waitFor(t, "the daily health report", func() bool { return r.sink.count() > 0 })
	if n := len(health()); n != 1 {
		t.Errorf("%d health reports in a day", n)
	}
	waitFor(t, "the sensor reads", func() bool {
		counting.mu.Lock()
		defer counting.mu.Unlock()
		return reads >= 24*6
	})

	waitFor(t, "the loops to wait", func() bool { return r.clock.waiting() >= 2 })
	readsBefore := func() int {
		counting.mu.Lock()
		defer counting.mu.Unlock()
		return driveReads
	}()
	if want := 1 + 24*2; readsBefore != want {
		t.Errorf("%d drive passes in a day, want %d", readsBefore, want)
	}
	m.TriggerCollect()
	waitFor(t, "the collect-now report", func() bool { return r.sink.count() > 0 })
	if n := len(health()); n != 1 {
		t.Errorf("%d health reports on collect now", n)
	}
	waitFor(t, "the loops to wait", func() bool { return r.clock.waiting() >= 2 })
	counting.mu.Lock()
	if driveReads != readsBefore+1 {
		t.Errorf("collect now read the drives %d times, want once", driveReads-readsBefore)
	}
	counting.mu.Unlock()
	// The view is published just after the sink took the report.
	waitFor(t, "three health reports in the status", func() bool { return m.Snapshot().Stats.HealthReports == 3 })
	if st := m.Snapshot(); st.LastHealthReport.IsZero() {
		t.Errorf("stats %+v", st.Stats)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("a second Run was allowed")
	}
}

type countingDrives struct {
	*fakeHW
	mu *sync.Mutex
	n  *int
}

func (c *countingDrives) ReadDrives(ctx context.Context) ([]hal.DriveSnapshot, error) {
	c.mu.Lock()
	*c.n++
	c.mu.Unlock()
	return c.fakeHW.ReadDrives(ctx)
}

type countingSensors struct {
	*fakeHW
	mu sync.Mutex
	n  *int
}

func (c *countingSensors) ReadSensors(ctx context.Context) ([]hal.Sensor, error) {
	c.mu.Lock()
	*c.n++
	c.mu.Unlock()
	return c.fakeHW.ReadSensors(ctx)
}

// TestHealthReportRetried: a refused health report is tried again later,
// not in a busy loop.
func TestHealthReportRetried(t *testing.T) {
	r := newRig(t, nil)
	r.hw.set(func(h *fakeHW) { h.drives = []hal.DriveSnapshot{driveSnap("A1", "/dev/sda")} })
	r.drivesAt(0)
	r.sink.setFail(errSpoolFull)
	now := r.clock.Now()
	r.m.sendHealthReport(now)
	r.m.mu.Lock()
	due := r.m.healthDueLocked(now)
	r.m.mu.Unlock()
	if !due.Equal(now.Add(r.cfg.HAL.SensorInterval)) {
		t.Errorf("retry due %s, want one sensor interval later", due.Sub(now))
	}
}
