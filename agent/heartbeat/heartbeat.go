// Package heartbeat keeps the device's one outbound session to the
// backend: every interval it sends a heartbeat (the device is there, and
// a telemetry summary when that changed) and takes the work that comes
// back in the reply.
//
// The session is DTLS 1.2 (pion/dtls v3, configured by crypto/tlsconf):
// mutual authentication with the device certificate, whose key stays in
// its key store, and connection IDs (RFC 9146), so a device whose address
// or port changes keeps its session without a new handshake. In the
// steady state one datagram goes each way per interval.
//
// When DTLS goes unanswered for Heartbeat.UDPTries tries, the same
// messages go over HTTPS (POST /v1/heartbeat) with long polling, and DTLS
// is tried again in the background every UDPProbeInterval and preferred
// as soon as it answers. A network change seen through netlink (address
// added or removed, link up, default route changed) makes the agent move
// its socket and send at once instead of waiting out its back-off.
//
// Each reply echoes its heartbeat's nonce bound to the system ID (see
// EchoFor), so a replayed, reordered or misdirected reply is refused.
// Work items are acknowledged by id and remembered on disk, so each runs
// once even when a reply or an acknowledgement is lost; results are sent
// until the backend confirms them.
//
// Heartbeats sooner than the interval (an acknowledgement of new work, a
// result, Reply.More) are paced (pacing.go): a few per interval at most,
// so that no backend, however it misbehaves, can drive the agent into a
// flood. Work items run with slots per class of work, so that remote
// sessions, which last hours, never hold up a collect_now or a policy
// update.
//
// The wire types (wire.go) are shared with the reference backend in
// sim/heartbeat.
package heartbeat

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/dcagent/dcagent/internal/httpc"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// Path is the backend's HTTPS heartbeat endpoint, below [backend] url.
const Path = "/v1/heartbeat"

// Channel names how heartbeats travel.
type Channel string

const (
	ChannelNone  Channel = ""
	ChannelDTLS  Channel = "dtls"
	ChannelHTTPS Channel = "https"
)

// Options configures a Client.
type Options struct {
	// Config supplies [heartbeat] and [backend] (heartbeat_addr, url).
	Config *config.Config
	// SystemID names the device; it must be the CommonName of
	// Certificate. Empty means Config.Device.SystemID.
	SystemID string
	// Certificate is the device certificate; its PrivateKey is the key
	// store's crypto.Signer (TPM, PKCS#11 or file).
	Certificate tls.Certificate
	// GetCertificate, when set, returns the certificate to present at each
	// new handshake (the identity's current one, renewed in place), so a
	// renewal needs no restart of the heartbeat, and open work such as a
	// remote session goes on. Certificate is then the one in use at start.
	GetCertificate func() (*tls.Certificate, error)
	// Roots is the pinned vendor CA.
	Roots *x509.CertPool
	// Telemetry returns the device's summary now; called once per
	// heartbeat, so it should return cached values. nil sends an empty
	// summary. CertNotAfter is filled from Certificate when left zero.
	Telemetry func() Telemetry
	// Work runs one work item and returns its result; the heartbeat
	// delivers each item once. It runs on a goroutine of its own (within
	// the bounds below) and must return when ctx ends. nil answers every
	// item with a failure.
	Work func(ctx context.Context, it work.Item) work.Result
	// Work calls running at once are bounded per class of work, each
	// class with slots of its own, so that items that last long never
	// hold up short ones (pacing.go: classOf).
	//
	// MaxConcurrentWork bounds quick items (collect_now, policy_update,
	// config_update, unknown kinds); 0 means 4.
	MaxConcurrentWork int
	// MaxSlowWork bounds diagnostic scripts and file transfers; 0 means 2.
	MaxSlowWork int
	// MaxSessions bounds remote_access items (a session lasts hours, and
	// its consent ask waits for its timeout); 0 means 16, above the
	// remote-access part's own bound, which refuses an extra session with
	// a reason.
	MaxSessions int
	// StateDir is where taken work ids are kept (WorkStateFile); empty
	// keeps them in memory only. The daemon passes Device.StateDir.
	StateDir string
	// Logger; nil discards.
	Logger *slog.Logger

	// ListenPacket makes the UDP socket under DTLS; nil means a UDP socket
	// connected to the backend (the kernel drops datagrams from anyone
	// else, and nothing on the device is open to the network). (Tests
	// make it inside a network namespace.)
	ListenPacket func() (net.PacketConn, error)
	// DialContext dials TCP for HTTPS; nil means net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// NetworkWatch reports network changes; nil means NetlinkWatch in the
	// agent's own namespace when [heartbeat] watch_network is true, and
	// nothing otherwise.
	NetworkWatch NetworkWatch
}

