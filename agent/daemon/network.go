package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

func splitHost(hostport string) (string, string, error) { return net.SplitHostPort(hostport) }

// runNetwork waits for an identity, then runs everything that talks to the
// backend: the uploader, certificate renewal, and the heartbeat with the
// work it brings. Every channel (uploads, the relay, the heartbeat) takes
// the identity's current certificate at each handshake, so a renewal
// restarts nothing.
func (d *daemon) runNetwork(ctx context.Context) error {
	var id *identity.Identity
	for id = d.identity(); id == nil; id = d.tryIdentity() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.opts.EnrollPoll):
		}
	}
	cfg := d.cfg
	if cfg.Backend.URL == "" {
		return &config.Error{File: cfg.Path, Section: "backend", Key: "url", Err: fmt.Errorf("must be set: the agent has nowhere to send events")}
	}
	u, err := url.Parse(cfg.Backend.URL)
	if err != nil {
		return &config.Error{File: cfg.Path, Section: "backend", Key: "url", Err: err}
	}
	uploadTLS, err := id.ClientTLS(u.Hostname())
	if err != nil {
		return err
	}
	up, err := connecthome.New(cfg, d.spool, uploadTLS, d.log)
	if err != nil {
		return err
	}
	// A request names its relay; unless the configuration lists relay hosts,
	// only the backend's own host is accepted, so that a request cannot
	// make the device dial (and send a TLS ClientHello to) any address.
	remoteCfg := cfg.Remote
	if len(remoteCfg.RelayHosts) == 0 {
		remoteCfg.RelayHosts = []string{u.Hostname()}
	}
	rm, err := remote.New(remote.Options{
		Config:   remoteCfg,
		StateDir: cfg.Device.StateDir,
		RelayTLS: func(serverName string) (*tls.Config, error) {
			return tlsconf.ClientWithSource(id.Roots(), id.Current, serverName)
		},
		Policy:      d.policy,
		Audit:       d.audit,
		Events:      d.spool,
		BundleParts: d.bundleParts,
		Logger:      d.log.With("part", "remote"),
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.uploader, d.remote = up, rm
	d.mu.Unlock()

	var wg sync.WaitGroup
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("part stopped", "part", name, "err", err)
			}
		}()
	}
	run("upload", up.Run)
	run("renewal", id.Run)
	defer wg.Wait()

	// A network change wakes the uploader as well as the heartbeat: a
	// backlog goes out as soon as the path is back, not after the back-off.
	watch := heartbeat.NoNetworkWatch
	if cfg.Heartbeat.WatchNetwork {
		watch = heartbeat.DefaultNetworkWatch()
	}
	watch = heartbeat.NetworkWatch(watch).Also(func(string) { up.Wake() })
	hb, err := heartbeat.New(heartbeat.Options{
		NetworkWatch:   watch,
		Config:         cfg,
		Certificate:    id.TLSCertificate(),
		GetCertificate: id.Current,
		Roots:          id.Roots(),
		Telemetry:      d.telemetry,
		Work:           d.dispatch,
		StateDir:       cfg.Device.StateDir,
		Logger:         d.log.With("part", "heartbeat"),
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.hb = hb
	d.mu.Unlock()
	// A renewed certificate is taken at the next handshake; the session,
	// and any remote session its work opened, go on.
	return hb.Run(ctx)
}

// dispatch hands one work item from a heartbeat reply to the part that
// does it. The heartbeat guarantees each item runs once.
func (d *daemon) dispatch(ctx context.Context, it work.Item) work.Result {
	d.mu.Lock()
	rm := d.remote
	d.mu.Unlock()
	switch it.Kind {
	case work.KindRemoteAccess, work.KindScript, work.KindFileFetch, work.KindFilePut:
		if rm == nil {
			return work.Result{ID: it.ID, Detail: "remote access is not ready yet"}
		}
		return rm.Handle(ctx, it)
	case work.KindCollectNow:
		d.monitor.TriggerCollect()
		return work.Result{ID: it.ID, OK: true, Detail: "a full health report is on its way"}
	case work.KindPolicyUpdate:
		if err := d.policy.SyncNow(ctx); err != nil {
			return work.Result{ID: it.ID, Detail: "policy not updated: " + err.Error()}
		}
		return work.Result{ID: it.ID, OK: true, Detail: "policy synchronised"}
	case work.KindConfigUpdate:
		return d.configUpdate(ctx, it)
	default:
		return work.Result{ID: it.ID, Detail: fmt.Sprintf("unknown work kind %q: this agent does not know how to do it", it.Kind)}
	}
}

// configUpdate changes one setting from the backend: only settings on the
// remotely-settable list, only when policy allows "config", recorded in
// the audit log, kept in the state directory's overlay and applied by a
// reload.
func (d *daemon) configUpdate(ctx context.Context, it work.Item) work.Result {
	var cu work.ConfigUpdate
	if err := cbor.Unmarshal(it.Body, &cu); err != nil {
		return work.Result{ID: it.ID, Detail: "configuration update is malformed: " + err.Error()}
	}
	setting := cu.Section + "." + cu.Key
	if !config.RemotelySettable(cu.Section, cu.Key) {
		d.record("config.refused", map[string]string{"setting": setting, "reason": "not remotely settable"})
		return work.Result{ID: it.ID, Detail: setting + " cannot be changed remotely"}
	}
	trial := *d.cfg
	if err := trial.Set(cu.Section, cu.Key, cu.Value); err != nil {
		d.record("config.refused", map[string]string{"setting": setting, "reason": err.Error()})
		return work.Result{ID: it.ID, Detail: err.Error()}
	}
	out := d.policy.Authorize(ctx, policy.Request{ID: it.ID, Action: "config", Detail: setting + " = " + cu.Value})
	if !out.Allowed {
		return work.Result{ID: it.ID, Detail: "not allowed: " + out.Reason}
	}
	if err := config.WriteOverlay(d.cfg.Device.StateDir, cu.Section, cu.Key, cu.Value); err != nil {
		return work.Result{ID: it.ID, Detail: err.Error()}
	}
	d.record("config.change", map[string]string{"setting": setting, "value": cu.Value, "request": it.ID})
	d.requestReload()
	return work.Result{ID: it.ID, OK: true, Detail: setting + " set to " + cu.Value}
}

// telemetry is the heartbeat's summary, from cached values only.
func (d *daemon) telemetry() heartbeat.Telemetry {
	t := heartbeat.Telemetry{AgentVersion: d.opts.Version}
	ms := d.monitor.Snapshot()
	t.DrivesOK = uint32(ms.DrivesByRisk["ok"])
	t.DrivesWatch = uint32(ms.DrivesByRisk["watch"])
	t.DrivesWarn = uint32(ms.DrivesByRisk["warn"])
	t.DrivesFail = uint32(ms.DrivesByRisk["fail"])
	t.SensorAlarms = uint32(len(ms.SensorAlarms))
	t.SpoolBacklog = uint32(d.spool.Len())
	return t
}

// bundleParts adds the daemon's own view to a support bundle.
func (d *daemon) bundleParts(ctx context.Context) map[string][]byte {
	st, err := json.MarshalIndent(d.collectStatus(), "", "  ")
	if err != nil {
		return nil
	}
	return map[string][]byte{"status.json": st}
}
