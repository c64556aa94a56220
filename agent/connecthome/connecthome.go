// Package connecthome sends the spool's events home. It leases events from
// the spool (highest severity first, then oldest), uploads them to the
// backend over mutual TLS (PUT /v1/events/{id} for one event, POST
// /v1/events/batch for several, see the wire package), and acknowledges
// each event to the spool only after the backend has answered that it
// holds it. Requests share one kept-alive connection, so a backlog drains
// at the speed of the network rather than of handshakes.
//
// After a failure it backs off exponentially with jitter, and never
// sooner than the backend's Retry-After. When the main channel has been
// failing for longer than the configured threshold, events go by a
// failover channel instead: the customer's mail server (SMTP with STARTTLS
// and authentication) or FTPS (explicit TLS), each event sealed (signed by
// the device key, encrypted to the vendor's public key; see the sealed
// package) so the relay can neither read nor forge it. The main channel is
// still retried on its back-off schedule and takes over again as soon as
// it works. The backend de-duplicates by event id, whichever way an event
// came.
package connecthome

import (
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/dcagent/dcagent/internal/httpc"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome/sealed"
	"github.com/dcagent/dcagent/agent/spool"
)

// Spool is what the uploader needs from the spool (agent/spool.Spool).
type Spool interface {
	Lease(ctx context.Context, max int, maxBytes int64) ([]spool.Record, error)
	Ack(ids ...string) error
	Release(ids ...string)
	Reject(id, reason string) error
}

// Channel is a failover channel: it delivers armored sealed events to the
// vendor through a relay. Send returns nil only when the relay has taken
// responsibility for the message (SMTP 250 after DATA, FTP 226/250).
type Channel interface {
	Name() string
	Send(ctx context.Context, message []byte, events int) error
}

// Options configure an Uploader. New fills them from the configuration;
// tests set them directly.
type Options struct {
	// BackendURL is the HTTPS base URL of the backend.
	BackendURL string
	// BatchEvents and BatchBytes bound one request (defaults 1000, 1 MiB).
	BatchEvents int
	BatchBytes  int64
	// RetryMin and RetryMax bound the back-off (defaults 2s, 10m).
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds one request (default 60s).
	RequestTimeout time.Duration
	// FailoverAfter is how long the main channel must fail before the
	// failover channels are used.
	FailoverAfter time.Duration
	// Failover channels, tried in order. Empty: no failover.
	Failover []Channel
	// VendorKey is what failover events are encrypted to.
	VendorKey *ecdh.PublicKey
	// InFlight is how many batches may be on their way at once (default
	// 2): while the backend syncs one batch to disk, the next is already
	// travelling. Each keeps its own HTTP/1.1 connection (internal/httpc).
	InFlight int
}

