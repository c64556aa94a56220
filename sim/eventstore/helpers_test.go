package eventstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// backend is a real event store behind a real mutual-TLS server on
// loopback.
type backend struct {
	store *Store
	srv   *httptest.Server
	ca    *testpki.CA
	conns atomic.Int64 // TCP connections accepted
	read  atomic.Int64 // bytes read from the wire (TLS records included)
}

func startBackend(t testing.TB, dir string) *backend {
	t.Helper()
	ca := testpki.NewCA(t, "vendor CA")
	return startBackendWithCA(t, dir, ca)
}

func startBackendWithCA(t testing.TB, dir string, ca *testpki.CA) *backend {
	t.Helper()
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{store: st, ca: ca}
	mux := http.NewServeMux()
	mux.Handle(wire.PathPrefix, st.Handler(PeerCN))
	srv := httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = &countingListener{Listener: ln, b: b}
	srv.TLS = tlsconf.Server(ca.Server(t), ca.Pool, true)
	srv.EnableHTTP2 = true
	// Handshakes cut by the fault proxy are expected; keep them out of the log.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	b.srv = srv
	t.Cleanup(func() { srv.Close(); st.Close() })
	return b
}

type countingListener struct {
	net.Listener
	b *backend
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.b.conns.Add(1)
		c = &countingConn{Conn: c, b: l.b}
	}
	return c, err
}

type countingConn struct {
	net.Conn
	b *backend
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.b.read.Add(int64(n))
	return n, err
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// deviceTLS is the agent side of mutual TLS for systemID.
func deviceTLS(t testing.TB, ca *testpki.CA, systemID string) *tls.Config {
	t.Helper()
	cert := ca.Device(t, systemID)
	c, err := tlsconf.Client(ca.Pool, &cert, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// agent is a spool and an uploader, as the daemon wires them.
type agent struct {
	sp     *spool.Spool
	up     *connecthome.Uploader
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startAgent(t testing.TB, dir, backendAddr string, tlsCfg *tls.Config, systemID string, opts connecthome.Options, logger *slog.Logger) *agent {
	t.Helper()
	sp, err := spool.Open(dir, spool.Limits{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	sp.SetSystemID(systemID)
	opts.BackendURL = "https://" + backendAddr
	if opts.RetryMin == 0 {
		opts.RetryMin = 50 * time.Millisecond
		opts.RetryMax = 500 * time.Millisecond
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	up, err := connecthome.NewWithOptions(opts, sp, tlsCfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{sp: sp, up: up, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- up.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() {
	a.once.Do(func() {
		a.cancel()
		<-a.done
		a.sp.Close()
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var gen = event.NewIDGenerator(nil, nil)

func alert(sev event.Severity, i int) *event.Event {
	return &event.Event{
		ID: gen.New(), Type: event.TypeAlert, Severity: sev, Created: time.Now().UTC(),
		Payload: map[string]any{
			"source": "sensor", "condition": "over_temperature", "state": "raised",
			"message": fmt.Sprintf("CPU%d temperature 91.0 °C is above its limit of 90.0 °C", i%4),
			"value":   91.0, "threshold": 90.0, "unit": "°C",
			"sensor": map[string]any{"chip": "coretemp", "label": fmt.Sprintf("Package id %d", i%4), "kind": "temp", "index": i % 4, "value": 91.0, "crit": 100.0},
		},
	}
}

func openSpoolForTest(t testing.TB, dir, systemID string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp.SetSystemID(systemID)
	return sp
}