// Status is what `dcagent status` shows about the heartbeat.
type Status struct {
	// Channel is how the last heartbeat was answered.
	Channel Channel `json:"channel"`
	// LastHeartbeat is when the last reply was accepted (zero: never).
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// RTT is the last heartbeat's round-trip time.
	RTT time.Duration `json:"rtt_ns"`
	// ConsecutiveFailures counts tries that failed since the last reply.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastError is the last failure, for a person.
	LastError string `json:"last_error,omitempty"`
	// Handshakes counts DTLS handshakes made since start.
	Handshakes int `json:"dtls_handshakes"`
	// SessionSince is when the current DTLS session was made.
	SessionSince time.Time `json:"dtls_session_since"`
	// RejectedReplies counts replies refused (replayed, reordered, for
	// another device, malformed).
	RejectedReplies int `json:"rejected_replies"`
	// LastReconnect describes the last reconnection after a network
	// change.
	LastReconnect *Reconnect `json:"last_reconnect,omitempty"`
	// WorkPending counts acknowledgements and results not yet confirmed.
	WorkPending int `json:"work_pending"`
}

// Reconnect measures one reconnection after a network change.
type Reconnect struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"` // when the change was seen
	// Took is from the change to the first accepted reply after it.
	Took time.Duration `json:"took_ns"`
	// RoundTrips counts the round trips that took: 1 for a heartbeat on
	// the kept session, 4 when a handshake was needed (3 for DTLS with
	// its cookie exchange, then the heartbeat).
	RoundTrips int     `json:"round_trips"`
	Handshake  bool    `json:"handshake"`
	Channel    Channel `json:"channel"`
}

// Client is the heartbeat. Make one with New and call Run.
type Client struct {
	opts     Options
	cfg      config.Heartbeat
	log      *slog.Logger
	systemID string
	notAfter time.Time

	udpAddr   string // "" disables DTLS
	httpURL   string // "" disables HTTPS
	dtlsConf  *dtls.Config
	transport *httpc.Client
	listen    func() (net.PacketConn, error)
	watch     NetworkWatch

	running atomic.Bool
	netCh   chan struct{}
	netMu   sync.Mutex
	netLast netEvent

	results chan work.Result
	slots   [numWorkClasses]chan struct{}
	workers sync.WaitGroup

	// Owned by the Run goroutine.
	runCtx        context.Context
	mode          Channel
	udpFailures   int
	probeAt       time.Time
	seq           uint64
	dtls          *dtlsSession
	dtlsTrack     *tracker
	httpsTrack    *tracker
	ws            *workState
	moreWork      bool // the last reply said More
	newWork       bool // the last reply brought work not taken before
	pace          *pacer
	emptyMoreNext time.Time // a More without new work is followed again from then
	misRedelivery misbehaviour
	misMore       misbehaviour
	misEarly      misbehaviour
	teleSent      *Telemetry // last telemetry a reply confirmed
	teleAt        time.Time
	teleResend    bool // new session or channel: send it in full once
	backoff       backoff
	reconnect     *netEvent // a change not yet followed by a reply
	settleFrom    time.Time // the last change
	settleTries   int
	lastRejectLog time.Time

	mu     sync.Mutex
	status Status
}

// lastSeq is the highest sequence number any Client of this process
// sent.
var lastSeq atomic.Uint64

type netEvent struct {
	at     time.Time
	reason string
}

