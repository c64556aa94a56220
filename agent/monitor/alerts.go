package monitor

import (
	"math"
	"sort"
	"time"

	"github.com/dcagent/dcagent/agent/event"
)

// How alerts are held back (see the [monitor] settings):
//
//   - Hysteresis (sensors.go) keeps a reading that hovers at a limit from
//     changing state at all.
//   - Each monitored thing (a sensor, a drive, a slot, a backplane) has a
//     tracked state. A change to a higher severity than the one last sent
//     goes at once. Any other change waits until alert_min_interval has
//     passed since the last alert about that thing; if by then the state
//     is back to what was last sent, nothing is sent, and the next alert
//     says how many changes were held ("suppressed"). A thing whose last
//     alert said changes were held is flapping: it waits out the interval
//     even to escalate, so it sends at most one alert per interval.
//   - Over everything, at most alert_max_per_hour alerts below critical
//     severity go out per hour (a token bucket); the rest wait their turn.
//     Critical alerts always go.
//
// An alert the sink refuses (a full spool, say) stays pending and is
// retried; the thing's reported state changes only once an alert is taken.

// buildFunc makes the alert for a tracked thing's current state;
// suppressed is how many earlier changes were not sent, prev the rank last
// sent.
type buildFunc func(suppressed, prev int) *event.Event

// tracked is one monitored thing.
type tracked struct {
	// Persisted across restarts (state.go).
	Reported    int            `json:"reported"` // rank last sent; 0 is normal
	ReportedSev event.Severity `json:"reported_severity"`
	LastSent    time.Time      `json:"last_sent"`
	LastSeen    time.Time      `json:"last_seen"`
	// Flapping: the last alert sent said changes were held. A thing that
	// flaps waits out the interval even to escalate, so that it sends at
	// most one alert per interval however fast it flaps.
	Flapping bool `json:"flapping,omitempty"`
	// Condition is the condition last raised, named again when it clears.
	Condition string `json:"condition,omitempty"`

	current int
	sev     event.Severity
	build   buildFunc
	pending bool // current differs from Reported and is not sent yet
	changes int  // changes since the last alert sent
}

// bucket is the global rate limit: perHour tokens, refilled evenly.
type bucket struct {
	perHour  int
	tokens   float64
	refilled time.Time
}

func (b *bucket) take(now time.Time) bool {
	if b.refilled.IsZero() {
		b.tokens, b.refilled = float64(b.perHour), now
	}
	switch el := now.Sub(b.refilled); {
	case el > 0:
		b.tokens = math.Min(float64(b.perHour), b.tokens+el.Hours()*float64(b.perHour))
		b.refilled = now
	case el < 0:
		b.refilled = now // the clock went back: refill from here on
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// change records a thing's state; the caller holds m.mu.
func (m *Monitor) change(now time.Time, key string, rank int, sev event.Severity, build buildFunc) {
	t := m.tracked[key]
	if t == nil {
		t = &tracked{}
		m.tracked[key] = t
	}
	t.LastSeen = now
	if rank != t.current {
		t.changes++
	}
	t.current, t.sev, t.build = rank, sev, build
	if rank == t.Reported {
		if t.pending {
			// Back to what was last sent before anyone heard otherwise.
			t.pending = false
			m.stats.AlertsSuppressed++
		}
		return
	}
	t.pending = true
	m.trySend(now, key, t)
}

// trySend sends a pending alert if the limits allow; the caller holds m.mu.
func (m *Monitor) trySend(now time.Time, key string, t *tracked) {
	// A clock that went back (negative elapsed time) holds nothing: the
	// interval would otherwise last until the clock caught up again.
	el := now.Sub(t.LastSent)
	waited := t.LastSent.IsZero() || el >= m.cfg.Monitor.AlertMinInterval || el < 0
	escalation := t.sev > t.ReportedSev && !t.Flapping
	if !escalation && !waited {
		return
	}
	if t.sev < event.SeverityCritical && !m.bucket.take(now) {
		return
	}
	suppressed := max(t.changes-1, 0)
	ev := t.build(suppressed, t.Reported)
	if err := m.put(ev); err != nil {
		m.noteSinkError(key, err)
		return
	}
	t.Reported, t.ReportedSev, t.LastSent = t.current, t.sev, now
	t.pending, t.changes, t.Flapping = false, 0, suppressed > 0
	m.stateDirty = true
	m.stats.AlertsSent++
}

// flushHeld sends the held alerts whose time has come, most severe first;
// the caller holds m.mu.
func (m *Monitor) flushHeld(now time.Time) {
	var keys []string
	for k, t := range m.tracked {
		if t.pending {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := m.tracked[keys[i]], m.tracked[keys[j]]
		if a.sev != b.sev {
			return a.sev > b.sev
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		m.trySend(now, k, m.tracked[k])
	}
}

// nextHeld is when the earliest held alert may go (zero when none is
// held); the caller holds m.mu.
func (m *Monitor) nextHeld() time.Time {
	var next time.Time
	for _, t := range m.tracked {
		if !t.pending {
			continue
		}
		at := t.LastSent.Add(m.cfg.Monitor.AlertMinInterval)
		if now := m.clock.Now(); t.LastSent.After(now) {
			at = now
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// pruneTracked forgets things not seen for long (a drive that left, a
// sensor that vanished), so the state file stays bounded.
func (m *Monitor) pruneTracked(now time.Time) {
	for k, t := range m.tracked {
		if !t.pending && now.Sub(t.LastSeen) > forgetAfter {
			delete(m.tracked, k)
			m.stateDirty = true
		}
	}
}

// forgetAfter is how long a thing that is no longer seen stays tracked.
const forgetAfter = 30 * 24 * time.Hour
