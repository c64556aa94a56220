package heartbeat

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// The agent cannot import the reference backend (sim/), so these tests
// run it against a small backend of their own on pion's listener: real
// DTLS with connection IDs on loopback, and reply behaviour the test
// chooses, down to replies a correct backend would never send. The real
// backend's tests (sim/heartbeat) run this agent against it.

type testBackend struct {
	addr       *net.UDPAddr
	handshakes atomic.Int32
	mu         sync.Mutex
	peers      []string // remote addresses heartbeats came from, in order
	beats      int
}

// replyFunc answers one heartbeat from systemID by writing on conn.
type replyFunc func(conn net.Conn, h *Heartbeat, systemID string)

func writeReply(t testing.TB, conn net.Conn, r *Reply) {
	b, err := EncodeReply(r)
	if err != nil {
		t.Error(err)
		return
	}
	conn.Write(b)
}

func newTestBackend(t *testing.T, ca *testpki.CA, reply replyFunc) *testBackend {
	t.Helper()
	cfg := tlsconf.DTLSServer(ca.Server(t), ca.Pool)
	ln, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{addr: ln.Addr().(*net.UDPAddr)}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				dc := c.(*dtls.Conn)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := dc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					return
				}
				b.handshakes.Add(1)
				st, _ := dc.ConnectionState()
				cert, _ := x509.ParseCertificate(st.PeerCertificates[0])
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					h, err := DecodeHeartbeat(buf[:n])
					if err != nil {
						t.Errorf("backend: %v", err)
						return
					}
					b.mu.Lock()
					b.peers = append(b.peers, c.RemoteAddr().String())
					b.beats++
					b.mu.Unlock()
					reply(c, h, cert.Subject.CommonName)
				}
			}()
		}
	}()
	return b
}

func (b *testBackend) heard() (int, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.beats, append([]string(nil), b.peers...)
}

type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

func testConfig(udpAddr string) *config.Config {
	c := config.Default()
	c.Backend.HeartbeatAddr = udpAddr
	c.Heartbeat.Interval = 100 * time.Millisecond
	c.Heartbeat.ReplyTimeout = time.Second
	c.Heartbeat.BackoffMin = 50 * time.Millisecond
	c.Heartbeat.BackoffMax = 500 * time.Millisecond
	c.Heartbeat.ServerName = "localhost"
	c.Heartbeat.WatchNetwork = false
	return c
}

type workLog struct {
	mu  sync.Mutex
	ran []string
}

func (w *workLog) run(_ context.Context, it work.Item) work.Result {
	w.mu.Lock()
	w.ran = append(w.ran, it.ID)
	w.mu.Unlock()
	return work.Result{OK: true}
}

func (w *workLog) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ran...)
}

func runClient(t *testing.T, ca *testpki.CA, systemID string, cfg *config.Config, opts Options) *Client {
	t.Helper()
	cert := ca.Device(t, systemID)
	cert.PrivateKey = opaqueSigner{cert.PrivateKey.(crypto.Signer)}
	opts.Config, opts.SystemID, opts.Certificate, opts.Roots = cfg, systemID, cert, ca.Pool
	if opts.NetworkWatch == nil {
		opts.NetworkWatch = NoNetworkWatch
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	})
	return c
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReplayedAndReorderedRepliesRefused: the backend answers each
// heartbeat properly, then sends that reply again and the previous
// heartbeat's reply again, each copy carrying a work item of its own. The
// copies must be refused, so none of their work runs.
func TestReplayedAndReorderedRepliesRefused(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	var mu sync.Mutex
	var prevEcho []byte
	n := 0
	be := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, id string) {
		mu.Lock()
		defer mu.Unlock()
		n++
		echo := EchoFor(id, h.Seq, h.Nonce)
		writeReply(t, conn, &Reply{Echo: echo})
		writeReply(t, conn, &Reply{Echo: echo, Work: []work.Item{{ID: fmt.Sprintf("replayed-%d", n), Kind: work.KindCollectNow}}})
		if prevEcho != nil {
			writeReply(t, conn, &Reply{Echo: prevEcho, Work: []work.Item{{ID: fmt.Sprintf("reordered-%d", n), Kind: work.KindCollectNow}}})
		}
		prevEcho = echo
	})
	var wl workLog
	c := runClient(t, ca, "SYS-R", testConfig(be.addr.String()), Options{Work: wl.run})
	eventually(t, "ten refused replies", func() bool { return c.Status().RejectedReplies >= 10 })
	if ran := wl.list(); len(ran) != 0 {
		t.Fatalf("work from refused replies ran: %v", ran)
	}
	st := c.Status()
	if st.ConsecutiveFailures != 0 || st.Channel != ChannelDTLS {
		t.Fatalf("status %+v: the proper replies should count", st)
	}
}

