package heartbeat

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// fixture is a service on loopback with a test CA.
type fixture struct {
	ca   *testpki.CA
	svc  *Service
	addr *net.UDPAddr
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	ca := testpki.NewCA(t, "test vendor CA")
	opts.Cert = ca.Server(t)
	opts.ClientCAs = ca.Pool
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	addr, err := svc.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ca: ca, svc: svc, addr: addr}
}

func (f *fixture) clientConfig(t testing.TB, cert tls.Certificate) *dtls.Config {
	t.Helper()
	cfg, err := tlsconf.DTLSClient(f.ca.Pool, cert, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (f *fixture) light(t testing.TB, systemID string) *LightClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := DialLight(ctx, f.addr, f.clientConfig(t, f.ca.Device(t, systemID)), systemID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecordLayerTalksToPion runs the agent's side exactly as the agent
// does (a pion client connection, the agent's configuration) against the
// service, whose established sessions use its own record layer: records
// must pass both ways, across several exchanges.
func TestRecordLayerTalksToPion(t *testing.T) {
	f := newFixture(t, Options{})
	cfg := f.clientConfig(t, f.ca.Device(t, "SYS-PION"))
	raddr := f.addr
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dtls.Client(pc, raddr, cfg) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := 1; i <= 5; i++ {
		h := &hb.Heartbeat{Seq: uint64(i), Nonce: []byte{1, 2, 3, byte(i)}}
		enc, _ := hb.EncodeHeartbeat(h)
		if _, err := conn.Write(enc); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		r, err := hb.DecodeReply(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if want := hb.EchoFor("SYS-PION", h.Seq, h.Nonce); !bytes.Equal(r.Echo, want) {
			t.Fatalf("exchange %d: echo %x, want %x", i, r.Echo, want)
		}
	}
	waitFor(t, "five heartbeats counted", func() bool { return f.svc.Stats().DTLSHeartbeats == 5 })
	st := f.svc.Stats()
	if st.Handshakes != 1 || st.Sessions != 1 {
		t.Fatalf("stats %+v: want 1 handshake, 5 heartbeats, 1 session", st)
	}
	waitFor(t, "no handshake left in progress", func() bool { return f.svc.Stats().PendingHandshakes == 0 })
}

func TestLightClientExchangeAndSizes(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-0001")
	h := c.NewHeartbeat()
	r, sent, recv, err := c.Exchange(h, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Work) != 0 {
		t.Fatalf("unexpected work %v", r.Work)
	}
	// Steady state: 13 bytes of heartbeat in a CID record (13+4 header,
	// 8 explicit nonce, 1 inner type, 16 tag); 7 bytes of reply in a plain
	// record (13 header, 8 nonce, 16 tag).
	if sent != 13+4+8+13+1+16 || recv != 13+8+7+16 {
		t.Fatalf("datagram sizes %d and %d, want %d and %d", sent, recv, 13+4+8+13+1+16, 13+8+7+16)
	}
	info, ok := f.svc.Device("SYS-0001")
	if !ok || info.LastSeq != h.Seq || info.Channel != ChannelDTLS || info.SessionID == 0 {
		t.Fatalf("device info %+v", info)
	}
}

func TestReplayedRecordIsDropped(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-REPLAY")
	if _, _, _, err := c.Exchange(c.NewHeartbeat(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	dgram := c.LastSent()
	waitFor(t, "the first heartbeat counted", func() bool { return f.svc.Stats().DTLSHeartbeats == 1 })
	before := f.svc.Stats()
	if err := c.SendRaw(dgram); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replay counted", func() bool { return f.svc.Stats().Replays == before.Replays+1 })
	if _, _, err := c.ReadReply(time.Now().Add(300 * time.Millisecond)); err == nil {
		t.Fatal("the service answered a replayed record")
	}
	if got := f.svc.Stats().DTLSHeartbeats; got != before.DTLSHeartbeats {
		t.Fatalf("heartbeats %d after replay, want %d", got, before.DTLSHeartbeats)
	}
}

func TestTamperedRecordIsDropped(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-TAMPER")
	h := c.NewHeartbeat()
	if _, err := c.Send(h); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadReply(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(c.NewHeartbeat()); err != nil {
		t.Fatal(err)
	}
	// Drain that reply, then send a copy of the record with a bit flipped
	// in the ciphertext and a fresh sequence number.
	if _, _, err := c.ReadReply(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	d := c.LastSent()
	d[10]++           // sequence number: past the replay window
	d[len(d)-20] ^= 1 // ciphertext
	before := f.svc.Stats().BadRecords
	c.SendRaw(d)
	waitFor(t, "bad record counted", func() bool { return f.svc.Stats().BadRecords == before+1 })
}

// TestAddressChangeKeepsSession moves a device to a new source port: the
// service finds the session by connection ID, answers at the new address,
// and makes no new handshake.
func TestAddressChangeKeepsSession(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-MOVE")
	if _, _, _, err := c.Exchange(c.NewHeartbeat(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	old := c.LocalAddr().String()
	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	if c.LocalAddr().String() == old {
		t.Fatal("rebind kept the port")
	}
	if _, _, _, err := c.Exchange(c.NewHeartbeat(), 10*time.Second); err != nil {
		t.Fatalf("after the move: %v", err)
	}
	st := f.svc.Stats()
	if st.Handshakes != 1 || st.AddressChanges != 1 {
		t.Fatalf("stats %+v: want 1 handshake and 1 address change", st)
	}
	info, _ := f.svc.Device("SYS-MOVE")
	if info.Addr != c.LocalAddr().String() {
		t.Fatalf("service has %s, client is at %s", info.Addr, c.LocalAddr())
	}
}

func TestUnknownConnectionIDIsIgnored(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-CID")
	c.Exchange(c.NewHeartbeat(), 10*time.Second)
	d := c.LastSent()
	d[11] ^= 0xff // connection ID
	before := f.svc.Stats().UnknownSessions
	c.SendRaw(d)
	waitFor(t, "unknown session counted", func() bool { return f.svc.Stats().UnknownSessions == before+1 })
}

func TestWorkDeliveredAckedAndResultStored(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-WORK")
	item := work.Item{ID: "w-1", Kind: work.KindCollectNow}
	if err := f.svc.Enqueue("SYS-WORK", item); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Enqueue("SYS-WORK", item); !errors.Is(err, ErrDuplicateItem) {
		t.Fatalf("second enqueue of the same id: %v, want ErrDuplicateItem", err)
	}
	r, _, _, err := c.Exchange(c.NewHeartbeat(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Work) != 1 || r.Work[0].ID != "w-1" {
		t.Fatalf("reply work %v", r.Work)
	}
	// Not acknowledged: it comes again.
	r, _, _, _ = c.Exchange(c.NewHeartbeat(), 10*time.Second)
	if len(r.Work) != 1 {
		t.Fatalf("unacknowledged item not sent again: %v", r.Work)
	}
	h := c.NewHeartbeat()
	h.Acks = []string{"w-1"}
	h.Results = []work.Result{{ID: "w-1", OK: true, Detail: "collected"}}
	r, _, _, _ = c.Exchange(h, 10*time.Second)
	if len(r.Work) != 0 || len(r.Done) != 1 || r.Done[0] != "w-1" {
		t.Fatalf("after ack: work %v done %v", r.Work, r.Done)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := f.svc.WaitResult(ctx, "SYS-WORK", "w-1")
	if err != nil || !res.OK || res.Detail != "collected" {
		t.Fatalf("result %+v, %v", res, err)
	}
	if err := f.svc.Enqueue("SYS-WORK", item); !errors.Is(err, ErrDuplicateItem) {
		t.Fatalf("enqueue of a finished id: %v, want ErrDuplicateItem", err)
	}
	if st := f.svc.Stats(); st.ItemsDelivered != 1 || st.Results != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBigWorkIsAnnouncedForHTTPS(t *testing.T) {
	f := newFixture(t, Options{})
	c := f.light(t, "SYS-BIG")
	body := make([]byte, 3000)
	rand.Read(body)
	f.svc.Enqueue("SYS-BIG", work.Item{ID: "small", Kind: work.KindCollectNow})
	f.svc.Enqueue("SYS-BIG", work.Item{ID: "big", Kind: work.KindFilePut, Body: body})
	r, _, recv, err := c.Exchange(c.NewHeartbeat(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Work) != 1 || r.Work[0].ID != "small" || !r.More {
		t.Fatalf("reply work %v more %v", r.Work, r.More)
	}
	if recv > 1200 {
		t.Fatalf("reply datagram of %d bytes", recv)
	}
}

func TestDeviceFromAnotherCAIsRefused(t *testing.T) {
	f := newFixture(t, Options{HandshakeTimeout: 3 * time.Second})
	other := testpki.NewCA(t, "someone else")
	cfg := f.clientConfig(t, other.Device(t, "SYS-EVIL"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := DialLight(ctx, f.addr, cfg, "SYS-EVIL"); err == nil {
		t.Fatal("a device certificate from another CA was accepted")
	}
	waitFor(t, "failure counted", func() bool { return f.svc.Stats().HandshakeFailures >= 1 })
	if st := f.svc.Stats(); st.Sessions != 0 || st.Handshakes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAuthenticateCertRefusal(t *testing.T) {
	f := newFixture(t, Options{
		HandshakeTimeout: 3 * time.Second,
		AuthenticateCert: func(c *x509.Certificate) (string, error) {
			return "", errors.New("revoked")
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := DialLight(ctx, f.addr, f.clientConfig(t, f.ca.Device(t, "SYS-REVOKED")), "SYS-REVOKED"); err == nil {
		t.Fatal("handshake succeeded although AuthenticateCert refused the device")
	}
}

// TestStaleDatagramsAreShed makes every datagram stale (ShedAfter of a
// nanosecond): the service reads them, drops them unanswered and counts
// them.
func TestStaleDatagramsAreShed(t *testing.T) {
	f := newFixture(t, Options{ShedAfter: time.Nanosecond})
	conn, err := net.DialUDP("udp", nil, f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 50; i++ {
		conn.Write([]byte("not a dtls record at all"))
	}
	waitFor(t, "50 datagrams shed", func() bool { return f.svc.Stats().Shed == 50 })
	if st := f.svc.Stats(); st.UnknownSessions != 0 || st.PendingHandshakes != 0 {
		t.Fatalf("shed datagrams were handled: %+v", st)
	}
}

// TestHandshakesBeyondTheLimitAreShed fills the handshake table with one
// handshake that never finishes; the next ClientHello is dropped.
func TestHandshakesBeyondTheLimitAreShed(t *testing.T) {
	f := newFixture(t, Options{MaxPendingHandshakes: 1, HandshakeTimeout: 20 * time.Second})
	hello := []byte{ctHandshake, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0}
	a, _ := net.DialUDP("udp", nil, f.addr)
	defer a.Close()
	a.Write(hello)
	waitFor(t, "one pending handshake", func() bool { return f.svc.Stats().PendingHandshakes == 1 })
	b, _ := net.DialUDP("udp", nil, f.addr)
	defer b.Close()
	b.Write(hello)
	waitFor(t, "the second ClientHello shed", func() bool { return f.svc.Stats().HandshakesShed == 1 })
	if got := f.svc.Stats().PendingHandshakes; got != 1 {
		t.Fatalf("%d handshakes pending, want 1", got)
	}
}

// capturingConn records what a pion client writes.
type capturingConn struct {
	*net.UDPConn
	mu     sync.Mutex
	writes [][]byte
}

func (c *capturingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.UDPConn.WriteTo(b, addr)
}

func (c *capturingConn) last() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes[len(c.writes)-1]
}

// TestLostLastFlightIsSentAgain: when a device retransmits its last
// handshake flight (ours was lost), the service, which has let pion go,
// sends its kept last flight again; after the first heartbeat it keeps
// nothing.
func TestLostLastFlightIsSentAgain(t *testing.T) {
	f := newFixture(t, Options{})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cc := &capturingConn{UDPConn: pc}
	conn, err := dtls.Client(cc, f.addr, f.clientConfig(t, f.ca.Device(t, "SYS-FLIGHT"))) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	flight5 := cc.last()
	if flight5[0] != ctHandshake {
		t.Fatalf("last handshake datagram starts with type %d", flight5[0])
	}
	waitFor(t, "session promoted", func() bool { return f.svc.Stats().Handshakes == 1 })
	// The device sends its last flight again: the service answers.
	if _, err := pc.WriteTo(flight5, f.addr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "flight sent again", func() bool { return f.svc.Stats().FlightResends == 1 })

	// The first heartbeat ends the grace: a retransmission now is news
	// to nobody.
	enc, _ := hb.EncodeHeartbeat(&hb.Heartbeat{Seq: 1, Nonce: []byte{1, 2, 3, 4}})
	conn.Write(enc)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	before := f.svc.Stats().UnknownSessions
	pc.WriteTo(flight5, f.addr)
	waitFor(t, "the late retransmission ignored", func() bool { return f.svc.Stats().UnknownSessions > before })
	if got := f.svc.Stats().FlightResends; got != 1 {
		t.Fatalf("%d flights sent again, want 1", got)
	}
}
