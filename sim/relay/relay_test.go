package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
	"github.com/fxamacker/cbor/v2"
)

// queue is an in-test stand-in for the heartbeat service's queue.
type queue struct {
	mu      sync.Mutex
	items   map[string][]work.Item
	results map[string]work.Result
	changed chan struct{}
	fail    error
}

func newQueue() *queue {
	return &queue{items: map[string][]work.Item{}, results: map[string]work.Result{}, changed: make(chan struct{})}
}

func (q *queue) Enqueue(systemID string, it work.Item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return q.fail
	}
	q.items[systemID] = append(q.items[systemID], it)
	return nil
}

func (q *queue) setResult(r work.Result) {
	q.mu.Lock()
	q.results[r.ID] = r
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}

func (q *queue) WaitResult(ctx context.Context, _, id string) (work.Result, error) {
	for {
		q.mu.Lock()
		r, ok := q.results[id]
		ch := q.changed
		q.mu.Unlock()
		if ok {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return work.Result{}, ctx.Err()
		}
	}
}

func (q *queue) take(t *testing.T, systemID string) work.RemoteAccess {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items[systemID]
	if len(items) == 0 {
		t.Fatalf("nothing queued for %s", systemID)
	}
	it := items[0]
	q.items[systemID] = items[1:]
	var ra work.RemoteAccess
	if it.Kind != work.KindRemoteAccess || cbor.Unmarshal(it.Body, &ra) != nil {
		t.Fatalf("queued %+v", it)
	}
	return ra
}

type fixture struct {
	ca    *testpki.CA
	relay *Relay
	q     *queue
	api   *httptest.Server
	cli   *SupportClient
}

func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	f := &fixture{ca: testpki.NewCA(t, "vendor CA"), q: newQueue()}
	var err error
	f.relay, err = New(Options{Cert: f.ca.Server(t), ClientCAs: f.ca.Pool, Enqueue: f.q.Enqueue, WaitResult: f.q.WaitResult, SupportToken: token, SessionTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.relay.Close() })
	f.api = httptest.NewUnstartedServer(f.relay.SupportHandler())
	f.api.TLS = tlsconf.Server(f.ca.Server(t), nil, false)
	f.api.StartTLS()
	t.Cleanup(f.api.Close)
	cfg, _ := tlsconf.Client(f.ca.Pool, nil, "127.0.0.1")
	f.cli = &SupportClient{BaseURL: f.api.URL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, Token: token}
	return f
}

