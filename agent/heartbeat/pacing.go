package heartbeat

import (
	"log/slog"
	"time"

	"github.com/dcagent/dcagent/agent/work"
)

// Pacing: how often the agent may talk to the backend.
//
// In the steady state one heartbeat goes per interval. Some things are
// worth a heartbeat sooner: an acknowledgement of work that just arrived
// (so the backend stops re-sending it), a finished item's result, and
// Reply.More (work is waiting). Each of those is decided from what the
// backend said, so a backend that misbehaves (re-sends work the device
// already acknowledged, or sets More on every reply) could otherwise
// drive the agent into a loop of back-to-back exchanges. Three rules
// keep that bounded whatever the backend does:
//
//   - Early heartbeats (sooner than the interval) draw on a budget of
//     earlyPerInterval per interval, refilled continuously, and are never
//     closer than minGap to the previous heartbeat. A legitimate burst
//     (work arrives, it is acknowledged, its result goes, the next batch
//     of a backlog comes) fits in the budget, so it goes at once.
//   - An item the device already took (it is in the work state) that
//     comes again is acknowledged again on the next regular heartbeat,
//     not at once: the acknowledgement was already sent, and sending it
//     again in a loop is what the backend's bug would make of it.
//   - More is followed at once when the reply brought new work (a backlog
//     draining); a More with nothing new is followed at most once per
//     interval.
//
// When one of these rules holds the agent back, it logs once (and again
// at most once per misbehaviourLogEvery, with a count) rather than per
// heartbeat.

const (
	// earlyPerInterval is how many heartbeats the agent may send sooner
	// than the interval, per interval (and in a row).
	earlyPerInterval = 4
	// maxMinGap caps the smallest gap between two heartbeats; the gap is
	// interval/20 below that (tests run with short intervals).
	maxMinGap = 100 * time.Millisecond
	// misbehaviourLogEvery is how often a backend that goes on misbehaving
	// is logged again.
	misbehaviourLogEvery = time.Hour
)

// pacer is the budget of early heartbeats: a token bucket that holds at
// most earlyPerInterval tokens and gains earlyPerInterval per interval.
// Owned by the Run goroutine.
type pacer struct {
	interval time.Duration
	minGap   time.Duration
	tokens   float64
	at       time.Time // when tokens was last brought up to date
	last     time.Time // when the last heartbeat went
	// early says an early heartbeat was asked for and has not gone yet;
	// the heartbeat that goes next pays for it.
	early bool
}

func newPacer(interval time.Duration) *pacer {
	return &pacer{
		interval: interval,
		minGap:   min(interval/20, maxMinGap),
		tokens:   earlyPerInterval,
	}
}

func (p *pacer) refill(now time.Time) {
	if !p.at.IsZero() {
		p.tokens += float64(now.Sub(p.at)) / float64(p.interval) * earlyPerInterval
		p.tokens = min(p.tokens, earlyPerInterval)
	}
	p.at = now
}

// soon asks for an early heartbeat and returns when it may go: now, or
// later when the budget is spent (held reports that).
func (p *pacer) soon(now time.Time) (at time.Time, held bool) {
	p.refill(now)
	p.early = true
	at = now
	if p.tokens < 1 {
		at = now.Add(time.Duration((1 - p.tokens) / earlyPerInterval * float64(p.interval)))
		held = true
	}
	if gap := p.last.Add(p.minGap); at.Before(gap) {
		at = gap
	}
	return at, held
}

// sent notes a heartbeat going out now.
func (p *pacer) sent(now time.Time) {
	p.refill(now)
	if p.early {
		p.tokens--
		p.early = false
	}
	p.last = now
}

// misbehaviour counts one kind of backend behaviour the agent holds back
// from, for a log line now and then instead of one per heartbeat.
type misbehaviour struct {
	count  int // since the last log line
	logged time.Time
}

// note counts one occurrence and logs when it is the first, or the first
// since misbehaviourLogEvery.
func (m *misbehaviour) note(log *slog.Logger, msg string, args ...any) {
	m.count++
	if !m.logged.IsZero() && time.Since(m.logged) < misbehaviourLogEvery {
		return
	}
	log.Warn(msg, append(args, "times", m.count)...)
	m.logged, m.count = time.Now(), 0
}

// Work classes: each has slots of its own, so that items that last long
// never hold up short ones.
type workClass int

const (
	// classQuick: collect_now, policy_update, config_update, and kinds
	// this agent does not know (they fail at once). Seconds at most.
	classQuick workClass = iota
	// classSlow: diagnostic scripts and file transfers, bounded by their
	// own timeouts: minutes.
	classSlow
	// classSession: remote_access. A session lasts as long as the person
	// on the other end keeps it (hours), and before it opens, the consent
	// ask waits for its timeout.
	classSession
	numWorkClasses
)

// Default slots per class (Options.MaxConcurrentWork, MaxSlowWork,
// MaxSessions).
const (
	defaultQuickSlots = 4
	defaultSlowSlots  = 2
	// The remote-access part bounds open sessions itself (8) and refuses
	// one more with a reason; the heartbeat's bound is only a backstop
	// above that, so the refusal reaches the backend instead of an item
	// waiting hours for a slot.
	defaultSessionSlots = 16
)

func classOf(k work.Kind) workClass {
	switch k {
	case work.KindRemoteAccess:
		return classSession
	case work.KindScript, work.KindFileFetch, work.KindFilePut:
		return classSlow
	default:
		return classQuick
	}
}
