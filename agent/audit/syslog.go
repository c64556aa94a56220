package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The syslog stream sends every record, in order, to the customer's syslog
// server as an RFC 5424 message, framed by octet counting (RFC 6587 §3.4.1)
// over TCP, or over TLS (RFC 5425):
//
//	<109>1 2025-03-01T12:00:00.000001Z SYS-0001 dcagent 812 remote.session.end
//	  [dcagent@32473 log="<log id>" seq="57" hash="<hex>"] {"seq":57,...}
//
// Facility 13 (log audit), severity 5 (notice). MSGID is the record's kind;
// the structured data names the log, sequence number and hash; MSG is the
// record's own line, so the server holds a copy that verifies by itself
// and pins every record it received (see CompareWithCopy). 32473 is the
// private enterprise number RFC 5612 sets aside for documentation; a vendor
// shipping this replaces it with its own.
//
// The audit log itself is the queue: a cursor file (audit.syslog) holds the
// last record the server's TCP stack acknowledged (the socket's send queue
// drained, SIOCOUTQ), so records written while the server is away are sent
// in order when it returns, and a restart of the agent resumes where it was.
// Delivery is at least once: records written but not yet acknowledged when a
// connection breaks are sent again, and the copy's reader drops repeats by
// log and sequence number.
const (
	syslogPRI    = 13*8 + 5
	syslogSDID   = "dcagent@32473"
	cursorName   = "audit.syslog"
	syslogMaxMsg = maxLineBytes + 512
)

// SyslogOptions configure the stream.
type SyslogOptions struct {
	// Addr is the server's host:port.
	Addr string
	// TLS, when not nil, makes the stream RFC 5425 TLS with this client
	// configuration (from crypto/tlsconf, pinned to the customer's CA);
	// nil sends plain TCP.
	TLS *tls.Config
	// Hostname is the HOSTNAME field: the device's system ID.
	Hostname string
	// Logger gets connection problems (once per outage); nil discards.
	Logger *slog.Logger
	// RetryMin and RetryMax bound the back-off between connection
	// attempts (default 1s and 1m).
	RetryMin, RetryMax time.Duration
	// AckTimeout is how long sent bytes may stay unacknowledged before the
	// connection is taken for dead (default 30s).
	AckTimeout time.Duration
}

// refusalWait is how long a new TLS 1.3 connection is watched for the
// server's refusal of the client certificate.
func (o SyslogOptions) refusalWait() time.Duration { return 500 * time.Millisecond }

// SyslogStatus is the stream's state for `dcagent status`.
type SyslogStatus struct {
	Addr      string    `json:"addr"`
	Connected bool      `json:"connected"`
	Sent      uint64    `json:"sent_seq"` // last record the server acknowledged
	Pending   uint64    `json:"pending"`  // records written and not yet acknowledged
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitempty"` // when the current state began
}

// Syslog streams a Log to a syslog server.
type Syslog struct {
	log  *Log
	opts SyslogOptions

	mu     sync.Mutex
	cur    cursor
	status SyslogStatus

	cancel context.CancelFunc
	done   chan struct{}
}

type cursor struct {
	LogID  string
	Seq    uint64
	Offset int64
}

// NewSyslog prepares a stream of l to opts.Addr; Start starts it.
func NewSyslog(l *Log, opts SyslogOptions) (*Syslog, error) {
	if opts.Addr == "" {
		return nil, errors.New("audit: syslog: no server address")
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("audit: syslog server %q: %w", opts.Addr, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(time.Minute, opts.RetryMin)
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 30 * time.Second
	}
	opts.Hostname = syslogName(opts.Hostname)
	s := &Syslog{log: l, opts: opts, status: SyslogStatus{Addr: opts.Addr, Since: time.Now()}}
	s.cur = s.readCursor()
	s.status.Sent = s.cur.Seq
	return s, nil
}

// Start runs the stream until Close.
func (s *Syslog) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
}

// Close stops the stream and waits for it.
func (s *Syslog) Close() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	<-s.done
	return nil
}

