package heartbeat

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/sim/faultproxy"
)

// These tests run the real agent (agent/heartbeat) against the real
// service over loopback, with the fault proxy in between where the
// network must misbehave.

// opaqueSigner hides the key's type, as a TPM or PKCS#11 key store does:
// only Public and Sign, no private key bytes.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

// backend is the service with its HTTPS side on an httptest server.
type backend struct {
	*fixture
	https *httptest.Server
}

func newBackend(t testing.TB, opts Options) *backend {
	t.Helper()
	f := newFixture(t, opts)
	mux := http.NewServeMux()
	mux.Handle(HTTPSPath, f.svc.Handler())
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = tlsconf.Server(f.ca.Server(t), f.ca.Pool, true)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &backend{fixture: f, https: srv}
}

// agentConfig is a configuration with short times for tests.
func agentConfig(udpAddr, httpsURL string) *config.Config {
	c := config.Default()
	c.Backend.HeartbeatAddr = udpAddr
	c.Backend.URL = httpsURL
	c.Heartbeat.Interval = 300 * time.Millisecond
	c.Heartbeat.ReplyTimeout = 500 * time.Millisecond
	c.Heartbeat.UDPTries = 3
	c.Heartbeat.UDPProbeInterval = time.Second
	c.Heartbeat.BackoffMin = 100 * time.Millisecond
	c.Heartbeat.BackoffMax = time.Second
	c.Heartbeat.ServerName = "localhost"
	c.Heartbeat.WatchNetwork = false
	return c
}

type runningAgent struct {
	*hb.Client
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (a *runningAgent) stop(t testing.TB) {
	t.Helper()
	a.cancel()
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("agent Run: %v", a.err)
		}
	case <-time.After(20 * time.Second):
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Fatal("agent did not stop")
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HEARTBEAT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func startAgent(t testing.TB, b *backend, systemID string, cfg *config.Config, opts hb.Options) *runningAgent {
	t.Helper()
	cert := b.ca.Device(t, systemID)
	cert.PrivateKey = opaqueSigner{cert.PrivateKey.(crypto.Signer)}
	opts.Config = cfg
	opts.SystemID = systemID
	opts.Certificate = cert
	opts.Roots = b.ca.Pool
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.NetworkWatch == nil {
		opts.NetworkWatch = hb.NoNetworkWatch
	}
	c, err := hb.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &runningAgent{Client: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		a.err = c.Run(ctx)
		close(a.done)
	}()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// nextSeen waits for the next heartbeat of systemID that satisfies ok.
func nextSeen(t testing.TB, ch <-chan Seen, systemID string, within time.Duration, ok func(Seen) bool) Seen {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-ch:
			if e.SystemID == systemID && (ok == nil || ok(e)) {
				return e
			}
		case <-deadline:
			t.Fatalf("no matching heartbeat from %s within %s", systemID, within)
		}
	}
}

func TestAgentHeartbeatsOverDTLSWithOpaqueKey(t *testing.T) {
	b := newBackend(t, Options{})
	seen, unsub := b.svc.Subscribe(64)
	defer unsub()
	cfg := agentConfig(b.addr.String(), b.https.URL)
	tele := hb.Telemetry{DrivesOK: 7, DrivesWarn: 1, AgentVersion: "test-1.0"}
	a := startAgent(t, b, "SYS-AGENT", cfg, hb.Options{Telemetry: func() hb.Telemetry { return tele }})
	first := nextSeen(t, seen, "SYS-AGENT", 20*time.Second, nil)
	if first.Channel != ChannelDTLS || first.Telemetry == nil || first.Telemetry.DrivesWarn != 1 || first.Telemetry.CertNotAfter == 0 {
		t.Fatalf("first heartbeat %+v (telemetry %+v)", first, first.Telemetry)
	}
	for i := 0; i < 3; i++ {
		e := nextSeen(t, seen, "SYS-AGENT", 20*time.Second, nil)
		if e.Telemetry != nil {
			t.Fatalf("unchanged telemetry sent again in heartbeat %d", e.Seq)
		}
		if e.Seq <= first.Seq {
			t.Fatalf("sequence did not grow: %d after %d", e.Seq, first.Seq)
		}
	}
	waitFor(t, "agent status", func() bool { return a.Status().Channel == hb.ChannelDTLS })
	st := a.Status()
	if st.Handshakes != 1 || st.LastHeartbeat.IsZero() || st.RTT <= 0 {
		t.Fatalf("status %+v", st)
	}
	if s := b.svc.Stats(); s.Handshakes != 1 || s.Sessions != 1 {
		t.Fatalf("service stats %+v", s)
	}
	a.stop(t)
	// The agent said goodbye (close_notify): the session is gone.
	waitFor(t, "session dropped after close_notify", func() bool { return b.svc.Stats().Sessions == 0 })
}

