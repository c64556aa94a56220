package remote

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/internal/testpki"
)

const allowEcho = "all remote:echo allow\n"

func TestSessionBridgesAndEndsOnIdle(t *testing.T) {
	f := newFixture(t, allowEcho, nil)
	conns := f.relay.expect("sess-0001")
	res := f.handleAsync(f.access("sess-0001", "echo"))
	eng := engineerConn(t, conns)
	fmt.Fprintln(eng, "hello device")
	line, err := bufio.NewReader(eng).ReadString('\n')
	if err != nil || line != "HELLO DEVICE\n" {
		t.Fatalf("engineer read %q, %v", line, err)
	}
	if s := f.m.Sessions(); len(s) != 1 || s[0].ID != "sess-0001" || s[0].Requester != "eng@vendor" {
		t.Fatalf("sessions %+v", s)
	}
	// Nothing more either way: the idle timeout closes the session.
	r := waitResult(t, res)
	if !r.OK || !strings.Contains(r.Detail, "idle timeout") || !strings.Contains(r.Detail, "13 bytes to the device, 13 from it") {
		t.Fatalf("result %+v", r)
	}
	recs := f.records(t, audit.KindDecision, audit.KindSessionStart, audit.KindSessionEnd)
	if len(recs) != 3 {
		t.Fatalf("records %+v", recs)
	}
	start, end := recs[1], recs[2]
	if start.Fields["service"] != "echo" || start.Fields["target"] != f.echoAddr || start.Actor != "eng@vendor" || start.Fields["service_request"] != "SR-77" {
		t.Fatalf("start %+v", start.Fields)
	}
	if end.Fields["reason"] != "idle timeout" || end.Fields["bytes_to_device"] != "13" || end.Fields["bytes_from_device"] != "13" {
		t.Fatalf("end %+v", end.Fields)
	}
	if len(f.m.Sessions()) != 0 {
		t.Fatal("session still listed")
	}
}

func TestSessionEndsOnEitherSide(t *testing.T) {
	f := newFixture(t, allowEcho, func(c *Remote) { c.IdleTimeout = time.Minute })
	// The engineer hangs up.
	conns := f.relay.expect("sess-eng-closes")
	res := f.handleAsync(f.access("sess-eng-closes", "echo"))
	eng := engineerConn(t, conns)
	eng.Close()
	if r := waitResult(t, res); !strings.Contains(r.Detail, "engineer closed") {
		t.Fatalf("%+v", r)
	}
	// The local service hangs up.
	conns = f.relay.expect("sess-svc-closes")
	res = f.handleAsync(f.access("sess-svc-closes", "echo"))
	eng = engineerConn(t, conns)
	fmt.Fprintln(eng, "bye")
	if r := waitResult(t, res); !strings.Contains(r.Detail, "local service closed") {
		t.Fatalf("%+v", r)
	}
}

type Remote = config.Remote

func TestSessionMaxDurationAndShutdown(t *testing.T) {
	f := newFixture(t, allowEcho, func(c *Remote) { c.IdleTimeout = 200 * time.Millisecond; c.MaxDuration = 700 * time.Millisecond })
	conns := f.relay.expect("sess-long-one")
	res := f.handleAsync(f.access("sess-long-one", "echo"))
	eng := engineerConn(t, conns)
	// Keep bytes flowing so that idle never fires.
	stop := make(chan struct{})
	go func() {
		br := bufio.NewReader(eng)
		for {
			select {
			case <-stop:
				return
			default:
			}
			fmt.Fprintln(eng, "tick")
			br.ReadString('\n')
			time.Sleep(20 * time.Millisecond)
		}
	}()
	r := waitResult(t, res)
	close(stop)
	if !strings.Contains(r.Detail, "maximum duration") {
		t.Fatalf("%+v", r)
	}

	f2 := newFixture(t, allowEcho, func(c *Remote) { c.IdleTimeout = time.Minute })
	conns = f2.relay.expect("sess-shutdown")
	res = f2.handleAsync(f2.access("sess-shutdown", "echo"))
	engineerConn(t, conns)
	f2.m.Close()
	if r := waitResult(t, res); !strings.Contains(r.Detail, "agent stopped") {
		t.Fatalf("%+v", r)
	}
	if r := f2.m.Handle(context.Background(), f2.access("sess-after-close", "echo")); r.OK || !strings.Contains(r.Detail, "shutting down") {
		t.Fatalf("after close: %+v", r)
	}
}