func (o *Options) setDefaults() {
	if o.BatchEvents <= 0 {
		o.BatchEvents = 1000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 1 << 20
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 2 * time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = 10 * time.Minute
		if o.RetryMax < o.RetryMin {
			o.RetryMax = o.RetryMin
		}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.InFlight <= 0 {
		o.InFlight = 2
	}
}

// Status is the uploader's state for `dcagent status` and `dcagent diag`.
type Status struct {
	// Channel is the channel that delivered last: https, smtp or ftps.
	Channel     string    `json:"channel,omitempty"`
	LastSuccess time.Time `json:"last_success,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitempty"`
	// FailingSince is when the main channel started failing (zero: it is
	// not failing).
	FailingSince time.Time `json:"failing_since,omitempty"`
	// NextAttempt is when the main channel is tried next after a failure.
	NextAttempt time.Time        `json:"next_attempt,omitempty"`
	Sent        map[string]int64 `json:"sent"` // events delivered, by channel
	Rejected    int64            `json:"rejected"`
	InFailover  bool             `json:"in_failover"`
}

// Uploader sends events home. Make one with New or NewWithOptions, then
// call Run.
type Uploader struct {
	opts   Options
	sp     Spool
	tlsCfg *tls.Config
	client *httpc.Client
	base   *url.URL
	log    *slog.Logger

	wake chan struct{}
	bo   backoff
	// connected is closed at the first answer from the backend.
	connected     chan struct{}
	connectedOnce sync.Once

	mu sync.Mutex
	st Status
	// nextMain is when the main channel may be tried again.
	nextMain time.Time
	// now and sleep are replaced in tests.
	now func() time.Time
}

// NewWithOptions makes an uploader. tlsConfig is the device's mutual-TLS
// client configuration (crypto/tlsconf.Client); its GetClientCertificate
// (or Certificates) gives the current device certificate, which also signs
// failover events. logger may be nil.
func NewWithOptions(opts Options, sp Spool, tlsConfig *tls.Config, logger *slog.Logger) (*Uploader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts.setDefaults()
	base, err := url.Parse(opts.BackendURL)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("connecthome: backend URL %q must be https://host[:port]", opts.BackendURL)
	}
	if tlsConfig == nil {
		return nil, errors.New("connecthome: no TLS configuration")
	}
	if len(opts.Failover) > 0 && opts.VendorKey == nil {
		return nil, errors.New("connecthome: failover channels need the vendor key")
	}
	// Bodies are compressed by us and answers are small JSON; no proxy
	// from the environment, only the pinned CA, straight to the backend.
	client := &httpc.Client{
		TLSConfig:      tlsConfig.Clone(),
		DialContext:    (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleTimeout:    90 * time.Second,
		MaxIdlePerHost: 2,
		MaxBodyBytes:   8 << 20,
	}
	u := &Uploader{
		opts:      opts,
		sp:        sp,
		tlsCfg:    tlsConfig,
		client:    client,
		base:      base,
		log:       logger.With("part", "connecthome"),
		wake:      make(chan struct{}, 1),
		connected: make(chan struct{}),
		bo:        backoff{min: opts.RetryMin, max: opts.RetryMax},
		st:        Status{Sent: map[string]int64{}},
		now:       time.Now,
	}
	return u, nil
}

// Wake makes the uploader try the main channel now, forgetting its
// back-off: call it when the network changed (netlink) or the backend is
// known to be back.
func (u *Uploader) Wake() {
	u.mu.Lock()
	u.nextMain = time.Time{}
	u.bo.reset()
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Status returns the uploader's state.
func (u *Uploader) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	st.NextAttempt = u.nextMain
	st.Sent = map[string]int64{}
	for k, v := range u.st.Sent {
		st.Sent[k] = v
	}
	st.InFailover = !st.FailingSince.IsZero() && len(u.opts.Failover) > 0 && u.now().Sub(st.FailingSince) >= u.opts.FailoverAfter
	return st
}

// Run uploads until ctx ends; it returns nil then. Leased events that were
// not delivered go back to the spool.
func (u *Uploader) Run(ctx context.Context) error {
	defer u.client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, u.opts.InFlight)
	for i := 0; i < u.opts.InFlight; i++ {
		go func(i int) {
			if i > 0 {
				// The extra workers wait for the first answer, so that
				// a backend that is down costs one failed dial per
				// attempt, not one per worker.
				select {
				case <-u.connected:
				case <-ctx.Done():
					errs <- nil
					return
				}
			}
			errs <- u.worker(ctx)
		}(i)
	}
	var first error
	for i := 0; i < u.opts.InFlight; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// worker leases and delivers batches one after the other.
func (u *Uploader) worker(ctx context.Context) error {
	for {
		recs, err := u.sp.Lease(ctx, u.opts.BatchEvents, u.opts.BatchBytes)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, spool.ErrClosed) {
				return nil
			}
			return fmt.Errorf("connecthome: lease: %w", err)
		}
		u.deliver(ctx, recs)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// deliver gets one leased batch home, by the main channel or a failover
// one, retrying until it succeeds or ctx ends.
func (u *Uploader) deliver(ctx context.Context, recs []spool.Record) {
	for len(recs) > 0 {
		if u.mainDue() {
			results, err := u.sendHTTPS(ctx, recs)
			if err == nil {
				rest := u.settle(recs, results)
				u.succeeded("https", len(recs)-len(rest))
				if len(rest) < len(recs) {
					recs = rest
					continue
				}
				err = &httpError{msg: "backend answered without a result for any event sent"}
			}
			if ctx.Err() != nil {
				break
			}
			u.failed(err)
		}
		if u.failoverDue() {
			if err := u.sendFailover(ctx, recs); err == nil {
				ids := idsOf(recs)
				if err := u.sp.Ack(ids...); err != nil {
					u.log.Warn("connecthome: spool could not remove sent events", "err", err)
				}
				recs = nil
				continue
			} else if ctx.Err() != nil {
				break
			} else {
				u.noteError(err)
			}
		}
		if !u.waitForMain(ctx) {
			break
		}
	}
	if len(recs) > 0 {
		u.sp.Release(idsOf(recs)...)
	}
}

// settle applies the backend's per-event answers and returns the events
// that still need sending.
func (u *Uploader) settle(recs []spool.Record, results map[string]resultOf) []spool.Record {
	var acked []string
	var rest []spool.Record
	for _, r := range recs {
		res, ok := results[r.ID]
		switch {
		case ok && res.acked:
			acked = append(acked, r.ID)
		case ok && res.rejected != "":
			u.log.Error("connecthome: backend refused event for good", "id", r.ID, "reason", res.rejected)
			if err := u.sp.Reject(r.ID, res.rejected); err != nil {
				u.log.Error("connecthome: cannot quarantine refused event", "id", r.ID, "err", err)
				u.sp.Release(r.ID)
			}
			u.mu.Lock()
			u.st.Rejected++
			u.mu.Unlock()
		default:
			rest = append(rest, r)
		}
	}
	if len(acked) > 0 {
		if err := u.sp.Ack(acked...); err != nil {
			u.log.Warn("connecthome: spool could not remove sent events", "err", err)
		}
	}
	return rest
}

func idsOf(recs []spool.Record) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

func (u *Uploader) mainDue() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.now().Before(u.nextMain)
}