// TestUDPBlackholeFallsBackToHTTPSAndBack blackholes UDP with the fault
// proxy: the agent must be heard over HTTPS within its configured
// fallback time (udp_tries × reply_timeout after its next heartbeat), and
// be back on DTLS once UDP passes again.
func TestUDPBlackholeFallsBackToHTTPSAndBack(t *testing.T) {
	b := newBackend(t, Options{})
	proxy, err := faultproxy.NewUDP("127.0.0.1:0", b.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	seen, unsub := b.svc.Subscribe(256)
	defer unsub()
	cfg := agentConfig(proxy.Addr().String(), b.https.URL)
	a := startAgent(t, b, "SYS-FALLBACK", cfg, hb.Options{})
	nextSeen(t, seen, "SYS-FALLBACK", 20*time.Second, func(e Seen) bool { return e.Channel == ChannelDTLS })

	proxy.SetMode(faultproxy.Blackhole)
	blackholed := time.Now()
	e := nextSeen(t, seen, "SYS-FALLBACK", 30*time.Second, func(e Seen) bool { return e.Channel == ChannelHTTPS })
	took := e.At.Sub(blackholed)
	hc := cfg.Heartbeat
	// The next heartbeat is due within an interval (+10% jitter); then
	// udp_tries tries of reply_timeout each. Allow three seconds on top
	// for a busy machine's scheduling.
	bound := hc.Interval*11/10 + time.Duration(hc.UDPTries)*hc.ReplyTimeout + 3*time.Second
	t.Logf("https fallback %s after the blackhole (configured bound %s)", took, bound)
	if took > bound {
		t.Fatalf("fell back to https after %s, configured bound %s", took, bound)
	}
	// Work reaches the device over the long poll.
	if err := b.svc.Enqueue("SYS-FALLBACK", work.Item{ID: "over-https", Kind: work.KindCollectNow}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.svc.WaitResult(ctx, "SYS-FALLBACK", "over-https"); err != nil {
		t.Fatal(err)
	}

	proxy.SetMode(faultproxy.Pass)
	passed := time.Now()
	nextSeen(t, seen, "SYS-FALLBACK", 30*time.Second, func(e Seen) bool { return e.Channel == ChannelDTLS && e.At.After(passed) })
	t.Logf("back on dtls %s after udp passed again (probe interval %s)", time.Since(passed), hc.UDPProbeInterval)
	waitFor(t, "agent on dtls", func() bool { return a.Status().Channel == hb.ChannelDTLS })
	// And it stays there: the next heartbeats are DTLS ones.
	for i := 0; i < 3; i++ {
		if e := nextSeen(t, seen, "SYS-FALLBACK", 20*time.Second, nil); e.Channel != ChannelDTLS {
			t.Fatalf("heartbeat over %s after returning to dtls", e.Channel)
		}
	}
}

// countingHandler records how often each work item ran.
type countingHandler struct {
	mu   sync.Mutex
	runs map[string]int
}

func (h *countingHandler) run(_ context.Context, it work.Item) work.Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.runs == nil {
		h.runs = map[string]int{}
	}
	h.runs[it.ID]++
	return work.Result{OK: true, Detail: fmt.Sprintf("ran %s", it.ID)}
}

func (h *countingHandler) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs[id]
}

