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
// An alert the sink refuses (a full spool, a full or read-only disk) is
// queued, not lost, and spends nothing: neither the thing's interval nor a
// token of the hourly budget counts until the sink takes the alert. While
// the sink refuses, no alert is offered to it until a back-off has passed
// (sinkRetryFirst, doubling up to the sensor interval, at most
// sinkRetryMax); then the oldest queued alert is offered, and when it is
// taken the rest follow in the order they were first queued. Alerts raised
// meanwhile about other things join the queue. The queue is the tracked
// things themselves, one entry per thing holding its newest state, so it is
// bounded by the hardware and a thing that changes again replaces its own
// queued alert. The log says that the sink refuses once per outage and once
// that it accepts again.

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
	// queued orders the alerts the sink refused: the sequence number of the
	// first refusal since the last alert taken, 0 when none was refused.
	queued uint64
}

// bucket is the global rate limit: perHour tokens, refilled evenly.
type bucket struct {
	perHour  int
	tokens   float64
	refilled time.Time
}

// refill adds the tokens earned since the last refill.
func (b *bucket) refill(now time.Time) {
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
}

// ready reports whether a token is there to spend. It spends none: a
// token goes only once the sink has taken the alert (spend).
func (b *bucket) ready(now time.Time) bool {
	b.refill(now)
	return b.tokens >= 1
}

// spend uses a token that ready said was there.
func (b *bucket) spend() { b.tokens = max(b.tokens-1, 0) }

// nextToken is when the next token will be there (now if one is).
func (b *bucket) nextToken(now time.Time) time.Time {
	if b.ready(now) {
		return now
	}
	missing := (1 - b.tokens) / float64(b.perHour)
	return now.Add(time.Duration(math.Ceil(missing * float64(time.Hour))))
}

// How long a refused alert waits before it is offered again: the first
// wait, and the longest (the sensor interval caps it when shorter).
const (
	sinkRetryFirst = 2 * time.Second
	sinkRetryMax   = time.Minute
)

// heldRecheck is the least time the sensor loop sleeps for a held alert,
// so that no miscount of a limit can turn the loop into a busy one.
const heldRecheck = time.Second

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
			m.dequeue(t)
			m.stats.AlertsSuppressed++
		}
		return
	}
	t.pending = true
	if m.queueLen > 0 {
		// Alerts wait in the queue: this one joins it rather than jump it;
		// flushHeld, which follows every poll, sends them in order.
		m.enqueue(t)
		return
	}
	m.trySend(now, key, t)
}

// trySend sends a pending alert if the limits allow and the sink is not in
// its back-off; the caller holds m.mu. Only an alert the sink takes counts
// against the limits.
func (m *Monitor) trySend(now time.Time, key string, t *tracked) {
	// A clock that went back (negative elapsed time) holds nothing: the
	// interval would otherwise last until the clock caught up again.
	el := now.Sub(t.LastSent)
	waited := t.LastSent.IsZero() || el >= m.cfg.Monitor.AlertMinInterval || el < 0
	escalation := t.sev > t.ReportedSev && !t.Flapping
	if !escalation && !waited {
		return
	}
	limited := t.sev < event.SeverityCritical
	if limited && !m.bucket.ready(now) {
		return
	}
	if m.sinkRefusing(now) {
		m.enqueue(t)
		return
	}
	suppressed := max(t.changes-1, 0)
	ev := t.build(suppressed, t.Reported)
	if err := m.put(ev); err != nil {
		m.enqueue(t)
		m.alertRefused(now, key, err)
		return
	}
	m.sinkAccepted()
	if limited {
		m.bucket.spend()
	}
	t.Reported, t.ReportedSev, t.LastSent = t.current, t.sev, now
	t.pending, t.changes, t.Flapping = false, 0, suppressed > 0
	m.dequeue(t)
	m.stateDirty = true
	m.stats.AlertsSent++
}

// enqueue gives a refused alert its place in the queue, kept across
// later changes of the same thing; the caller holds m.mu.
func (m *Monitor) enqueue(t *tracked) {
	if t.queued == 0 {
		m.queueSeq++
		m.queueLen++
		t.queued = m.queueSeq
	}
}

// dequeue takes a thing out of the queue (its alert was taken, or it went
// back to what was last sent); the caller holds m.mu.
func (m *Monitor) dequeue(t *tracked) {
	if t.queued != 0 {
		t.queued = 0
		m.queueLen--
	}
}

// sinkRefusing reports whether alerts must wait for the sink's back-off;
// the caller holds m.mu.
func (m *Monitor) sinkRefusing(now time.Time) bool {
	return m.sinkDown && now.Before(m.sinkRetryAt)
}

// alertRefused starts or lengthens the back-off after the sink refused an
// alert; the caller holds m.mu.
func (m *Monitor) alertRefused(now time.Time, key string, err error) {
	limit := min(max(m.cfg.HAL.SensorInterval, sinkRetryFirst), sinkRetryMax)
	if m.sinkBackoff == 0 {
		m.sinkBackoff = sinkRetryFirst
	} else {
		m.sinkBackoff = min(2*m.sinkBackoff, limit)
	}
	m.sinkRetryAt = now.Add(m.sinkBackoff)
	m.noteSinkError(now, key, err)
}

// flushHeld sends the held alerts whose time has come: first those the
// sink refused, in the order they were queued, then the others, most
// severe first. The caller holds m.mu.
func (m *Monitor) flushHeld(now time.Time) {
	var keys []string
	for k, t := range m.tracked {
		if t.pending {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := m.tracked[keys[i]], m.tracked[keys[j]]
		if (a.queued == 0) != (b.queued == 0) {
			return a.queued != 0
		}
		if a.queued != b.queued {
			return a.queued < b.queued
		}
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
// held): once its thing's interval has passed, a token is there for it and
// the sink's back-off is over. The caller holds m.mu.
func (m *Monitor) nextHeld() time.Time {
	now := m.clock.Now()
	var next time.Time
	for _, t := range m.tracked {
		if !t.pending {
			continue
		}
		at := t.LastSent.Add(m.cfg.Monitor.AlertMinInterval)
		if t.LastSent.IsZero() || t.LastSent.After(now) || t.sev > t.ReportedSev && !t.Flapping {
			at = now // never sent, the clock went back, or an escalation
		}
		if t.sev < event.SeverityCritical {
			if tok := m.bucket.nextToken(now); tok.After(at) {
				at = tok
			}
		}
		if m.sinkDown && m.sinkRetryAt.After(at) {
			at = m.sinkRetryAt
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() && next.Before(now.Add(heldRecheck)) {
		next = now.Add(heldRecheck)
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