// dialAsDevice connects to the relay as systemID and presents sessionID.
func (f *fixture) dialAsDevice(t *testing.T, systemID, sessionID string) (net.Conn, error) {
	t.Helper()
	var certs []tls.Certificate
	if systemID != "" {
		certs = []tls.Certificate{f.ca.Device(t, systemID)}
	}
	cfg := &tls.Config{RootCAs: f.ca.Pool, Certificates: certs, ServerName: "127.0.0.1"}
	c, err := tls.Dial("tcp", f.relay.Addr(), cfg)
	if err != nil {
		return nil, err
	}
	if err := remote.WriteHello(c, sessionID); err != nil {
		c.Close()
		return nil, err
	}
	if err := remote.ReadReply(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func TestSessionThroughSupportAPI(t *testing.T) {
	f := newFixture(t, "s3cret")
	ctx := context.Background()
	rr, err := f.cli.Request(ctx, AccessRequest{SystemID: "SYS-1", Service: "ssh", Requester: "alice", ServiceRequest: "SR-1"})
	if err != nil {
		t.Fatal(err)
	}
	ra := f.q.take(t, "SYS-1")
	if ra.SessionID != rr.SessionID || ra.RelayAddr != f.relay.Addr() || ra.Service != "ssh" || ra.Requester != "alice" || ra.ServiceRequest != "SR-1" || !remote.ValidSessionID(ra.SessionID) {
		t.Fatalf("queued %+v for %+v", ra, rr)
	}
	// The engineer waits; the device connects; bytes flow both ways.
	engCh := make(chan io.ReadWriteCloser, 1)
	go func() {
		c, err := f.cli.Connect(ctx, rr.SessionID, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		engCh <- c
	}()
	time.Sleep(50 * time.Millisecond)
	dev, err := f.dialAsDevice(t, "SYS-1", ra.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	eng := <-engCh
	if eng == nil {
		t.FailNow()
	}
	fmt.Fprintln(eng, "to device")
	line, _ := bufio.NewReader(dev).ReadString('\n')
	fmt.Fprintln(dev, "to engineer")
	back, _ := bufio.NewReader(eng).ReadString('\n')
	if line != "to device\n" || back != "to engineer\n" {
		t.Fatalf("%q %q", line, back)
	}
	s, _ := f.relay.Session(rr.SessionID)
	if !s.DeviceConnected() {
		t.Fatal("session not marked connected")
	}
	// The device ends the session: the engineer's side closes.
	dev.Close()
	if _, err := io.ReadAll(eng); err != nil {
		t.Fatalf("engineer side: %v", err)
	}
	if st := f.relay.Stats(); st.Accepted != 1 || st.Bridged != 1 || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDeviceRefusals(t *testing.T) {
	f := newFixture(t, "")
	s, err := f.relay.RequestAccess(AccessRequest{SystemID: "SYS-1", Service: "ssh", Requester: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		system, session, want string
	}{
		{"SYS-2", s.ID, "the session is for another device"},
		{"SYS-1", "no-such-session", "no such session"},
	}
	for _, c := range cases {
		_, err := f.dialAsDevice(t, c.system, c.session)
		var re *remote.RefusedError
		if !errors.As(err, &re) || re.Reason != c.want {
			t.Errorf("%+v: %v", c, err)
		}
	}
	// No client certificate: the TLS handshake fails.
	if _, err := f.dialAsDevice(t, "", s.ID); err == nil {
		t.Error("a device without a certificate got through")
	}
	// A certificate from another CA.
	other := testpki.NewCA(t, "other")
	cfg := &tls.Config{RootCAs: f.ca.Pool, Certificates: []tls.Certificate{other.Device(t, "SYS-1")}, ServerName: "127.0.0.1"}
	if c, err := tls.Dial("tcp", f.relay.Addr(), cfg); err == nil {
		if err := remote.WriteHello(c, s.ID); err == nil {
			if err := remote.ReadReply(c); err == nil {
				t.Error("a certificate from another CA got through")
			}
		}
		c.Close()
	}
	// The right device, once; a second connection is refused.
	c1, err := f.dialAsDevice(t, "SYS-1", s.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := f.dialAsDevice(t, "SYS-1", s.ID); err == nil || !strings.Contains(err.Error(), "already connected") {
		t.Fatalf("second connection: %v", err)
	}
	if st := f.relay.Stats(); st.Bridged != 1 || st.Refused != 3 || st.Authenticated != 4 || st.Accepted < 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSupportAPIErrors(t *testing.T) {
	f := newFixture(t, "tok")
	ctx := context.Background()
	noTok := *f.cli
	noTok.Token = "wrong"
	var ae *APIError
	if _, err := noTok.Request(ctx, AccessRequest{SystemID: "S", Service: "ssh", Requester: "a"}); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
	bad := []AccessRequest{
		{Service: "ssh", Requester: "a"},
		{SystemID: "S", Service: "SSH", Requester: "a"},
		{SystemID: "S", Service: "ssh"},
		{SystemID: "S", Service: "ssh", Requester: "a", ServiceRequest: strings.Repeat("9", 65)},
	}
	for _, b := range bad {
		if _, err := f.cli.Request(ctx, b); !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("%+v: %v", b, err)
		}
	}
	if _, err := f.cli.Connect(ctx, "nope", time.Second); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown session: %v", err)
	}
	// Nobody connects within the wait.
	rr, err := f.cli.Request(ctx, AccessRequest{SystemID: "SYS-9", Service: "ssh", Requester: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.Connect(ctx, rr.SessionID, time.Second); !errors.As(err, &ae) || ae.Status != 504 {
		t.Fatalf("no device: %v", err)
	}
	// The device refuses: the engineer hears why at once.
	rr2, _ := f.cli.Request(ctx, AccessRequest{SystemID: "SYS-9", Service: "ssh", Requester: "a"})
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.q.setResult(work.Result{ID: rr2.WorkID, Detail: "remote session refused: denied by uid:0(root)"})
	}()
	start := time.Now()
	if _, err := f.cli.Connect(ctx, rr2.SessionID, 60*time.Second); !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "denied by uid:0(root)") {
		t.Fatalf("refused: %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("the refusal was not passed on at once")
	}
	s, _ := f.relay.Session(rr2.SessionID)
	if s.DeviceConnected() || f.relay.Stats().Accepted != 0 {
		t.Fatal("a connection was recorded")
	}
	// Status of a session.
	req, _ := http.NewRequest(http.MethodGet, f.api.URL+"/v1/support/access/"+rr2.SessionID, nil)
	resp, err := f.cli.do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %v %v", err, resp)
	}
	resp.Body.Close()

	f.q.fail = errors.New("queue full")
	if _, err := f.cli.Request(ctx, AccessRequest{SystemID: "S", Service: "ssh", Requester: "a"}); err == nil || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("enqueue failure: %v", err)
	}
	if _, err := New(Options{ClientCAs: f.ca.Pool}); err == nil {
		t.Fatal("a relay without Enqueue")
	}
}
