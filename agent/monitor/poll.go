package monitor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
)

// Key prefixes of tracked things.
const (
	keySensor    = "sensor:"
	keyDrive     = "drive:"
	keySlot      = "slot:"
	keyBackplane = "backplane:"
	keyReplaced  = "replaced:"
)

func alertEvent(sev event.Severity, payload map[string]any) *event.Event {
	return &event.Event{Type: event.TypeAlert, Severity: sev, Payload: payload}
}

func stateWord(rank int) string {
	if rank == 0 {
		return "cleared"
	}
	return "raised"
}

// pollSensors reads every sensor and updates their alarm states.
func (m *Monitor) pollSensors(ctx context.Context) {
	if m.src.Sensors == nil {
		return
	}
	sensors, err := m.src.Sensors.ReadSensors(ctx)
	if ctx.Err() != nil {
		return
	}
	m.noteReadError("sensors", err)
	if err != nil && len(sensors) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	m.sensors, m.lastSensors = sensors, now
	for i := range sensors {
		s := sensors[i]
		key := sensorKey(&s)
		c := classify(&s, m.sensorConds[key], &m.cfg.Monitor)
		m.sensorConds[key] = c
		sev := event.SeverityNotice
		switch c.rank {
		case rankWarning:
			sev = event.SeverityWarning
		case rankCritical:
			sev = event.SeverityError
		}
		m.change(now, keySensor+key, c.rank, sev, func(suppressed, prev int) *event.Event {
			p := map[string]any{
				"source": "sensor", "state": stateWord(c.rank), "message": text(sensorMessage(&s, c)),
				"sensor": sensorObject(&s), "suppressed": int64(suppressed),
			}
			// build runs when the alert is sent: remember what was raised,
			// to name it again when it clears.
			cond := c.condition
			if t := m.tracked[keySensor+key]; t != nil {
				if c.rank != rankNormal {
					t.Condition = cond
				} else if cond = t.Condition; cond == "" {
					cond = "sensor_alarm"
				}
			}
			putText(p, "condition", cond)
			if s.Value != nil && finite(*s.Value) {
				p["value"] = *s.Value
			}
			if c.limit != "" {
				p["threshold"] = c.threshold
			}
			putText(p, "unit", unitOf(s.Kind))
			return alertEvent(sev, p)
		})
	}
	m.saveState()
	m.publishLocked()
}

func slotFaulty(s *hal.Slot) bool {
	st := strings.ToLower(s.Status)
	return s.Fault || st == "critical" || st == "unrecoverable"
}

