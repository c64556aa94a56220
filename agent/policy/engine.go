package policy

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/dcagent/dcagent/internal/httpc"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// Auditor records what the engine decides (an *audit.Log).
type Auditor interface {
	Append(audit.Entry) (audit.Record, error)
}

// Options configure an Engine.
type Options struct {
	Config config.Policy
	// StateDir is the agent's state directory; the cache lives in
	// <StateDir>/policy.
	StateDir string
	Device   Device
	// ManagerTLS is the client configuration for the policy manager; nil
	// builds one from Config.ManagerCAFile (pinned CA, no client
	// certificate).
	ManagerTLS *tls.Config
	// Audit records decisions, answers and policy changes. Required: the
	// engine denies everything it cannot record.
	Audit  Auditor
	Logger *slog.Logger
}

// Cache files in <StateDir>/policy.
const (
	cacheDoc  = "policy.doc"
	cacheETag = "policy.etag"
)

// Engine holds the policy in force, keeps it in step with the policy
// manager, and authorises requests.
type Engine struct {
	opts      Options
	logger    *slog.Logger
	key       crypto.PublicKey
	client    *httpc.Client
	cacheDir  string
	approvals *Approvals

	mu           sync.Mutex
	cur          *Policy
	etag         string
	lastCheck    time.Time
	lastError    string
	lastRejected string // reason+digest of the last rejection audited

	cancel context.CancelFunc
	done   chan struct{}
}

// New loads the policy: the cached copy from the manager when there is a
// good one, else the local file, else none (deny everything). A local file
// that is the only source and does not parse is an error that names the
// file and line.
func New(opts Options) (*Engine, error) {
	if opts.Audit == nil {
		return nil, errors.New("policy: no audit log: every decision must be recorded")
	}
	e := &Engine{opts: opts, logger: opts.Logger, cacheDir: filepath.Join(opts.StateDir, "policy")}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	e.approvals = NewApprovals(opts.Config.AskTimeout, e.logger)
	c := opts.Config
	if c.ManagerKeyFile != "" {
		k, err := LoadPublicKey(c.ManagerKeyFile)
		if err != nil {
			return nil, err
		}
		e.key = k
	}
	if c.ManagerURL != "" {
		if e.key == nil {
			return nil, errors.New("policy: manager_url is set but manager_key_file is not: a policy from the manager must be signed")
		}
		client, err := managerClient(c, opts.ManagerTLS)
		if err != nil {
			return nil, err
		}
		e.client = client
		if err := os.MkdirAll(e.cacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("policy: cache: %w", err)
		}
	}
	if err := e.loadInitial(); err != nil {
		return nil, err
	}
	return e, nil
}

func managerClient(c config.Policy, cfg *tls.Config) (*httpc.Client, error) {
	u, err := url.Parse(c.ManagerURL)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("policy: manager_url %q is not an https:// URL", c.ManagerURL)
	}
	if cfg == nil {
		pool, err := tlsconf.LoadCAFile(c.ManagerCAFile)
		if err != nil {
			return nil, fmt.Errorf("policy: manager_ca_file: %w", err)
		}
		cfg, err = tlsconf.Client(pool, nil, u.Hostname())
		if err != nil {
			return nil, err
		}
	}
	// No proxy from the environment and no system roots: only the pinned
	// CA, straight to the manager.
	return &httpc.Client{
		TLSConfig:      cfg,
		DialContext:    (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
		Timeout:        60 * time.Second,
		MaxBodyBytes:   MaxDocumentBytes + 1,
		MaxIdlePerHost: 1,
		IdleTimeout:    time.Minute,
	}, nil
}

