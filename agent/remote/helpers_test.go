package remote

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
	"github.com/fxamacker/cbor/v2"
)

// testRelay is a minimal relay for unit tests (agent tests may not use
// sim/; sim/relay is tested with this package end to end in its own
// tests). It counts every TCP connection it accepts, checks the session id
// against the ones it was told, and hands each session to the test.
type testRelay struct {
	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	sessions map[string]chan net.Conn
}

func startRelay(t *testing.T, ca *testpki.CA) *testRelay {
	t.Helper()
	r := &testRelay{sessions: map[string]chan net.Conn{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.ln = ln
	cfg := tlsconf.Server(ca.Server(t), ca.Pool, true)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.accepted.Add(1)
			go func() {
				tc := tls.Server(c, cfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					c.Close()
					return
				}
				id, err := ReadHello(tc)
				if err != nil {
					WriteReply(tc, err)
					tc.Close()
					return
				}
				r.mu.Lock()
				ch, ok := r.sessions[id]
				r.mu.Unlock()
				if !ok {
					WriteReply(tc, errors.New("no such session"))
					tc.Close()
					return
				}
				WriteReply(tc, nil)
				c.SetDeadline(time.Time{})
				ch <- tc
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *testRelay) expect(id string) chan net.Conn {
	ch := make(chan net.Conn, 1)
	r.mu.Lock()
	r.sessions[id] = ch
	r.mu.Unlock()
	return ch
}

// echoService is a local TCP service that answers every line in upper
// case, or closes after a line "bye".
func echoService(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if sc.Text() == "bye" {
						return
					}
					fmt.Fprintln(c, strings.ToUpper(sc.Text()))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// memSink stands in for the spool: it fills what the spool fills and
// checks each event against the reportable-items registry.
type memSink struct {
	mu     sync.Mutex
	events []*event.Event
}

func (s *memSink) Put(e *event.Event) error {
	e.ID, e.SystemID = event.NewID(), "SYS-TEST"
	if _, err := event.Marshal(e); err != nil {
		return err
	}
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	return nil
}

func (s *memSink) all() []*event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*event.Event(nil), s.events...)
}

type fixture struct {
	dir      string
	ca       *testpki.CA
	relay    *testRelay
	log      *audit.Log
	pol      *policy.Engine
	m        *Manager
	sink     *memSink
	vendor   crypto.Signer
	cfg      config.Remote
	echoAddr string
}

// newFixture makes a manager with a policy from rules and a service "echo".
func newFixture(t *testing.T, rules string, tweak func(*config.Remote)) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), ca: testpki.NewCA(t, "vendor CA"), sink: &memSink{}}
	f.relay = startRelay(t, f.ca)
	f.echoAddr = echoService(t)
	var err error
	f.log, err = audit.Open(audit.Options{Dir: filepath.Join(f.dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	pf := filepath.Join(f.dir, "local.policy")
	os.WriteFile(pf, []byte("dcagent-policy 1\nversion 1\n"+rules), 0o600)
	pc := config.Default().Policy
	pc.File = pf
	pc.AskTimeout = 2 * time.Second
	f.pol, err = policy.New(policy.Options{Config: pc, StateDir: f.dir, Audit: f.log})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = config.Default().Remote
	f.cfg.Services = map[string]string{"echo": f.echoAddr}
	f.cfg.IdleTimeout = 300 * time.Millisecond
	f.cfg.MaxDuration = time.Minute
	if tweak != nil {
		tweak(&f.cfg)
	}
	vk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.vendor = vk
	dev := f.ca.Device(t, "SYS-TEST")
	f.m, err = New(Options{
		Config: f.cfg, StateDir: f.dir, Policy: f.pol, Audit: f.log, Events: f.sink, VendorKey: vk.Public(),
		RelayTLS: func(name string) (*tls.Config, error) { return tlsconf.Client(f.ca.Pool, &dev, name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.m.Close() })
	return f
}

func item(kind work.Kind, body any) work.Item {
	b, err := cbor.Marshal(body)
	if err != nil {
		panic(err)
	}
	return work.Item{ID: "w-" + string(kind), Kind: kind, Body: b}
}

func (f *fixture) access(session, service string) work.Item {
	return item(work.KindRemoteAccess, work.RemoteAccess{SessionID: session, RelayAddr: f.relay.ln.Addr().String(), Service: service, Requester: "eng@vendor", ServiceRequest: "SR-77"})
}

func (f *fixture) records(t *testing.T, kinds ...string) []audit.Record {
	t.Helper()
	file, err := os.Open(f.log.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var out []audit.Record
	audit.Scan(file, func(_ int, r audit.Record, err error) error {
		for _, k := range kinds {
			if r.Kind == k {
				out = append(out, r)
			}
		}
		return nil
	})
	return out
}

// handleAsync runs Handle in the background.
func (f *fixture) handleAsync(it work.Item) chan work.Result {
	ch := make(chan work.Result, 1)
	go func() { ch <- f.m.Handle(context.Background(), it) }()
	return ch
}

func waitResult(t *testing.T, ch chan work.Result) work.Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("work item did not finish in 30s")
	}
	return work.Result{}
}

func engineerConn(t *testing.T, ch chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("the device did not reach the relay in 30s")
	}
	return nil
}