// Status returns the stream's state.
func (s *Syslog) Status() SyslogStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if s.cur.LogID != s.log.LogID() {
		st.Sent = 0
	}
	if last := s.log.Last().Seq; last > st.Sent {
		st.Pending = last - st.Sent
	}
	return st
}

func (s *Syslog) setState(connected bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if connected != s.status.Connected {
		s.status.Since = time.Now()
	}
	s.status.Connected = connected
	if err != nil {
		s.status.LastError = err.Error()
	}
}

func (s *Syslog) run(ctx context.Context) {
	notify, unsubscribe := s.log.Subscribe()
	defer unsubscribe()
	backoff := s.opts.RetryMin
	failing := false
	for {
		progressed, err := s.session(ctx, notify)
		if ctx.Err() != nil {
			s.setState(false, nil)
			return
		}
		s.setState(false, err)
		if progressed {
			backoff = s.opts.RetryMin
		}
		if !failing || progressed {
			s.opts.Logger.Warn("audit: syslog server unreachable; records wait in the audit log", "server", s.opts.Addr, "err", err)
			failing = true
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, s.opts.RetryMax)
		select {
		case <-ctx.Done():
			s.setState(false, nil)
			return
		case <-time.After(wait):
		}
	}
}

// session connects once and sends until the connection fails or ctx ends.
// progressed says whether the server acknowledged anything.
func (s *Syslog) session(ctx context.Context, notify <-chan struct{}) (progressed bool, err error) {
	conn, raw, err := s.dial(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	s.setState(true, nil)
	s.opts.Logger.Debug("audit: syslog connected", "server", s.opts.Addr)

	// The server sends nothing; a read returns when it closes or resets
	// the connection, which is how an idle stream learns it is gone.
	broken := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		for {
			if _, err := conn.Read(buf); err != nil {
				broken <- fmt.Errorf("syslog server %s closed the connection: %w", s.opts.Addr, err)
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	f, err := os.Open(s.log.Path())
	if err != nil {
		return false, fmt.Errorf("audit: syslog: %w", err)
	}
	defer f.Close()
	cur, err := s.position(f)
	if err != nil {
		return false, err
	}
	var partial []byte
	bw := bufio.NewWriterSize(conn, 32<<10)
	br := bufio.NewReaderSize(f, maxLineBytes+1)
	for {
		next := cur
		for {
			line, rerr := br.ReadSlice('\n')
			if errors.Is(rerr, bufio.ErrBufferFull) {
				return progressed, fmt.Errorf("audit: syslog: record after %d is too long", next.Seq)
			}
			if rerr == io.EOF {
				// A record being written right now: keep its first part.
				partial = append(partial, line...)
				break
			}
			if rerr != nil {
				return progressed, fmt.Errorf("audit: syslog: read log: %w", rerr)
			}
			if len(partial) > 0 {
				line = append(partial, line...)
				partial = nil
			}
			rec, derr := DecodeRecord(line[:len(line)-1])
			if derr != nil {
				return progressed, fmt.Errorf("audit: syslog: record after %d unreadable: %w", next.Seq, derr)
			}
			if _, err := bw.Write(frameSyslog(s.opts.Hostname, next.LogID, rec, line[:len(line)-1])); err != nil {
				return progressed, fmt.Errorf("syslog server %s: write: %w", s.opts.Addr, err)
			}
			next.Seq = rec.Seq
			next.Offset += int64(len(line))
		}
		if next != cur {
			if err := bw.Flush(); err != nil {
				return progressed, fmt.Errorf("syslog server %s: write: %w", s.opts.Addr, err)
			}
			if err := s.waitAcked(ctx, raw, broken); err != nil {
				return progressed, err
			}
			cur = next
			progressed = true
			s.saveCursor(cur)
		}
		select {
		case <-ctx.Done():
			return progressed, nil
		case err := <-broken:
			return progressed, err
		case <-notify:
		}
	}
}

func (s *Syslog) dial(ctx context.Context) (net.Conn, *net.TCPConn, error) {
	d := net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("syslog server %s: %w", s.opts.Addr, err)
	}
	raw := c.(*net.TCPConn)
	if s.opts.TLS == nil {
		return c, raw, nil
	}
	cfg := s.opts.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(s.opts.Addr)
	}
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("syslog server %s: TLS: %w", s.opts.Addr, err)
	}
	// In TLS 1.3 the server judges the client's certificate after the
	// client has finished its handshake: a refusal arrives as an alert
	// just after, while bytes written meanwhile would still be taken by
	// the server's TCP and lost. Wait a moment for that alert before
	// sending anything (a read that times out leaves the connection
	// usable).
	if tc.ConnectionState().Version == tls.VersionTLS13 {
		tc.SetReadDeadline(time.Now().Add(s.opts.refusalWait()))
		var b [1]byte
		_, err := tc.Read(b[:])
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			c.Close()
			return nil, nil, fmt.Errorf("syslog server %s refused the connection after the TLS handshake (is this device's certificate one it trusts?): %w", s.opts.Addr, err)
		}
		tc.SetReadDeadline(time.Time{})
	}
	return tc, raw, nil
}