func (e *Engine) loadInitial() error {
	c := e.opts.Config
	if c.ManagerURL != "" {
		p, etag, err := e.readCache()
		switch {
		case err == nil && p != nil:
			e.cur, e.etag = p, etag
			e.record(audit.KindPolicyChange, map[string]string{"source": p.Source, "version": fmt.Sprint(p.Version), "digest": p.Digest, "reason": "start"})
			return nil
		case err != nil:
			e.reject(p, "cache", err.Error())
		}
	}
	if c.File == "" {
		e.logger.Warn("policy: no policy yet (no manager copy, no local file): everything is denied")
		e.record(audit.KindPolicyChange, map[string]string{"source": "none", "reason": "start"})
		return nil
	}
	p, err := e.readFile()
	if err != nil {
		if c.ManagerURL == "" {
			return err
		}
		e.reject(nil, "file "+c.File, err.Error())
		return nil
	}
	e.cur = p
	e.record(audit.KindPolicyChange, map[string]string{"source": p.Source, "version": fmt.Sprint(p.Version), "digest": p.Digest, "reason": "start"})
	return nil
}

func (e *Engine) readFile() (*Policy, error) {
	data, err := os.ReadFile(e.opts.Config.File)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(data, ParseOptions{Source: "file " + e.opts.Config.File, Key: e.key})
	if err != nil {
		return nil, err
	}
	p.Fetched = time.Now()
	return p, nil
}

// readCache returns the cached manager copy, checked again (the file on
// disk is as open to tampering as any other), or nil when there is none.
func (e *Engine) readCache() (*Policy, string, error) {
	data, err := os.ReadFile(filepath.Join(e.cacheDir, cacheDoc))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("policy: cache: %w", err)
	}
	p, err := Parse(data, ParseOptions{Source: "cache of " + e.opts.Config.ManagerURL, Key: e.key, RequireSignature: true})
	if err != nil {
		return nil, "", err
	}
	if fi, err := os.Stat(filepath.Join(e.cacheDir, cacheDoc)); err == nil {
		p.Fetched = fi.ModTime()
	}
	etag, _ := os.ReadFile(filepath.Join(e.cacheDir, cacheETag))
	return p, strings.TrimSpace(string(etag)), nil
}

// Reload reads the local policy file again (SIGHUP) when it is the
// source in use; a file that does not parse leaves the old policy and is
// returned as the error.
func (e *Engine) Reload() error {
	e.mu.Lock()
	fromFile := e.cur == nil || strings.HasPrefix(e.cur.Source, "file ")
	e.mu.Unlock()
	if e.opts.Config.File == "" || !fromFile {
		return nil
	}
	p, err := e.readFile()
	if err != nil {
		e.reject(nil, "file "+e.opts.Config.File, err.Error())
		return err
	}
	e.install(p, "reload")
	return nil
}

// install makes p the policy in force and records the change.
func (e *Engine) install(p *Policy, reason string) {
	e.mu.Lock()
	prev := e.cur
	if prev != nil && prev.Digest == p.Digest {
		e.cur.Fetched = p.Fetched
		e.mu.Unlock()
		return
	}
	e.cur = p
	e.lastError = ""
	e.mu.Unlock()
	fields := map[string]string{"source": p.Source, "version": fmt.Sprint(p.Version), "digest": p.Digest, "reason": reason}
	if prev != nil {
		fields["previous_version"] = fmt.Sprint(prev.Version)
		fields["previous_digest"] = prev.Digest
	}
	e.logger.Info("policy: new policy in force", "source", p.Source, "version", p.Version, "rules", len(p.Rules))
	e.record(audit.KindPolicyChange, fields)
}

// reject keeps the old policy, says why, and audits the rejection once
// per distinct reason.
func (e *Engine) reject(p *Policy, source, reason string) {
	key := source + "\x00" + reason
	e.mu.Lock()
	e.lastError = reason
	repeat := e.lastRejected == key
	e.lastRejected = key
	e.mu.Unlock()
	if repeat {
		return
	}
	e.logger.Warn("policy: rejected; the policy in force stays", "source", source, "reason", reason)
	e.record(audit.KindPolicyRejected, map[string]string{"source": source, "reason": reason})
}

func (e *Engine) record(kind string, fields map[string]string) error {
	return e.recordBy(kind, "agent", fields)
}

