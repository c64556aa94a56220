package cases

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/monitor"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/sim/eventstore"
)

// The tests feed the book the alerts the real agent monitor makes, after a
// round trip through the wire encoding, as the backend receives them.

type wireSink struct {
	mu     sync.Mutex
	t      testing.TB
	events []*event.Event
}

func (s *wireSink) Put(e *event.Event) error {
	b, err := event.Marshal(e)
	if err != nil {
		s.t.Fatalf("agent event refused: %v", err)
	}
	back, err := event.Unmarshal(b)
	if err != nil {
		s.t.Fatalf("agent event does not decode: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, back)
	return nil
}

func (s *wireSink) take() []*event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.events
	s.events = nil
	return out
}

// device is a simulated device: a monitor on hardware the test sets.
type device struct {
	mu     sync.Mutex
	drives []hal.DriveSnapshot
	slots  []hal.Slot
	m      *monitor.Monitor
	sink   *wireSink
	now    time.Time
}

func (d *device) ReadDrives(context.Context) ([]hal.DriveSnapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]hal.DriveSnapshot(nil), d.drives...), nil
}

func (d *device) ReadSlots(context.Context) ([]hal.Slot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]hal.Slot(nil), d.slots...), nil
}

type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *stepClock) NewTimer(time.Duration) monitor.Timer { return nil }

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func ptrBool(b bool) *bool { return &b }

func drive(serial, dev string) hal.DriveSnapshot {
	return hal.DriveSnapshot{
		Source: dev + ":sat", Protocol: hal.ProtocolATA, Model: "WDC WD4003FFBX-68MU3N0", Serial: serial,
		CapacityBytes: hal.U64(4000787030016), SmartPassed: ptrBool(true), PowerOnHours: hal.U64(7600),
		Counters: hal.Counters{ReallocatedSectors: hal.U64(0), PendingSectors: hal.U64(0), UDMACRCErrors: hal.U64(0)},
	}
}

var slots = []hal.Slot{
	{Enclosure: "0:0:12:0", Slot: "Slot00", Status: "OK", Device: "sda"},
	{Enclosure: "0:0:12:0", Slot: "Slot01", Status: "OK", Device: "sdb"},
	{Enclosure: "0:0:12:0", Slot: "Slot02", Status: "OK", Device: "sdc"},
}

// passes runs n drive passes an hour apart, with set changing the drives
// before each, and returns the events sent.
func (d *device) passes(t *testing.T, clock *stepClock, n int, set func(i int, drives []hal.DriveSnapshot)) []*event.Event {
	t.Helper()
	for i := 0; i < n; i++ {
		d.mu.Lock()
		set(i, d.drives)
		d.mu.Unlock()
		clock.mu.Lock()
		clock.now = clock.now.Add(time.Hour)
		clock.mu.Unlock()
		d.m.TriggerCollect() // not running: only to show it never blocks
		pollDrives(t, d.m)
	}
	return d.sink.take()
}

func newDevice(t *testing.T, systemID string) (*device, *stepClock) {
	t.Helper()
	cfg := config.Default()
	cfg.Device.SystemID = systemID
	cfg.Device.StateDir = t.TempDir()
	d := &device{slots: slots, sink: &wireSink{t: t}}
	d.drives = []hal.DriveSnapshot{drive("WD-A", "/dev/sda"), drive("WD-B", "/dev/sdb"), drive("WD-C", "/dev/sdc")}
	clock := &stepClock{now: t0}
	m, err := monitor.New(monitor.Options{Config: cfg, Sink: d.sink, Clock: clock,
		Sources: &monitor.Sources{Drives: d, Slots: d}})
	if err != nil {
		t.Fatal(err)
	}
	d.m = m
	return d, clock
}

// pollDrives runs one collection through the monitor's public API.
func pollDrives(t *testing.T, m *monitor.Monitor) {
	t.Helper()
	m.PollOnce(context.Background())
}

func failDrive(serial string) func(int, []hal.DriveSnapshot) {
	return func(i int, ds []hal.DriveSnapshot) {
		for j := range ds {
			if ds[j].Serial == serial && i >= 1 {
				ds[j].SmartPassed = ptrBool(false)
				ds[j].Counters.PendingSectors = hal.U64(uint64(40 * i))
			}
		}
	}
}

