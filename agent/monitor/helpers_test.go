package monitor

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/hal"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand; its timers fire when it passes
// their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clock *fakeClock
	when  time.Time
	c     chan time.Time
	done  bool
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, when: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.done = true
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.when.After(c.now):
			t.done = true
			t.c <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// waiting is the number of timers not yet fired or stopped.
func (c *fakeClock) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// recSink records events after checking each against the reportable-items
// registry, as the spool does: an undeclared field fails the test.
type recSink struct {
	t      testing.TB
	mu     sync.Mutex
	events []*event.Event
	fail   error
}

func (s *recSink) Put(e *event.Event) error {
	if _, err := event.Marshal(e); err != nil {
		s.t.Errorf("monitor sent an event the registry refuses: %v\npayload: %#v", err, e.Payload)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.events = append(s.events, e)
	return nil
}

func (s *recSink) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// take returns the events recorded since the last take.
func (s *recSink) take() []*event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.events
	s.events = nil
	return out
}

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func alerts(evs []*event.Event, condition string) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		if e.Type == event.TypeAlert && (condition == "" || e.Payload["condition"] == condition) {
			out = append(out, e)
		}
	}
	return out
}

func ofType(evs []*event.Event, t event.Type) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// fakeHW is hardware set by the test.
type fakeHW struct {
	mu      sync.Mutex
	sensors []hal.Sensor
	drives  []hal.DriveSnapshot
	slots   []hal.Slot
	err     error
}

func (f *fakeHW) ReadSensors(context.Context) ([]hal.Sensor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hal.Sensor(nil), f.sensors...), f.err
}

func (f *fakeHW) ReadDrives(context.Context) ([]hal.DriveSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hal.DriveSnapshot(nil), f.drives...), f.err
}

func (f *fakeHW) ReadSlots(context.Context) ([]hal.Slot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hal.Slot(nil), f.slots...), f.err
}

func (f *fakeHW) set(fn func(*fakeHW)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type rig struct {
	m     *Monitor
	clock *fakeClock
	sink  *recSink
	hw    *fakeHW
	dir   string
	cfg   *config.Config
}

func testConfig(t testing.TB, dir string) *config.Config {
	cfg := config.Default()
	cfg.Device.SystemID = "SYS-TEST-0001"
	cfg.Device.StateDir = dir
	return cfg
}

// newRig makes a monitor on fake hardware, a fake clock and a recording
// sink; tune changes the configuration first.
func newRig(t testing.TB, tune func(*config.Config)) *rig {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	if tune != nil {
		tune(cfg)
	}
	r := &rig{clock: newFakeClock(t0), sink: &recSink{t: t}, hw: &fakeHW{}, dir: dir, cfg: cfg}
	r.m = r.newMonitor(t)
	return r
}

func (r *rig) newMonitor(t testing.TB) *Monitor {
	t.Helper()
	m, err := New(Options{
		Config: r.cfg, Sources: &Sources{Sensors: r.hw, Drives: r.hw, Slots: r.hw},
		Sink: r.sink, Clock: r.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sensorsAt moves the clock on by d, reads the sensors and sends what is
// due, as one tick of the sensor loop does.
func (r *rig) sensorsAt(d time.Duration) {
	r.clock.Advance(d)
	r.m.pollSensors(context.Background())
	r.m.pollSlots(context.Background())
	r.flush()
}

func (r *rig) drivesAt(d time.Duration) {
	r.clock.Advance(d)
	r.m.pollSlots(context.Background())
	r.m.pollDrives(context.Background())
	r.flush()
}

func (r *rig) flush() {
	r.m.mu.Lock()
	r.m.flushHeld(r.clock.Now())
	r.m.mu.Unlock()
}

func tempSensor(v float64) hal.Sensor {
	return hal.Sensor{Chip: "coretemp", DevicePath: "/sys/devices/platform/coretemp.0", Kind: hal.SensorTemp,
		Index: 2, Label: "Core 0", Value: hal.F64(v), Max: hal.F64(80), Crit: hal.F64(95)}
}

func payloadStrings(evs []*event.Event, key string) []string {
	var out []string
	for _, e := range evs {
		if s, ok := e.Payload[key].(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }

var errSpoolFull = errors.New("spool: full")

// waitFor polls cond for up to 20 s of real time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ptrBool(b bool) *bool { return &b }

// driveSnap is a healthy SATA drive read from device.
func driveSnap(serial, device string) hal.DriveSnapshot {
	return hal.DriveSnapshot{
		Source: device + ":sat", Protocol: hal.ProtocolATA, Model: "TEST HDD 4TB", Serial: serial, Firmware: "FW1",
		CapacityBytes: hal.U64(4e12), SmartPassed: ptrBool(true), PowerOnHours: hal.U64(10000), TemperatureC: hal.F64(35),
		Counters: hal.Counters{ReallocatedSectors: hal.U64(0), PendingSectors: hal.U64(0), OfflineUncorrectable: hal.U64(0),
			ReportedUncorrectable: hal.U64(0), UDMACRCErrors: hal.U64(0)},
	}
}

func globN(t testing.TB, pattern string) int {
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
