// Package daemon wires dcagent's parts into the running agent (`dcagent
// run`): hardware monitoring and prediction feed the spool, the uploader
// sends the spool home, the heartbeat keeps the session alive and brings
// work, which policy authorises and the remote-access manager carries out;
// the audit log records it all, and the control socket answers `dcagent
// status`, `approve` and `deny`.
//
// Lifecycle. Run loads the configuration (the file plus the overlay of
// remotely changed settings in the state directory) and starts every part.
// SIGTERM (the caller cancels ctx) stops them in reverse order within a few
// seconds: the spool and the audit log are durable at every write, so
// nothing is lost by stopping. SIGHUP (a value on the reload channel)
// re-reads the configuration: a configuration with an error is refused
// with the reason and the running one stays; a good one restarts the parts
// with it. A device that is not enrolled yet still monitors its hardware
// and spools events; the network parts start once `dcagent enroll` has
// stored a certificate (checked every minute and at every SIGHUP).
//
// The daemon writes nothing outside its state directory and listens on no
// network port; its one socket is the Unix control socket.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/monitor"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/dcagent/dcagent/agent/status"
	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// Options configure Run.
type Options struct {
	// ConfigPath is the configuration file (--config).
	ConfigPath string
	// Version is the agent's version, sent in telemetry.
	Version string
	// Logger gets the daemon's lines; nil discards.
	Logger *slog.Logger
	// OnConfig is called with every configuration that takes effect (the
	// command uses it to set the log level and output).
	OnConfig func(*config.Config)
	// EnrollPoll is how often a device that is not enrolled looks for a
	// certificate; 0 means a minute.
	EnrollPoll time.Duration
}

// Run runs the daemon until ctx ends. A value on reload re-reads the
// configuration. The returned error is a configuration problem at start
// (naming the file and key) or a part that could not start.
func Run(ctx context.Context, opts Options, reload <-chan struct{}) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EnrollPoll <= 0 {
		opts.EnrollPoll = time.Minute
	}
	cfg, err := config.LoadWithOverlay(opts.ConfigPath)
	if err != nil {
		return err
	}
	for {
		if opts.OnConfig != nil {
			opts.OnConfig(cfg)
		}
		next, err := runConfig(ctx, opts, cfg, reload)
		if err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		cfg = next
	}
}

// runConfig runs the parts with one configuration. It returns the next
// configuration after a good reload, or nil when ctx ended.
func runConfig(ctx context.Context, opts Options, cfg *config.Config, reload <-chan struct{}) (*config.Config, error) {
	log := opts.Logger
	d, err := start(ctx, opts, cfg)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "reason", "signal")
			return nil, nil
		case <-d.selfReload:
		case <-reload:
		}
		next, err := config.LoadWithOverlay(opts.ConfigPath)
		if err != nil {
			log.Error("configuration reload refused; the running configuration stays", "err", err)
			d.record("agent.reload", map[string]string{"result": "refused", "reason": err.Error()})
			d.mu.Lock()
			d.reloadErr = err.Error()
			d.mu.Unlock()
			continue
		}
		log.Info("configuration reloaded", "file", opts.ConfigPath)
		d.record("agent.reload", map[string]string{"result": "applied"})
		return next, nil
	}
}

// daemon holds the running parts of one configuration.
type daemon struct {
	opts    Options
	cfg     *config.Config
	log     *slog.Logger
	started time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	audit   *audit.Log
	syslog  *audit.Syslog
	spool   *spool.Spool
	monitor *monitor.Monitor
	policy  *policy.Engine
	control *status.Server
	lock    *os.File // the state directory's lock, held while running

	// selfReload asks runConfig for a reload (a remote configuration
	// change), as SIGHUP does.
	selfReload chan struct{}

	mu        sync.Mutex
	id        *identity.Identity
	uploader  *connecthome.Uploader
	hb        *heartbeat.Client
	remote    *remote.Manager
	enrollErr string
	reloadErr string // the last refused reload, "" after a good start
}