func newBook(t *testing.T, o Options) *Book {
	t.Helper()
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func handleAll(t *testing.T, b *Book, evs []*event.Event) (opened []Case) {
	t.Helper()
	for _, e := range evs {
		c, isNew, err := b.Handle(e)
		if err != nil {
			t.Fatalf("Handle %v: %v", e.Payload["message"], err)
		}
		if isNew {
			opened = append(opened, *c)
		}
	}
	return opened
}

// TestDriveCase: a drive predicted to fail opens one case with the part to
// dispatch; later alerts about it update the case; the same event twice
// counts once.
func TestDriveCase(t *testing.T) {
	d, clock := newDevice(t, "SYS-0001")
	b := newBook(t, Options{Now: func() time.Time { return t0 }})
	var called []Case
	b.OnOpen(func(c Case) { called = append(called, c) })

	evs := d.passes(t, clock, 4, failDrive("WD-B"))
	opened := handleAll(t, b, evs)
	if len(opened) != 1 || len(called) != 1 {
		t.Fatalf("%d cases opened, %d callbacks", len(opened), len(called))
	}
	c := opened[0]
	if c.Kind != KindDrive || c.Status != StatusOpen || c.SystemID != "SYS-0001" || c.ID != "C-000001" {
		t.Errorf("case %+v", c)
	}
	want := Part{Kind: "drive", Model: "WDC WD4003FFBX-68MU3N0", CapacityBytes: 4000787030016, Serial: "WD-B", Protocol: "ATA",
		Enclosure: "0:0:12:0", Slot: "Slot01", Device: "sdb",
		Description: "replacement drive: WDC WD4003FFBX-68MU3N0, 4.0 TB, for enclosure 0:0:12:0 slot Slot01 (failing drive serial WD-B)"}
	if c.Part.Description != want.Description || c.Part.Slot != want.Slot || c.Part.CapacityBytes != want.CapacityBytes || c.Part.Device != want.Device {
		t.Errorf("part %+v\nwant %+v", c.Part, want)
	}
	if !strings.Contains(c.Summary, "risk rose from ok to fail") || len(c.Reasons) == 0 {
		t.Errorf("summary %q reasons %q", c.Summary, c.Reasons)
	}

	// The same events again (another channel): nothing new.
	if again := handleAll(t, b, evs); len(again) != 0 {
		t.Errorf("re-delivered events opened %d cases", len(again))
	}
	got, _ := b.Get(c.ID)
	updates := len(got.Updates)

	// The drive gets better for a while: an update, not a new case, and
	// the case stays open.
	evs = d.passes(t, clock, 30, func(i int, ds []hal.DriveSnapshot) {
		ds[1].SmartPassed = ptrBool(true)
		ds[1].Counters.PendingSectors = hal.U64(0)
	})
	if len(evs) == 0 {
		t.Fatal("no alert when the drive's risk fell")
	}
	if opened := handleAll(t, b, evs); len(opened) != 0 {
		t.Errorf("%d more cases", len(opened))
	}
	got, _ = b.Get(c.ID)
	if got.Status != StatusOpen || len(got.Updates) <= updates {
		t.Errorf("after the risk fell: status %s, %d updates", got.Status, len(got.Updates))
	}
	if n := len(b.Open()); n != 1 {
		t.Errorf("%d open cases", n)
	}
}

// TestReplacementClosesCase: the device reporting a new drive in the slot
// closes the case.
func TestReplacementClosesCase(t *testing.T) {
	d, clock := newDevice(t, "SYS-0002")
	b := newBook(t, Options{})
	handleAll(t, b, d.passes(t, clock, 3, failDrive("WD-C")))
	if n := len(b.Open()); n != 1 {
		t.Fatalf("%d open cases", n)
	}
	evs := d.passes(t, clock, 1, func(i int, ds []hal.DriveSnapshot) { ds[2] = drive("WD-NEW", "/dev/sdc") })
	handleAll(t, b, evs)
	all := b.List()
	if len(all) != 1 || all[0].Status != StatusClosed || !strings.Contains(all[0].Resolution, "slot Slot02 replaced (new serial WD-NEW)") {
		t.Errorf("cases %+v", all)
	}
	// A new failure of the new drive is a new case.
	handleAll(t, b, d.passes(t, clock, 3, failDrive("WD-NEW")))
	if open := b.Open(); len(open) != 1 || open[0].Part.Serial != "WD-NEW" || open[0].ID != "C-000002" {
		t.Errorf("open %+v", open)
	}
}

// TestBackplaneCase: CRC errors rising behind one enclosure open one
// backplane case naming it and its slots; no drive case.
func TestBackplaneCase(t *testing.T) {
	d, clock := newDevice(t, "SYS-0003")
	b := newBook(t, Options{})
	evs := d.passes(t, clock, 6, func(i int, ds []hal.DriveSnapshot) {
		for j := range ds {
			ds[j].Counters.UDMACRCErrors = hal.U64(uint64(7 * i * (j + 1)))
		}
	})
	opened := handleAll(t, b, evs)
	if len(opened) != 1 {
		t.Fatalf("%d cases: %+v", len(opened), opened)
	}
	c := opened[0]
	if c.Kind != KindBackplane || c.Part.Kind != "backplane_or_cable" || c.Part.Enclosure != "0:0:12:0" ||
		strings.Join(c.Part.Slots, ",") != "Slot00,Slot01,Slot02" {
		t.Errorf("case %+v", c)
	}
	if want := "backplane or drive cable of enclosure 0:0:12:0 (interface errors on slots Slot00, Slot01, Slot02; check the cabling to the backplane first)"; c.Part.Description != want {
		t.Errorf("description %q", c.Part.Description)
	}
}

// TestOneCasePerDevice: the same serial and enclosure on two devices are
// two cases.
func TestOneCasePerDevice(t *testing.T) {
	b := newBook(t, Options{})
	for _, sys := range []string{"SYS-A", "SYS-B"} {
		d, clock := newDevice(t, sys)
		handleAll(t, b, d.passes(t, clock, 3, failDrive("WD-A")))
	}
	if n := len(b.Open()); n != 2 {
		t.Errorf("%d open cases, want one per device", n)
	}
}

// TestPersistence: a restarted backend keeps its cases, their numbering
// and the de-duplication.
func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cases.json")
	d, clock := newDevice(t, "SYS-0004")
	evs := d.passes(t, clock, 3, failDrive("WD-A"))
	b := newBook(t, Options{Path: path})
	handleAll(t, b, evs)
	b2 := newBook(t, Options{Path: path})
	if n := len(b2.Open()); n != 1 {
		t.Fatalf("%d open cases after reload", n)
	}
	if opened := handleAll(t, b2, evs); len(opened) != 0 {
		t.Errorf("reloaded book reopened %d cases", len(opened))
	}
	if err := b2.Close("C-000001", "drive shipped and swapped by hand"); err != nil {
		t.Fatal(err)
	}
	if err := b2.Close("C-000001", "again"); !errors.Is(err, ErrNoCase) {
		t.Errorf("closing twice: %v", err)
	}
	b3 := newBook(t, Options{Path: path})
	if all := b3.List(); len(all) != 1 || all[0].Resolution != "drive shipped and swapped by hand" {
		t.Errorf("after reload: %+v", all)
	}
	handleAll(t, b3, d.passes(t, clock, 1, func(i int, ds []hal.DriveSnapshot) { ds[1].SmartPassed = ptrBool(false) }))
	if all := b3.List(); len(all) != 2 || all[1].ID != "C-000002" {
		t.Errorf("numbering after reload: %+v", all)
	}

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Path: path}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt case file: %v", err)
	}
}