func (u *Uploader) failoverDue() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.opts.Failover) > 0 && !u.st.FailingSince.IsZero() && u.now().Sub(u.st.FailingSince) >= u.opts.FailoverAfter
}

// waitForMain sleeps until the main channel is due, Wake, or ctx ends.
func (u *Uploader) waitForMain(ctx context.Context) bool {
	u.mu.Lock()
	d := u.nextMain.Sub(u.now())
	// While failing over, look again when failover becomes due too.
	if len(u.opts.Failover) > 0 && !u.st.FailingSince.IsZero() {
		if f := u.st.FailingSince.Add(u.opts.FailoverAfter).Sub(u.now()); f > 0 && f < d {
			d = f
		}
	}
	u.mu.Unlock()
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-u.wake:
		return true
	case <-ctx.Done():
		return false
	}
}

func (u *Uploader) succeeded(channel string, n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if channel == "https" {
		u.connectedOnce.Do(func() { close(u.connected) })
		if !u.st.FailingSince.IsZero() {
			u.log.Info("connecthome: main channel works again", "down_for", u.now().Sub(u.st.FailingSince).Round(time.Second))
		}
		u.st.FailingSince = time.Time{}
		u.bo.reset()
		u.nextMain = time.Time{}
	}
	u.st.Channel = channel
	u.st.LastSuccess = u.now()
	u.st.Sent[channel] += int64(n)
}

func (u *Uploader) failed(err error) {
	var retryAfter time.Duration
	var he *httpError
	if errors.As(err, &he) {
		retryAfter = he.retryAfter
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if u.st.FailingSince.IsZero() {
		u.st.FailingSince = now
		u.log.Warn("connecthome: main channel failing; events stay in the spool", "err", err)
	} else {
		u.log.Debug("connecthome: main channel still failing", "err", err)
	}
	wait := u.bo.next(retryAfter)
	u.nextMain = now.Add(wait)
	u.st.LastError = err.Error()
	u.st.LastErrorAt = now
}

func (u *Uploader) noteError(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.st.LastError = err.Error()
	u.st.LastErrorAt = u.now()
	u.log.Warn("connecthome: failover failed", "err", err)
}

// sendFailover seals every event and hands the batch to the first channel
// that takes it.
func (u *Uploader) sendFailover(ctx context.Context, recs []spool.Record) error {
	cert, err := u.deviceCert()
	if err != nil {
		return fmt.Errorf("connecthome: failover: device certificate: %w", err)
	}
	blobs := make([][]byte, 0, len(recs))
	for _, r := range recs {
		s, err := sealed.Seal(u.opts.VendorKey, cert, r.Data)
		if err != nil {
			return fmt.Errorf("connecthome: failover: seal %s: %w", r.ID, err)
		}
		blobs = append(blobs, s)
	}
	msg := sealed.Armor(blobs)
	var errs []string
	for _, ch := range u.opts.Failover {
		cctx, cancel := context.WithTimeout(ctx, u.opts.RequestTimeout)
		err := ch.Send(cctx, msg, len(recs))
		cancel()
		if err == nil {
			u.log.Info("connecthome: events sent by failover", "channel", ch.Name(), "events", len(recs))
			u.succeeded(ch.Name(), len(recs))
			return nil
		}
		errs = append(errs, ch.Name()+": "+err.Error())
	}
	return fmt.Errorf("connecthome: every failover channel failed: %s", strings.Join(errs, "; "))
}

// deviceCert returns the current device certificate from the TLS
// configuration.
func (u *Uploader) deviceCert() (*tls.Certificate, error) {
	if u.tlsCfg.GetClientCertificate != nil {
		return u.tlsCfg.GetClientCertificate(&tls.CertificateRequestInfo{
			Version: tls.VersionTLS13,
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384,
				tls.PSSWithSHA256, tls.PKCS1WithSHA256},
		})
	}
	if len(u.tlsCfg.Certificates) > 0 {
		return &u.tlsCfg.Certificates[0], nil
	}
	return nil, errors.New("the TLS configuration has no client certificate")
}
