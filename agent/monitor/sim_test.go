package monitor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/hal/sim"
	"github.com/dcagent/dcagent/internal/testenv"
)

// TestMain lets the test binary be the simulator's smartctl stand-in: the
// wrapper script hal/sim installs runs `<this binary> hardware smartctl
// --state DIR ARGS...`, as dcsim does, so the monitor reads the simulated
// drives through the real smartctl runner and a real exec.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "hardware" && os.Args[2] == "smartctl" {
		os.Exit(sim.RunSmartctl(os.Args[3:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// simRig is a monitor on hal/sim's simulated hardware, read through the
// real hal/hwmon, hal/enclosure and hal/smartctl.
type simRig struct {
	hw    *sim.Hardware
	m     *Monitor
	clock *fakeClock
	sink  *recSink
	polls int
}

func newSimRig(t *testing.T, o sim.Options) *simRig {
	t.Helper()
	o.Root = filepath.Join(t.TempDir(), "hw")
	o.Captures = filepath.Join(testenv.SharedTestdata(t), "smart", "json")
	o.Start = t0
	o.StepDuration = time.Hour
	hw, err := sim.Create(o)
	if err != nil {
		t.Fatalf("sim.Create: %v", err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.HAL.SysfsRoot = hw.SysfsRoot()
	cfg.HAL.Smartctl = hw.SmartctlPath()
	cfg.HAL.SmartctlTimeout = 30 * time.Second
	cfg.Monitor.AlertMinInterval = 0
	// Name the drives, as a device's configuration may, rather than have
	// every pass run `smartctl --scan` too: each run is an exec of this
	// test binary, slow under the race detector.
	for _, d := range hw.Drives() {
		cfg.HAL.Drives = append(cfg.HAL.Drives, d.Device+":"+d.Type)
	}
	r := &simRig{hw: hw, clock: newFakeClock(t0), sink: &recSink{t: t}}
	r.m, err = New(Options{Config: cfg, Sink: r.sink, Clock: r.clock}) // Sources: the real readers from [hal]
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// step advances the simulation and the clock one step and runs every
// poll, as the loops would over an hour.
func (r *simRig) step(t *testing.T) {
	t.Helper()
	// The first poll reads step 0, the healthy baseline.
	if r.polls++; r.polls > 1 {
		if _, err := r.hw.Advance(1); err != nil {
			t.Fatal(err)
		}
		r.clock.Advance(time.Hour)
	}
	ctx := context.Background()
	r.m.pollSensors(ctx)
	r.m.pollSlots(ctx)
	r.m.pollDrives(ctx)
	r.m.mu.Lock()
	r.m.flushHeld(r.clock.Now())
	r.m.mu.Unlock()
}

// TestSimDegradingDrive: on simulated hardware replaying real captures,
// the degrading drive is seen rising to fail with its slot named, and the
// others stay as they were.
func TestSimDegradingDrive(t *testing.T) {
	r := newSimRig(t, sim.Options{Drives: 2, NVMe: 1, Degrade: "1", Onset: 1})
	var failing *event.Event
	var levels []string
	for i := 0; i < 10 && failing == nil; i++ {
		r.step(t)
		for _, e := range alerts(r.sink.take(), "drive_risk") {
			d := e.Payload["drive"].(map[string]any)
			levels = append(levels, d["serial"].(string)+"="+d["risk"].(string))
			if d["risk"] == "fail" {
				failing = e
			}
		}
	}
	if failing == nil {
		t.Fatalf("no drive reached fail; alerts: %v; status: %+v", levels, r.m.Snapshot().Drives)
	}
	var degrading sim.Drive
	for _, d := range r.hw.Drives() {
		if d.Role == sim.RoleDegrading {
			degrading = d
		}
	}
	d := failing.Payload["drive"].(map[string]any)
	if d["serial"] != degrading.Serial {
		t.Errorf("failing drive %v, the simulation degrades %s", d["serial"], degrading.Serial)
	}
	if failing.Payload["enclosure"] == nil || failing.Payload["slot"].(map[string]any)["device"] != degrading.Name {
		t.Errorf("the alert does not place the drive: %v", failing.Payload)
	}
	t.Logf("alerts: %v", levels)
	t.Logf("fail reasons: %q", failing.Payload["reasons"])
	st := r.m.Snapshot()
	if st.DrivesByRisk["fail"] != 1 {
		t.Errorf("drives by risk %v", st.DrivesByRisk)
	}
}

// TestSimBackplane: the simulator's backplane fault across the slots is
// one backplane verdict, not failing drives. SATA drives show it in their
// CRC errors, SAS drives in their phy log (which the smartctl runner reads
// with -l sasphy): every drive behind the backplane is named.
func TestSimBackplane(t *testing.T) {
	r := newSimRig(t, sim.Options{Drives: 4, NVMe: -1, Backplane: []int{0, 1, 2, 3}, Onset: 1})
	var ata, all []string
	for _, d := range r.hw.Drives() {
		all = append(all, d.Serial)
		if d.Protocol == "ATA" {
			ata = append(ata, d.Serial)
		}
	}
	if len(ata) < 2 {
		t.Fatalf("the simulation put only %d SATA drives behind the backplane; the test needs two or more", len(ata))
	}
	var bp []*event.Event
	var driveAlerts []*event.Event
	for i := 0; i < 3; i++ {
		r.step(t)
		evs := r.sink.take()
		bp = append(bp, alerts(evs, "link_errors")...)
		driveAlerts = append(driveAlerts, alerts(evs, "drive_risk")...)
	}
	st := r.m.Snapshot()
	if len(bp) != 1 {
		var desc []string
		for _, d := range st.Drives {
			desc = append(desc, d.Device+" "+d.Slot+" "+d.Risk.Level.String()+": "+strings.Join(d.Risk.Reasons, "; "))
		}
		t.Fatalf("%d backplane alerts; drives:\n%s", len(bp), strings.Join(desc, "\n"))
	}
	encl := r.hw.State().Enclosure.ID
	if p := bp[0].Payload; p["enclosure"] != encl || p["suspect"] != "backplane_or_cable" {
		t.Errorf("backplane alert %v (enclosure %s)", p, encl)
	}
	if len(st.Backplanes) != 1 || strings.Join(st.Backplanes[0].Serials, ",") != strings.Join(all, ",") {
		t.Errorf("verdict names %v, want every drive %v", st.Backplanes, all)
	}
	for _, e := range driveAlerts {
		if risk := e.Payload["drive"].(map[string]any)["risk"]; risk == "warn" || risk == "fail" {
			t.Errorf("a drive behind the faulty backplane was called %v: %v", risk, e.Payload["reasons"])
		}
	}
	t.Logf("%s", bp[0].Payload["message"])
}

// TestSimSensorsAndSlots: a fan that stops and a slot fault on the
// simulated board and backplane become alerts; a health report carries
// every sensor, drive and slot.
func TestSimSensorsAndSlots(t *testing.T) {
	fan, _ := sim.ParseEvent("1:fan-fail:2")
	slot, _ := sim.ParseEvent("2:slot-fault:1")
	r := newSimRig(t, sim.Options{Drives: 2, NVMe: 1, Events: []sim.Event{fan, slot}})
	var evs []*event.Event
	for i := 0; i < 3; i++ {
		r.step(t)
		evs = append(evs, r.sink.take()...)
	}
	fans := alerts(evs, "fan_stopped")
	if len(fans) != 1 || fans[0].Payload["sensor"].(map[string]any)["kind"] != "fan" {
		t.Errorf("fan alerts: %v (all: %v)", payloadStrings(fans, "message"), payloadStrings(alerts(evs, ""), "message"))
	}
	faults := alerts(evs, "slot_fault")
	if len(faults) != 1 {
		t.Errorf("slot fault alerts: %v", payloadStrings(faults, "message"))
	}
	r.m.sendHealthReport(r.clock.Now())
	reports := ofType(r.sink.take(), event.TypeHealthReport)
	if len(reports) != 1 {
		t.Fatalf("%d health reports", len(reports))
	}
	p := reports[0].Payload
	if n := len(p["drives"].([]map[string]any)); n != 3 {
		t.Errorf("%d drives in the health report", n)
	}
	if n := len(p["sensors"].([]map[string]any)); n < 10 {
		t.Errorf("%d sensors in the health report", n)
	}
	if n := len(p["slots"].([]map[string]any)); n == 0 {
		t.Error("no slots in the health report")
	}
	_ = config.Default
}
