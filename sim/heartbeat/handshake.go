package heartbeat

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
)

// seqMargin is added to pion's next sequence number when a session moves
// to the service's record layer. pion may still send a few records for
// the session (a retransmitted Finished while the handshake is in its
// grace period); starting far above them makes sure that no AES-GCM nonce
// is ever used twice.
const seqMargin = 1 << 24

// handshakeGrace is how long pion's side of a finished handshake is kept
// to answer a retransmitted client flight (its last flight was lost),
// unless the device's first heartbeat shows sooner that it is done.
const handshakeGrace = 10 * time.Second

// halfOpenAfter: a handshake that got only its first ClientHello this long
// ago (the cookie exchange never came back, as with a spoofed source) is
// evicted when the table is full.
const halfOpenAfter = time.Second

// pendingHS is one DTLS handshake in progress, run by pion on a feedConn.
type pendingHS struct {
	addr    netip.AddrPort
	key     string
	feed    *feedConn
	started time.Time
	pushes  atomic.Int32
	// finished is set when the client's Finished has been verified; from
	// then on a datagram starting with a connection-ID record is the
	// device's first heartbeat, not part of the handshake.
	finished atomic.Bool
	systemID atomic.Pointer[string]

	mu       sync.Mutex
	sess     *session // set when the session moved to the record layer
	early    [][]byte // heartbeats that came before that
	released bool
	dc       *dtls.Conn
	udp      *net.UDPConn // the socket the handshake came in on
}

// isClientHello says whether the datagram starts with an epoch-0
// handshake record holding a ClientHello.
func isClientHello(b []byte) bool {
	return len(b) > recordHeaderLen && b[0] == ctHandshake && b[3] == 0 && b[4] == 0 && b[recordHeaderLen] == 1
}

// handleUnrouted takes a datagram that names no live session: a handshake
// datagram (or the first heartbeat of a session being promoted).
func (s *Service) handleUnrouted(w *worker, b []byte, from netip.AddrPort) {
	key := from.String()
	s.hsMu.Lock()
	p := s.pending[key]
	if p != nil && isClientHello(b) && p.finished.Load() {
		// A new handshake from an address whose last one is done: the
		// device lost its session (restart). Let the old one go.
		delete(s.pending, key)
		s.hsMu.Unlock()
		s.releaseHandshake(p)
		s.hsMu.Lock()
		p = nil
	}
	if p == nil {
		if !isClientHello(b) {
			s.hsMu.Unlock()
			s.stats.unknown.Add(1)
			return
		}
		if len(s.pending) >= s.opts.MaxPendingHandshakes && !s.evictHalfOpenLocked(w.now) {
			s.hsMu.Unlock()
			s.stats.hsShed.Add(1)
			return
		}
		p = s.newPendingLocked(w.conn, from, key, w.now)
	}
	s.hsMu.Unlock()

	if b[0] == ctConnectionID && p.finished.Load() {
		p.mu.Lock()
		if sess := p.sess; sess != nil {
			// The session is in the table already; its own connection ID
			// would have found it there.
			p.mu.Unlock()
			s.stats.unknown.Add(1)
			return
		}
		if len(p.early) < 4 {
			p.early = append(p.early, append([]byte(nil), b...))
		}
		p.mu.Unlock()
		return
	}
	p.pushes.Add(1)
	p.feed.push(b)
}

// evictHalfOpenLocked drops the oldest handshake that never got past its
// first ClientHello, if one is old enough; s.hsMu is held.
func (s *Service) evictHalfOpenLocked(now time.Time) bool {
	var victim *pendingHS
	for _, p := range s.pending {
		if p.pushes.Load() <= 1 && now.Sub(p.started) > halfOpenAfter && (victim == nil || p.started.Before(victim.started)) {
			victim = p
		}
	}
	if victim == nil {
		return false
	}
	delete(s.pending, victim.key)
	victim.feed.Close()
	return true
}

func (s *Service) newPendingLocked(conn *net.UDPConn, from netip.AddrPort, key string, now time.Time) *pendingHS {
	remote := net.UDPAddrFromAddrPort(from)
	p := &pendingHS{addr: from, key: key, started: now, udp: conn}
	p.feed = newFeedConn(conn.LocalAddr(), remote, func(b []byte) error {
		_, err := conn.WriteToUDPAddrPort(b, from)
		return err
	})
	s.pending[key] = p
	s.wg.Add(1)
	go s.runHandshake(conn, p)
	return p
}

