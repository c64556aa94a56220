package heartbeat

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// The flood tests run with an interval of ten minutes, so that no regular
// heartbeat falls inside them: every heartbeat the backend hears after
// the first is an early one, and the bound is a count that a slow machine
// can only make smaller. settle is how long a test goes on listening
// after the count reached its bound, for a flood to show.
const (
	longInterval = 10 * time.Minute
	settle       = time.Second
)

// syncBuf collects log lines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func bufLogger(b *syncBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

// A backend that keeps re-sending a work item the device already took and
// acknowledged (its acknowledgement table lost, a bug). Before the fix
// every copy queued the acknowledgement again as unsent, and the device
// sent heartbeats back to back (64,891 in 3 s at a 1 s interval). Now the
// item runs once, is acknowledged at once (heartbeat 2), and the copies
// are acknowledged again only on the regular heartbeat: two heartbeats in
// all until the interval comes round, and one log line.
func TestResentAcknowledgedWorkDoesNotFlood(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	var ackedIn atomic.Int32 // the heartbeat number that first carried the ack
	var n atomic.Int32
	b := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, systemID string) {
		k := n.Add(1)
		if slices.Contains(h.Acks, "same-item") {
			ackedIn.CompareAndSwap(0, k)
		}
		writeReply(t, conn, &Reply{Echo: EchoFor(systemID, h.Seq, h.Nonce), Work: []work.Item{{ID: "same-item", Kind: work.KindCollectNow}}})
	})
	cfg := testConfig(b.addr.String())
	cfg.Heartbeat.Interval = longInterval
	var logs syncBuf
	wl := &workLog{}
	runClient(t, ca, "SYS-FLOOD", cfg, Options{Work: wl.run, Logger: bufLogger(&logs)})
	eventually(t, "the acknowledgement", func() bool { return ackedIn.Load() != 0 })
	time.Sleep(settle)
	heard, _ := b.heard()
	if heard != 2 {
		t.Errorf("the device sent %d heartbeats within the interval; want 2 (the first, then the acknowledgement)", heard)
	}
	if a := ackedIn.Load(); a != 2 {
		t.Errorf("the acknowledgement went with heartbeat %d, want 2 (at once)", a)
	}
	if ran := wl.list(); len(ran) != 1 {
		t.Errorf("the item ran %d times, want once", len(ran))
	}
	if got := logs.count("re-sends work the device already took"); got != 1 {
		t.Errorf("the misbehaving backend was logged %d times, want once", got)
	}
}

// The re-acknowledgement is not lost: it rides on the next heartbeat.
func TestWorkStateResentItemIsAcknowledgedAgainNotAtOnce(t *testing.T) {
	ws, _ := loadWorkState("")
	if run, _ := ws.take("a"); !run {
		t.Fatal("first take does not run")
	}
	var h1 Heartbeat
	ws.fill(&h1)
	ws.confirmAcks(h1.Acks)
	if run, _ := ws.take("a"); run {
		t.Fatal("the item runs again")
	}
	if ws.unsent() {
		t.Fatal("an item that came again makes a heartbeat at once")
	}
	if ws.redelivered != 1 {
		t.Fatalf("redelivered %d, want 1", ws.redelivered)
	}
	var h2 Heartbeat
	ws.fill(&h2)
	if !slices.Equal(h2.Acks, []string{"a"}) {
		t.Fatalf("the next heartbeat acknowledges %v, want [a]", h2.Acks)
	}
	// A new item still makes a heartbeat at once.
	ws.take("b")
	if !ws.unsent() {
		t.Fatal("a new item's acknowledgement waits")
	}
}

// newHTTPSBackend serves POST /v1/heartbeat with answer; it counts
// requests.
func newHTTPSBackend(t *testing.T, ca *testpki.CA, systemID string, answer func(h *Heartbeat) *Reply) (url string, requests *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests = &atomic.Int32{}
	srv := &http.Server{TLSConfig: tlsconf.Server(ca.Server(t), ca.Pool, true), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h, err := DecodeHeartbeat(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		requests.Add(1)
		rep := answer(h)
		rep.Echo = EchoFor(systemID, h.Seq, h.Nonce)
		b, _ := EncodeReply(rep)
		w.Write(b)
	})}
	go srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String(), requests
}