func start(parent context.Context, opts Options, cfg *config.Config) (_ *daemon, err error) {
	ctx, cancel := context.WithCancel(parent)
	d := &daemon{opts: opts, cfg: cfg, log: opts.Logger, started: time.Now(), ctx: ctx, cancel: cancel, selfReload: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	if err := os.MkdirAll(cfg.Device.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s ([device] state_dir in %s): %w", cfg.Device.StateDir, cfg.Path, err)
	}
	if err := openStateDirToGroup(cfg); err != nil {
		return nil, err
	}
	// One daemon per state directory, decided before anything in it is
	// touched: a second one appending to the same audit log would fork its
	// chain.
	if d.lock, err = lockStateDir(cfg.Device.StateDir); err != nil {
		return nil, err
	}
	if isFileKey(cfg.Identity.KeyURI) {
		d.log.Warn("the device key is a file: for development only; anyone with a copy of the state directory can act as this device", "key_uri", cfg.Identity.KeyURI)
	}

	// The identity comes first: with a TPM it holds the one connection the
	// audit log's counter also goes through.
	d.tryIdentity()

	if err := d.openAudit(); err != nil {
		return nil, err
	}
	d.record("agent.start", map[string]string{"version": opts.Version, "config": cfg.Path})

	if d.spool, err = spool.Open(filepath.Join(cfg.Device.StateDir, "spool"), spool.Limits{MaxBytes: cfg.Spool.MaxBytes, MaxEvents: cfg.Spool.MaxEvents}, d.log); err != nil {
		return nil, err
	}
	d.spool.SetSystemID(cfg.Device.SystemID)

	if d.monitor, err = monitor.New(monitor.Options{Config: cfg, Sink: d.spool, Logger: d.log.With("part", "monitor"), HealthExtra: d.healthExtra}); err != nil {
		return nil, err
	}
	if d.policy, err = policy.New(policy.Options{
		Config:   cfg.Policy,
		StateDir: cfg.Device.StateDir,
		Device:   policy.Device{Type: cfg.Device.Type, Model: cfg.Device.Model, Serial: cfg.Device.Serial, Labels: cfg.Device.Labels},
		Audit:    d.audit,
		Logger:   d.log.With("part", "policy"),
	}); err != nil {
		return nil, err
	}
	d.policy.Start()

	if d.control, err = status.Listen(status.Options{
		Path:      filepath.Join(cfg.Device.StateDir, status.SocketName),
		Approvers: cfg.Policy.Approvers,
		Group:     cfg.Policy.SocketGroup,
		Audit:     d.audit,
		Logger:    d.log.With("part", "control"),
	}); err != nil {
		return nil, err
	}
	status.RegisterApprovals(d.control, d.policy.Approvals())
	status.RegisterAudit(d.control, d.audit)
	d.control.Register("status", status.Anyone, d.statusHandler)
	d.control.Start()

	d.goRun("monitor", d.monitor.Run)
	d.goRun("network", d.runNetwork)
	d.goRun("trim", d.trimAfterStart)
	d.log.Info("started", "version", opts.Version, "system_id", cfg.Device.SystemID, "state_dir", cfg.Device.StateDir)
	return d, nil
}

// requestReload asks for the configuration to be read again, as SIGHUP does.
func (d *daemon) requestReload() {
	select {
	case d.selfReload <- struct{}{}:
	default:
	}
}

// trimAfterStart releases start-up memory once the parts have settled
// (first readings taken, first heartbeat answered), then every few
// minutes: pages of the binary that only a rare path touched go back to
// the page cache, and the few that the steady loops use fault back in.
func (d *daemon) trimAfterStart(ctx context.Context) error {
	wait := 30 * time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		n := trimMemory()
		d.log.Debug("released start-up memory", "binary_bytes_advised", n)
		wait = 5 * time.Minute
	}
}

func isFileKey(uri string) bool { return len(uri) >= 5 && uri[:5] == "file:" }

