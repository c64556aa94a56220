// Package heartbeat is the reference backend's heartbeat service: it
// answers device heartbeats over DTLS 1.2 (one UDP socket for every
// device) and over HTTPS with long polling (POST /v1/heartbeat, mounted by
// the backend on its HTTPS server), keeps a work queue per device and
// delivers each item until the device acknowledges it by id.
//
// Design for ten thousand devices on two cores:
//
//   - One UDP socket, read by a few goroutines that each handle a datagram
//     from start to reply; no goroutine per device.
//   - DTLS handshakes run in pion/dtls, fed from the shared socket. When a
//     handshake is done the session's record keys are taken out of pion,
//     and pion's connection is dropped at once (its last flight is kept a
//     few seconds, to be sent again if the device missed it); established
//     sessions are served by this package's own AES-GCM record layer
//     (record.go).
//   - Sessions are found by their connection ID (RFC 9146), a numeric
//     session id, in a lock-free cornelk/hashmap; a device whose address
//     or port changes keeps its session without a new handshake.
//   - Overload is shed, not queued: a datagram that waited in the socket
//     longer than ShedAfter is dropped unread, new handshakes beyond
//     MaxPendingHandshakes are dropped (devices retry with back-off), and
//     long polls beyond MaxLongPolls are answered at once.
//
// The wire messages are agent/heartbeat's (Heartbeat, Reply).
package heartbeat

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cornelk/hashmap"
	"github.com/pion/dtls/v3"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// Channel names how a heartbeat arrived.
type Channel string

const (
	ChannelDTLS  Channel = "dtls"
	ChannelHTTPS Channel = "https"
)

// Options configures a Service. The zero value of every field but Cert
// and ClientCAs (needed only for DTLS) is usable.
type Options struct {
	// Cert is the service's DTLS certificate.
	Cert tls.Certificate
	// ClientCAs verifies device certificates on DTLS.
	ClientCAs *x509.CertPool
	// AuthenticateCert maps a verified device certificate to its system
	// ID (DTLS). nil: the certificate's CommonName. The backend passes
	// sim/ca's AuthenticateCert.
	AuthenticateCert func(*x509.Certificate) (string, error)
	// Authenticate maps an HTTPS request to a system ID. nil: the
	// CommonName of the verified client certificate. The backend passes
	// sim/ca's Authenticate.
	Authenticate func(*http.Request) (string, error)
	// Logger; nil discards.
	Logger *slog.Logger

	// SessionIdle: a DTLS session silent this long is forgotten (the
	// device then makes a new one). 0 means 15 minutes.
	SessionIdle time.Duration
	// MaxPendingHandshakes bounds DTLS handshakes in progress; a
	// ClientHello beyond it is dropped. 0 means 256.
	MaxPendingHandshakes int
	// HandshakeTimeout bounds one DTLS handshake. 0 means 10 s.
	HandshakeTimeout time.Duration
	// ShedAfter: a datagram that waited longer than this in the socket's
	// queue is dropped unread, because the device has given up on it and
	// answering would only delay fresh ones. 0 means 1 s; negative never
	// sheds.
	ShedAfter time.Duration
	// MaxWait caps an HTTPS long poll. 0 means 120 s.
	MaxWait time.Duration
	// MaxLongPolls bounds HTTPS requests held at once; beyond it requests
	// are answered without waiting. 0 means 20000.
	MaxLongPolls int
	// Readers is the number of goroutines reading the UDP socket. 0 means
	// GOMAXPROCS.
	Readers int
	// ReadBuffer is the UDP socket's receive buffer in bytes (as far as
	// the kernel allows). 0 means 4 MiB.
	ReadBuffer int
}

// Service is the heartbeat service. Make one with New; it serves DTLS
// after ListenUDP or ServeUDP, and HTTPS through Handler.
type Service struct {
	opts    Options
	log     *slog.Logger
	dtlsCfg *dtls.Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessions *hashmap.Map[uint32, *session]
	cidCount atomic.Uint32
	cidKey   uint32

	hsMu    sync.Mutex
	pending map[string]*pendingHS // by remote address
	grace   map[string]*session   // new sessions keeping their last flight, by address

	devMu   sync.RWMutex
	devices map[string]*device

	subMu sync.Mutex
	subs  atomic.Pointer[[]chan Seen]

	connMu sync.Mutex
	conns  []*net.UDPConn
	closed bool

	longPolls atomic.Int64
	stats     counters
}