// An HTTPS backend that sets More on every reply and sends nothing.
// Before the fix each reply made the next request at once (60,847 in 3 s
// at a 1 s interval). Now a More without new work is followed once per
// interval: two requests until the interval comes round, one log line.
func TestMoreWithoutWorkFollowedOncePerInterval(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	const systemID = "SYS-MORE"
	url, n := newHTTPSBackend(t, ca, systemID, func(*Heartbeat) *Reply { return &Reply{More: true} })
	cfg := testConfig("")
	cfg.Heartbeat.Interval = longInterval
	cfg.Backend.URL = url
	var logs syncBuf
	runClient(t, ca, systemID, cfg, Options{Logger: bufLogger(&logs)})
	eventually(t, "two requests", func() bool { return n.Load() >= 2 })
	time.Sleep(settle)
	if got := n.Load(); got != 2 {
		t.Errorf("%d requests within the interval, want 2", got)
	}
	if got := logs.count("sends nothing new"); got != 1 {
		t.Errorf("the misbehaving backend was logged %d times, want once", got)
	}
}

// A backend that sends a new item (and More) with every reply: each one
// is legitimate work to acknowledge at once, yet the agent sends at most
// earlyPerInterval heartbeats beyond the regular one per interval. Every
// item it was given runs exactly once.
func TestNewWorkInEveryReplyIsBoundedPerInterval(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	const systemID = "SYS-BURST"
	var k atomic.Int32
	url, n := newHTTPSBackend(t, ca, systemID, func(*Heartbeat) *Reply {
		id := fmt.Sprintf("item-%d", k.Add(1))
		return &Reply{More: true, Work: []work.Item{{ID: id, Kind: work.KindCollectNow}}}
	})
	cfg := testConfig("")
	cfg.Heartbeat.Interval = longInterval
	cfg.Backend.URL = url
	var logs syncBuf
	wl := &workLog{}
	runClient(t, ca, systemID, cfg, Options{Work: wl.run, Logger: bufLogger(&logs)})
	want := int32(1 + earlyPerInterval)
	eventually(t, "the early heartbeats", func() bool { return n.Load() >= want })
	time.Sleep(settle)
	if got := n.Load(); got != want {
		t.Errorf("%d requests within the interval, want %d (the regular one and %d early)", got, want, earlyPerInterval)
	}
	eventually(t, "every item given to run", func() bool { return len(wl.list()) == int(k.Load()) })
	ran := wl.list()
	slices.Sort(ran)
	if len(slices.Compact(ran)) != len(wl.list()) {
		t.Errorf("an item ran twice: %v", wl.list())
	}
	if got := logs.count("sooner than the interval"); got != 1 {
		t.Errorf("the held-back heartbeats were logged %d times, want once", got)
	}
}

// A legitimate backlog (three batches, each reply carrying one with More)
// still drains at once, far inside the interval: each batch is
// acknowledged by the next heartbeat, and every item runs exactly once.
func TestBacklogDrainsPromptly(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	var mu sync.Mutex
	queue := map[string]bool{}
	var order []string
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("job-%02d", i)
		queue[id] = true
		order = append(order, id)
	}
	acked := map[string]int{}
	b := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, systemID string) {
		mu.Lock()
		r := &Reply{Echo: EchoFor(systemID, h.Seq, h.Nonce)}
		for _, id := range h.Acks {
			acked[id]++
			delete(queue, id)
		}
		for _, id := range order {
			if !queue[id] {
				continue
			}
			if len(r.Work) == 10 {
				r.More = true
				break
			}
			r.Work = append(r.Work, work.Item{ID: id, Kind: work.KindCollectNow})
		}
		mu.Unlock()
		writeReply(t, conn, r)
	})
	cfg := testConfig(b.addr.String())
	cfg.Heartbeat.Interval = longInterval
	wl := &workLog{}
	runClient(t, ca, "SYS-BACKLOG", cfg, Options{Work: wl.run})
	eventually(t, "the whole backlog acknowledged", func() bool { mu.Lock(); defer mu.Unlock(); return len(queue) == 0 })
	eventually(t, "the whole backlog run", func() bool { return len(wl.list()) == 30 })
	ran := wl.list()
	slices.Sort(ran)
	if !slices.Equal(ran, order) {
		t.Errorf("ran %v, want each of %v once", ran, order)
	}
	if heard, _ := b.heard(); heard > 1+earlyPerInterval {
		t.Errorf("%d heartbeats to drain three batches", heard)
	}
}

