// Package status is the daemon's local control socket and its client.
//
// The daemon listens on a Unix socket in its state directory
// (<state_dir>/dcagent.sock, mode 0660, owned by root and [policy]
// socket_group), never on a network port. Each connection carries one
// request and one response, each a single line of JSON:
//
//	→ {"method":"approve","params":{"id":"k3q9xzab"}}
//	← {"ok":true,"result":{...}}
//	← {"ok":false,"error":"no request with that id is waiting: \"k3q9xzab\""}
//
// Parts of the daemon register named methods (Register). A method is open
// to anyone who can open the socket (Anyone: "status", "pending") or only
// to the approvers [policy] approvers names (Approvers: "approve", "deny"),
// checked against the peer's credentials as the kernel reports them
// (SO_PEERCRED: uid, gid and pid, which the peer cannot forge), and the
// user's groups from the system's user database. Every request, allowed or
// not, is recorded in the audit log with the peer's uid, pid and user.
package status

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
)

// SocketName is the control socket's name in the state directory.
const SocketName = "dcagent.sock"

// Limits of the protocol.
const (
	maxRequestBytes = 64 << 10
	maxConns        = 16
	readTimeout     = 10 * time.Second
	handlerTimeout  = 30 * time.Second
)

// Access says who may call a method.
type Access int

const (
	// Anyone who can open the socket (mode 0660: root and the socket
	// group).
	Anyone Access = iota
	// Approvers named in [policy] approvers only.
	Approvers
)

func (a Access) String() string {
	if a == Approvers {
		return "approvers"
	}
	return "anyone"
}

// Peer is the process on the other end of a connection.
type Peer struct {
	UID, GID uint32
	PID      int32
	// User is the user name for UID ("" when the user database has none).
	User string
}

// String names the peer for the audit log and approvals: uid:N(NAME).
func (p Peer) String() string {
	if p.User == "" {
		return fmt.Sprintf("uid:%d", p.UID)
	}
	return fmt.Sprintf("uid:%d(%s)", p.UID, p.User)
}

// Handler serves one method. params is the request's params (may be
// empty); the result is sent back as JSON.
type Handler func(ctx context.Context, peer Peer, params json.RawMessage) (any, error)

// Auditor records every use of the socket (an *audit.Log).
type Auditor interface {
	Append(audit.Entry) (audit.Record, error)
}

// Options configure the server.
type Options struct {
	// Path is the socket's path, normally <state_dir>/dcagent.sock.
	Path string
	// Approvers are user names and group:NAME entries ([policy] approvers).
	Approvers []string
	// Group, when set, owns the socket so that its members can connect
	// ([policy] socket_group).
	Group  string
	Audit  Auditor
	Logger *slog.Logger
}

type method struct {
	access  Access
	handler Handler
}

// Server is the control socket.
type Server struct {
	opts   Options
	logger *slog.Logger
	ln     *net.UnixListener

	mu       sync.Mutex
	methods  map[string]method
	coalesce map[string]*coalesced // read-only uses recorded per window

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}
}