// New makes a Service. It starts the session janitor; Close stops it.
func New(opts Options) (*Service, error) {
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 15 * time.Minute
	}
	if opts.MaxPendingHandshakes <= 0 {
		opts.MaxPendingHandshakes = 256
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.ShedAfter == 0 {
		opts.ShedAfter = time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 120 * time.Second
	}
	if opts.MaxLongPolls <= 0 {
		opts.MaxLongPolls = 20000
	}
	if opts.Readers <= 0 {
		opts.Readers = runtime.GOMAXPROCS(0)
	}
	if opts.ReadBuffer <= 0 {
		opts.ReadBuffer = 4 << 20
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		opts:     opts,
		log:      log.With("part", "heartbeat-service"),
		sessions: hashmap.New[uint32, *session](),
		pending:  map[string]*pendingHS{},
		grace:    map[string]*session{},
		devices:  map[string]*device{},
	}
	var key [4]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	s.cidKey = binary.BigEndian.Uint32(key[:])
	if len(opts.Cert.Certificate) > 0 {
		if opts.ClientCAs == nil {
			return nil, errors.New("heartbeat service: a DTLS certificate needs ClientCAs to verify devices")
		}
		cfg := tlsconf.DTLSServer(opts.Cert, opts.ClientCAs)
		// Four-byte connection IDs instead of tlsconf's eight: the ID is
		// the session's numeric key here, made unique by newCID rather
		// than by randomness, and every heartbeat carries it, so four
		// bytes save 5.8 KB per device per day.
		cfg.ConnectionIDGenerator = s.newCID
		cfg.LoggerFactory = hb.PionLogger(s.log)
		s.dtlsCfg = cfg
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.janitor()
	return s, nil
}

// cidLen is the length of the connection IDs the service hands out.
const cidLen = 4

// newCID returns the next session id as a connection ID. Multiplying a
// counter by an odd constant and mixing in a per-start key is a bijection
// on 32 bits, so ids do not repeat for 2^32 handshakes, and they do not
// reveal how many sessions the service has made.
func (s *Service) newCID() []byte {
	n := s.cidCount.Add(1)
	id := (n*0x9E3779B1)<<7 | (n*0x9E3779B1)>>25
	id ^= s.cidKey
	b := make([]byte, cidLen)
	binary.BigEndian.PutUint32(b, id)
	return b
}

// ListenUDP listens on addr (e.g. "127.0.0.1:0") and serves DTLS
// heartbeats there until Close. It returns the address bound.
func (s *Service) ListenUDP(addr string) (*net.UDPAddr, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("heartbeat service: listen %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("heartbeat service: listen %s: %w", addr, err)
	}
	if err := s.startUDP(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn.LocalAddr().(*net.UDPAddr), nil
}

// ServeUDP serves DTLS heartbeats on a socket made by the caller (for
// instance inside a network namespace) until Close, which closes it.
func (s *Service) ServeUDP(conn *net.UDPConn) error {
	return s.startUDP(conn)
}

func (s *Service) startUDP(conn *net.UDPConn) error {
	if s.dtlsCfg == nil {
		return errors.New("heartbeat service: DTLS needs Options.Cert and Options.ClientCAs")
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		return errors.New("heartbeat service: closed")
	}
	_ = conn.SetReadBuffer(s.opts.ReadBuffer)
	socketOptions(conn, s.opts.ReadBuffer, s.log)
	s.conns = append(s.conns, conn)
	for i := 0; i < s.opts.Readers; i++ {
		s.wg.Add(1)
		go s.readLoop(conn)
	}
	return nil
}

// Close stops the service: sockets, handshakes, long polls, the janitor.
func (s *Service) Close() error {
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.connMu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.Close()
	}
	s.hsMu.Lock()
	pend := make([]*pendingHS, 0, len(s.pending))
	for _, p := range s.pending {
		pend = append(pend, p)
	}
	s.hsMu.Unlock()
	for _, p := range pend {
		p.feed.Close()
	}
	s.wg.Wait()
	return nil
}

// janitor forgets sessions that went silent.
func (s *Service) janitor() {
	defer s.wg.Done()
	every := min(s.opts.SessionIdle/4, handshakeGrace/2)
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			cutoff := now.Add(-s.opts.SessionIdle).UnixNano()
			var idle []*session
			s.sessions.Range(func(_ uint32, ss *session) bool {
				if ss.lastSeen.Load() < cutoff {
					idle = append(idle, ss)
				}
				return true
			})
			for _, ss := range idle {
				s.dropSession(ss, "idle")
			}
			graceEnd := now.Add(-handshakeGrace)
			var over []*session
			s.hsMu.Lock()
			for _, g := range s.grace {
				if g.created.Before(graceEnd) {
					over = append(over, g)
				}
			}
			s.hsMu.Unlock()
			for _, g := range over {
				s.endGrace(g)
			}
		}
	}
}