// Denied and malformed requests never reach the relay.
func TestRefusedRequestsNeverConnect(t *testing.T) {
	f := newFixture(t, "all remote:echo deny\n", nil)
	cases := []struct {
		name string
		it   work.Item
		want string
	}{
		{"denied by policy", f.access("sess-denied", "echo"), "refused: line 3 (all remote:echo deny) decides deny"},
		{"unknown service", f.access("sess-unknown", "telnet"), `service "telnet" is not one this device offers`},
		{"bad session id", f.access("x", "echo"), "session id"},
		{"bad relay", item(work.KindRemoteAccess, work.RemoteAccess{SessionID: "sess-badrelay", RelayAddr: "relay", Service: "echo"}), "not host:port"},
		{"malformed body", work.Item{ID: "w", Kind: work.KindRemoteAccess, Body: []byte{0xff, 0x00}}, "malformed body"},
		{"wrong kind", work.Item{ID: "w", Kind: work.KindCollectNow}, "not for this part"},
	}
	for _, c := range cases {
		r := f.m.Handle(context.Background(), c.it)
		if r.OK || !strings.Contains(r.Detail, c.want) {
			t.Errorf("%s: %+v, want %q", c.name, r, c.want)
		}
	}
	f.m.opts.Config.RelayHosts = []string{"relay.example.net"}
	if r := f.m.Handle(context.Background(), f.access("sess-other-relay", "echo")); r.OK || !strings.Contains(r.Detail, `relay host "127.0.0.1" is not one of [remote] relay_hosts`) {
		t.Errorf("relay not allowed: %+v", r)
	}
	if n := f.relay.accepted.Load(); n != 0 {
		t.Fatalf("the relay saw %d connections", n)
	}
	if n := len(f.records(t, audit.KindSessionFailed)); n != 4 {
		t.Fatalf("%d session.failed records, want 4 (unknown service, id, relay address, relay host)", n)
	}
}

// An ask that nobody answers is denied at the timeout, without a
// connection.
func TestUnansweredAskNeverConnects(t *testing.T) {
	f := newFixture(t, "all remote:echo ask\n", nil)
	start := time.Now()
	r := f.m.Handle(context.Background(), f.access("sess-unanswered", "echo"))
	if r.OK || !strings.Contains(r.Detail, "nobody answered") || time.Since(start) < 2*time.Second {
		t.Fatalf("%+v", r)
	}
	if n := f.relay.accepted.Load(); n != 0 {
		t.Fatalf("the relay saw %d connections", n)
	}
}

func TestSessionFailures(t *testing.T) {
	f := newFixture(t, allowEcho+"all remote:down allow\n", func(c *Remote) { c.Services["down"] = "127.0.0.1:1" })
	// The relay does not know the session.
	r := f.m.Handle(context.Background(), f.access("sess-not-known", "echo"))
	if r.OK || !strings.Contains(r.Detail, "the relay refused the session: no such session") {
		t.Fatalf("%+v", r)
	}
	// The local service is down: the relay is not contacted.
	before := f.relay.accepted.Load()
	r = f.m.Handle(context.Background(), f.access("sess-svc-down", "down"))
	if r.OK || !strings.Contains(r.Detail, "the local down service at 127.0.0.1:1 does not answer") || f.relay.accepted.Load() != before {
		t.Fatalf("%+v", r)
	}
	fails := f.records(t, audit.KindSessionFailed)
	if len(fails) != 2 {
		t.Fatalf("failures recorded: %+v", fails)
	}

	// A relay whose certificate is not from the pinned vendor CA.
	other := testpki.NewCA(t, "impostor")
	imp := startRelay(t, other)
	imp.expect("sess-impostor")
	it := item(work.KindRemoteAccess, work.RemoteAccess{SessionID: "sess-impostor", RelayAddr: imp.ln.Addr().String(), Service: "echo"})
	r = f.m.Handle(context.Background(), it)
	if r.OK || !strings.Contains(r.Detail, "certificate") {
		t.Fatalf("impostor relay: %+v", r)
	}
}
