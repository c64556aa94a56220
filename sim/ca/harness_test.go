package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/identity"
	_ "github.com/dcagent/dcagent/crypto/keystore/all"
)

// clock is a test clock: real time plus an offset the test moves.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// syncBuffer is a log sink tests read while loops write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(buf io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// backend is the CA served over HTTPS on loopback, the way the reference
// backend mounts it, with one device-only endpoint (/v1/ping) standing in
// for the backend's other services.
type backend struct {
	ca    *CA
	cfg   Config
	url   string
	clock *clock
	logs  *syncBuffer
	// down makes every call answer 503, an outage.
	down atomic.Bool
	// calls counts the requests that reached the CA's handler, downHits
	// those turned away by the outage.
	calls    atomic.Int64
	downHits atomic.Int64
	srv      *http.Server
}

func startBackend(t testing.TB, cfg Config) *backend {
	t.Helper()
	b := &backend{clock: &clock{}, logs: &syncBuffer{}}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Now = b.clock.Now
	cfg.Logger = testLogger(b.logs)
	b.cfg = cfg
	ca, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.ca = ca
	mux := http.NewServeMux()
	h := ca.Handler()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.down.Load() {
			b.downHits.Add(1)
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		b.calls.Add(1)
		h.ServeHTTP(w, r)
	})
	mux.Handle("/v1/enroll", counted)
	mux.Handle("/v1/renew", counted)
	mux.Handle("/v1/ping", ca.RequireDevice(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", DeviceID(r))
	})))
	l, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	b.srv = &http.Server{Handler: mux, ErrorLog: log.New(b.logs, "http: ", 0), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(l)
	t.Cleanup(func() { b.srv.Close() })
	b.url = "https://" + l.Addr().String()
	return b
}

// agentConfig is a device configuration pointing at b.
func agentConfig(t testing.TB, b *backend, keyURI, stateDir, systemID string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Path = "test.conf"
	cfg.Device.SystemID = systemID
	cfg.Device.Model = "DC-9000"
	cfg.Device.StateDir = stateDir
	cfg.Backend.URL = b.url
	cfg.Backend.CAFile = filepath.Join(stateDir, "vendor-ca.pem")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Backend.CAFile, b.ca.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Identity.KeyURI = keyURI
	return cfg
}

// ping makes one mutual-TLS request to the device-only endpoint.
func ping(id *identity.Identity, b *backend) (string, error) {
	tc, err := id.ClientTLS("127.0.0.1")
	if err != nil {
		return "", err
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	rsp, err := c.Get(b.url + "/v1/ping")
	if err != nil {
		return "", err
	}
	defer rsp.Body.Close()
	body, _ := io.ReadAll(rsp.Body)
	if rsp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", rsp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

func enrollDevice(t testing.TB, b *backend, cfg *config.Config) *identity.Identity {
	t.Helper()
	tok, err := b.ca.NewToken(cfg.Device.SystemID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.Enroll(context.Background(), cfg, tok, identity.EnrollOptions{GenerateKey: true, Options: identity.Options{Now: b.clock.Now}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	return id
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverCode is the backend's refusal code in err, "" when err is not a
// refusal.
func serverCode(err error) string {
	var se *enroll.ServerError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}
