// Package monitor watches the device's hardware on the schedules of the
// [hal] section: sensors every sensor_interval, drives and enclosure slots
// every drive_interval. It runs failure prediction (agent/predict) on the
// drives and turns what it sees into events for the spool:
//
//   - an alert at once when a monitored state changes: a drive's risk
//     level, a sensor alarm set or cleared, an enclosure slot's fault, a
//     suspected backplane or cable, a drive replaced in a slot; held back
//     by hysteresis and a rate limit so that a flapping sensor cannot flood
//     (see alerts.go and the [monitor] section);
//   - a full health report (every sensor, drive and slot) every
//     [upload] health_report_interval and whenever "collect now" arrives.
//
// It reads the hardware through three small interfaces (SensorReader,
// DriveReader, SlotReader); HardwareSources builds them on hal/hwmon,
// hal/smartctl and hal/enclosure, and hal/sim's simulated tree works with
// the same readers. What it remembers (the last state sent for each
// monitored thing, the time of the last health report, each drive's
// history) lives under <state_dir>/monitor and <state_dir>/predict.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
)

// Options configure a Monitor.
type Options struct {
	// Config supplies [hal] (intervals), [predict], [monitor],
	// [upload] health_report_interval and [device] (system ID, state dir).
	Config *config.Config
	// Sources are the hardware readers; nil means HardwareSources(Config.HAL).
	Sources *Sources
	// Sink takes the events (the spool).
	Sink event.Sink
	// StateDir overrides [device] state_dir.
	StateDir string
	// HealthExtra, when set, adds fields to every health report (the
	// daemon's agent_version, uptime_seconds, spool, ...). Every field must
	// be declared for health reports in the reportable-items registry.
	HealthExtra func() map[string]any
	// Clock is the time source; nil means the real clock.
	Clock Clock
	// IDs makes event ids; nil means a generator on Clock.
	IDs *event.IDGenerator
	// Logger gets the monitor's log lines; nil discards.
	Logger *slog.Logger
}

// Monitor watches the hardware. Make one with New and call Run.
type Monitor struct {
	cfg   *config.Config
	src   Sources
	sink  event.Sink
	clock Clock
	ids   *event.IDGenerator
	log   *slog.Logger
	pred  *predict.Predictor
	dir   string
	extra func() map[string]any

	collect chan struct{}
	// wake tells the sensor loop to look at its schedule again (a drive
	// pass made the first health report due).
	wake    chan struct{}
	running sync.Mutex // held by Run
	// published is the view Snapshot returns, rebuilt after every poll.
	published atomic.Pointer[Status]

	mu           sync.Mutex
	tracked      map[string]*tracked
	bucket       bucket
	sensorConds  map[string]sensorCond
	sensors      []hal.Sensor
	slots        []hal.Slot
	drives       []driveView
	backplanes   []predict.BackplaneSuspect
	lastSensors  time.Time
	lastDrives   time.Time
	lastHealth   time.Time
	healthRetry  time.Time // after a refused health report, when to try again
	stateDirty   bool
	lastStateErr string
	readErrs     map[string]string // source -> last error logged
	// The sink's outage: sinkDown from the first refused event until one
	// is taken; alerts wait until sinkRetryAt, sinkBackoff after the last
	// refused one (alerts.go).
	sinkDown    bool
	sinkSince   time.Time
	sinkRetryAt time.Time
	sinkBackoff time.Duration
	sinkRefused int    // refused offers in this outage
	queueSeq    uint64 // the last queue place given
	queueLen    int    // pending alerts with a queue place
	stats       Stats
	drivesDone  bool // a drive pass has completed since start
}

// driveView is a drive as the last pass saw it.
type driveView struct {
	snap   hal.DriveSnapshot
	result predict.DriveResult
	device string
}