// Listen creates the socket. A socket left by a daemon that is gone is
// replaced; one that a running daemon answers on is an error.
func Listen(opts Options) (*Server, error) {
	if opts.Audit == nil {
		return nil, errors.New("status: no audit log: every use of the socket must be recorded")
	}
	if opts.Path == "" {
		return nil, errors.New("status: no socket path")
	}
	s := &Server{opts: opts, logger: opts.Logger, methods: map[string]method{}, sem: make(chan struct{}, maxConns)}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if err := removeStale(opts.Path); err != nil {
		return nil, err
	}
	gid := -1
	if opts.Group != "" {
		g, err := user.LookupGroup(opts.Group)
		if err != nil {
			return nil, fmt.Errorf("status: socket_group %q: %w", opts.Group, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	// Bind under a temporary name, set the mode and owner there, and only
	// then rename it into place: the socket never sits at its real path
	// with the umask's permissions.
	tmp := filepath.Join(filepath.Dir(opts.Path), fmt.Sprintf(".%s.%d", filepath.Base(opts.Path), os.Getpid()))
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("status: listen on %s: %w", opts.Path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("status: %s: %w", opts.Path, err)
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, opts.Path); err != nil {
		return fail(err)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("status: %s exists and is not a socket; remove it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("status: another dcagent daemon answers on %s", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("status: remove stale socket: %w", err)
	}
	return nil
}

// Register adds a method. Registering a name twice panics (a programming
// error).
func (s *Server) Register(name string, access Access, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.methods[name]; dup {
		panic("status: method registered twice: " + name)
	}
	s.methods[name] = method{access: access, handler: h}
}

// Path is the socket's path.
func (s *Server) Path() string { return s.opts.Path }

// Start serves connections until Close.
func (s *Server) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.AcceptUnix()
			if err != nil {
				if s.ctx.Err() != nil {
					return
				}
				s.logger.Warn("status: accept", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			select {
			case s.sem <- struct{}{}:
			default:
				c.Close() // too many at once: a local client retries
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-s.sem }()
				s.serve(c)
			}()
		}
	}()
}

// Close stops serving, waits for requests in progress and removes the
// socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	os.Remove(s.opts.Path)
	return err
}

type request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

type response struct {
	OK     bool   `json:"ok"`
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) serve(c *net.UnixConn) {
	defer c.Close()
	peer, err := peerOf(c)
	if err != nil {
		s.logger.Warn("status: peer credentials unavailable; connection refused", "err", err)
		return
	}
	c.SetReadDeadline(time.Now().Add(readTimeout))
	br := bufio.NewReaderSize(c, 4096)
	line, err := readLine(br)
	reply := func(r response) {
		c.SetWriteDeadline(time.Now().Add(readTimeout))
		b, _ := json.Marshal(r)
		c.Write(append(b, '\n'))
	}
	var req request
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil || req.Method == "" {
		s.audit(peer, "(malformed)", false, "malformed request")
		reply(response{Error: "malformed request: send one line of JSON {\"method\":...,\"params\":...}"})
		return
	}
	s.mu.Lock()
	m, ok := s.methods[req.Method]
	names := s.methodNamesLocked()
	s.mu.Unlock()
	if !ok {
		s.audit(peer, clipMethod(req.Method), false, "unknown method")
		reply(response{Error: fmt.Sprintf("unknown method %q (known: %s)", clipMethod(req.Method), strings.Join(names, ", "))})
		return
	}
	if m.access == Approvers && !s.isApprover(peer) {
		s.audit(peer, req.Method, false, "not an approver")
		reply(response{Error: fmt.Sprintf("%s may not call %s: only the approvers in [policy] approvers (%s) may", peer, req.Method, strings.Join(s.opts.Approvers, ", "))})
		return
	}
	// Nothing an approver does goes unrecorded: without the record, no
	// action.
	if err := s.audit(peer, req.Method, true, ""); err != nil && m.access == Approvers {
		reply(response{Error: "the audit log cannot record this request: refused"})
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, handlerTimeout)
	defer cancel()
	result, herr := m.handler(ctx, peer, req.Params)
	if herr != nil {
		reply(response{Error: herr.Error()})
		return
	}
	reply(response{OK: true, Result: result})
}

func clipMethod(m string) string {
	if len(m) > 64 {
		return m[:64]
	}
	return m
}

func (s *Server) methodNamesLocked() []string {
	names := make([]string, 0, len(s.methods))
	for n := range s.methods {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// readOnly are the methods that only look: a monitoring script may call
// them every minute for years, so their uses are recorded once per
// readOnlyWindow and user, with the number of calls since the last record,
// instead of one record (and one TPM counter increment) per call.
var readOnly = map[string]bool{"status": true, "pending": true}

const readOnlyWindow = 10 * time.Minute

type coalesced struct {
	last  time.Time
	calls int
}

func (s *Server) audit(p Peer, method string, allowed bool, reason string) error {
	extra := ""
	if allowed && readOnly[method] {
		key := fmt.Sprintf("%s/%d", method, p.UID)
		s.mu.Lock()
		if s.coalesce == nil {
			s.coalesce = map[string]*coalesced{}
		}
		c := s.coalesce[key]
		if c == nil {
			c = &coalesced{}
			s.coalesce[key] = c
		}
		now := time.Now()
		if !c.last.IsZero() && now.Sub(c.last) < readOnlyWindow {
			c.calls++
			s.mu.Unlock()
			return nil
		}
		if c.calls > 0 {
			extra = strconv.Itoa(c.calls)
		}
		c.last, c.calls = now, 0
		s.mu.Unlock()
	}
	fields := map[string]string{"method": method, "uid": fmt.Sprint(p.UID), "pid": fmt.Sprint(p.PID), "user": p.User, "allowed": strconv.FormatBool(allowed)}
	if extra != "" {
		fields["calls_not_recorded_since_last"] = extra
	}
	if reason != "" {
		fields["reason"] = reason
	}
	_, err := s.opts.Audit.Append(audit.Entry{Kind: audit.KindLocalRequest, Actor: p.String(), Fields: fields})
	if err != nil {
		s.logger.Error("status: audit record failed", "err", err)
	}
	return err
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		line = append(line, part...)
		if err == nil && len(line) <= maxRequestBytes {
			return line, nil
		}
		if len(line) >= maxRequestBytes {
			return nil, errors.New("request too long")
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// peerOf reads the kernel's credentials of the process that connected.
func peerOf(c *net.UnixConn) (Peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	p := Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		p.User = u.Username
	}
	return p, nil
}

// isApprover checks the peer against [policy] approvers: a user name, or
// group:NAME where NAME is the peer's primary group (from the kernel) or
// one of its user's groups.
func (s *Server) isApprover(p Peer) bool {
	var groups []string // group ids, looked up once when needed
	for _, a := range s.opts.Approvers {
		name, isGroup := strings.CutPrefix(a, "group:")
		if !isGroup {
			if p.User != "" && p.User == name {
				return true
			}
			continue
		}
		g, err := user.LookupGroup(name)
		if err != nil {
			continue
		}
		if g.Gid == strconv.FormatUint(uint64(p.GID), 10) {
			return true
		}
		if groups == nil && p.User != "" {
			if u, err := user.Lookup(p.User); err == nil {
				groups, _ = u.GroupIds()
			}
			if groups == nil {
				groups = []string{}
			}
		}
		if slices.Contains(groups, g.Gid) {
			return true
		}
	}
	return false
}