// tryIdentity loads the device identity. Failure is not fatal: a device
// that is not enrolled still monitors and spools.
func (d *daemon) tryIdentity() *identity.Identity {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.id != nil {
		return d.id
	}
	id, err := identity.Load(d.ctx, d.cfg, identity.Options{Logger: d.log.With("part", "identity")})
	if err != nil {
		if d.enrollErr != err.Error() {
			d.log.Error("no usable identity yet; monitoring goes on and events wait in the spool", "err", err)
			d.enrollErr = err.Error()
		}
		return nil
	}
	d.id = id
	d.enrollErr = ""
	return id
}

func (d *daemon) openAudit() error {
	var counter audit.Counter
	if index, ok, _ := d.cfg.Audit.CounterIndex(); ok {
		d.mu.Lock()
		id := d.id
		d.mu.Unlock()
		if id != nil {
			if cs, isCounter := id.Store().(keystore.CounterStore); isCounter {
				c, err := cs.Counter(index)
				if err != nil {
					d.log.Warn("audit log not anchored in the TPM: its counter is unusable; the syslog stream anchors it", "index", fmt.Sprintf("%#x", index), "err", err)
				} else {
					counter = c
				}
			}
		}
	}
	var err error
	d.audit, err = audit.Open(audit.Options{Dir: filepath.Join(d.cfg.Device.StateDir, "audit"), Counter: counter, Logger: d.log.With("part", "audit")})
	if err != nil {
		return err
	}
	if t := d.audit.Recovered(); t != nil {
		d.log.Error("the audit log failed verification at start: kept aside as evidence, a new log started", "problem", t.Error())
	}
	if d.cfg.Audit.SyslogAddr != "" {
		var tc *tls.Config
		if d.cfg.Audit.SyslogTLS {
			roots, err := tlsconf.LoadCAFile(d.cfg.Audit.SyslogCAFile)
			if err != nil {
				return &config.Error{File: d.cfg.Path, Section: "audit", Key: "syslog_ca_file", Err: err}
			}
			host := d.cfg.Audit.SyslogAddr
			if h, _, err := splitHost(host); err == nil {
				host = h
			}
			var cert *tls.Certificate
			if id := d.identity(); id != nil {
				c := id.TLSCertificate()
				cert = &c
			}
			if tc, err = tlsconf.Client(roots, cert, host); err != nil {
				return err
			}
		}
		d.syslog, err = audit.NewSyslog(d.audit, audit.SyslogOptions{Addr: d.cfg.Audit.SyslogAddr, TLS: tc, Hostname: d.cfg.Device.SystemID, Logger: d.log.With("part", "syslog")})
		if err != nil {
			return err
		}
		d.syslog.Start()
	}
	return nil
}

func (d *daemon) identity() *identity.Identity {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.id
}

// record writes an audit record about the agent itself; a failure is
// logged, since there is nowhere else to put it.
func (d *daemon) record(kind string, fields map[string]string) {
	if d.audit == nil {
		return
	}
	if _, err := d.audit.Append(audit.Entry{Kind: kind, Actor: "dcagent", Fields: fields}); err != nil {
		d.log.Error("audit record failed", "kind", kind, "err", err)
	}
}

func (d *daemon) goRun(name string, fn func(context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := fn(d.ctx); err != nil && !errors.Is(err, context.Canceled) && d.ctx.Err() == nil {
			d.log.Error("part stopped", "part", name, "err", err)
		}
	}()
}

// stop ends every part: the running loops first, then what they write to.
func (d *daemon) stop() {
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		d.log.Warn("parts still busy at shutdown; closing their stores anyway")
	}
	d.mu.Lock()
	rm, id := d.remote, d.id
	d.mu.Unlock()
	if rm != nil {
		rm.Close()
	}
	if d.control != nil {
		d.control.Close()
	}
	if d.policy != nil {
		d.policy.Close()
	}
	if d.spool != nil {
		d.spool.Close()
	}
	if d.audit != nil {
		d.record("agent.stop", nil)
		if d.syslog != nil {
			d.syslog.Close()
		}
		d.audit.Close()
	}
	if id != nil {
		id.Close()
	}
	if d.lock != nil {
		d.lock.Close() // releases the lock
	}
}