// New checks the options and makes a Client.
func New(opts Options) (*Client, error) {
	if opts.Config == nil {
		return nil, errors.New("heartbeat: no configuration")
	}
	cfg := opts.Config.Heartbeat
	if cfg.Interval <= 0 || cfg.ReplyTimeout <= 0 || cfg.UDPTries < 1 || cfg.BackoffMin <= 0 || cfg.BackoffMax < cfg.BackoffMin {
		return nil, fmt.Errorf("heartbeat: configuration out of range: %+v", cfg)
	}
	if opts.Roots == nil {
		return nil, errors.New("heartbeat: no pinned vendor CA")
	}
	if len(opts.Certificate.Certificate) == 0 || opts.Certificate.PrivateKey == nil {
		return nil, errors.New("heartbeat: no device certificate and key")
	}
	leaf := opts.Certificate.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(opts.Certificate.Certificate[0]); err != nil {
			return nil, fmt.Errorf("heartbeat: device certificate: %w", err)
		}
	}
	systemID := opts.SystemID
	if systemID == "" {
		systemID = opts.Config.Device.SystemID
	}
	if systemID == "" {
		return nil, errors.New("heartbeat: no system ID")
	}
	if leaf.Subject.CommonName != systemID {
		return nil, fmt.Errorf("heartbeat: the device certificate is for %q but the system ID is %q: the backend would answer for the certificate's", leaf.Subject.CommonName, systemID)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	be := opts.Config.Backend
	c := &Client{
		opts: opts, cfg: cfg, log: log, systemID: systemID, notAfter: leaf.NotAfter,
		udpAddr: be.HeartbeatAddr,
		netCh:   make(chan struct{}, 1),
		results: make(chan work.Result, 64),
		backoff: backoff{min: cfg.BackoffMin, max: cfg.BackoffMax},
	}
	if c.udpAddr == "" && be.URL == "" {
		return nil, errors.New("heartbeat: [backend] heartbeat_addr and url are both empty: nowhere to send heartbeats")
	}
	slots := func(n, def int) chan struct{} {
		if n <= 0 {
			n = def
		}
		return make(chan struct{}, n)
	}
	c.slots[classQuick] = slots(opts.MaxConcurrentWork, defaultQuickSlots)
	c.slots[classSlow] = slots(opts.MaxSlowWork, defaultSlowSlots)
	c.slots[classSession] = slots(opts.MaxSessions, defaultSessionSlots)
	c.pace = newPacer(cfg.Interval)

	if c.udpAddr != "" {
		host, _, err := net.SplitHostPort(c.udpAddr)
		if err != nil {
			return nil, fmt.Errorf("heartbeat: [backend] heartbeat_addr %q: %w", c.udpAddr, err)
		}
		name := cfg.ServerName
		if name == "" {
			name = host
		}
		dc, err := tlsconf.DTLSClientWithSource(opts.Roots, c.certSource(), name)
		if err != nil {
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
		dc.LoggerFactory = PionLogger(log)
		c.dtlsConf = dc
	}
	if be.URL != "" {
		u, err := url.Parse(be.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("heartbeat: [backend] url %q is not an https:// URL", be.URL)
		}
		name := cfg.ServerName
		if name == "" {
			name = u.Hostname()
		}
		tc, err := tlsconf.ClientWithSource(opts.Roots, c.certSource(), name)
		if err != nil {
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
		dial := opts.DialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: cfg.ReplyTimeout}).DialContext
		}
		c.transport = &httpc.Client{
			TLSConfig:      tc,
			DialContext:    dial,
			IdleTimeout:    2*cfg.Interval + cfg.ReplyTimeout,
			MaxIdlePerHost: 2,
			MaxBodyBytes:   MaxMessageSize,
		}
		c.httpURL = strings.TrimSuffix(be.URL, "/") + Path
	}
	// nil: dialDTLS makes a socket connected to the backend (see
	// DialUDP), so that the device holds no socket anyone else can
	// send to.
	c.listen = opts.ListenPacket
	c.watch = opts.NetworkWatch
	if c.watch == nil {
		c.watch = NoNetworkWatch
		if cfg.WatchNetwork {
			c.watch = defaultNetworkWatch()
		}
	}
	ws, err := loadWorkState(opts.StateDir)
	if err != nil {
		log.Warn("heartbeat: starting with an empty list of taken work", "err", err)
	}
	c.ws = ws
	c.dtlsTrack = newTracker(systemID)
	c.httpsTrack = newTracker(systemID)
	// The sequence number starts at the Unix time, so it keeps growing
	// across restarts without being stored (see Heartbeat.Seq), and
	// never below what an earlier Client of this process sent (the
	// daemon makes a new one when its certificate is renewed).
	c.seq = max(uint64(time.Now().Unix()), lastSeq.Load())
	return c, nil
}