// Stats are the service's counters since New.
type Stats struct {
	Sessions          int   // live DTLS sessions
	PendingHandshakes int   // DTLS handshakes in progress
	Handshakes        int64 // DTLS handshakes completed
	HandshakeFailures int64
	HandshakesShed    int64 // ClientHellos dropped: too many handshakes in progress
	DTLSHeartbeats    int64 // heartbeats answered over DTLS
	HTTPSHeartbeats   int64 // heartbeats answered over HTTPS
	Shed              int64 // datagrams dropped unread because they waited too long
	KernelDrops       int64 // datagrams the kernel dropped (receive buffer full)
	Stale             int64 // heartbeats with a sequence number not above the last (answered, not applied)
	Replays           int64 // records dropped by the anti-replay window
	BadRecords        int64 // records that failed authentication or parsing
	BadMessages       int64 // authenticated records that were not valid heartbeats
	UnknownSessions   int64 // records for a connection ID the service does not know
	AddressChanges    int64 // sessions that moved to a new address or port
	FlightResends     int64 // last handshake flights sent again for a device that missed them
	ItemsDelivered    int64 // work items acknowledged by devices
	Results           int64 // work results stored
	ReplyErrors       int64 // replies that could not be sent
}

type counters struct {
	handshakes, hsFailures, hsShed             atomic.Int64
	dtlsHeartbeats, httpsHeartbeats            atomic.Int64
	shed, kernelDrops, stale, replays          atomic.Int64
	badRecords, badMessages, unknown, addrMove atomic.Int64
	flightResends                              atomic.Int64
	delivered, results, replyErrors            atomic.Int64
}

// Stats returns a snapshot of the counters.
func (s *Service) Stats() Stats {
	s.hsMu.Lock()
	pending := len(s.pending)
	s.hsMu.Unlock()
	c := &s.stats
	return Stats{
		Sessions:          s.sessions.Len(),
		PendingHandshakes: pending,
		Handshakes:        c.handshakes.Load(),
		HandshakeFailures: c.hsFailures.Load(),
		HandshakesShed:    c.hsShed.Load(),
		DTLSHeartbeats:    c.dtlsHeartbeats.Load(),
		HTTPSHeartbeats:   c.httpsHeartbeats.Load(),
		Shed:              c.shed.Load(),
		KernelDrops:       c.kernelDrops.Load(),
		Stale:             c.stale.Load(),
		Replays:           c.replays.Load(),
		BadRecords:        c.badRecords.Load(),
		BadMessages:       c.badMessages.Load(),
		UnknownSessions:   c.unknown.Load(),
		AddressChanges:    c.addrMove.Load(),
		FlightResends:     c.flightResends.Load(),
		ItemsDelivered:    c.delivered.Load(),
		Results:           c.results.Load(),
		ReplyErrors:       c.replyErrors.Load(),
	}
}