// pollSlots reads the enclosure slots and updates their fault states.
func (m *Monitor) pollSlots(ctx context.Context) {
	if m.src.Slots == nil {
		return
	}
	slots, err := m.src.Slots.ReadSlots(ctx)
	if ctx.Err() != nil {
		return
	}
	m.noteReadError("slots", err)
	if err != nil && len(slots) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	m.slots = slots
	for i := range slots {
		s := slots[i]
		rank, sev := 0, event.SeverityNotice
		if slotFaulty(&s) {
			rank, sev = 1, event.SeverityError
		}
		m.change(now, keySlot+s.Enclosure+"/"+s.Slot, rank, sev, func(suppressed, prev int) *event.Event {
			msg := fmt.Sprintf("enclosure %s slot %s: fault cleared (status %s)", s.Enclosure, s.Slot, orUnknown(s.Status))
			if rank > 0 {
				msg = fmt.Sprintf("enclosure %s slot %s reports a fault (status %s, fault indicator %s)", s.Enclosure, s.Slot, orUnknown(s.Status), onOff(s.Fault))
			}
			p := map[string]any{
				"source": "enclosure", "condition": "slot_fault", "state": stateWord(rank), "message": text(msg),
				"slot": slotObject(&s), "enclosure": text(s.Enclosure), "suppressed": int64(suppressed),
			}
			return alertEvent(sev, p)
		})
	}
	m.saveState()
	m.publishLocked()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// riskSeverity is the severity of an alert about a drive at a level.
func riskSeverity(l predict.Level) event.Severity {
	switch l {
	case predict.LevelFail:
		return event.SeverityCritical
	case predict.LevelWarn:
		return event.SeverityWarning
	}
	return event.SeverityNotice
}

// pollDrives reads every drive, runs a prediction pass and updates the
// drives' risk, the backplane verdicts and replacements.
func (m *Monitor) pollDrives(ctx context.Context) {
	if m.src.Drives == nil {
		m.mu.Lock()
		if !m.drivesDone {
			m.drivesDone = true
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
		m.mu.Unlock()
		return
	}
	snaps, err := m.src.Drives.ReadDrives(ctx)
	if ctx.Err() != nil {
		return
	}
	m.noteReadError("drives", err)
	if err != nil && len(snaps) == 0 {
		// Nothing read: keep the last verdicts rather than judge an empty
		// device (which would clear every backplane verdict).
		return
	}
	m.mu.Lock()
	bySlot := map[string]hal.Slot{}
	for _, s := range m.slots {
		if s.Device != "" {
			bySlot[s.Device] = s
		}
	}
	m.mu.Unlock()

	inputs := make([]predict.DriveInput, len(snaps))
	devices := make([]string, len(snaps))
	for i := range snaps {
		inputs[i].Snapshot = snaps[i]
		devices[i] = deviceName(snaps[i].Source)
		if sl, ok := bySlot[devices[i]]; ok {
			inputs[i].Enclosure, inputs[i].Slot = sl.Enclosure, sl.Slot
		}
	}
	now := m.clock.Now()
	res := m.pred.Assess(now, inputs)
	for _, n := range res.Notes {
		m.log.Warn("monitor: drive history", "note", n)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.drivesDone {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	m.lastDrives, m.drivesDone = now, true
	m.drives = m.drives[:0]
	for i := range res.Drives {
		m.drives = append(m.drives, driveView{snap: snaps[i], result: res.Drives[i], device: devices[i]})
	}
	for i := range m.drives {
		d := m.drives[i]
		level := d.result.Risk.Level
		m.change(now, keyDrive+d.result.Key, int(level), riskSeverity(level), func(suppressed, prev int) *event.Event {
			return m.driveAlert(&d, predict.Level(prev), suppressed)
		})
	}

	m.backplanes = res.Backplanes
	current := map[string]bool{}
	for i := range res.Backplanes {
		bp := res.Backplanes[i]
		key := keyBackplane + bp.Enclosure
		current[key] = true
		m.change(now, key, 1, event.SeverityError, func(suppressed, prev int) *event.Event {
			return m.backplaneAlert(&bp, suppressed)
		})
	}
	for key, t := range m.tracked {
		if !strings.HasPrefix(key, keyBackplane) || current[key] || (t.Reported == 0 && !t.pending) {
			continue
		}
		encl := strings.TrimPrefix(key, keyBackplane)
		m.change(now, key, 0, event.SeverityNotice, func(suppressed, prev int) *event.Event {
			return alertEvent(event.SeverityNotice, map[string]any{
				"source": "backplane", "condition": "link_errors", "state": "cleared", "enclosure": text(encl),
				"message":    text(fmt.Sprintf("interface errors behind enclosure %s stopped rising: backplane or cable no longer suspected", encl)),
				"suppressed": int64(suppressed),
			})
		})
	}

	for _, r := range res.Replacements {
		r := r
		m.change(now, keyReplaced+r.Enclosure+"/"+r.Slot+"/"+r.NewSerial, 1, event.SeverityNotice, func(suppressed, prev int) *event.Event {
			msg := fmt.Sprintf("drive in enclosure %s slot %s replaced: serial %s, before it %s", r.Enclosure, r.Slot, orUnknown(r.NewSerial), orUnknown(r.OldSerial))
			p := map[string]any{
				"source": "drive", "condition": "drive_replaced", "state": "raised", "message": text(msg),
				"enclosure": text(r.Enclosure),
				"slot":      slotObject(&hal.Slot{Enclosure: r.Enclosure, Slot: r.Slot}),
				"reasons":   []string{text("previous drive serial " + orUnknown(r.OldSerial))},
			}
			for i := range m.drives {
				if m.drives[i].result.Enclosure == r.Enclosure && m.drives[i].result.Slot == r.Slot {
					p["drive"] = driveObject(&m.drives[i].snap, &m.drives[i].result)
				}
			}
			return alertEvent(event.SeverityNotice, p)
		})
	}
	m.saveState()
	m.publishLocked()
}

// driveAlert says that a drive's risk changed.
func (m *Monitor) driveAlert(d *driveView, prev predict.Level, suppressed int) *event.Event {
	level := d.result.Risk.Level
	where := ""
	if d.result.Enclosure != "" || d.result.Slot != "" {
		where = fmt.Sprintf(" in enclosure %s slot %s", d.result.Enclosure, d.result.Slot)
	} else if d.device != "" {
		where = " at " + d.device
	}
	verb := "rose"
	if level < prev {
		verb = "fell"
	}
	msg := fmt.Sprintf("drive %s serial %s%s: risk %s from %s to %s", orUnknown(d.snap.Model), orUnknown(d.snap.Serial), where, verb, prev, level)
	if len(d.result.Risk.Reasons) > 0 {
		msg += ": " + d.result.Risk.Reasons[0]
	}
	drive := driveObject(&d.snap, &d.result)
	drive["previous_risk"] = prev.String()
	p := map[string]any{
		"source": "drive", "condition": "drive_risk", "state": stateWord(int(level)), "message": text(msg),
		"drive": drive, "reasons": texts(d.result.Risk.Reasons), "suppressed": int64(suppressed),
	}
	if d.result.Enclosure != "" || d.result.Slot != "" || d.device != "" {
		p["slot"] = slotObject(&hal.Slot{Enclosure: d.result.Enclosure, Slot: d.result.Slot, Device: d.device})
	}
	putText(p, "enclosure", d.result.Enclosure)
	if level == predict.LevelFail {
		p["suspect"] = "drive"
	}
	return alertEvent(riskSeverity(level), p)
}

// backplaneAlert says that an enclosure's backplane or cabling is
// suspected, with the drives that point at it.
func (m *Monitor) backplaneAlert(bp *predict.BackplaneSuspect, suppressed int) *event.Event {
	var drives []map[string]any
	for i := range m.drives {
		d := &m.drives[i]
		if d.result.Enclosure != bp.Enclosure {
			continue
		}
		for _, s := range bp.Slots {
			if s == d.result.Slot {
				drives = append(drives, driveObject(&d.snap, &d.result))
			}
		}
	}
	msg := fmt.Sprintf("backplane or cable suspected in enclosure %s: interface errors rose on slots %s while their media stayed clean", bp.Enclosure, strings.Join(bp.Slots, ", "))
	p := map[string]any{
		"source": "backplane", "condition": "link_errors", "state": "raised", "message": text(msg),
		"enclosure": text(bp.Enclosure), "suspect": "backplane_or_cable", "reasons": texts(bp.Reasons),
		"suppressed": int64(suppressed),
	}
	if len(drives) > 0 {
		p["drives"] = drives
	}
	return alertEvent(event.SeverityError, p)
}

// sendHealthReport sends the full state of the hardware.
func (m *Monitor) sendHealthReport(now time.Time) {
	m.mu.Lock()
	sensors := make([]map[string]any, 0, len(m.sensors))
	for i := range m.sensors {
		sensors = append(sensors, sensorObject(&m.sensors[i]))
	}
	drives := make([]map[string]any, 0, len(m.drives))
	order := make([]int, len(m.drives))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return m.drives[order[a]].result.Risk.Level > m.drives[order[b]].result.Risk.Level
	})
	for _, i := range order {
		drives = append(drives, driveObject(&m.drives[i].snap, &m.drives[i].result))
	}
	slots := make([]map[string]any, 0, len(m.slots))
	for i := range m.slots {
		slots = append(slots, slotObject(&m.slots[i]))
	}
	extra := m.extra
	m.mu.Unlock()

	p := map[string]any{"sensors": sensors, "drives": drives, "slots": slots}
	if extra != nil {
		for k, v := range extra() {
			p[k] = v
		}
	}
	err := m.put(&event.Event{Type: event.TypeHealthReport, Severity: event.SeverityInfo, Payload: p})

	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.noteSinkError(now, "health report", err)
		m.healthRetry = now.Add(m.cfg.HAL.SensorInterval)
		m.publishLocked()
		return
	}
	m.sinkAccepted()
	m.lastHealth, m.healthRetry = now, time.Time{}
	m.stats.HealthReports++
	m.stateDirty = true
	m.saveState()
	m.publishLocked()
}