// Status returns the heartbeat's state now; safe to call at any time.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	if s.LastReconnect != nil {
		r := *s.LastReconnect
		s.LastReconnect = &r
	}
	return s
}

func (c *Client) setStatus(f func(s *Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// errNetChanged ends a wait for a reply when the network changed: the
// reply may never come to the old address, so the agent sends again.
var errNetChanged = errors.New("heartbeat: network changed")

// sendError: the heartbeat could not even leave the device.
type sendError struct{ err error }

func (e *sendError) Error() string { return "heartbeat: dtls send: " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// errNoReply: a try went unanswered for ReplyTimeout.
var errNoReply = errors.New("heartbeat: no reply")

// Run heartbeats until ctx ends; it returns nil then. It returns an error
// only when it cannot run at all.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("heartbeat: already running")
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	c.runCtx = ctx
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.watch(ctx, c.networkEvent); err != nil && ctx.Err() == nil {
			c.log.Warn("heartbeat: network watch ended; reconnection waits for the back-off", "err", err)
		}
	}()
	defer func() {
		cancel()
		c.closeDTLS()
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
		c.workers.Wait()
		wg.Wait()
	}()

	c.mode = ChannelDTLS
	if c.udpAddr == "" {
		c.mode = ChannelHTTPS
	}
	next := time.Now()
	for ctx.Err() == nil {
		if c.mode == ChannelDTLS {
			next = c.dtlsRound(ctx, next)
		} else {
			next = c.httpsRound(ctx, next)
		}
	}
	return nil
}

// networkEvent is called by the watch on its goroutine.
func (c *Client) networkEvent(reason string) {
	c.netMu.Lock()
	c.netLast = netEvent{at: time.Now(), reason: reason}
	c.netMu.Unlock()
	select {
	case c.netCh <- struct{}{}:
	default:
	}
}

// networkChanged reacts to a change: the socket moves (the kept session
// goes on from wherever routing now sends it), open HTTPS connections go,
// the back-off ends and DTLS is preferred again.
func (c *Client) networkChanged() {
	c.netMu.Lock()
	ev := c.netLast
	c.netMu.Unlock()
	c.log.Debug("heartbeat: network changed", "reason", ev.reason)
	// Measured from the last change: the one that made the path usable.
	c.reconnect = &ev
	c.settleFrom, c.settleTries = ev.at, 0
	if c.dtls != nil {
		// With no route (an address just removed, none added yet) a new
		// connected socket cannot be made: keep the session on the old
		// socket; the change that brings a route rebinds it.
		if err := c.dtls.sock.rebind(); err != nil {
			c.log.Debug("heartbeat: the udp socket stays until the network has a route again", "err", err)
		}
	}
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	c.backoff.reset()
	c.udpFailures = 0
	if c.udpAddr != "" {
		c.mode = ChannelDTLS
	}
}

type wake int

const (
	wakeTime wake = iota
	wakeCtx
	wakeNet
)

// sleepUntil waits for t, a network change or the end. A finished work
// item brings t forward (within the pacing budget) so that its result
// goes soon; late DTLS replies are taken meanwhile.
func (c *Client) sleepUntil(ctx context.Context, t time.Time) wake {
	for {
		d := time.Until(t)
		if d <= 0 {
			return wakeTime
		}
		timer := time.NewTimer(d)
		var replies <-chan []byte
		var dead <-chan error
		if c.dtls != nil {
			replies, dead = c.dtls.replies, c.dtls.dead
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return wakeCtx
		case <-c.netCh:
			timer.Stop()
			return wakeNet
		case r := <-c.results:
			timer.Stop()
			c.ws.addResult(r)
			if soon := c.soonBeat(); soon.Before(t) {
				t = soon
			}
		case b := <-replies:
			timer.Stop()
			c.takeDTLSReply(b)
		case err := <-dead:
			timer.Stop()
			c.log.Debug("heartbeat: dtls session ended", "err", err)
			c.closeDTLS()
		case <-timer.C:
			return wakeTime
		}
	}
}

// dtlsRound waits for next and makes one DTLS exchange; it returns when
// the next one is due.
func (c *Client) dtlsRound(ctx context.Context, next time.Time) time.Time {
	switch c.sleepUntil(ctx, next) {
	case wakeCtx:
		return next
	case wakeNet:
		c.networkChanged()
	}
	err := c.exchangeDTLS(ctx)
	switch {
	case err == nil:
		c.udpFailures = 0
		c.backoff.reset()
		if c.httpURL != "" && c.followMore() {
			// Work too big for a datagram waits: fetch it over HTTPS.
			if err := c.exchangeHTTPS(ctx, 0); err != nil {
				c.log.Warn("heartbeat: fetching work over https", "err", err)
			}
		}
		return c.nextBeat()
	case ctx.Err() != nil:
		return next
	case errors.Is(err, errNetChanged):
		c.networkChanged()
		return time.Now()
	}
	c.failed(ChannelDTLS, err)
	if d, ok := c.settling(); ok {
		return time.Now().Add(d)
	}
	var se *sendError
	if errors.As(err, &se) {
		// Nothing left the device (no address, no route): the session is
		// not at fault and HTTPS would fare no better. Wait for the
		// network; a change ends the wait.
		return time.Now().Add(c.backoff.next())
	}
	c.udpFailures++
	if c.udpFailures >= max(2, c.cfg.UDPTries-1) {
		// Silent tries on a session: the backend may have lost it (a
		// restart), so the last try before falling back makes a new one.
		c.closeDTLS()
	}
	if c.udpFailures < c.cfg.UDPTries {
		return time.Now()
	}
	c.udpFailures = 0
	if c.httpURL == "" {
		return time.Now().Add(c.backoff.next())
	}
	c.log.Info("heartbeat: dtls unanswered; falling back to https", "tries", c.cfg.UDPTries, "err", err)
	c.mode = ChannelHTTPS
	c.teleResend = true
	c.probeAt = time.Now().Add(c.cfg.UDPProbeInterval)
	return time.Now()
}

// settleWindow is how long after a network change failures are taken
// as the network still settling (the route of a new address, duplicate
// address detection, a DHCP lease): the agent retries after a short,
// growing pause instead of counting them toward the fallback or the
// back-off.
const settleWindow = 2 * time.Second

// settling returns the pause before the next try while the network
// settles after a change.
func (c *Client) settling() (time.Duration, bool) {
	if c.reconnect == nil || time.Since(c.settleFrom) > settleWindow {
		return 0, false
	}
	c.settleTries++
	return min(25*time.Millisecond<<c.settleTries, 400*time.Millisecond), true
}

// nextBeat is when the next heartbeat is due after a successful one: soon
// when something waits to be sent (pacing.go), else an interval, jittered
// by ±10%, later.
func (c *Client) nextBeat() time.Time {
	if c.ws.unsent() {
		return c.soonBeat()
	}
	return time.Now().Add(jitter(c.cfg.Interval))
}

// soonBeat returns when an early heartbeat may go, and logs (rarely) when
// the budget holds it back.
func (c *Client) soonBeat() time.Time {
	at, held := c.pace.soon(time.Now())
	if held {
		c.misEarly.note(c.log, "heartbeat: the backend keeps asking for heartbeats sooner than the interval; holding to a few extra per interval",
			"extra_per_interval", earlyPerInterval, "interval", c.cfg.Interval)
	}
	return at
}

// followMore says whether to fetch again at once because the last reply
// said More: always when it brought new work (a backlog draining), and at
// most once per interval when it brought nothing new.
func (c *Client) followMore() bool {
	if !c.moreWork {
		return false
	}
	if c.newWork {
		return true
	}
	now := time.Now()
	if now.Before(c.emptyMoreNext) {
		c.misMore.note(c.log, "heartbeat: the backend says more work is waiting but sends nothing new; following that at most once per interval",
			"interval", c.cfg.Interval)
		return false
	}
	c.emptyMoreNext = now.Add(c.cfg.Interval)
	return true
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*mrand.Float64()))
}

