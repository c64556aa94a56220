package heartbeat

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
)

// LightClient is a stand-in device for load tests and the record-layer
// tests: it makes a real DTLS handshake with pion (the agent's own client
// configuration, certificate and connection ID), then sends heartbeats
// and reads replies with this package's record layer, so that ten
// thousand of them fit in one test process. The bytes on the wire are the
// same as the agent's: a connection-ID record each way.
//
// A LightClient is not safe for concurrent use, except that one goroutine
// may Send while another ReadReply.
type LightClient struct {
	SystemID string

	conn    *net.UDPConn
	rc      *recordCrypto
	sendSeq atomic.Uint64
	seq     atomic.Uint64
	window  replayWindow
	out     []byte
	in      []byte
}

// DialLight makes a DTLS session with the service at server using cfg
// (from tlsconf.DTLSClient), for the device systemID (the certificate's).
func DialLight(ctx context.Context, server *net.UDPAddr, cfg *dtls.Config, systemID string) (*LightClient, error) {
	conn, err := net.DialUDP("udp", nil, server)
	if err != nil {
		return nil, fmt.Errorf("light client %s: %w", systemID, err)
	}
	dc := &detachConn{UDPConn: conn}
	pc, err := dtls.Client(dc, server, cfg) //nolint:staticcheck // tlsconf builds a *dtls.Config
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("light client %s: %w", systemID, err)
	}
	if err := pc.HandshakeContext(ctx); err != nil {
		pc.Close()
		conn.Close()
		return nil, fmt.Errorf("light client %s: handshake: %w", systemID, err)
	}
	st, err := exportConn(pc)
	if err == nil && len(st.RemoteConnectionID) == 0 {
		err = errors.New("service gave no connection ID")
	}
	var rc *recordCrypto
	if err == nil {
		rc, err = newRecordCrypto(st)
	}
	// Let pion go without a word: it must not send close_notify for a
	// session that lives on.
	dc.detach()
	pc.Close()
	dc.waitReaders()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("light client %s: %w", systemID, err)
	}
	c := &LightClient{SystemID: systemID, conn: conn, rc: rc, out: make([]byte, 0, 2048), in: make([]byte, 2048)}
	c.sendSeq.Store(st.SequenceNumber + seqMargin)
	c.seq.Store(uint64(time.Now().Unix()))
	return c, nil
}

// NewHeartbeat returns the next heartbeat: a new sequence number and nonce.
func (c *LightClient) NewHeartbeat() *hb.Heartbeat {
	h := &hb.Heartbeat{Seq: c.seq.Add(1), Nonce: make([]byte, hb.NonceSize)}
	rand.Read(h.Nonce)
	return h
}

// Send sends one heartbeat and returns the datagram's size.
func (c *LightClient) Send(h *hb.Heartbeat) (int, error) {
	enc, err := hb.EncodeHeartbeat(h)
	if err != nil {
		return 0, err
	}
	c.out = c.rc.seal(c.out[:0], ctApplicationData, c.sendSeq.Add(1), enc)
	return c.conn.Write(c.out)
}

// SendRaw sends bytes as they are (tests of replays and forgeries).
func (c *LightClient) SendRaw(b []byte) error {
	_, err := c.conn.Write(b)
	return err
}

// LastSent returns a copy of the last datagram Send sent.
func (c *LightClient) LastSent() []byte { return bytes.Clone(c.out) }

// ReadReply reads the next reply, until deadline (zero: no deadline), and
// returns it with the datagram's size. Records that fail authentication
// or replay checks are skipped, as the agent does.
func (c *LightClient) ReadReply(deadline time.Time) (*hb.Reply, int, error) {
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return nil, 0, err
	}
	for {
		n, err := c.conn.Read(c.in)
		if err != nil {
			return nil, 0, err
		}
		rest := c.in[:n]
		for len(rest) > 0 {
			r, next, err := parseRecord(rest, 0)
			if err != nil {
				break
			}
			rest = next
			if r.epoch != 1 || !c.window.fresh(r.seq) {
				continue
			}
			ct, payload, err := c.rc.open(r)
			if err != nil {
				continue
			}
			c.window.accept(r.seq)
			if ct != ctApplicationData {
				continue
			}
			reply, err := hb.DecodeReply(payload)
			if err != nil {
				return nil, n, err
			}
			return reply, n, nil
		}
	}
}

// Exchange sends h and waits up to timeout for the reply that echoes it.
func (c *LightClient) Exchange(h *hb.Heartbeat, timeout time.Duration) (reply *hb.Reply, sent, received int, err error) {
	if sent, err = c.Send(h); err != nil {
		return nil, 0, 0, err
	}
	want := hb.EchoFor(c.SystemID, h.Seq, h.Nonce)
	deadline := time.Now().Add(timeout)
	for {
		r, n, err := c.ReadReply(deadline)
		if err != nil {
			return nil, sent, received, err
		}
		received += n
		if bytes.Equal(r.Echo, want) {
			return r, sent, received, nil
		}
	}
}

// Rebind moves the client to a new socket (a new source port), as a NAT
// rebinding or an address change does; the session goes on, because the
// service finds it by connection ID.
func (c *LightClient) Rebind() error {
	nc, err := net.DialUDP("udp", nil, c.conn.RemoteAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	c.conn.Close()
	c.conn = nc
	return nil
}

// LocalAddr is the client's address as the service sees it on loopback.
func (c *LightClient) LocalAddr() *net.UDPAddr { return c.conn.LocalAddr().(*net.UDPAddr) }

// Close closes the socket; the service forgets the session when it idles.
func (c *LightClient) Close() error { return c.conn.Close() }

// detachConn is the connected UDP socket pion's client runs on during the
// handshake; once detached, pion's writes go nowhere and its reads end,
// and the socket stays open for the record layer.
type detachConn struct {
	*net.UDPConn
	detached atomic.Bool
	readers  atomic.Int32
}

func (d *detachConn) detach() {
	d.detached.Store(true)
	_ = d.UDPConn.SetReadDeadline(time.Unix(1, 0))
}

// waitReaders waits (a second at most) until pion's reader has left
// ReadFrom, then clears the deadline that made it leave.
func (d *detachConn) waitReaders() {
	for i := 0; i < 1000 && d.readers.Load() > 0; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = d.UDPConn.SetReadDeadline(time.Time{})
}

func (d *detachConn) ReadFrom(b []byte) (int, net.Addr, error) {
	d.readers.Add(1)
	defer d.readers.Add(-1)
	if d.detached.Load() {
		return 0, nil, net.ErrClosed
	}
	n, err := d.UDPConn.Read(b)
	if d.detached.Load() {
		return 0, nil, net.ErrClosed
	}
	return n, d.UDPConn.RemoteAddr(), err
}

func (d *detachConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if d.detached.Load() {
		return len(b), nil
	}
	return d.UDPConn.Write(b)
}

func (d *detachConn) Close() error {
	if d.detached.Load() {
		return nil // the socket outlives pion
	}
	return d.UDPConn.Close()
}

func (d *detachConn) SetReadDeadline(t time.Time) error {
	if d.detached.Load() {
		return nil
	}
	return d.UDPConn.SetReadDeadline(t)
}

func (d *detachConn) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }
