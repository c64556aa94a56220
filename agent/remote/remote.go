// Package remote does the work the vendor's backend asks of the device, each
// piece only when the customer's policy allows it and each recorded in the
// audit log:
//
//   - Remote sessions. The backend queues a support engineer's request; a
//     heartbeat reply brings it (work.RemoteAccess: session id, relay
//     address, service, requester, service-request number). If policy
//     allows (or a local person approves), the agent dials the backend's
//     relay itself, over TLS with the device certificate, presents the
//     session id (relayproto.go), and bridges the connection to the local
//     service that [remote] services names for that service: a request
//     names a service, never an address. The session ends when either
//     side closes, after [remote] idle_timeout without a byte either way,
//     at [remote] max_duration, or when the agent stops; bytes each way are
//     counted. Nothing listens: every connection is one the agent dials.
//   - Files home (work.FileFetch): a file under [remote] fetch_paths, or
//     the support bundle the agent assembles from them, goes home through
//     the spool as file_chunk events, each with the SHA-256 of its bytes
//     and the last with the whole file's. Paths are opened through os.Root,
//     so ".." and symbolic links cannot lead outside an allowed folder.
//   - Files to the device (work.FilePut): into <state_dir>/inbox only,
//     at most [remote] inbox_max_bytes, and only with the vendor's
//     signature (policy.DomainFile); the file appears under its name only
//     once complete and verified.
//   - Diagnostic scripts (work.Script): only with the vendor's signature
//     (policy.DomainScript) and allowed by policy (script:NAME); run by
//     /bin/sh with a time limit, an output limit, and no network: in a new
//     network namespace (only a loopback interface, down) and a new PID
//     namespace (when the script ends or is killed, everything it started
//     dies with it). This needs root, which the agent has on a device;
//     without root the agent tries an unprivileged user namespace as well,
//     and where the kernel refuses that too, the script is not run and the
//     result says why. The exit status and output go home as a
//     command_result event.
package remote

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/fxamacker/cbor/v2"
)

// Authorizer decides requests (a *policy.Engine).
type Authorizer interface {
	Authorize(ctx context.Context, req policy.Request) policy.Outcome
}

// Auditor records what happens (an *audit.Log).
type Auditor interface {
	Append(audit.Entry) (audit.Record, error)
}

// Options configure a Manager.
type Options struct {
	Config config.Remote
	// StateDir is the agent's state directory (inbox, script runs).
	StateDir string
	// RelayTLS returns the TLS client configuration for a relay whose
	// certificate must name serverName: crypto/tlsconf.Client with the
	// pinned vendor CA and the device certificate.
	RelayTLS func(serverName string) (*tls.Config, error)
	Policy   Authorizer
	Audit    Auditor
	// Events takes file chunks and command results home (the spool).
	Events event.Sink
	// VendorKey verifies scripts and files; nil loads
	// Config.VendorKeyFile. Without a key, signed content is refused.
	VendorKey crypto.PublicKey
	// BundleParts, when set, adds files to the support bundle (the
	// daemon's status, for example): name → content.
	BundleParts func(ctx context.Context) map[string][]byte
	Logger      *slog.Logger
}

// maxSessions bounds concurrent remote sessions.
const maxSessions = 8

// Manager handles the work items the daemon hands it.
type Manager struct {
	opts      Options
	logger    *slog.Logger
	vendorKey crypto.PublicKey
	keyErr    error

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New makes a Manager. A vendor key that cannot be loaded is not an error
// here (remote sessions and file fetches do not need it); scripts and files
// sent to the device are then refused with the reason.
func New(opts Options) (*Manager, error) {
	if opts.Policy == nil || opts.Audit == nil {
		return nil, errors.New("remote: a policy and an audit log are required")
	}
	if opts.RelayTLS == nil {
		return nil, errors.New("remote: no relay TLS configuration")
	}
	m := &Manager{opts: opts, logger: opts.Logger, sessions: map[string]*session{}}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	m.vendorKey = opts.VendorKey
	if m.vendorKey == nil {
		m.vendorKey, m.keyErr = policy.LoadPublicKey(opts.Config.VendorKeyFile)
		if m.keyErr != nil {
			m.logger.Warn("remote: no vendor signing key; scripts and files sent to the device will be refused", "err", m.keyErr)
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Handle does one work item and reports how it went. It blocks until the
// item is finished: for a remote session, until the session ends (which
// may be hours), and for anything policy sends to a person, until the
// answer or the ask timeout. The daemon runs it in a goroutine of its own.
// Close cancels what is in progress.
func (m *Manager) Handle(ctx context.Context, item work.Item) work.Result {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return work.Result{ID: item.ID, Detail: "remote: the agent is shutting down"}
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()

	res := work.Result{ID: item.ID}
	var err error
	switch item.Kind {
	case work.KindRemoteAccess:
		var ra work.RemoteAccess
		if err = decodeBody(item, &ra); err == nil {
			res.OK, res.Detail = m.remoteAccess(ctx, item.ID, ra)
		}
	case work.KindFileFetch:
		var ff work.FileFetch
		if err = decodeBody(item, &ff); err == nil {
			res.OK, res.Detail = m.fileFetch(ctx, item.ID, ff)
		}
	case work.KindFilePut:
		var fp work.FilePut
		if err = decodeBody(item, &fp); err == nil {
			res.OK, res.Detail = m.filePut(ctx, item.ID, fp)
		}
	case work.KindScript:
		var s work.Script
		if err = decodeBody(item, &s); err == nil {
			res.OK, res.Detail = m.script(ctx, item.ID, s)
		}
	default:
		err = fmt.Errorf("remote: work of kind %q is not for this part", item.Kind)
	}
	if err != nil {
		res.OK, res.Detail = false, err.Error()
		m.logger.Warn("remote: work item refused", "id", item.ID, "kind", item.Kind, "err", err)
	}
	return res
}

var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		MaxArrayElements:  1024,
		MaxMapPairs:       64,
		MaxNestedLevels:   8,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

func decodeBody(item work.Item, v any) error {
	if err := decMode.Unmarshal(item.Body, v); err != nil {
		return fmt.Errorf("remote: work item %s (%s): malformed body: %w", item.ID, item.Kind, err)
	}
	return nil
}

// record appends to the audit log; a failure is logged (the caller decides
// whether it may go on).
func (m *Manager) record(kind, actor string, fields map[string]string) error {
	_, err := m.opts.Audit.Append(audit.Entry{Kind: kind, Actor: actor, Fields: fields})
	if err != nil {
		m.logger.Error("remote: audit record failed", "kind", kind, "err", err)
	}
	return err
}

// SessionInfo describes a session in progress, for `dcagent status`.
type SessionInfo struct {
	ID             string    `json:"id"`
	Service        string    `json:"service"`
	Requester      string    `json:"requester"`
	ServiceRequest string    `json:"service_request"`
	Started        time.Time `json:"started"`
	BytesToDevice  int64     `json:"bytes_to_device"`
	BytesFromDev   int64     `json:"bytes_from_device"`
}

// Sessions lists the sessions in progress.
func (m *Manager) Sessions() []SessionInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SessionInfo, 0, len(m.sessions))
	for _, s := range m.sessions {
		info := s.info
		info.BytesToDevice, info.BytesFromDev = s.toDevice.Load(), s.fromDevice.Load()
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// Close ends every session and waits for work in progress to finish.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

type session struct {
	info                 SessionInfo
	toDevice, fromDevice atomic.Int64
}

// remoteAccess runs one remote session from request to end.
func (m *Manager) remoteAccess(ctx context.Context, workID string, ra work.RemoteAccess) (bool, string) {
	actor := ra.Requester
	fail := func(reason string) (bool, string) {
		m.record(audit.KindSessionFailed, actor, map[string]string{"session": ra.SessionID, "service": ra.Service, "service_request": ra.ServiceRequest, "reason": reason, "request": workID})
		m.logger.Warn("remote: session not opened", "session", ra.SessionID, "service", ra.Service, "reason", reason)
		return false, "remote session not opened: " + reason
	}
	// What the request may name is checked before anyone is asked.
	if !ValidSessionID(ra.SessionID) {
		return fail(fmt.Sprintf("session id %q is not 8-64 of A-Z a-z 0-9 _ -", clipText(ra.SessionID)))
	}
	target, ok := m.opts.Config.Services[ra.Service]
	if !ok {
		return fail(fmt.Sprintf("service %q is not one this device offers ([remote] services)", clipText(ra.Service)))
	}
	relayHost, _, err := net.SplitHostPort(ra.RelayAddr)
	if err != nil || relayHost == "" {
		return fail(fmt.Sprintf("relay address %q is not host:port", clipText(ra.RelayAddr)))
	}
	if hosts := m.opts.Config.RelayHosts; len(hosts) > 0 && !slices.Contains(hosts, relayHost) {
		return fail(fmt.Sprintf("relay host %q is not one of [remote] relay_hosts", clipText(relayHost)))
	}

	out := m.opts.Policy.Authorize(ctx, policy.Request{
		ID: workID, Action: "remote:" + ra.Service, Requester: ra.Requester, ServiceRequest: ra.ServiceRequest,
		Detail: fmt.Sprintf("%s session to %s for %s (service request %s)", ra.Service, target, ra.Requester, ra.ServiceRequest),
	})
	if !out.Allowed {
		m.logger.Info("remote: session refused by policy", "session", ra.SessionID, "service", ra.Service, "reason", out.Reason)
		return false, "remote session refused: " + out.Reason
	}

	m.mu.Lock()
	if len(m.sessions) >= maxSessions {
		m.mu.Unlock()
		return fail(fmt.Sprintf("%d sessions are already open", maxSessions))
	}
	s := &session{info: SessionInfo{ID: ra.SessionID, Service: ra.Service, Requester: ra.Requester, ServiceRequest: ra.ServiceRequest, Started: time.Now()}}
	if _, dup := m.sessions[ra.SessionID]; dup {
		m.mu.Unlock()
		return fail("a session with this id is already open")
	}
	m.sessions[ra.SessionID] = s
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.sessions, ra.SessionID)
		m.mu.Unlock()
	}()

	// The local service first: if it is down, the relay is not bothered.
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	local, err := d.DialContext(dctx, "tcp", target)
	cancel()
	if err != nil {
		return fail(fmt.Sprintf("the local %s service at %s does not answer: %v", ra.Service, target, err))
	}
	defer local.Close()
	relay, err := m.dialRelay(ctx, ra.RelayAddr, relayHost, ra.SessionID)
	if err != nil {
		return fail(err.Error())
	}
	defer relay.Close()

	if err := m.record(audit.KindSessionStart, actor, map[string]string{
		"session": ra.SessionID, "service": ra.Service, "target": target, "relay": ra.RelayAddr,
		"service_request": ra.ServiceRequest, "request": workID,
	}); err != nil {
		return false, "remote session closed at once: the audit log cannot record it"
	}
	m.logger.Info("remote: session open", "session", ra.SessionID, "service", ra.Service, "requester", ra.Requester, "service_request", ra.ServiceRequest)
	res := bridge(ctx, relay, local, m.opts.Config.IdleTimeout, m.opts.Config.MaxDuration, &s.toDevice, &s.fromDevice)
	m.record(audit.KindSessionEnd, actor, map[string]string{
		"session": ra.SessionID, "service": ra.Service, "reason": res.Reason,
		"bytes_to_device": fmt.Sprint(res.ToDevice), "bytes_from_device": fmt.Sprint(res.FromDevice),
		"duration": res.Duration.Round(time.Millisecond).String(), "service_request": ra.ServiceRequest, "request": workID,
	})
	m.logger.Info("remote: session closed", "session", ra.SessionID, "reason", res.Reason, "bytes_to_device", res.ToDevice, "bytes_from_device", res.FromDevice)
	return true, fmt.Sprintf("remote session %s closed (%s) after %v: %d bytes to the device, %d from it",
		ra.SessionID, res.Reason, res.Duration.Round(time.Second), res.ToDevice, res.FromDevice)
}

// dialRelay opens the TLS connection to the relay and presents the session.
func (m *Manager) dialRelay(ctx context.Context, addr, host, sessionID string) (net.Conn, error) {
	cfg, err := m.opts.RelayTLS(host)
	if err != nil {
		return nil, fmt.Errorf("relay TLS configuration: %w", err)
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 30 * time.Second}, Config: cfg}
	c, err := d.DialContext(hctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", addr, err)
	}
	dl, _ := hctx.Deadline()
	c.SetDeadline(dl)
	if err := WriteHello(c, sessionID); err != nil {
		c.Close()
		return nil, fmt.Errorf("relay %s: %w", addr, err)
	}
	if err := ReadReply(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("relay %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