// Four open remote sessions (the daemon passes no bounds, so the defaults
// hold) do not stop a collect_now from running: sessions have slots of
// their own. Before, all work shared four slots.
func TestOpenSessionsDoNotBlockQuickWork(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	var open atomic.Int32
	var sent atomic.Int32
	b := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, systemID string) {
		r := &Reply{Echo: EchoFor(systemID, h.Seq, h.Nonce)}
		switch {
		case sent.CompareAndSwap(0, 1):
			for i := 1; i <= 4; i++ {
				r.Work = append(r.Work, work.Item{ID: fmt.Sprintf("session-%d", i), Kind: work.KindRemoteAccess})
			}
		case open.Load() == 4 && sent.CompareAndSwap(1, 2):
			// Only once all four sessions hold their slots.
			r.Work = []work.Item{{ID: "collect", Kind: work.KindCollectNow}}
		}
		writeReply(t, conn, r)
	})
	var collected atomic.Bool
	runClient(t, ca, "SYS-SLOTS", testConfig(b.addr.String()), Options{Work: func(ctx context.Context, it work.Item) work.Result {
		if it.Kind == work.KindRemoteAccess {
			open.Add(1)
			<-ctx.Done() // a session that stays open
			return work.Result{}
		}
		collected.Store(true)
		return work.Result{OK: true}
	}})
	eventually(t, "four open sessions", func() bool { return open.Load() == 4 })
	eventually(t, "the collect_now item to run while four sessions are open", collected.Load)
}

// The session bound still holds, and a session waiting for a slot does
// not hold up quick work either.
func TestSessionBoundHoldsWithoutBlockingQuickWork(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	var open atomic.Int32
	var sent atomic.Bool
	b := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, systemID string) {
		r := &Reply{Echo: EchoFor(systemID, h.Seq, h.Nonce)}
		if sent.CompareAndSwap(false, true) {
			for i := 1; i <= 3; i++ {
				r.Work = append(r.Work, work.Item{ID: fmt.Sprintf("session-%d", i), Kind: work.KindRemoteAccess})
			}
			r.Work = append(r.Work, work.Item{ID: "policy", Kind: work.KindPolicyUpdate})
		}
		writeReply(t, conn, r)
	})
	var policy atomic.Bool
	runClient(t, ca, "SYS-BOUND", testConfig(b.addr.String()), Options{MaxSessions: 2, Work: func(ctx context.Context, it work.Item) work.Result {
		if it.Kind == work.KindRemoteAccess {
			open.Add(1)
			<-ctx.Done()
			return work.Result{}
		}
		policy.Store(true)
		return work.Result{OK: true}
	}})
	eventually(t, "the policy update", policy.Load)
	eventually(t, "two open sessions", func() bool { return open.Load() == 2 })
	time.Sleep(settle)
	if got := open.Load(); got != 2 {
		t.Errorf("%d sessions open with MaxSessions 2", got)
	}
}

func TestWorkClasses(t *testing.T) {
	for k, want := range map[work.Kind]workClass{
		work.KindRemoteAccess: classSession,
		work.KindScript:       classSlow,
		work.KindFileFetch:    classSlow,
		work.KindFilePut:      classSlow,
		work.KindCollectNow:   classQuick,
		work.KindPolicyUpdate: classQuick,
		work.KindConfigUpdate: classQuick,
		"something-new":       classQuick,
	} {
		if got := classOf(k); got != want {
			t.Errorf("classOf(%s) = %d, want %d", k, got, want)
		}
	}
}

// The pacer on a clock of its own: a burst of earlyPerInterval at once
// (no closer than minGap), then one per interval/earlyPerInterval.
func TestPacerBudget(t *testing.T) {
	const interval = time.Minute
	p := newPacer(interval)
	now := time.Unix(1_000_000, 0)
	p.sent(now) // the regular heartbeat
	for i := 0; i < earlyPerInterval; i++ {
		at, held := p.soon(now)
		if held || at.Sub(now) > p.minGap {
			t.Fatalf("early heartbeat %d: at +%s held %v, want within the gap", i+1, at.Sub(now), held)
		}
		now = at
		p.sent(now)
	}
	at, held := p.soon(now)
	if !held {
		t.Fatal("budget not spent after a burst")
	}
	if wait := at.Sub(now); wait < interval/earlyPerInterval-interval/100 || wait > interval/earlyPerInterval {
		t.Fatalf("held for %s, want about %s", wait, interval/earlyPerInterval)
	}
	// A regular heartbeat does not spend the budget.
	q := newPacer(interval)
	for i := 0; i < 10; i++ {
		now = now.Add(interval)
		q.sent(now)
	}
	if _, held := q.soon(now); held {
		t.Fatal("regular heartbeats spent the budget")
	}
}
