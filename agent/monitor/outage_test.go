package monitor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/hal"
)

// outageSink refuses every event while refusing is set, as a spool on a
// full disk does, and counts the alerts offered to it.
type outageSink struct {
	recSink
	offers int // alerts offered, taken or not
}

func (s *outageSink) Put(e *event.Event) error {
	if e.Type == event.TypeAlert {
		s.mu.Lock()
		s.offers++
		s.mu.Unlock()
	}
	return s.recSink.Put(e)
}

// alertsTaken is how many alerts the sink has taken since the last take.
func (s *outageSink) alertsTaken() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(alerts(s.events, ""))
}

func (s *outageSink) offered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offers
}

// syncBuffer is a log destination safe for the monitor's two loops.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.b.String(), s)
}

const (
	logRefused  = "monitor: events not accepted"
	logAccepted = "monitor: events accepted again"
)

// The three faults of the report: a fan that stopped, a PSU that lost its
// input, an enclosure slot's fault. None is critical, so all three pass
// through the hourly budget.
var (
	fanFail = hal.Sensor{Chip: "nct6775", DevicePath: "/sys/devices/platform/nct6775.656", Kind: hal.SensorFan,
		Index: 1, Label: "fan1", Value: hal.F64(0), Min: hal.F64(600)}
	psuFail = hal.Sensor{Chip: "psu", DevicePath: "/sys/devices/platform/psu.2", Kind: hal.SensorVoltage,
		Index: 0, Label: "PSU-2 input", Value: hal.F64(0), Min: hal.F64(200), Max: hal.F64(260)}
	slotOK    = hal.Slot{Enclosure: "0:0:24:0", Slot: "Slot02", Status: "OK", Device: "sdb"}
	slotFault = hal.Slot{Enclosure: "0:0:24:0", Slot: "Slot02", Status: "critical", Fault: true, Device: "sdb"}
)

func newOutageMonitor(t *testing.T, tune func(*config.Config)) (*Monitor, *fakeClock, *outageSink, *fakeHW, *syncBuffer) {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	if tune != nil {
		tune(cfg)
	}
	clock := newFakeClock(t0)
	sink := &outageSink{recSink: recSink{t: t}}
	hw := &fakeHW{slots: []hal.Slot{slotOK}}
	logs := &syncBuffer{}
	m, err := New(Options{
		Config: cfg, Sources: &Sources{Sensors: hw, Drives: hw, Slots: hw}, Sink: sink, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, clock, sink, hw, logs
}

// alertOrder names what each alert is about, in the order taken.
func alertOrder(evs []*event.Event) []string {
	var out []string
	for _, e := range alerts(evs, "") {
		switch e.Payload["condition"] {
		case "fan_stopped":
			out = append(out, "fan")
		case "under_voltage":
			out = append(out, "psu")
		case "slot_fault":
			out = append(out, "slot")
		default:
			out = append(out, e.Payload["condition"].(string))
		}
	}
	return out
}

// TestSinkOutageSpendsNoBudget: alerts the sink refuses are queued, offered
// again with a back-off (not in a tight loop), logged once, and spend
// neither the hourly budget nor their thing's interval; once the sink takes
// events again all three go out in the order they were raised.
func TestSinkOutageSpendsNoBudget(t *testing.T) {
	m, clock, sink, hw, logs := newOutageMonitor(t, nil)
	poll := func(d time.Duration) {
		clock.Advance(d)
		m.pollSensors(context.Background())
		m.pollSlots(context.Background())
		m.mu.Lock()
		m.flushHeld(clock.Now())
		m.publishLocked()
		m.mu.Unlock()
	}
	sink.setFail(errSpoolFull)
	hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{fanFail} })
	poll(time.Minute)
	if n := sink.offered(); n != 1 {
		t.Fatalf("fan alert offered %d times, want once", n)
	}
	hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{fanFail, psuFail} })
	poll(time.Second)
	hw.set(func(h *fakeHW) { h.slots = []hal.Slot{slotFault} })
	poll(100 * time.Millisecond)
	// Many flushes without the clock moving: the back-off holds them all.
	for i := 0; i < 1000; i++ {
		m.mu.Lock()
		m.flushHeld(clock.Now())
		m.mu.Unlock()
	}
	if n := sink.offered(); n != 1 {
		t.Fatalf("%d offers within the first back-off, want 1 (a tight retry loop)", n)
	}
	// Ten minutes of one-second ticks: the back-off doubles from 2 s to
	// the one-minute sensor interval, so about 14 offers, not 600.
	for i := 0; i < 600; i++ {
		poll(time.Second)
	}
	offers := sink.offered()
	if offers < 8 || offers > 20 {
		t.Errorf("%d offers in ten minutes of outage, want a back-off of 2 s doubling to 1 min (about 14)", offers)
	}
	if n := logs.count(logRefused); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logs)
	}
	m.mu.Lock()
	tokens := m.bucket.tokens
	for k, tr := range m.tracked {
		if tr.pending && !tr.LastSent.IsZero() {
			t.Errorf("%s: a refused alert set its last-sent time", k)
		}
	}
	m.mu.Unlock()
	if tokens != float64(m.cfg.Monitor.AlertMaxPerHour) {
		t.Errorf("refused alerts spent the budget: %g of %d tokens left", tokens, m.cfg.Monitor.AlertMaxPerHour)
	}
	if st := m.Snapshot(); st.Stats.AlertsQueued != 3 || st.Stats.AlertsSent != 0 || st.Stats.SinkErrors != offers {
		t.Errorf("stats during the outage %+v", st.Stats)
	}
	if n := len(sink.take()); n != 0 {
		t.Fatalf("%d events taken by a refusing sink", n)
	}

	// Space is freed: within one back-off all three go, in order.
	sink.setFail(nil)
	for i := 0; i < 61 && sink.count() < 3; i++ {
		poll(time.Second)
	}
	got := sink.take()
	if order := strings.Join(alertOrder(got), ","); order != "fan,psu,slot" {
		t.Fatalf("alerts after the outage: %q, want fan,psu,slot", order)
	}
	if n := sink.offered() - offers; n != 3 {
		t.Errorf("%d offers to send 3 queued alerts", n)
	}
	if n := logs.count(logAccepted); n != 1 {
		t.Errorf("the recovery was logged %d times, want once", n)
	}
	if st := m.Snapshot(); st.Stats.AlertsQueued != 0 || st.Stats.AlertsSent != 3 {
		t.Errorf("stats after the outage %+v", st.Stats)
	}

	// The budget is intact: 27 more alerts go at once, the 28th waits.
	var many []hal.Sensor
	for i := 0; i < 28; i++ {
		s := tempSensor(85)
		s.Index = 10 + i
		many = append(many, s)
	}
	hw.set(func(h *fakeHW) { h.sensors = append([]hal.Sensor{fanFail, psuFail}, many...) })
	poll(time.Second)
	if n := len(alerts(sink.take(), "over_temperature")); n != 27 {
		t.Errorf("%d alerts after the outage, want the 27 tokens left of 30", n)
	}
}

