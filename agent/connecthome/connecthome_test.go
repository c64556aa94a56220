package connecthome

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/connecthome/sealed"
	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// fakeBackend is an in-process stand-in for the backend's event API; the
// real one (sim/eventstore) is exercised by the integration tests there.
type fakeBackend struct {
	srv     *httptest.Server
	ca      *testpki.CA
	handler atomic.Value // func(w, r, events [][]byte)
	mu      sync.Mutex
	got     map[string]bool
	calls   atomic.Int64
}

func newFakeBackend(t *testing.T) *fakeBackend {
	fb := &fakeBackend{ca: testpki.NewCA(t, "vendor CA"), got: map[string]bool{}}
	fb.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fb.calls.Add(1)
		raw, _ := io.ReadAll(r.Body)
		if err := wire.CheckContentDigest(r.Header.Get("Content-Digest"), raw); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body, _ := io.ReadAll(zr)
		var events [][]byte
		if r.URL.Path == wire.BatchPath {
			events, _ = wire.DecodeBatch(body)
		} else {
			events = [][]byte{body}
		}
		h, _ := fb.handler.Load().(func(http.ResponseWriter, *http.Request, [][]byte))
		if h != nil {
			h(w, r, events)
			return
		}
		fb.storeAll(w, r, events)
	}))
	fb.srv.TLS = tlsconf.Server(fb.ca.Server(t), fb.ca.Pool, true)
	fb.srv.StartTLS()
	t.Cleanup(fb.srv.Close)
	return fb
}

func (fb *fakeBackend) storeAll(w http.ResponseWriter, r *http.Request, events [][]byte) {
	var res []wire.Result
	for _, b := range events {
		e, err := event.Unmarshal(b)
		if err != nil {
			res = append(res, wire.Result{Status: wire.StatusRejected, Error: err.Error()})
			continue
		}
		fb.mu.Lock()
		fb.got[e.ID] = true
		fb.mu.Unlock()
		res = append(res, wire.Result{ID: e.ID, Status: wire.StatusStored})
	}
	if r.URL.Path == wire.BatchPath {
		json.NewEncoder(w).Encode(wire.BatchResponse{Results: res})
		return
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(res[0])
}

func (fb *fakeBackend) count() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return len(fb.got)
}

func (fb *fakeBackend) addr() string { return fb.srv.Listener.Addr().String() }

type running struct {
	sp     *spool.Spool
	up     *Uploader
	cancel context.CancelFunc
	done   chan error
}

func run(t *testing.T, fb *fakeBackend, opts Options) *running {
	return runWith(t, fb, opts, 0)
}

// runWith spools prefill events before the uploader starts.
func runWith(t *testing.T, fb *fakeBackend, opts Options, prefill int) *running {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp.SetSystemID("SYS-UNIT")
	put(t, sp, prefill)
	cert := fb.ca.Device(t, "SYS-UNIT")
	tc, _ := tlsconf.Client(fb.ca.Pool, &cert, "localhost")
	if opts.BackendURL == "" {
		opts.BackendURL = "https://" + fb.addr()
	}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	}
	opts.RequestTimeout = 10 * time.Second
	up, err := NewWithOptions(opts, sp, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{sp: sp, up: up, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- up.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		sp.Close()
	})
	return r
}