// TestReplyForAnotherDeviceRefused: the backend answers with the right
// nonce but for another device (a mix-up at the backend), with work for
// that device. The agent refuses it, runs nothing, and counts the
// heartbeat as unanswered.
func TestReplyForAnotherDeviceRefused(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	be := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, id string) {
		writeReply(t, conn, &Reply{Echo: EchoFor("SYS-SOMEONE-ELSE", h.Seq, h.Nonce),
			Work: []work.Item{{ID: "not-mine", Kind: work.KindRemoteAccess}}})
	})
	cfg := testConfig(be.addr.String())
	cfg.Heartbeat.ReplyTimeout = 200 * time.Millisecond
	var wl workLog
	c := runClient(t, ca, "SYS-ME", cfg, Options{Work: wl.run})
	eventually(t, "a failed try", func() bool { return c.Status().ConsecutiveFailures >= 1 })
	st := c.Status()
	if st.RejectedReplies < 1 || !st.LastHeartbeat.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(st.LastError, "no reply") {
		t.Fatalf("last error %q", st.LastError)
	}
	if ran := wl.list(); len(ran) != 0 {
		t.Fatalf("ran another device's work: %v", ran)
	}
}

// triggerWatch is a NetworkWatch the test fires by hand.
type triggerWatch chan string

func (w triggerWatch) watch(ctx context.Context, changed func(string)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-w:
			changed(r)
		}
	}
}

// TestNetworkChangeRebindsWithoutHandshake fires a network change with
// the interval set to minutes: the agent moves to a new port and is heard
// from it at once, on the same session (the backend routes by connection
// ID), in one round trip.
func TestNetworkChangeRebindsWithoutHandshake(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	be := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, id string) {
		writeReply(t, conn, &Reply{Echo: EchoFor(id, h.Seq, h.Nonce)})
	})
	cfg := testConfig(be.addr.String())
	cfg.Heartbeat.Interval = 10 * time.Minute
	cfg.Heartbeat.BackoffMin = 5 * time.Minute
	cfg.Heartbeat.BackoffMax = 10 * time.Minute
	trig := make(triggerWatch)
	c := runClient(t, ca, "SYS-MOVE", cfg, Options{NetworkWatch: trig.watch})
	eventually(t, "first heartbeat", func() bool { n, _ := be.heard(); return n == 1 })
	trig <- "address 192.0.2.7/24 added"
	eventually(t, "heartbeat after the change", func() bool { n, _ := be.heard(); return n == 2 })
	_, peers := be.heard()
	if peers[0] == peers[1] {
		t.Fatalf("heard from %s both times: the socket did not move", peers[0])
	}
	if h := be.handshakes.Load(); h != 1 {
		t.Fatalf("%d handshakes, want 1", h)
	}
	eventually(t, "reconnect measured", func() bool { return c.Status().LastReconnect != nil })
	rc := c.Status().LastReconnect
	if rc.RoundTrips != 1 || rc.Handshake || rc.Reason != "address 192.0.2.7/24 added" || rc.Took <= 0 {
		t.Fatalf("reconnect %+v", rc)
	}
	t.Logf("reconnect after the change: %s, %d round trip(s)", rc.Took, rc.RoundTrips)
}

func TestNewRefusesBadOptions(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	cert := ca.Device(t, "SYS-A")
	good := func() Options {
		return Options{Config: testConfig("127.0.0.1:1"), SystemID: "SYS-A", Certificate: cert, Roots: ca.Pool}
	}
	cases := map[string]struct {
		mod  func(o *Options)
		want string
	}{
		"no config":        {func(o *Options) { o.Config = nil }, "no configuration"},
		"no roots":         {func(o *Options) { o.Roots = nil }, "pinned vendor CA"},
		"no key":           {func(o *Options) { o.Certificate.PrivateKey = nil }, "certificate and key"},
		"other system id":  {func(o *Options) { o.SystemID = "SYS-B" }, `certificate is for "SYS-A"`},
		"nowhere":          {func(o *Options) { o.Config.Backend.HeartbeatAddr = "" }, "both empty"},
		"bad udp address":  {func(o *Options) { o.Config.Backend.HeartbeatAddr = "no-port" }, "heartbeat_addr"},
		"http url":         {func(o *Options) { o.Config.Backend.URL = "http://x" }, "not an https:// URL"},
		"zero interval":    {func(o *Options) { o.Config.Heartbeat.Interval = 0 }, "out of range"},
		"system id in cfg": {func(o *Options) { o.SystemID = ""; o.Config.Device.SystemID = "SYS-C" }, `system ID is "SYS-C"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := good()
			tc.mod(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New(good()); err != nil {
		t.Fatal(err)
	}
}

// TestWorkHandlerPanicIsAFailedResult: a handler that panics does not
// take the agent down; the backend hears of the failure.
func TestWorkHandlerPanicIsAFailedResult(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	var mu sync.Mutex
	var got []work.Result
	sentWork := false
	be := newTestBackend(t, ca, func(conn net.Conn, h *Heartbeat, id string) {
		mu.Lock()
		defer mu.Unlock()
		r := &Reply{Echo: EchoFor(id, h.Seq, h.Nonce)}
		if !sentWork {
			r.Work = []work.Item{{ID: "boom", Kind: work.KindScript}}
			sentWork = true
		}
		for _, res := range h.Results {
			got = append(got, res)
			r.Done = append(r.Done, res.ID)
		}
		writeReply(t, conn, r)
	})
	runClient(t, ca, "SYS-P", testConfig(be.addr.String()), Options{Work: func(context.Context, work.Item) work.Result { panic("handler bug") }})
	eventually(t, "the result", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > 0 })
	mu.Lock()
	defer mu.Unlock()
	if got[0].ID != "boom" || got[0].OK || !strings.Contains(got[0].Detail, "handler bug") {
		t.Fatalf("result %+v", got[0])
	}
}