// TestWorkRunsExactlyOnceAcrossLostDatagrams loses 25% of the datagrams
// each way: replies carrying work, heartbeats carrying acknowledgements
// and results, handshakes. Every item must run exactly once, and the
// backend must end with every result and nothing queued.
func TestWorkRunsExactlyOnceAcrossLostDatagrams(t *testing.T) {
	b := newBackend(t, Options{})
	proxy, err := faultproxy.NewUDP("127.0.0.1:0", b.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxy.SetFault(faultproxy.Fault{Mode: faultproxy.Drop, DropRate: 0.25, Seed: 7})
	// DTLS only, so that every item and acknowledgement has to get
	// through the lossy path; tries long enough for pion's handshake
	// retransmissions (1 s) and many of them.
	cfg := agentConfig(proxy.Addr().String(), "")
	cfg.Heartbeat.Interval = 150 * time.Millisecond
	cfg.Heartbeat.ReplyTimeout = 1200 * time.Millisecond
	cfg.Heartbeat.UDPTries = 8
	var h countingHandler
	startAgent(t, b, "SYS-ONCE", cfg, hb.Options{Work: h.run, StateDir: t.TempDir()})
	waitFor(t, "the agent heard", func() bool { _, ok := b.svc.Device("SYS-ONCE"); return ok })

	// Items come one by one while the agent heartbeats, so that many
	// replies carry work and many heartbeats carry acknowledgements.
	const items = 20
	for i := 0; i < items; i++ {
		if err := b.svc.Enqueue("SYS-ONCE", work.Item{ID: fmt.Sprintf("item-%02d", i), Kind: work.KindCollectNow}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for i := 0; i < items; i++ {
		id := fmt.Sprintf("item-%02d", i)
		r, err := b.svc.WaitResult(ctx, "SYS-ONCE", id)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK || r.Detail != "ran "+id {
			t.Fatalf("result %+v", r)
		}
	}
	waitFor(t, "queue empty", func() bool {
		info, _ := b.svc.Device("SYS-ONCE")
		return len(info.Pending) == 0
	})
	for i := 0; i < items; i++ {
		if n := h.count(fmt.Sprintf("item-%02d", i)); n != 1 {
			t.Fatalf("item-%02d ran %d times", i, n)
		}
	}
	st := proxy.Stats()
	if st.Dropped == 0 {
		t.Fatal("the proxy dropped nothing: the test proved nothing")
	}
	if svc := b.svc.Stats(); svc.DTLSHeartbeats == 0 || svc.HTTPSHeartbeats != 0 {
		t.Fatalf("service stats %+v: want everything over DTLS", svc)
	}
	t.Logf("proxy forwarded %d and dropped %d datagrams; service stats %+v", st.Forwarded, st.Dropped, b.svc.Stats())
}

// TestTakenWorkSurvivesRestart takes an item, loses every acknowledgement
// (an HTTPS-only agent whose requests carrying acknowledgements fail),
// restarts the agent on the same state directory and lets requests pass:
// the item comes again and is acknowledged, but does not run again.
func TestTakenWorkSurvivesRestart(t *testing.T) {
	b := newBackend(t, Options{})
	var loseAcks atomic.Bool
	loseAcks.Store(true)
	mux := http.NewServeMux()
	mux.Handle(HTTPSPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if h, err := hb.DecodeHeartbeat(body); err == nil && len(h.Acks) > 0 && loseAcks.Load() {
			http.Error(w, "lost", http.StatusServiceUnavailable)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		b.svc.Handler().ServeHTTP(w, r)
	}))
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = tlsconf.Server(b.ca.Server(t), b.ca.Pool, true)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	cfg := agentConfig("", srv.URL)
	state := t.TempDir()
	var h countingHandler
	a := startAgent(t, b, "SYS-RESTART", cfg, hb.Options{Work: h.run, StateDir: state})
	waitFor(t, "agent heard", func() bool { _, ok := b.svc.Device("SYS-RESTART"); return ok })
	b.svc.Enqueue("SYS-RESTART", work.Item{ID: "once-only", Kind: work.KindCollectNow})
	waitFor(t, "item taken", func() bool { return h.count("once-only") == 1 })
	waitFor(t, "acknowledgement refused", func() bool { return a.Status().ConsecutiveFailures > 0 })
	a.stop(t)
	if info, _ := b.svc.Device("SYS-RESTART"); len(info.Pending) != 1 {
		t.Fatalf("the acknowledgement got through: pending %v", info.Pending)
	}

	loseAcks.Store(false)
	startAgent(t, b, "SYS-RESTART", cfg, hb.Options{Work: h.run, StateDir: state})
	waitFor(t, "item acknowledged after the restart", func() bool {
		info, _ := b.svc.Device("SYS-RESTART")
		return len(info.Pending) == 0
	})
	if n := h.count("once-only"); n != 1 {
		t.Fatalf("item ran %d times", n)
	}
}

// TestNATRebindingKeepsSession makes the proxy forget its mappings, so
// the agent's datagrams reach the service from a new port, as after a NAT
// rebinding: same session, no handshake.
func TestNATRebindingKeepsSession(t *testing.T) {
	b := newBackend(t, Options{})
	proxy, err := faultproxy.NewUDP("127.0.0.1:0", b.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	seen, unsub := b.svc.Subscribe(256)
	defer unsub()
	startAgent(t, b, "SYS-NAT", agentConfig(proxy.Addr().String(), b.https.URL), hb.Options{})
	before := nextSeen(t, seen, "SYS-NAT", 20*time.Second, nil)
	proxy.SetMode(faultproxy.Reset)
	time.Sleep(50 * time.Millisecond)
	proxy.SetMode(faultproxy.Pass)
	after := nextSeen(t, seen, "SYS-NAT", 20*time.Second, func(e Seen) bool { return e.Addr != before.Addr })
	if after.SessionID != before.SessionID || after.Channel != ChannelDTLS {
		t.Fatalf("before %+v after %+v: want the same DTLS session", before, after)
	}
	if st := b.svc.Stats(); st.Handshakes != 1 {
		t.Fatalf("%d handshakes, want 1", st.Handshakes)
	}
}

// TestBackendRestartMakesNewSession restarts the service on the same
// port: the agent's connection ID is unknown there, so after two silent
// tries it makes a new session, still on DTLS.
func TestBackendRestartMakesNewSession(t *testing.T) {
	b := newBackend(t, Options{})
	cfg := agentConfig(b.addr.String(), "")
	a := startAgent(t, b, "SYS-BOUNCE", cfg, hb.Options{})
	waitFor(t, "first session", func() bool { return a.Status().Handshakes == 1 && !a.Status().LastHeartbeat.IsZero() })
	b.svc.Close()
	svc2, err := New(Options{Cert: b.ca.Server(t), ClientCAs: b.ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc2.Close() })
	var conn *net.UDPConn
	waitFor(t, "the port again", func() bool {
		conn, err = net.ListenUDP("udp", b.addr)
		return err == nil
	})
	if err := svc2.ServeUDP(conn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "heard by the new service", func() bool { info, ok := svc2.Device("SYS-BOUNCE"); return ok && info.Heartbeats > 0 })
	waitFor(t, "agent answered again", func() bool { return a.Status().ConsecutiveFailures == 0 })
	if st := a.Status(); st.Handshakes != 2 || st.Channel != hb.ChannelDTLS {
		t.Fatalf("agent status %+v", st)
	}
}

// TestBigWorkTravelsOverHTTPS queues an item too big for a datagram: the
// DTLS reply announces it, the agent fetches it over HTTPS at once and
// stays on DTLS.
func TestBigWorkTravelsOverHTTPS(t *testing.T) {
	b := newBackend(t, Options{})
	var h countingHandler
	a := startAgent(t, b, "SYS-BIGWORK", agentConfig(b.addr.String(), b.https.URL), hb.Options{Work: h.run})
	waitFor(t, "agent on dtls", func() bool { return a.Status().Channel == hb.ChannelDTLS })
	body := bytes.Repeat([]byte{0xa5}, 5000)
	if err := b.svc.Enqueue("SYS-BIGWORK", work.Item{ID: "big-file", Kind: work.KindFilePut, Body: body}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.svc.WaitResult(ctx, "SYS-BIGWORK", "big-file"); err != nil {
		t.Fatal(err)
	}
	if h.count("big-file") != 1 {
		t.Fatalf("ran %d times", h.count("big-file"))
	}
	if st := b.svc.Stats(); st.HTTPSHeartbeats == 0 {
		t.Fatalf("no https exchange: %+v", st)
	}
	if a.Status().Channel != hb.ChannelDTLS {
		t.Fatalf("agent left dtls: %+v", a.Status())
	}
}