// waitAcked waits until the peer's TCP has acknowledged every byte sent.
func (s *Syslog) waitAcked(ctx context.Context, raw *net.TCPConn, broken <-chan error) error {
	deadline := time.Now().Add(s.opts.AckTimeout)
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		n, err := unackedBytes(raw)
		if err != nil {
			return fmt.Errorf("syslog server %s: %w", s.opts.Addr, err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("syslog server %s has not acknowledged %d bytes in %v", s.opts.Addr, n, s.opts.AckTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-broken:
			return err
		case <-time.After(delay):
		}
	}
}

// position seeks f to the first record after the cursor.
func (s *Syslog) position(f *os.File) (cursor, error) {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	logID := s.log.LogID()
	if cur.LogID != logID {
		// A new log (first run, or a broken log set aside): from the start.
		cur = cursor{LogID: logID}
	}
	if cur.Offset > 0 {
		// The cursor's offset must be the end of its record.
		ok := false
		if cur.Offset >= 2 {
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, cur.Offset-1); err == nil && b[0] == '\n' {
				ok = true
			}
		}
		if !ok {
			s.opts.Logger.Warn("audit: syslog cursor does not match the log; sending from the start", "cursor_seq", cur.Seq)
			cur = cursor{LogID: logID}
		}
	}
	if _, err := f.Seek(cur.Offset, io.SeekStart); err != nil {
		return cur, fmt.Errorf("audit: syslog: %w", err)
	}
	return cur, nil
}

func (s *Syslog) cursorPath() string { return filepath.Join(s.log.Dir(), cursorName) }

func (s *Syslog) readCursor() cursor {
	b, err := os.ReadFile(s.cursorPath())
	if err != nil {
		return cursor{}
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return cursor{}
	}
	seq, err1 := strconv.ParseUint(f[1], 10, 64)
	off, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return cursor{}
	}
	return cursor{LogID: f[0], Seq: seq, Offset: off}
}

// saveCursor records progress. It is not synced: after a power loss the
// cursor may be behind, which only means records are sent again.
func (s *Syslog) saveCursor(c cursor) {
	s.mu.Lock()
	s.cur = c
	s.status.Sent = c.Seq
	s.mu.Unlock()
	tmp := s.cursorPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%s %d %d\n", c.LogID, c.Seq, c.Offset)), 0o600); err == nil {
		err = os.Rename(tmp, s.cursorPath())
		if err != nil {
			s.opts.Logger.Warn("audit: syslog cursor not saved", "err", err)
		}
	}
}

// frameSyslog builds one octet-counted RFC 5424 message.
func frameSyslog(hostname, logID string, r Record, line []byte) []byte {
	var m bytes.Buffer
	fmt.Fprintf(&m, "<%d>1 %s %s dcagent %d %s [%s log=\"%s\" seq=\"%d\" hash=\"%s\"] ",
		syslogPRI, r.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), hostname, os.Getpid(), r.Kind, syslogSDID, logID, r.Seq, r.Hash)
	m.Write(line)
	return append([]byte(strconv.Itoa(m.Len())+" "), m.Bytes()...)
}

// syslogName makes s a valid HOSTNAME: 1-255 printable US-ASCII without
// spaces, or "-".
func syslogName(s string) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > 255 {
		b = b[:255]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}
