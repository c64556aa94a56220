package heartbeat

import (
	"errors"
	"testing"
	"time"
)

func sentFor(id string, seq uint64) (sent, *Reply) {
	nonce := []byte{byte(seq), 1, 2, 3}
	e := EchoFor(id, seq, nonce)
	return sent{seq: seq, echo: e, at: time.Now()}, &Reply{Echo: e}
}

func TestTrackerAcceptsOnceInOrder(t *testing.T) {
	tr := newTracker("SYS-1")
	s1, r1 := sentFor("SYS-1", 1)
	s2, r2 := sentFor("SYS-1", 2)
	s3, r3 := sentFor("SYS-1", 3)
	tr.add(s1)
	tr.add(s2)
	tr.add(s3)

	if got, err := tr.match(r2); err != nil || got.seq != 2 {
		t.Fatalf("reply 2: %v %v", got.seq, err)
	}
	// Replayed: reply 2 again.
	if _, err := tr.match(r2); !errors.Is(err, ErrReplayedReply) {
		t.Fatalf("replayed reply: %v", err)
	}
	// Reordered: reply 1 after reply 2.
	if _, err := tr.match(r1); !errors.Is(err, ErrReorderedReply) {
		t.Fatalf("reordered reply: %v", err)
	}
	if got, err := tr.match(r3); err != nil || got.seq != 3 {
		t.Fatalf("reply 3: %v %v", got.seq, err)
	}
	if tr.waiting() != 0 {
		t.Fatalf("%d still waiting", tr.waiting())
	}
}

func TestTrackerRefusesAnotherDevicesReply(t *testing.T) {
	tr := newTracker("SYS-1")
	s, _ := sentFor("SYS-1", 7)
	tr.add(s)
	// The backend answers heartbeat 7 with its nonce, but for another
	// device: the echo differs.
	_, other := sentFor("SYS-2", 7)
	if _, err := tr.match(other); !errors.Is(err, ErrUnmatchedReply) {
		t.Fatalf("another device's reply: %v", err)
	}
	if tr.waiting() != 1 {
		t.Fatal("the refused reply retired the heartbeat")
	}
}

func TestTrackerResetAndBound(t *testing.T) {
	tr := newTracker("SYS-1")
	var replies []*Reply
	for i := uint64(1); i <= maxOutstanding+4; i++ {
		s, r := sentFor("SYS-1", i)
		tr.add(s)
		replies = append(replies, r)
	}
	if tr.waiting() != maxOutstanding {
		t.Fatalf("%d waiting, bound %d", tr.waiting(), maxOutstanding)
	}
	if _, err := tr.match(replies[0]); !errors.Is(err, ErrReorderedReply) {
		t.Fatalf("reply to a heartbeat pushed out: %v", err)
	}
	tr.reset()
	if _, err := tr.match(replies[len(replies)-1]); !errors.Is(err, ErrReorderedReply) {
		t.Fatalf("reply after reset: %v", err)
	}
}

func TestBackoffGrowsWithJitterAndResets(t *testing.T) {
	b := backoff{min: time.Second, max: 8 * time.Second}
	caps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, c := range caps {
		d := b.next()
		if d < c/2 || d > c {
			t.Fatalf("step %d: %s not in [%s, %s]", i, d, c/2, c)
		}
	}
	b.reset()
	if d := b.next(); d > time.Second {
		t.Fatalf("after reset: %s", d)
	}
}