// runHandshake runs one handshake in pion and, when it succeeds, moves
// the session to the record layer.
func (s *Service) runHandshake(conn *net.UDPConn, p *pendingHS) {
	defer s.wg.Done()
	cfg := *s.dtlsCfg
	cfg.VerifyConnection = func(st *dtls.State) error {
		if len(st.PeerCertificates) == 0 {
			return errors.New("no device certificate")
		}
		cert, err := x509.ParseCertificate(st.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("device certificate: %w", err)
		}
		id, err := s.authenticateCert(cert)
		if err != nil {
			return err
		}
		p.systemID.Store(&id)
		p.finished.Store(true)
		return nil
	}
	dc, err := dtls.Server(p.feed, p.feed.remote, &cfg) //nolint:staticcheck // tlsconf builds a *dtls.Config
	if err != nil {
		s.failHandshake(p, nil, err)
		return
	}
	p.mu.Lock()
	p.dc = dc
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.HandshakeTimeout)
	err = dc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.failHandshake(p, dc, err)
		return
	}
	sess, err := s.promote(p, dc)
	if err != nil {
		s.failHandshake(p, dc, err)
		return
	}

	// Keep pion for the grace period, in case the device retransmits its
	// last flight, unless the first heartbeat shows it is done.
	t := time.NewTimer(handshakeGrace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sess.firstBeat:
	case <-s.ctx.Done():
	}
	s.hsMu.Lock()
	if s.pending[p.key] == p {
		delete(s.pending, p.key)
	}
	s.hsMu.Unlock()
	s.releaseHandshake(p)
}

func (s *Service) failHandshake(p *pendingHS, dc *dtls.Conn, err error) {
	s.stats.hsFailures.Add(1)
	s.hsMu.Lock()
	if s.pending[p.key] == p {
		delete(s.pending, p.key)
	}
	s.hsMu.Unlock()
	if s.ctx.Err() == nil {
		s.log.Debug("dtls handshake failed", "peer", p.addr.String(), "err", err)
	}
	if dc != nil {
		dc.Close()
	}
	p.feed.Close()
}

// releaseHandshake lets pion's side of a promoted handshake go, without a
// word on the wire.
func (s *Service) releaseHandshake(p *pendingHS) {
	p.mu.Lock()
	if p.released {
		p.mu.Unlock()
		return
	}
	p.released = true
	dc, sess := p.dc, p.sess
	p.mu.Unlock()
	p.feed.detach()
	if sess != nil {
		sess.hs.Store(nil)
	}
	if dc != nil {
		dc.Close()
	}
	p.feed.Close()
}

// promote moves a finished handshake to the record layer: it takes the
// keys from pion, registers the session under its connection ID, and
// replays heartbeats that arrived while this happened.
func (s *Service) promote(p *pendingHS, dc *dtls.Conn) (*session, error) {
	st, err := exportConn(dc)
	if err != nil {
		return nil, err
	}
	if len(st.LocalConnectionID) != cidLen {
		return nil, fmt.Errorf("device did not negotiate a connection ID (RFC 9146); got %d bytes", len(st.LocalConnectionID))
	}
	rc, err := newRecordCrypto(st)
	if err != nil {
		return nil, err
	}
	idp := p.systemID.Load()
	if idp == nil {
		return nil, errors.New("handshake finished without an authenticated device")
	}
	now := time.Now()
	sess := &session{
		id:        binary.BigEndian.Uint32(st.LocalConnectionID),
		crypto:    rc,
		dev:       s.device(*idp),
		udp:       p.udp,
		addr:      p.addr,
		created:   now,
		firstBeat: make(chan struct{}),
	}
	sess.sendSeq.Store(st.SequenceNumber + seqMargin)
	sess.lastSeen.Store(now.UnixNano())
	sess.hs.Store(p)

	d := sess.dev
	d.mu.Lock()
	old := d.session
	d.session = sess
	d.mu.Unlock()
	if old != nil {
		s.sessions.Del(old.id)
	}
	s.stats.handshakes.Add(1) // before the session can answer anything
	s.sessions.Set(sess.id, sess)

	p.mu.Lock()
	p.sess = sess
	early := p.early
	p.early = nil
	p.mu.Unlock()
	if len(early) > 0 {
		w := s.newWorker(p.udp)
		for _, b := range early {
			w.now = time.Now()
			s.handleSession(w, sess, b, p.addr)
		}
	}
	return sess, nil
}

func (s *Service) authenticateCert(c *x509.Certificate) (string, error) {
	if s.opts.AuthenticateCert != nil {
		return s.opts.AuthenticateCert(c)
	}
	if c.Subject.CommonName == "" {
		return "", errors.New("device certificate has no CommonName (system ID)")
	}
	return c.Subject.CommonName, nil
}
