package failover

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/connecthome/sealed"
	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
	"github.com/dcagent/dcagent/sim/eventstore"
	"github.com/dcagent/dcagent/sim/faultproxy"
)

// world is a backend that has been unreachable for longer than the
// failover threshold (the fault proxy resets every connection), an agent,
// and the vendor's key pair.
type world struct {
	store  *eventstore.Store
	ca     *testpki.CA
	proxy  *faultproxy.TCP
	vendor *ecdh.PrivateKey
	opener *sealed.Opener
	sp     *spool.Spool
	up     *connecthome.Uploader
	stop   func()
}

const systemID = "SYS-FAILOVER-1"

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{ca: testpki.NewCA(t, "vendor CA")}
	st, err := eventstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w.store = st
	mux := http.NewServeMux()
	mux.Handle(wire.PathPrefix, st.Handler(eventstore.PeerCN))
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = tlsconf.Server(w.ca.Server(t), w.ca.Pool, true)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); st.Close() })
	w.proxy, err = faultproxy.NewTCP("127.0.0.1:0", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.proxy.Close() })
	w.proxy.SetMode(faultproxy.Reset) // the backend is unreachable
	w.vendor, _ = ecdh.X25519().GenerateKey(rand.Reader)
	w.opener = &sealed.Opener{Key: w.vendor, DeviceCAs: w.ca.Pool}
	return w
}

func (w *world) startAgent(t *testing.T, channels ...connecthome.Channel) {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp.SetSystemID(systemID)
	cert := w.ca.Device(t, systemID)
	tc, _ := tlsconf.Client(w.ca.Pool, &cert, "localhost")
	up, err := connecthome.NewWithOptions(connecthome.Options{
		BackendURL: "https://" + w.proxy.Addr().String(), RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond,
		RequestTimeout: 10 * time.Second, FailoverAfter: time.Second, Failover: channels, VendorKey: w.vendor.PublicKey(),
	}, sp, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { up.Run(ctx); close(done) }()
	var once sync.Once
	w.sp, w.up = sp, up
	w.stop = func() { once.Do(func() { cancel(); <-done; sp.Close() }) }
	t.Cleanup(w.stop)
}

func (w *world) putEvents(t *testing.T, n int) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	for i := 0; i < n; i++ {
		e := &event.Event{Type: event.TypeAlert, Severity: event.Severity(1 + i%5),
			Payload: map[string]any{"source": "drive", "message": fmt.Sprintf("secret-looking text %d", i)}}
		if err := w.sp.Put(e); err != nil {
			t.Fatal(err)
		}
		want[e.ID], _ = event.Marshal(e)
	}
	return want
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *world) checkStored(t *testing.T, want map[string][]byte, channel string) {
	t.Helper()
	for id, b := range want {
		r, ok := w.store.Get(id)
		if !ok {
			t.Fatalf("event %s not at the backend", id)
		}
		if !bytes.Equal(r.Data, b) || r.Channel != channel || r.SystemID != systemID {
			t.Fatalf("event %s: channel %s, system %s, same bytes %v", id, r.Channel, r.SystemID, bytes.Equal(r.Data, b))
		}
	}
}

// mainChannelReturns lets the backend through again and checks that the
// main channel takes over, and that an event already delivered by failover
// is recognised by id when it comes again over HTTPS.
func (w *world) mainChannelReturns(t *testing.T, failoverName string) {
	t.Helper()
	w.proxy.SetMode(faultproxy.Pass)
	w.up.Wake()
	again := w.store.Events()[0]
	ev, err := again.Event()
	if err != nil {
		t.Fatal(err)
	}
	before := w.store.Count()
	if err := w.sp.Put(ev); err != nil { // the same event once more
		t.Fatal(err)
	}
	more := w.putEvents(t, 3)
	waitFor(t, "the main channel to deliver", func() bool { return w.store.Count() == before+3 })
	w.checkStored(t, more, eventstore.ChannelHTTPS)
	waitFor(t, "an empty spool", func() bool { return w.sp.Len() == 0 })
	if r, _ := w.store.Get(again.ID); r.Channel != failoverName {
		t.Fatalf("re-sent event was stored again: %+v", r)
	}
	waitFor(t, "the uploader to see the main channel work", func() bool { return w.up.Status().FailingSince.IsZero() })
	st := w.up.Status()
	if st.Channel != "https" || st.InFailover {
		t.Fatalf("after the backend returned: %+v", st)
	}
}