func put(t *testing.T, sp *spool.Spool, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := sp.Put(&event.Event{Type: event.TypeAlert, Severity: event.SeverityWarning, Payload: map[string]any{"message": "m"}}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPartialBatchAnswerKeepsTheRest(t *testing.T) {
	fb := newFakeBackend(t)
	var first atomic.Bool
	first.Store(true)
	fb.handler.Store(func(w http.ResponseWriter, r *http.Request, events [][]byte) {
		if first.Swap(false) && len(events) > 1 {
			// Acknowledge only the first event of the first batch.
			e, _ := event.Unmarshal(events[0])
			json.NewEncoder(w).Encode(wire.BatchResponse{Results: []wire.Result{{ID: e.ID, Status: wire.StatusStored}}})
			return
		}
		fb.storeAll(w, r, events)
	})
	r := runWith(t, fb, Options{InFlight: 1}, 10)
	waitFor(t, "an empty spool", func() bool { return r.sp.Len() == 0 })
	// The first event was acknowledged by the partial answer (this fake
	// did not record it); the other nine were sent again and stored.
	if fb.count() != 9 || fb.calls.Load() < 2 || first.Load() {
		t.Fatalf("backend got %d in %d calls", fb.count(), fb.calls.Load())
	}
}

func TestRetryAfterDateAnd429(t *testing.T) {
	fb := newFakeBackend(t)
	until := time.Now().Add(4 * time.Second).UTC()
	fb.handler.Store(func(w http.ResponseWriter, r *http.Request, events [][]byte) {
		w.Header().Set("Retry-After", until.Format(http.TimeFormat))
		http.Error(w, `{"error":"slow down"}`, http.StatusTooManyRequests)
	})
	r := run(t, fb, Options{})
	put(t, r.sp, 1)
	waitFor(t, "a failure", func() bool { return r.up.Status().LastError != "" })
	st := r.up.Status()
	if st.NextAttempt.Before(until.Add(-time.Second)) {
		t.Fatalf("next attempt %v is before Retry-After %v", st.NextAttempt, until)
	}
	if !strings.Contains(st.LastError, "429") || r.sp.Len() != 1 {
		t.Fatalf("status %+v, spool %d", st, r.sp.Len())
	}
}

func TestPermanentRefusalOfSinglePut(t *testing.T) {
	fb := newFakeBackend(t)
	fb.handler.Store(func(w http.ResponseWriter, r *http.Request, events [][]byte) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(wire.Result{Status: wire.StatusRejected, Error: "not for this backend"})
	})
	r := run(t, fb, Options{})
	put(t, r.sp, 1)
	waitFor(t, "the refused event to leave", func() bool { return r.sp.Len() == 0 })
	q, _ := filepath.Glob(filepath.Join(r.sp.Dir(), "quarantine", "*.rejected.reason"))
	if len(q) != 1 {
		t.Fatalf("quarantine %v", q)
	}
}

// fakeChannel is a failover channel that records what it is given.
type fakeChannel struct {
	mu   sync.Mutex
	fail error
	msgs [][]byte
}

func (f *fakeChannel) Name() string { return "fake" }
func (f *fakeChannel) Send(ctx context.Context, m []byte, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.msgs = append(f.msgs, m)
	return nil
}

func TestFailoverOnlyAfterThreshold(t *testing.T) {
	fb := newFakeBackend(t)
	fb.handler.Store(func(w http.ResponseWriter, r *http.Request, events [][]byte) {
		http.Error(w, "down", http.StatusBadGateway)
	})
	vendor, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ch := &fakeChannel{fail: errors.New("relay down")}
	r := run(t, fb, Options{FailoverAfter: 1500 * time.Millisecond, Failover: []Channel{ch}, VendorKey: vendor.PublicKey()})
	start := time.Now()
	put(t, r.sp, 3)
	waitFor(t, "the failover to be tried", func() bool { return strings.Contains(r.up.Status().LastError, "relay down") })
	if time.Since(start) < 1500*time.Millisecond {
		t.Fatal("failover before the threshold")
	}
	if r.sp.Len() != 3 {
		t.Fatalf("a failed failover lost events: %d left", r.sp.Len())
	}
	ch.mu.Lock()
	ch.fail = nil
	ch.mu.Unlock()
	waitFor(t, "delivery by failover", func() bool { return r.sp.Len() == 0 })
	ch.mu.Lock()
	defer ch.mu.Unlock()
	o := &sealed.Opener{Key: vendor, DeviceCAs: fb.ca.Pool}
	n := 0
	for _, m := range ch.msgs {
		blocks, err := sealed.Unarmor(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			op, err := o.Open(b)
			if err != nil {
				t.Fatal(err)
			}
			if op.Device.Subject.CommonName != "SYS-UNIT" {
				t.Fatalf("signed by %q", op.Device.Subject.CommonName)
			}
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d sealed events, want 3", n)
	}
	if st := r.up.Status(); st.Sent["fake"] != 3 || !st.InFailover {
		t.Fatalf("status %+v", st)
	}
}

func TestRunStopsAndReleases(t *testing.T) {
	fb := newFakeBackend(t)
	fb.handler.Store(func(w http.ResponseWriter, r *http.Request, events [][]byte) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	r := run(t, fb, Options{})
	put(t, r.sp, 5)
	waitFor(t, "a failure", func() bool { return r.up.Status().LastError != "" })
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if st := r.sp.Stats(); st.Leased != 0 || st.Backlog != 5 {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestDeviceCertFromGetClientCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	cert := ca.Device(t, "SYS-G")
	tc, _ := tlsconf.Client(ca.Pool, nil, "localhost")
	called := false
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { called = true; return &cert, nil }
	sp, _ := spool.Open(t.TempDir(), spool.Limits{}, nil)
	defer sp.Close()
	u, err := NewWithOptions(Options{BackendURL: "https://localhost:1"}, sp, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.deviceCert()
	if err != nil || !called || got.Leaf.Subject.CommonName != "SYS-G" {
		t.Fatalf("%v %v", err, called)
	}
	if _, err := NewWithOptions(Options{BackendURL: "http://plain"}, sp, tc, nil); err == nil {
		t.Fatal("plain http accepted")
	}
	if _, err := NewWithOptions(Options{BackendURL: "https://x", Failover: []Channel{&fakeChannel{}}}, sp, tc, nil); err == nil {
		t.Fatal("failover without a vendor key accepted")
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 8 * time.Second}
	prevCap := time.Duration(0)
	for i := 0; i < 10; i++ {
		d := b.next(0)
		if d < b.cur/2 || d > b.cur {
			t.Fatalf("wait %v outside [%v, %v]", d, b.cur/2, b.cur)
		}
		if b.cur < prevCap || b.cur > 8*time.Second {
			t.Fatalf("cap %v", b.cur)
		}
		prevCap = b.cur
	}
	if d := b.next(time.Minute); d < time.Minute || d > time.Minute+6*time.Second {
		t.Fatalf("Retry-After 1m gave %v", d)
	}
	if d := b.next(1000 * time.Hour); d > maxRetryAfter+maxRetryAfter/10 {
		t.Fatalf("huge Retry-After not capped: %v", d)
	}
	b.reset()
	if d := b.next(0); d > time.Second {
		t.Fatalf("after reset %v", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-5":                            0,
		"soon":                          0,
		"99999999":                      maxRetryAfter,
		"Wed, 01 Jan 2025 00:00:30 GMT": 30 * time.Second,
		"Tue, 31 Dec 2024 23:00:00 GMT": 0,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestPassiveReplies(t *testing.T) {
	if p, err := parseEPSV("229 Entering Extended Passive Mode (|||6446|)"); err != nil || p != 6446 {
		t.Fatalf("EPSV: %d %v", p, err)
	}
	if p, err := parsePASV("227 Entering Passive Mode (127,0,0,1,25,46)"); err != nil || p != 25*256+46 {
		t.Fatalf("PASV: %d %v", p, err)
	}
	for _, bad := range []string{"(|||0|)", "(|||99999|)", "(||)", "no parens"} {
		if _, err := parseEPSV(bad); err == nil {
			t.Errorf("EPSV %q accepted", bad)
		}
	}
	for _, bad := range []string{"(1,2,3,4,5)", "(1,2,3,4,256,1)", "(1,2,3,4,a,b)"} {
		if _, err := parsePASV(bad); err == nil {
			t.Errorf("PASV %q accepted", bad)
		}
	}
}

func FuzzPassiveReply(f *testing.F) {
	f.Add("Entering Extended Passive Mode (|||6446|)")
	f.Add("Entering Passive Mode (127,0,0,1,25,46)")
	f.Fuzz(func(t *testing.T, msg string) {
		if p, err := parseEPSV(msg); err == nil && (p < 1 || p > 65535) {
			t.Fatalf("EPSV port %d", p)
		}
		if p, err := parsePASV(msg); err == nil && (p < 1 || p > 65535) {
			t.Fatalf("PASV port %d", p)
		}
	})
}

func TestOptionsFromConfig(t *testing.T) {
	dir := t.TempDir()
	vendor, _ := ecdh.X25519().GenerateKey(rand.Reader)
	vk, _ := sealed.MarshalVendorKey(vendor.PublicKey())
	os.WriteFile(filepath.Join(dir, "vendor.pem"), vk, 0o644)
	ca := testpki.NewCA(t, "relay")
	caFile := ca.WriteCAFile(t, dir)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600)
	conf := `[device]
system_id = SYS-CONF
[backend]
url = https://backend.example:8443
[upload]
failover = smtp, ftps
failover_after = 2h
vendor_key_file = ` + dir + `/vendor.pem
smtp_addr = relay.example:587
smtp_from = dcagent@customer.example
smtp_to = events@vendor.example
smtp_user = dcagent
smtp_password_file = ` + dir + `/pw
smtp_ca_file = ` + caFile + `
ftps_addr = ftp.example:21
ftps_user = drop
ftps_password_file = ` + dir + `/pw
ftps_ca_file = ` + caFile + `
`
	cfg, err := config.Parse("test.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	o, err := OptionsFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Failover) != 2 || o.Failover[0].Name() != "smtp" || o.Failover[1].Name() != "ftps" || o.FailoverAfter != 2*time.Hour {
		t.Fatalf("options %+v", o)
	}
	if o.Failover[0].(*SMTPChannel).Password != "s3cret" || !o.VendorKey.Equal(vendor.PublicKey()) {
		t.Fatal("password or vendor key not read")
	}
	// Configuration mistakes name the key.
	bad := strings.Replace(conf, "smtp_to = events@vendor.example\n", "", 1)
	if _, err := config.Parse("test.conf", []byte(bad)); err == nil || !strings.Contains(err.Error(), "smtp_to") {
		t.Fatalf("missing smtp_to: %v", err)
	}
	bad = strings.Replace(conf, "failover = smtp, ftps", "failover = pigeon", 1)
	if _, err := config.Parse("test.conf", []byte(bad)); err == nil || !strings.Contains(err.Error(), "pigeon") {
		t.Fatalf("unknown channel: %v", err)
	}
	cfg, _ = config.Parse("test.conf", []byte(strings.Replace(conf, dir+"/vendor.pem", dir+"/missing.pem", 1)))
	if _, err := OptionsFromConfig(cfg); err == nil || !strings.Contains(err.Error(), "vendor_key_file") {
		t.Fatalf("missing vendor key: %v", err)
	}
}