// TestSinkOutageRunLoop runs the monitor's loops on a fake clock through an
// outage: the loop offers refused alerts on the back-off, not on every
// wake, and sends every queued alert in order once the sink takes events,
// without a restart.
func TestSinkOutageRunLoop(t *testing.T) {
	m, clock, sink, hw, logs := newOutageMonitor(t, func(c *config.Config) {
		c.HAL.SensorInterval = 10 * time.Second
		c.HAL.DriveInterval = time.Hour
	})
	sink.setFail(errSpoolFull)
	hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{fanFail} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	parked := func() { waitFor(t, "the loops to wait", func() bool { return clock.waiting() >= 2 }) }
	step := func(n int) {
		for i := 0; i < n; i++ {
			parked()
			clock.Advance(time.Second)
		}
		parked()
	}
	waitFor(t, "the fan alert to be offered", func() bool { return sink.offered() >= 1 })
	step(10)
	hw.set(func(h *fakeHW) { h.sensors = []hal.Sensor{fanFail, psuFail} })
	step(10)
	hw.set(func(h *fakeHW) { h.slots = []hal.Slot{slotFault} })
	step(100)
	// 120 one-second wakes; a back-off of 2, 4, 8 s and then the 10 s
	// sensor interval makes about 13 offers.
	offers := sink.offered()
	if offers < 6 || offers > 18 {
		t.Errorf("%d offers in two minutes of outage, want a back-off (about 13)", offers)
	}
	if n := logs.count(logRefused); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	if st := m.Snapshot(); st.Stats.AlertsQueued != 3 {
		t.Errorf("%d alerts queued, want 3", st.Stats.AlertsQueued)
	}
	if n := len(alerts(sink.take(), "")); n != 0 {
		t.Fatalf("%d alerts taken by a refusing sink", n)
	}

	sink.setFail(nil)
	for i := 0; i < 30 && sink.alertsTaken() < 3; i++ {
		step(1)
	}
	if order := strings.Join(alertOrder(sink.take()), ","); order != "fan,psu,slot" {
		t.Fatalf("alerts after the outage: %q, want fan,psu,slot", order)
	}
	m.mu.Lock()
	tokens := m.bucket.tokens
	m.mu.Unlock()
	if max := float64(m.cfg.Monitor.AlertMaxPerHour); tokens < max-3 || tokens > max-2 {
		t.Errorf("%g tokens left after 3 alerts, want %g", tokens, max-3)
	}
	waitFor(t, "the recovery in the log", func() bool { return logs.count(logAccepted) == 1 })
}