// TestBadPayloads: alerts missing what a case needs give an error naming
// it; other events are ignored.
func TestBadPayloads(t *testing.T) {
	b := newBook(t, Options{})
	mk := func(p map[string]any) *event.Event {
		return &event.Event{ID: event.NewID(), Type: event.TypeAlert, Severity: event.SeverityCritical, Created: t0, SystemID: "S", Payload: p}
	}
	for _, c := range []struct {
		p    map[string]any
		want string
	}{
		{map[string]any{"condition": "drive_risk", "state": "raised"}, "without a drive object"},
		{map[string]any{"condition": "drive_risk", "state": "raised", "drive": map[string]any{"risk": "fail"}}, "neither the drive's serial nor where"},
		{map[string]any{"condition": "link_errors", "state": "raised"}, "without an enclosure"},
		{map[string]any{"condition": "drive_replaced", "state": "raised"}, "without a slot"},
	} {
		if _, _, err := b.Handle(mk(c.p)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.p, err, c.want)
		}
	}
	for _, e := range []*event.Event{
		nil,
		{ID: event.NewID(), Type: event.TypeHealthReport},
		mk(map[string]any{"condition": "over_temperature", "state": "raised"}),
		mk(map[string]any{"condition": "drive_risk", "state": "raised", "drive": map[string]any{"risk": "warn", "serial": "X"}}),
	} {
		if c, _, err := b.Handle(e); c != nil || err != nil {
			t.Errorf("event %v: case %v err %v", e, c, err)
		}
	}
	if n := len(b.List()); n != 0 {
		t.Errorf("%d cases from bad payloads", n)
	}
}

// TestFollowEventStore: the book follows the backend's event store.
func TestFollowEventStore(t *testing.T) {
	store, err := eventstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ch, cancelSub := store.Subscribe(16)
	defer cancelSub()
	b := newBook(t, Options{})
	opened := make(chan Case, 4)
	b.OnOpen(func(c Case) { opened <- c })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Follow(ctx, ch); close(done) }()
	defer func() { cancel(); <-done }()

	d, clock := newDevice(t, "SYS-0005")
	var in []eventstore.Incoming
	for _, e := range d.passes(t, clock, 3, failDrive("WD-A")) {
		data, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, eventstore.Incoming{Data: data, SystemID: "SYS-0005", Channel: eventstore.ChannelHTTPS})
	}
	if _, err := store.Store(in); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-opened:
		if c.Part.Serial != "WD-A" || c.Part.Slot != "Slot00" {
			t.Errorf("case %+v", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no case opened from the event store")
	}
}

func TestCapacity(t *testing.T) {
	for n, want := range map[uint64]string{4000787030016: "4.0 TB", 480103981056: "480 GB", 18000207937536: "18.0 TB", 512: "512 B"} {
		if got := capacity(n); got != want {
			t.Errorf("capacity(%d) = %q, want %q", n, got, want)
		}
	}
}
