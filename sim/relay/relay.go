// Package relay is the reference backend's remote-access relay. A support
// engineer asks for access to a device (RequestAccess, or POST
// /v1/support/access on SupportHandler); the relay makes a session, and the
// backend queues a work.RemoteAccess item for the device naming the session
// and this relay. If the device's policy allows it, the agent dials the
// relay over TLS with its device certificate and presents the session id
// (agent/remote's handshake); the relay checks that the certificate
// belongs to the device the session is for, and bridges the connection to
// the engineer's side.
//
// The relay keeps count of every TCP connection it accepts and records per
// session whether the device ever connected, so tests can show that a
// request that was denied, or never answered, never opened a connection.
// The device never accepts a connection: the relay is the one that
// listens.
package relay

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/fxamacker/cbor/v2"
)

// Options configure a Relay.
type Options struct {
	// Cert is the relay's TLS certificate; ClientCAs verifies device
	// certificates (the vendor CA).
	Cert      tls.Certificate
	ClientCAs *x509.CertPool
	// Authenticate maps a verified device certificate to its system ID
	// (sim/ca's AuthenticateCert; nil: the certificate's CommonName).
	Authenticate func(*x509.Certificate) (string, error)
	// Enqueue queues work for a device (sim/heartbeat's Service.Enqueue).
	Enqueue func(systemID string, item work.Item) error
	// WaitResult, when set, waits for a device's result for a work item
	// (sim/heartbeat's Service.WaitResult), so that an engineer waiting
	// for a device that refused is told at once why.
	WaitResult func(ctx context.Context, systemID, itemID string) (work.Result, error)
	// Addr is where devices connect; default 127.0.0.1:0.
	Addr string
	// AdvertiseAddr is the address put in work items; default the
	// listener's own.
	AdvertiseAddr string
	// SessionTTL is how long a session waits for its device; default 30m.
	SessionTTL time.Duration
	// SupportToken, when set, must come as "Authorization: Bearer TOKEN"
	// on the support API.
	SupportToken string
	Logger       *slog.Logger
}

// Stats counts what the relay saw.
type Stats struct {
	// Accepted is every TCP connection accepted on the device port.
	Accepted int64
	// Authenticated is every connection whose TLS handshake and device
	// authentication passed.
	Authenticated int64
	// Bridged is every device connection matched to a session.
	Bridged int64
	// Refused is every connection turned away after the TLS handshake.
	Refused int64
}

