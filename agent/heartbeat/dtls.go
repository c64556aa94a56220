package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"
)

// rebindConn is the UDP socket under the DTLS session. It can move to a
// new socket (a new source port, and whatever source address routing now
// picks) while pion keeps its session: after a network change the agent
// rebinds, and the next record, carrying the session's connection ID,
// tells the backend where the device is now. No handshake is needed.
type rebindConn struct {
	listen func() (net.PacketConn, error)

	mu      sync.Mutex
	pc      net.PacketConn
	closed  bool
	readDL  time.Time
	writeDL time.Time
}

func newRebindConn(listen func() (net.PacketConn, error)) (*rebindConn, error) {
	pc, err := listen()
	if err != nil {
		return nil, err
	}
	return &rebindConn{listen: listen, pc: pc}, nil
}

func (c *rebindConn) current() (net.PacketConn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc, c.closed
}

// rebind moves to a fresh socket; a read blocked on the old one goes on
// on the new one.
func (c *rebindConn) rebind() error {
	pc, err := c.listen()
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		pc.Close()
		return net.ErrClosed
	}
	old := c.pc
	c.pc = pc
	_ = pc.SetReadDeadline(c.readDL)
	_ = pc.SetWriteDeadline(c.writeDL)
	c.mu.Unlock()
	return old.Close()
}

func (c *rebindConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		pc, closed := c.current()
		if closed {
			return 0, nil, net.ErrClosed
		}
		n, addr, err := pc.ReadFrom(b)
		if err == nil {
			return n, addr, nil
		}
		if now, closed := c.current(); now != pc && !closed {
			continue // rebound under us: read on the new socket
		}
		return n, addr, err
	}
}

func (c *rebindConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	pc, closed := c.current()
	if closed {
		return 0, net.ErrClosed
	}
	return pc.WriteTo(b, addr)
}

func (c *rebindConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.pc.Close()
}

func (c *rebindConn) LocalAddr() net.Addr {
	pc, _ := c.current()
	return pc.LocalAddr()
}

func (c *rebindConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *rebindConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	return c.pc.SetReadDeadline(t)
}

func (c *rebindConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeDL = t
	return c.pc.SetWriteDeadline(t)
}

// connectedPacket is a UDP socket connected to one peer, seen as a
// PacketConn: pion/dtls writes with WriteTo, which a connected socket
// refuses. Being connected, it receives only the peer's datagrams (the
// kernel filters the rest), so the device holds no UDP port that anyone
// else can reach. After a network change the heartbeat rebinds to a new
// connected socket, whose source address routing picks afresh; while the
// device has no route at all, connecting fails and the heartbeat keeps the
// old socket and its session until the next change brings a route.
//
// DialUDP makes one (the default under Options.ListenPacket; tests call it
// inside a network namespace).
type connectedPacket struct {
	*net.UDPConn
	peer *net.UDPAddr
}

func DialUDP(peer *net.UDPAddr) (net.PacketConn, error) {
	c, err := net.DialUDP("udp", nil, peer)
	if err != nil {
		return nil, err
	}
	return &connectedPacket{UDPConn: c, peer: peer}, nil
}

func (c *connectedPacket) WriteTo(b []byte, _ net.Addr) (int, error) {
	return c.UDPConn.Write(b)
}

// ReadFrom reads the peer's next datagram. A connected socket also
// reports the network's complaints about earlier sends (an ICMP port or
// host unreachable, the source address gone): those say nothing about the
// session, which the next datagram after a rebind resumes, so they are
// not passed up to end it.
func (c *connectedPacket) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, err := c.UDPConn.Read(b)
		if err != nil && transientUDP(err) {
			continue
		}
		return n, c.peer, err
	}
}

func transientUDP(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

// dtlsSession is one DTLS session with the backend.
type dtlsSession struct {
	conn        *dtls.Conn
	sock        *rebindConn
	established time.Time
	replies     chan []byte
	dead        chan error // the session ended (read error); buffered 1
	done        chan struct{}
}

// dialDTLS makes a session: a new socket, a full handshake (bounded by
// ctx) with connection IDs, and a reader goroutine.
func dialDTLS(ctx context.Context, addr string, cfg *dtls.Config, listen func() (net.PacketConn, error)) (*dtlsSession, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: resolve %s: %w", addr, err)
	}
	if listen == nil {
		listen = func() (net.PacketConn, error) { return DialUDP(raddr) }
	}
	sock, err := newRebindConn(listen)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: udp socket: %w", err)
	}
	conn, err := dtls.Client(sock, raddr, cfg) //nolint:staticcheck // tlsconf builds a *dtls.Config
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("heartbeat: dtls: %w", err)
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		sock.Close()
		return nil, fmt.Errorf("heartbeat: dtls handshake with %s: %w", addr, err)
	}
	st, ok := conn.ConnectionState()
	if !ok || len(st.PeerCertificates) == 0 {
		conn.Close()
		sock.Close()
		return nil, errors.New("heartbeat: dtls handshake: no state")
	}
	s := &dtlsSession{
		conn: conn, sock: sock, established: time.Now(),
		replies: make(chan []byte, 8), dead: make(chan error, 1), done: make(chan struct{}),
	}
	go s.readLoop()
	return s, nil
}

func (s *dtlsSession) readLoop() {
	defer close(s.done)
	buf := make([]byte, 8192)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			s.dead <- err
			return
		}
		select {
		case s.replies <- append([]byte(nil), buf[:n]...):
		default: // the agent is behind: drop, as the network might
		}
	}
}

// close ends the session (pion sends close_notify, so the backend can
// forget it) and waits for the reader.
func (s *dtlsSession) close() {
	s.conn.Close()
	s.sock.Close()
	<-s.done
}