func (e *Engine) recordBy(kind, actor string, fields map[string]string) error {
	_, err := e.opts.Audit.Append(audit.Entry{Kind: kind, Actor: actor, Fields: fields})
	if err != nil {
		e.logger.Error("policy: audit record failed", "kind", kind, "err", err)
	}
	return err
}

// Start polls the policy manager every poll_interval (with jitter), the
// first time at once. Without a manager it does nothing.
func (e *Engine) Start() {
	if e.client == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		for {
			if err := e.SyncNow(ctx); err != nil && ctx.Err() == nil {
				e.logger.Debug("policy: sync", "err", err)
			}
			iv := e.opts.Config.PollInterval
			wait := iv - iv/10 + rand.N(iv/5+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// Close stops polling.
func (e *Engine) Close() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
}

// SyncNow asks the policy manager for its policy once (a policy-update
// work item calls it). A policy that is malformed, unsigned, badly signed
// or older than the one in force is rejected and the old one kept; the
// error says why.
func (e *Engine) SyncNow(ctx context.Context) error {
	if e.client == nil {
		return errors.New("policy: no policy manager configured")
	}
	url := e.opts.Config.ManagerURL
	req, err := httpc.NewRequest("GET", url, nil)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	e.mu.Lock()
	cur, etag := e.cur, e.etag
	e.mu.Unlock()
	fromManager := cur != nil && !strings.HasPrefix(cur.Source, "file ")
	if etag != "" && fromManager {
		req.Header.Set("If-None-Match", etag)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := e.client.Do(ctx, req)
	if errors.Is(err, httpc.ErrBodyTooLarge) {
		reason := fmt.Sprintf("the document is more than the %d bytes allowed", MaxDocumentBytes)
		e.reject(nil, "manager "+url, reason)
		return fmt.Errorf("policy: manager %s: %s", url, reason)
	}
	if err != nil {
		e.setError(fmt.Sprintf("policy manager unreachable: %v", err))
		return fmt.Errorf("policy: manager %s: %w", url, err)
	}
	now := time.Now()
	switch resp.StatusCode {
	case 304:
		e.mu.Lock()
		e.lastCheck, e.lastError = now, ""
		e.mu.Unlock()
		return nil
	case 200:
	default:
		msg := fmt.Sprintf("policy manager answered %s", resp.Status)
		e.setError(msg)
		return fmt.Errorf("policy: manager %s: %s", url, msg)
	}
	data := resp.Body
	e.mu.Lock()
	e.lastCheck = now
	e.mu.Unlock()
	p, err := Parse(data, ParseOptions{Source: "manager " + url, Key: e.key, RequireSignature: true})
	if err != nil {
		e.reject(nil, "manager "+url, err.Error())
		return err
	}
	p.Fetched = now
	if fromManager && p.Version < cur.Version {
		err := fmt.Errorf("policy: manager %s: version %d is older than version %d in force (a rollback)", url, p.Version, cur.Version)
		e.reject(p, "manager "+url, err.Error())
		return err
	}
	if fromManager && p.Version == cur.Version && p.Digest != cur.Digest {
		err := fmt.Errorf("policy: manager %s: the policy changed but its version %d did not", url, p.Version)
		e.reject(p, "manager "+url, err.Error())
		return err
	}
	if err := e.writeCache(data, resp.Header.Get("ETag")); err != nil {
		e.logger.Warn("policy: the new policy is in force but could not be cached", "err", err)
	}
	e.mu.Lock()
	e.etag = resp.Header.Get("ETag")
	e.mu.Unlock()
	e.install(p, "fetched")
	return nil
}

func (e *Engine) setError(msg string) {
	e.mu.Lock()
	e.lastError = msg
	e.mu.Unlock()
}

// writeCache stores the document durably: a crash leaves the old copy or
// the new one, never half of one.
func (e *Engine) writeCache(doc []byte, etag string) error {
	for name, data := range map[string][]byte{cacheDoc: doc, cacheETag: []byte(etag + "\n")} {
		tmp := filepath.Join(e.cacheDir, name+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, werr := f.Write(data)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(e.cacheDir, name)); err != nil {
			return err
		}
	}
	d, err := os.Open(e.cacheDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Current returns the policy in force (nil: none, everything denied).
func (e *Engine) Current() *Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur
}

// Decide decides action for this device under the policy in force,
// without recording anything (for `dcagent policy explain`).
func (e *Engine) Decide(action string) Decision {
	return e.Current().Decide(e.opts.Device, action)
}

// Explain is Policy.Explain for the policy in force and this device.
func (e *Engine) Explain(action string) string {
	return e.Current().Explain(e.opts.Device, action)
}

// Approvals returns the table of requests waiting for a local person.
func (e *Engine) Approvals() *Approvals { return e.approvals }

// Request is something the backend asks the device to do.
type Request struct {
	// ID is the work item's id, for the record.
	ID             string
	Action         string
	Requester      string
	ServiceRequest string
	// Detail is shown to a local approver.
	Detail string
}

// Outcome is the result of Authorize.
type Outcome struct {
	Allowed  bool
	Decision Decision
	// AskID and Answer are set when a person was asked.
	AskID  string
	Answer *Answer
	// Reason says in plain words why the request was allowed or not.
	Reason string
}

// Authorize decides req, asks a local person when the policy says ask
// (blocking until the answer, the ask timeout or ctx), and records the
// decision and any answer in the audit log. A request whose decision
// cannot be recorded is denied.
func (e *Engine) Authorize(ctx context.Context, req Request) Outcome {
	d := e.Decide(req.Action)
	out := Outcome{Decision: d, Reason: d.Reason}
	fields := map[string]string{
		"request": req.ID, "action": req.Action, "effect": d.Effect.String(), "rule": d.RuleRef(),
		"policy_version": strconv.FormatUint(d.PolicyVersion, 10), "service_request": req.ServiceRequest,
	}
	if err := e.recordBy(audit.KindDecision, req.Requester, fields); err != nil {
		out.Reason = "the decision could not be recorded in the audit log: denied"
		return out
	}
	switch d.Effect {
	case Allow:
		out.Allowed = true
		return out
	case Deny:
		return out
	}
	p, ans := e.approvals.Ask(ctx, Pending{Action: req.Action, Requester: req.Requester, ServiceRequest: req.ServiceRequest, Detail: req.Detail})
	out.AskID, out.Answer = p.ID, &ans
	afields := map[string]string{"request": req.ID, "ask": p.ID, "action": req.Action, "answer": ans.Outcome, "by": ans.By, "service_request": req.ServiceRequest}
	if err := e.recordBy(audit.KindAskAnswered, req.Requester, afields); err != nil {
		out.Reason = "the answer could not be recorded in the audit log: denied"
		return out
	}
	switch ans.Outcome {
	case "approved":
		out.Allowed = true
		out.Reason = "approved by " + ans.By
	case "denied":
		out.Reason = "denied by " + ans.By
	case "timeout":
		out.Reason = fmt.Sprintf("nobody answered within %v: denied", e.opts.Config.AskTimeout)
	default:
		out.Reason = "the request was cancelled before anyone answered: denied"
	}
	return out
}

// Status is the engine's state for `dcagent status`.
type Status struct {
	Source    string    `json:"source"`
	Version   uint64    `json:"version"`
	Digest    string    `json:"digest,omitempty"`
	Signed    bool      `json:"signed"`
	Rules     int       `json:"rules"`
	Loaded    time.Time `json:"loaded,omitzero"`
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Pending   int       `json:"pending_approvals"`
}

// Status returns where the policy came from, how old it is, the last
// problem with the manager, and how many requests wait for a person.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{Source: "none", LastCheck: e.lastCheck, LastError: e.lastError, Pending: len(e.approvals.Pending())}
	if p := e.cur; p != nil {
		st.Source, st.Version, st.Digest, st.Signed, st.Rules, st.Loaded = p.Source, p.Version, p.Digest, p.Signed, len(p.Rules), p.Fetched
	}
	return st
}