// Relay is the remote-access relay.
type Relay struct {
	opts   Options
	logger *slog.Logger
	ln     net.Listener
	tls    *tls.Config

	accepted, authenticated, bridged, refused atomic.Int64

	mu       sync.Mutex
	sessions map[string]*Session
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// AccessRequest is a support engineer's request.
type AccessRequest struct {
	SystemID       string `json:"system_id"`
	Service        string `json:"service"`
	Requester      string `json:"requester"`
	ServiceRequest string `json:"service_request"`
}

// Session is one requested session.
type Session struct {
	ID      string
	WorkID  string
	Request AccessRequest
	Created time.Time
	Expires time.Time

	device    chan net.Conn // the device's connection, once
	connected atomic.Bool
	taken     atomic.Bool
}

// DeviceConnected reports whether the device ever connected for this
// session.
func (s *Session) DeviceConnected() bool { return s.connected.Load() }

// New starts a relay listening for devices.
func New(opts Options) (*Relay, error) {
	if opts.ClientCAs == nil {
		return nil, errors.New("relay: no CA to verify device certificates with")
	}
	if opts.Enqueue == nil {
		return nil, errors.New("relay: no way to queue work for devices (Enqueue)")
	}
	if opts.Authenticate == nil {
		opts.Authenticate = func(c *x509.Certificate) (string, error) {
			if c.Subject.CommonName == "" {
				return "", errors.New("device certificate has no CommonName")
			}
			return c.Subject.CommonName, nil
		}
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 30 * time.Minute
	}
	r := &Relay{opts: opts, logger: opts.Logger, sessions: map[string]*Session{}}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.tls = tlsconf.Server(opts.Cert, opts.ClientCAs, true)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	r.ln = ln
	if r.opts.AdvertiseAddr == "" {
		r.opts.AdvertiseAddr = ln.Addr().String()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.acceptLoop()
	return r, nil
}

// Addr is the device-facing address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	return Stats{Accepted: r.accepted.Load(), Authenticated: r.authenticated.Load(), Bridged: r.bridged.Load(), Refused: r.refused.Load()}
}

// Close stops accepting and closes waiting sessions.
func (r *Relay) Close() error {
	r.cancel()
	err := r.ln.Close()
	r.wg.Wait()
	r.mu.Lock()
	for _, s := range r.sessions {
		select {
		case c := <-s.device:
			c.Close()
		default:
		}
	}
	r.mu.Unlock()
	return err
}

func newSessionID() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// RequestAccess makes a session and queues the request for the device.
func (r *Relay) RequestAccess(req AccessRequest) (*Session, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	s := &Session{ID: newSessionID(), Request: req, Created: time.Now(), device: make(chan net.Conn, 1)}
	s.Expires = s.Created.Add(r.opts.SessionTTL)
	s.WorkID = "ra-" + s.ID
	body, err := cbor.Marshal(work.RemoteAccess{SessionID: s.ID, RelayAddr: r.opts.AdvertiseAddr, Service: req.Service, Requester: req.Requester, ServiceRequest: req.ServiceRequest})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.expireLocked(time.Now())
	r.sessions[s.ID] = s
	r.mu.Unlock()
	if err := r.opts.Enqueue(req.SystemID, work.Item{ID: s.WorkID, Kind: work.KindRemoteAccess, Body: body}); err != nil {
		r.mu.Lock()
		delete(r.sessions, s.ID)
		r.mu.Unlock()
		return nil, fmt.Errorf("relay: queue the request for %s: %w", req.SystemID, err)
	}
	r.logger.Info("relay: access requested", "session", s.ID, "system_id", req.SystemID, "service", req.Service, "requester", req.Requester, "service_request", req.ServiceRequest)
	return s, nil
}

func checkRequest(req AccessRequest) error {
	switch {
	case req.SystemID == "" || len(req.SystemID) > 128 || strings.ContainsAny(req.SystemID, " \t\r\n"):
		return errors.New("relay: system_id must be 1-128 characters without spaces")
	case !validService(req.Service):
		return fmt.Errorf("relay: service %q is not 1-32 of a-z 0-9 _ -", req.Service)
	case req.Requester == "" || len(req.Requester) > 128:
		return errors.New("relay: requester must be 1-128 characters")
	case len(req.ServiceRequest) > 64:
		return errors.New("relay: service_request is longer than 64 characters")
	}
	return nil
}

func validService(s string) bool {
	return s != "" && len(s) <= 32 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == ""
}

// Session returns a session by id.
func (r *Relay) Session(id string) (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	return s, ok
}

func (r *Relay) expireLocked(now time.Time) {
	for id, s := range r.sessions {
		if now.After(s.Expires) && !s.connected.Load() {
			delete(r.sessions, id)
		}
	}
}

// AwaitDevice waits until the session's device connects and returns its
// connection (once; a second call fails), or until ctx ends or the session
// expires.
func (r *Relay) AwaitDevice(ctx context.Context, s *Session) (net.Conn, error) {
	if !s.taken.CompareAndSwap(false, true) {
		return nil, errors.New("relay: someone is already waiting for this session")
	}
	ttl := time.NewTimer(time.Until(s.Expires))
	defer ttl.Stop()
	select {
	case c := <-s.device:
		return c, nil
	case <-ctx.Done():
		s.taken.Store(false)
		return nil, ctx.Err()
	case <-ttl.C:
		return nil, fmt.Errorf("relay: the device did not connect for session %s before it expired", s.ID)
	case <-r.ctx.Done():
		return nil, errors.New("relay: shutting down")
	}
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.logger.Warn("relay: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		r.accepted.Add(1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serveDevice(c)
		}()
	}
}

// serveDevice authenticates a device connection and hands it to its
// session.
func (r *Relay) serveDevice(raw net.Conn) {
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	tc := tls.Server(raw, r.tls)
	if err := tc.HandshakeContext(r.ctx); err != nil {
		r.logger.Info("relay: device TLS handshake failed", "peer", raw.RemoteAddr(), "err", err)
		raw.Close()
		return
	}
	refuse := func(err error) {
		r.refused.Add(1)
		r.logger.Warn("relay: device connection refused", "peer", raw.RemoteAddr(), "err", err)
		remote.WriteReply(tc, err)
		tc.Close()
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		refuse(errors.New("no device certificate"))
		return
	}
	systemID, err := r.opts.Authenticate(certs[0])
	if err != nil {
		refuse(fmt.Errorf("device not recognised: %v", err))
		return
	}
	r.authenticated.Add(1)
	id, err := remote.ReadHello(tc)
	if err != nil {
		refuse(err)
		return
	}
	r.mu.Lock()
	s, ok := r.sessions[id]
	r.mu.Unlock()
	switch {
	case !ok:
		refuse(errors.New("no such session"))
		return
	case s.Request.SystemID != systemID:
		refuse(errors.New("the session is for another device"))
		return
	case time.Now().After(s.Expires):
		refuse(errors.New("the session has expired"))
		return
	case !s.connected.CompareAndSwap(false, true):
		refuse(errors.New("the device is already connected for this session"))
		return
	}
	if err := remote.WriteReply(tc, nil); err != nil {
		tc.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	r.bridged.Add(1)
	r.logger.Info("relay: device connected", "session", id, "system_id", systemID)
	s.device <- tc
}

// Bridge copies between the engineer's side and the device's connection
// until either ends, then closes both. It returns the bytes sent to the
// device and received from it.
func Bridge(engineer io.ReadWriteCloser, device net.Conn) (toDevice, fromDevice int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fromDevice, _ = io.Copy(engineer, device)
		engineer.Close()
	}()
	toDevice, _ = io.Copy(device, engineer)
	device.Close()
	wg.Wait()
	return toDevice, fromDevice
}