// New makes a monitor. It opens the drive histories and the remembered
// alert state under the state directory, creating it if needed.
func New(o Options) (*Monitor, error) {
	if o.Config == nil {
		return nil, errors.New("monitor: no configuration")
	}
	if o.Sink == nil {
		return nil, errors.New("monitor: no event sink")
	}
	cfg := o.Config
	if err := cfg.Monitor.Validate(); err != nil {
		return nil, fmt.Errorf("monitor: [monitor] %w", err)
	}
	if cfg.HAL.SensorInterval <= 0 || cfg.HAL.DriveInterval <= 0 {
		return nil, errors.New("monitor: [hal] sensor_interval and drive_interval must be above zero")
	}
	if cfg.Upload.HealthReportInterval <= 0 {
		return nil, errors.New("monitor: [upload] health_report_interval must be above zero")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := o.Clock
	if clock == nil {
		clock = RealClock{}
	}
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = cfg.Device.StateDir
	}
	if stateDir == "" {
		return nil, errors.New("monitor: no state directory")
	}
	dir := filepath.Join(stateDir, "monitor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("monitor: failed to create %s: %w", dir, err)
	}
	pred, err := predict.New(cfg.Predict, filepath.Join(stateDir, "predict"), log)
	if err != nil {
		return nil, err
	}
	src := HardwareSources(cfg.HAL, log)
	if o.Sources != nil {
		src = *o.Sources
	}
	ids := o.IDs
	if ids == nil {
		ids = event.NewIDGenerator(clock.Now, nil)
	}
	m := &Monitor{
		cfg: cfg, src: src, sink: o.Sink, clock: clock, ids: ids, log: log, pred: pred, dir: dir,
		extra: o.HealthExtra, collect: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		tracked: map[string]*tracked{}, bucket: bucket{perHour: cfg.Monitor.AlertMaxPerHour},
		sensorConds: map[string]sensorCond{}, readErrs: map[string]string{},
	}
	m.loadState()
	m.mu.Lock()
	m.publishLocked()
	m.mu.Unlock()
	return m, nil
}

// TriggerCollect asks for an immediate reading of every source and a full
// health report ("collect now" from the backend). It never blocks; a
// request made while one is waiting is merged with it.
func (m *Monitor) TriggerCollect() {
	select {
	case m.collect <- struct{}{}:
	default:
	}
}

// PollOnce reads every source once and sends the alerts that are due,
// without the schedules: for tools and simulations that drive the clock
// themselves. It sends no health report (TriggerCollect does, in Run).
func (m *Monitor) PollOnce(ctx context.Context) {
	m.pollSensors(ctx)
	m.pollSlots(ctx)
	m.pollDrives(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushHeld(m.clock.Now())
	m.saveState()
	m.publishLocked()
}

// Run watches until ctx ends, then writes the drive histories and the
// alert state and returns nil. It returns an error only when called while
// another Run is going.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.TryLock() {
		return errors.New("monitor: already running")
	}
	defer m.running.Unlock()
	m.log.Info("monitor: started", "sensor_interval", m.cfg.HAL.SensorInterval, "drive_interval", m.cfg.HAL.DriveInterval,
		"health_report_interval", m.cfg.Upload.HealthReportInterval)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.sensorLoop(ctx) }()
	go func() { defer wg.Done(); m.driveLoop(ctx) }()
	wg.Wait()

	if err := m.pred.Flush(); err != nil {
		m.log.Warn("monitor: drive histories not all written at stop", "err", err)
	}
	m.mu.Lock()
	m.stateDirty = true
	m.saveState()
	m.mu.Unlock()
	m.log.Info("monitor: stopped")
	return nil
}

