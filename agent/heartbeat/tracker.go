package heartbeat

import (
	"bytes"
	"fmt"
	"time"
)

// sent is a heartbeat waiting for its reply.
type sent struct {
	seq       uint64
	echo      []byte
	at        time.Time
	acks      []string   // acknowledgements it carried
	results   []string   // ids of results it carried
	telemetry *Telemetry // telemetry it carried, if any
}

// tracker matches replies to the heartbeats of one channel. Replies on
// one channel come back in order, so once the reply to heartbeat n is
// accepted, a reply to any heartbeat up to n is stale: a replay (it was
// answered already) or reordered (an older one overtaken). A reply that
// matches nothing sent is refused too: it was meant for another device,
// whose system ID went into its echo.
type tracker struct {
	systemID    string
	outstanding []sent // oldest first
	answered    [][]byte
	// superseded holds echoes of heartbeats dropped unanswered because a
	// newer one was answered first.
	superseded [][]byte
}

// maxOutstanding bounds the heartbeats kept waiting per channel; older
// ones are dropped (their replies would come too late to matter).
const maxOutstanding = 16

// rememberAnswered is how many answered and superseded echoes a tracker
// keeps, to name a late duplicate precisely in the log.
const rememberAnswered = 16

func newTracker(systemID string) *tracker { return &tracker{systemID: systemID} }

// add registers a heartbeat just sent.
func (t *tracker) add(s sent) {
	if len(t.outstanding) == maxOutstanding {
		t.superseded = remember(t.superseded, t.outstanding[0].echo)
		t.outstanding = t.outstanding[1:]
	}
	t.outstanding = append(t.outstanding, s)
}

// match finds the heartbeat a reply answers and retires it and every
// older one. It returns ErrReplayedReply, ErrReorderedReply or
// ErrUnmatchedReply for a reply to refuse.
func (t *tracker) match(r *Reply) (sent, error) {
	for i, s := range t.outstanding {
		if bytes.Equal(s.echo, r.Echo) {
			for _, older := range t.outstanding[:i] {
				t.superseded = remember(t.superseded, older.echo)
			}
			t.answered = remember(t.answered, s.echo)
			t.outstanding = append(t.outstanding[:0], t.outstanding[i+1:]...)
			return s, nil
		}
	}
	for _, e := range t.answered {
		if bytes.Equal(e, r.Echo) {
			return sent{}, fmt.Errorf("%w: echo %x answers a heartbeat already answered", ErrReplayedReply, r.Echo)
		}
	}
	for _, e := range t.superseded {
		if bytes.Equal(e, r.Echo) {
			return sent{}, fmt.Errorf("%w: echo %x answers a heartbeat older than one already answered", ErrReorderedReply, r.Echo)
		}
	}
	return sent{}, fmt.Errorf("%w (echo %x; device %s)", ErrUnmatchedReply, r.Echo, t.systemID)
}

// reset forgets everything outstanding (a new session: nothing of the
// old one can be answered on it).
func (t *tracker) reset() {
	for _, s := range t.outstanding {
		t.superseded = remember(t.superseded, s.echo)
	}
	t.outstanding = t.outstanding[:0]
}

func (t *tracker) waiting() int { return len(t.outstanding) }

func remember(list [][]byte, echo []byte) [][]byte {
	if len(list) == rememberAnswered {
		list = append(list[:0], list[1:]...)
	}
	return append(list, echo)
}