func TestSMTPFailover(t *testing.T) {
	w := newWorld(t)
	relayCA := testpki.NewCA(t, "customer relay CA")
	relay, err := StartSMTP(relayCA.Server(t), true, "dcagent", "relay-secret", func(from string, to []string, data []byte) error {
		if _, _, err := w.store.IngestMessage(data, eventstore.ChannelSMTP, w.opener); err != nil {
			t.Logf("ingest: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	rtc, _ := tlsconf.Client(relayCA.Pool, nil, "localhost")
	w.startAgent(t, &connecthome.SMTPChannel{Addr: relay.Addr(), From: "dcagent@customer.test", To: "events@vendor.test",
		User: "dcagent", Password: "relay-secret", TLS: rtc})

	want := w.putEvents(t, 25)
	waitFor(t, "25 events by mail", func() bool { return w.store.Count() == 25 })
	w.checkStored(t, want, eventstore.ChannelSMTP)
	waitFor(t, "an empty spool", func() bool { return w.sp.Len() == 0 })
	st := w.up.Status()
	if st.Sent["smtp"] != 25 || !st.InFailover || st.FailingSince.IsZero() {
		t.Fatalf("status %+v", st)
	}
	// The relay saw nothing it could read.
	for _, m := range relay.Messages() {
		if bytes.Contains(m, []byte("secret-looking")) || bytes.Contains(m, []byte(systemID)) {
			t.Fatal("the relay can read the events or the device")
		}
	}
	w.mainChannelReturns(t, eventstore.ChannelSMTP)
}

func TestSMTPRelayWithoutSTARTTLSIsRefused(t *testing.T) {
	w := newWorld(t)
	relayCA := testpki.NewCA(t, "customer relay CA")
	relay, err := StartSMTP(relayCA.Server(t), false, "dcagent", "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	rtc, _ := tlsconf.Client(relayCA.Pool, nil, "localhost")
	w.startAgent(t, &connecthome.SMTPChannel{Addr: relay.Addr(), From: "a@customer.test", To: "b@vendor.test", User: "dcagent", Password: "pw", TLS: rtc})
	w.putEvents(t, 2)
	waitFor(t, "a failover error", func() bool { return strings.Contains(w.up.Status().LastError, "STARTTLS") })
	if len(relay.Messages()) != 0 || w.sp.Len() != 2 {
		t.Fatalf("sent in clear or lost: %d mails, %d in spool", len(relay.Messages()), w.sp.Len())
	}
}

func TestSMTPWrongPasswordKeepsEvents(t *testing.T) {
	w := newWorld(t)
	relayCA := testpki.NewCA(t, "customer relay CA")
	relay, err := StartSMTP(relayCA.Server(t), true, "dcagent", "right", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	rtc, _ := tlsconf.Client(relayCA.Pool, nil, "localhost")
	w.startAgent(t, &connecthome.SMTPChannel{Addr: relay.Addr(), From: "a@customer.test", To: "b@vendor.test", User: "dcagent", Password: "wrong", TLS: rtc})
	w.putEvents(t, 2)
	waitFor(t, "an authentication error", func() bool { return strings.Contains(w.up.Status().LastError, "authentication") })
	if strings.Contains(w.up.Status().LastError, "wrong") {
		t.Fatal("the password reached the error message")
	}
	if w.sp.Len() != 2 {
		t.Fatalf("%d events left in the spool, want 2", w.sp.Len())
	}
}

func TestFTPSFailover(t *testing.T) {
	w := newWorld(t)
	serverCA := testpki.NewCA(t, "customer FTPS CA")
	ftps, err := StartFTPS(t.TempDir(), serverCA.Server(t), "dcagent", "ftp-secret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ftps.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ftps.CollectLoop(ctx, 50*time.Millisecond, func(name string, data []byte) error {
		if bytes.Contains(data, []byte("secret-looking")) {
			t.Errorf("the FTPS server can read %s", name)
		}
		_, _, err := w.store.IngestMessage(data, eventstore.ChannelFTPS, w.opener)
		return err
	})
	ftc, _ := tlsconf.Client(serverCA.Pool, nil, "localhost")
	w.startAgent(t, &connecthome.FTPSChannel{Addr: ftps.Addr(), User: "dcagent", Password: "ftp-secret", TLS: ftc})

	want := w.putEvents(t, 25)
	waitFor(t, "25 events by FTPS", func() bool {
		if w.store.Count() == 25 {
			return true
		}
		if e := w.up.Status().LastError; e != "" && !strings.Contains(e, "reset") {
			t.Logf("last error: %s", e)
		}
		return false
	})
	w.checkStored(t, want, eventstore.ChannelFTPS)
	waitFor(t, "an empty spool", func() bool { return w.sp.Len() == 0 })
	if st := w.up.Status(); st.Sent["ftps"] != 25 {
		t.Fatalf("status %+v", st)
	}
	w.mainChannelReturns(t, eventstore.ChannelFTPS)
}

func TestFTPSWrongPasswordKeepsEvents(t *testing.T) {
	w := newWorld(t)
	serverCA := testpki.NewCA(t, "customer FTPS CA")
	ftps, err := StartFTPS(t.TempDir(), serverCA.Server(t), "dcagent", "right")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ftps.Close() })
	ftc, _ := tlsconf.Client(serverCA.Pool, nil, "localhost")
	w.startAgent(t, &connecthome.FTPSChannel{Addr: ftps.Addr(), User: "dcagent", Password: "wrong", TLS: ftc})
	w.putEvents(t, 2)
	waitFor(t, "a login error", func() bool { return strings.Contains(w.up.Status().LastError, "login") })
	if strings.Contains(w.up.Status().LastError, "wrong") || w.sp.Len() != 2 {
		t.Fatalf("status %+v, spool %d", w.up.Status(), w.sp.Len())
	}
}