// sensorLoop reads sensors and slots every sensor_interval, sends held
// alerts when their time comes and the health report when it is due.
func (m *Monitor) sensorLoop(ctx context.Context) {
	next := m.clock.Now()
	for {
		now := m.clock.Now()
		if !now.Before(next) {
			m.pollSensors(ctx)
			m.pollSlots(ctx)
			next = m.clock.Now().Add(m.cfg.HAL.SensorInterval)
		}
		now = m.clock.Now()
		m.mu.Lock()
		m.flushHeld(now)
		m.pruneTracked(now)
		m.saveState()
		m.publishLocked()
		wake := next
		if h := m.nextHeld(); !h.IsZero() && h.Before(wake) {
			wake = h
		}
		healthDue := m.healthDueLocked(now)
		if !healthDue.IsZero() && healthDue.Before(wake) {
			wake = healthDue
		}
		m.mu.Unlock()
		if !healthDue.IsZero() && !now.Before(healthDue) {
			m.sendHealthReport(now)
			continue
		}
		t := m.clock.NewTimer(max(wake.Sub(now), time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-m.wake:
			t.Stop()
		}
	}
}

// healthDueLocked is when the next health report is due, zero while the
// first drive pass has not completed (a report without drives is not a
// full one).
func (m *Monitor) healthDueLocked(now time.Time) time.Time {
	if !m.drivesDone {
		return time.Time{}
	}
	due := m.lastHealth.Add(m.cfg.Upload.HealthReportInterval)
	if m.lastHealth.IsZero() || m.lastHealth.After(now) {
		due = now // never sent, or the clock went back
	}
	if m.healthRetry.After(due) {
		due = m.healthRetry
	}
	return due
}

// driveLoop reads drives every drive_interval and on "collect now", which
// also reads the sensors and sends a full health report; the regular
// schedule then starts again from there.
func (m *Monitor) driveLoop(ctx context.Context) {
	poll := true
	for {
		if poll {
			m.pollSlots(ctx)
			m.pollDrives(ctx)
		}
		poll = true
		t := m.clock.NewTimer(m.cfg.HAL.DriveInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-m.collect:
			t.Stop()
			m.pollSensors(ctx)
			m.pollSlots(ctx)
			m.pollDrives(ctx)
			m.sendHealthReport(m.clock.Now())
			poll = false
		}
	}
}

// put stamps an event and hands it to the sink.
func (m *Monitor) put(e *event.Event) error {
	if e.ID == "" {
		e.ID = m.ids.New()
	}
	if e.Created.IsZero() {
		e.Created = m.clock.Now().UTC()
	}
	if e.SystemID == "" {
		e.SystemID = m.cfg.Device.SystemID
	}
	return m.sink.Put(e)
}

// noteSinkError counts a refused event and logs the first of an outage
// only: a sink that stays full must not fill the log with one line per
// try. The caller holds m.mu.
func (m *Monitor) noteSinkError(now time.Time, about string, err error) {
	m.stats.SinkErrors++
	m.stats.LastSinkError = err.Error()
	m.sinkRefused++
	if m.sinkDown {
		return
	}
	m.sinkDown, m.sinkSince = true, now
	m.log.Warn("monitor: events not accepted; alerts are queued and offered again with a back-off", "about", about, "err", err)
}

// sinkAccepted ends an outage: the sink took an event, so the queued
// alerts may go at once. The caller holds m.mu.
func (m *Monitor) sinkAccepted() {
	if !m.sinkDown {
		return
	}
	m.log.Info("monitor: events accepted again", "refused_offers", m.sinkRefused,
		"outage", m.clock.Now().Sub(m.sinkSince).Round(time.Second))
	m.sinkDown, m.sinkBackoff, m.sinkRetryAt, m.sinkRefused = false, 0, time.Time{}, 0
}

// noteReadError logs a source's error once until it changes or clears.
func (m *Monitor) noteReadError(source string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if m.readErrs[source] == msg {
		return
	}
	m.readErrs[source] = msg
	m.publishLocked()
	if msg == "" {
		m.log.Info("monitor: source readable again", "source", source)
		return
	}
	m.log.Warn("monitor: source could not be read in full", "source", source, "err", err)
}
