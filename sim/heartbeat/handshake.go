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
// to the service's record layer. pion is detached before the move, so no
// record of pion's can follow; the margin keeps AES-GCM nonces apart
// even if that ever changed.
const seqMargin = 1 << 24

// handshakeGrace is how long a new session remembers its last handshake
// flight (ChangeCipherSpec and Finished), to send it again if the device
// retransmits its own last flight because ours was lost. The device's
// first heartbeat ends the grace sooner.
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
	udp     *net.UDPConn // the socket the handshake came in on
	started time.Time
	pushes  atomic.Int32
	// finished is set when the client's Finished has been verified; from
	// then on a datagram starting with a connection-ID record is the
	// device's first heartbeat, not part of the handshake, and what pion
	// writes is the last flight.
	finished atomic.Bool
	systemID atomic.Pointer[string]

	mu         sync.Mutex
	lastFlight []byte   // the last datagram pion wrote after finished
	sess       *session // set when the session moved to the record layer
	early      [][]byte // heartbeats that came before that
}

// isClientHello says whether the datagram starts with an epoch-0
// handshake record holding a ClientHello.
func isClientHello(b []byte) bool {
	return len(b) > recordHeaderLen && b[0] == ctHandshake && b[3] == 0 && b[4] == 0 && b[recordHeaderLen] == 1
}

// handleUnrouted takes a datagram that names no live session: part of a
// handshake, a device's retransmitted last flight, or the first heartbeat
// of a session being promoted.
func (s *Service) handleUnrouted(w *worker, b []byte, from netip.AddrPort) {
	key := from.String()
	hello := isClientHello(b)
	s.hsMu.Lock()
	p := s.pending[key]
	if p == nil {
		if g := s.grace[key]; g != nil {
			if !hello {
				s.hsMu.Unlock()
				if b[0] == ctHandshake {
					s.resendFlight(g, from) // the device did not get our Finished
				} else {
					s.stats.unknown.Add(1)
				}
				return
			}
			// A new handshake from there: the device lost the session it
			// just made.
			delete(s.grace, key)
		}
		if !hello {
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
		if p.sess != nil {
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
		if p.finished.Load() {
			p.mu.Lock()
			p.lastFlight = append(p.lastFlight[:0], b...)
			p.mu.Unlock()
		}
		_, err := conn.WriteToUDPAddrPort(b, from)
		return err
	})
	s.pending[key] = p
	s.wg.Add(1)
	go s.runHandshake(p)
	return p
}

// runHandshake runs one handshake in pion and, when it succeeds, moves
// the session to the record layer and lets pion go.
func (s *Service) runHandshake(p *pendingHS) {
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
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.HandshakeTimeout)
	err = dc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.failHandshake(p, dc, err)
		return
	}
	// From here pion writes nothing more: its close_notify below, for a
	// session that lives on, goes nowhere.
	p.feed.detach()
	if err := s.promote(p, dc); err != nil {
		s.failHandshake(p, dc, err)
		return
	}
	dc.Close()
	p.feed.Close()
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

// promote moves a finished handshake to the record layer: it takes the
// keys from pion, registers the session under its connection ID, keeps
// the last flight for the grace period, and handles heartbeats that
// arrived while this happened.
func (s *Service) promote(p *pendingHS, dc *dtls.Conn) error {
	st, err := exportConn(dc)
	if err != nil {
		return err
	}
	if len(st.LocalConnectionID) != cidLen {
		return fmt.Errorf("device did not negotiate a connection ID (RFC 9146); got %d bytes", len(st.LocalConnectionID))
	}
	rc, err := newRecordCrypto(st)
	if err != nil {
		return err
	}
	idp := p.systemID.Load()
	if idp == nil {
		return errors.New("handshake finished without an authenticated device")
	}
	now := time.Now()
	p.mu.Lock()
	flight := p.lastFlight
	p.mu.Unlock()
	sess := &session{
		id:      binary.BigEndian.Uint32(st.LocalConnectionID),
		crypto:  rc,
		dev:     s.device(*idp),
		udp:     p.udp,
		addr:    p.addr,
		created: now,
		flight:  flight,
	}
	sess.inGrace.Store(flight != nil)
	sess.sendSeq.Store(st.SequenceNumber + seqMargin)
	sess.lastSeen.Store(now.UnixNano())

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

	s.hsMu.Lock()
	if s.pending[p.key] == p {
		delete(s.pending, p.key)
	}
	if flight != nil {
		sess.graceKey = p.key
		s.grace[p.key] = sess
	}
	s.hsMu.Unlock()

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
	return nil
}

// resendFlight answers a device's retransmitted last flight with ours,
// byte for byte (a DTLS retransmission is the same records again).
func (s *Service) resendFlight(sess *session, to netip.AddrPort) {
	sess.mu.Lock()
	f := sess.flight
	sess.mu.Unlock()
	if f == nil {
		return
	}
	if _, err := sess.udp.WriteToUDPAddrPort(f, to); err == nil {
		s.stats.flightResends.Add(1)
	}
}

// endGrace forgets a session's last flight: the device is done with the
// handshake (its first heartbeat came), or the grace is over.
func (s *Service) endGrace(sess *session) {
	if !sess.inGrace.Swap(false) {
		return
	}
	sess.mu.Lock()
	sess.flight = nil
	sess.mu.Unlock()
	s.hsMu.Lock()
	if s.grace[sess.graceKey] == sess {
		delete(s.grace, sess.graceKey)
	}
	s.hsMu.Unlock()
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