// exchangeDTLS sends one heartbeat over DTLS, making a session first if
// there is none, and waits for its reply.
func (c *Client) exchangeDTLS(ctx context.Context) error {
	handshake := false
	if c.dtls != nil && time.Since(c.dtls.established) > c.cfg.SessionMaxAge {
		c.closeDTLS()
	}
	if c.dtls == nil {
		hctx, cancel := context.WithTimeout(ctx, c.cfg.ReplyTimeout)
		s, err := dialDTLS(hctx, c.udpAddr, c.dtlsConf, c.listen)
		cancel()
		if err != nil {
			return err
		}
		c.dtls = s
		handshake = true
		c.dtlsTrack.reset()
		c.teleResend = true
		c.setStatus(func(st *Status) { st.Handshakes++; st.SessionSince = s.established })
	}
	h, s := c.newHeartbeat(0)
	enc, err := EncodeHeartbeat(h)
	if err != nil {
		return err
	}
	if _, err := c.dtls.conn.Write(enc); err != nil {
		return &sendError{err}
	}
	c.dtlsTrack.add(s)
	timer := time.NewTimer(c.cfg.ReplyTimeout)
	defer timer.Stop()
	for {
		select {
		case b := <-c.dtls.replies:
			if got, ok := c.takeDTLSReply(b); ok && got == s.seq {
				c.succeeded(ChannelDTLS, s, handshake)
				return nil
			}
		case err := <-c.dtls.dead:
			c.closeDTLS()
			return fmt.Errorf("heartbeat: dtls session ended: %w", err)
		case r := <-c.results:
			c.ws.addResult(r)
		case <-c.netCh:
			return errNetChanged
		case <-timer.C:
			return fmt.Errorf("%w over dtls within %s", errNoReply, c.cfg.ReplyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// takeDTLSReply decodes, matches and applies one DTLS reply; it returns
// the sequence number of the heartbeat it answers.
func (c *Client) takeDTLSReply(b []byte) (uint64, bool) {
	return c.takeReply(ChannelDTLS, c.dtlsTrack, b)
}

func (c *Client) takeReply(ch Channel, t *tracker, b []byte) (uint64, bool) {
	r, err := DecodeReply(b)
	if err == nil {
		var s sent
		if s, err = t.match(r); err == nil {
			c.apply(s, r)
			return s.seq, true
		}
	}
	c.setStatus(func(st *Status) { st.RejectedReplies++ })
	if time.Since(c.lastRejectLog) > time.Minute {
		c.lastRejectLog = time.Now()
		c.log.Warn("heartbeat: reply refused", "channel", ch, "err", err)
	}
	return 0, false
}

// apply takes an accepted reply: confirmations, then new work.
func (c *Client) apply(s sent, r *Reply) {
	c.ws.confirmAcks(s.acks)
	c.ws.confirmResults(r.Done)
	if s.telemetry != nil {
		c.teleSent, c.teleAt, c.teleResend = s.telemetry, s.at, false
	}
	c.moreWork, c.newWork = r.More, false
	again := c.ws.redelivered
	for _, it := range r.Work {
		run, err := c.ws.take(it.ID)
		if err != nil {
			// Not on disk: a restart before the acknowledgement gets
			// through could run it again. Run it anyway; say so.
			c.log.Error("heartbeat: could not record a taken work item", "id", it.ID, "err", err)
		}
		if run {
			c.newWork = true
			c.startWork(it)
		}
	}
	if c.ws.redelivered > again {
		c.misRedelivery.note(c.log, "heartbeat: the backend re-sends work the device already took and acknowledged; acknowledging it again with the next regular heartbeat",
			"items", c.ws.redelivered-again)
	}
}

// startWork runs a work item on a goroutine of its own, once a slot of
// its class is free.
func (c *Client) startWork(it work.Item) {
	ctx := c.runCtx
	slots := c.slots[classOf(it.Kind)]
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		res := c.runWork(ctx, it)
		<-slots
		res.ID = it.ID
		select {
		case c.results <- res:
		case <-ctx.Done():
		}
	}()
}

func (c *Client) runWork(ctx context.Context, it work.Item) (res work.Result) {
	if c.opts.Work == nil {
		return work.Result{OK: false, Detail: "this agent takes no work"}
	}
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("heartbeat: work handler panicked", "id", it.ID, "kind", it.Kind, "panic", p)
			res = work.Result{OK: false, Detail: fmt.Sprintf("the handler failed: %v", p)}
		}
	}()
	return c.opts.Work(ctx, it)
}

// newHeartbeat makes the next heartbeat with what waits to be sent.
func (c *Client) newHeartbeat(wait uint32) (*Heartbeat, sent) {
	c.seq++
	for {
		cur := lastSeq.Load()
		if cur >= c.seq || lastSeq.CompareAndSwap(cur, c.seq) {
			break
		}
	}
	c.pace.sent(time.Now())
	h := &Heartbeat{Seq: c.seq, Nonce: make([]byte, NonceSize), Wait: wait}
	rand.Read(h.Nonce)
	var t Telemetry
	if c.opts.Telemetry != nil {
		t = c.opts.Telemetry()
	}
	if t.CertNotAfter == 0 {
		t.CertNotAfter = c.notAfter.Unix()
		if cert, err := c.certSource()(); err == nil && cert.Leaf != nil {
			t.CertNotAfter = cert.Leaf.NotAfter.Unix()
		}
	}
	if c.teleResend || c.teleSent == nil || *c.teleSent != t || time.Since(c.teleAt) >= c.cfg.TelemetryEvery {
		h.Telemetry = &t
	}
	c.ws.fill(h)
	s := sent{seq: h.Seq, echo: EchoFor(c.systemID, h.Seq, h.Nonce), at: time.Now(), acks: h.Acks, telemetry: h.Telemetry}
	for _, r := range h.Results {
		s.results = append(s.results, r.ID)
	}
	return h, s
}

func (c *Client) succeeded(ch Channel, s sent, handshake bool) {
	now := time.Now()
	prev := c.Status().Channel
	var rc *Reconnect
	if ev := c.reconnect; ev != nil {
		rc = &Reconnect{Reason: ev.reason, At: ev.at, Took: now.Sub(ev.at), RoundTrips: 1, Handshake: handshake, Channel: ch}
		if handshake {
			rc.RoundTrips = 4
		}
		c.reconnect = nil
		c.log.Info("heartbeat: reconnected after a network change", "reason", rc.Reason, "took", rc.Took,
			"round_trips", rc.RoundTrips, "handshake", handshake, "channel", ch)
	}
	if prev != ch && prev != ChannelNone {
		c.log.Info("heartbeat: answered again", "channel", ch, "was", prev)
	}
	pending := len(c.ws.acks) + len(c.ws.results)
	c.setStatus(func(st *Status) {
		st.Channel, st.LastHeartbeat, st.RTT = ch, now, now.Sub(s.at)
		st.ConsecutiveFailures, st.LastError = 0, ""
		st.WorkPending = pending
		if rc != nil {
			st.LastReconnect = rc
		}
	})
}

func (c *Client) failed(ch Channel, err error) {
	c.setStatus(func(st *Status) {
		st.ConsecutiveFailures++
		st.LastError = string(ch) + ": " + err.Error()
	})
	c.log.Debug("heartbeat: try failed", "channel", ch, "err", err)
}

func (c *Client) closeDTLS() {
	if c.dtls != nil {
		c.dtls.close()
		c.dtls = nil
	}
}

// httpsRound waits for next and makes one HTTPS exchange, a long poll,
// probing DTLS in the background meanwhile; it returns when the next
// exchange is due (on either channel).
func (c *Client) httpsRound(ctx context.Context, next time.Time) time.Time {
	switch c.sleepUntil(ctx, next) {
	case wakeCtx:
		return next
	case wakeNet:
		c.networkChanged()
		if c.mode == ChannelDTLS {
			return time.Now()
		}
	}
	if c.udpAddr != "" && !time.Now().Before(c.probeAt) {
		if c.probeDTLS(ctx) {
			return c.nextBeat()
		}
	}
	wait := uint32(c.cfg.Interval / time.Second)
	if wait == 0 {
		wait = 1
	}
	h, s := c.newHeartbeat(wait)
	body, err := EncodeHeartbeat(h)
	if err != nil {
		c.failed(ChannelHTTPS, err)
		return time.Now().Add(c.backoff.next())
	}
	c.httpsTrack.add(s)
	pctx, cancel := context.WithTimeout(ctx, time.Duration(wait)*time.Second+c.cfg.ReplyTimeout)
	defer cancel()
	done := make(chan pollResult, 1)
	go func() {
		b, err := c.post(pctx, body)
		done <- pollResult{b, err}
	}()
	probe := time.NewTimer(time.Until(c.probeAt))
	defer probe.Stop()
	if c.udpAddr == "" {
		probe.Stop()
	}
	for {
		select {
		case res := <-done:
			return c.pollDone(s, res)
		case <-probe.C:
			if c.probeDTLS(ctx) {
				cancel()
				c.drainPoll(done)
				return c.nextBeat()
			}
			if c.mode == ChannelDTLS { // the network changed during the probe
				cancel()
				c.drainPoll(done)
				return time.Now()
			}
			probe.Reset(time.Until(c.probeAt))
		case <-c.netCh:
			cancel()
			c.drainPoll(done)
			c.networkChanged()
			return time.Now()
		case r := <-c.results:
			// A result is ready: end the poll and send it soon.
			c.ws.addResult(r)
			cancel()
			c.drainPoll(done)
			return c.soonBeat()
		case <-ctx.Done():
			return next
		}
	}
}

type pollResult struct {
	body []byte
	err  error
}

func (c *Client) pollDone(s sent, res pollResult) time.Time {
	if res.err != nil {
		c.failed(ChannelHTTPS, res.err)
		if d, ok := c.settling(); ok {
			return time.Now().Add(d)
		}
		// Both channels failed: wait, then start over with DTLS.
		if c.udpAddr != "" {
			c.mode = ChannelDTLS
		}
		return time.Now().Add(c.backoff.next())
	}
	if got, ok := c.takeReply(ChannelHTTPS, c.httpsTrack, res.body); ok && got == s.seq {
		c.succeeded(ChannelHTTPS, s, false)
		c.backoff.reset()
	}
	// One heartbeat per interval, even from a backend that answers at
	// once instead of holding the poll; sooner only within the pacing
	// rules (pacing.go).
	if c.ws.unsent() || c.followMore() {
		return c.soonBeat()
	}
	return s.at.Add(jitter(c.cfg.Interval))
}

// drainPoll waits for a cancelled poll and takes its reply if it came.
func (c *Client) drainPoll(done chan pollResult) {
	res := <-done
	if res.err == nil {
		c.takeReply(ChannelHTTPS, c.httpsTrack, res.body)
	}
}

// probeDTLS tries DTLS once while on HTTPS; on success DTLS is preferred.
func (c *Client) probeDTLS(ctx context.Context) bool {
	err := c.exchangeDTLS(ctx)
	if err == nil {
		c.mode = ChannelDTLS
		c.udpFailures = 0
		c.teleResend = true
		return true
	}
	if errors.Is(err, errNetChanged) {
		c.networkChanged()
	}
	c.log.Debug("heartbeat: dtls probe failed; staying on https", "err", err)
	c.closeDTLS()
	c.probeAt = time.Now().Add(jitter(c.cfg.UDPProbeInterval))
	return false
}

// exchangeHTTPS sends one heartbeat over HTTPS and takes its reply.
func (c *Client) exchangeHTTPS(ctx context.Context, wait uint32) error {
	h, s := c.newHeartbeat(wait)
	body, err := EncodeHeartbeat(h)
	if err != nil {
		return err
	}
	c.httpsTrack.add(s)
	pctx, cancel := context.WithTimeout(ctx, time.Duration(wait)*time.Second+c.cfg.ReplyTimeout)
	defer cancel()
	b, err := c.post(pctx, body)
	if err != nil {
		return err
	}
	if _, ok := c.takeReply(ChannelHTTPS, c.httpsTrack, b); !ok {
		return errors.New("heartbeat: https reply refused")
	}
	return nil
}

// certSource is where handshakes take the device certificate from.
func (c *Client) certSource() func() (*tls.Certificate, error) {
	if c.opts.GetCertificate != nil {
		return c.opts.GetCertificate
	}
	cert := c.opts.Certificate
	return func() (*tls.Certificate, error) { return &cert, nil }
}

// HTTPError is a heartbeat request the backend answered with an error.
type HTTPError struct {
	Status int
	Text   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("heartbeat: backend answered %d: %s", e.Status, e.Text)
}

func (c *Client) post(ctx context.Context, body []byte) ([]byte, error) {
	req, err := httpc.NewRequest("POST", c.httpURL, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/cbor")
	resp, err := c.transport.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: https %s: %w", c.httpURL, err)
	}
	b := resp.Body
	if resp.StatusCode != 200 {
		text := strings.TrimSpace(string(b))
		if len(text) > 200 {
			text = text[:200]
		}
		return nil, &HTTPError{Status: resp.StatusCode, Text: text}
	}
	return b, nil
}

// backoff is the wait after both channels failed: doubling from min to
// max, each wait drawn from its upper half so that a fleet that failed
// together does not retry together.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur/2 + time.Duration(mrand.Int64N(int64(b.cur/2)+1))
}

func (b *backoff) reset() { b.cur = 0 }
