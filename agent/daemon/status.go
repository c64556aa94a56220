package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/monitor"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/dcagent/dcagent/agent/status"
	"github.com/dcagent/dcagent/crypto/identity"
)

// Status is what `dcagent status` shows: the daemon's own view of every
// part, from cached values (answering never waits on the hardware or the
// network).
type Status struct {
	Version  string    `json:"version"`
	SystemID string    `json:"system_id"`
	Started  time.Time `json:"started"`
	Config   string    `json:"config"`
	// ReloadRefused is why the last reload (SIGHUP) was refused: the file
	// on disk differs from the configuration in force.
	ReloadRefused string `json:"reload_refused,omitempty"`

	// Enrolled is false until `dcagent enroll` has stored a certificate;
	// EnrollError then says why the identity could not be loaded.
	Enrolled    bool             `json:"enrolled"`
	EnrollError string           `json:"enroll_error,omitempty"`
	Identity    *identity.Status `json:"identity,omitempty"`

	Heartbeat *heartbeat.Status    `json:"heartbeat,omitempty"`
	Upload    *connecthome.Status  `json:"upload,omitempty"`
	Spool     spool.Stats          `json:"spool"`
	Hardware  monitor.Status       `json:"hardware"`
	Policy    policy.Status        `json:"policy"`
	Pending   []policy.Pending     `json:"pending_approvals"`
	Sessions  []remote.SessionInfo `json:"remote_sessions"`
	Audit     AuditStatus          `json:"audit"`
	Syslog    *audit.SyslogStatus  `json:"syslog,omitempty"`
}

// AuditStatus summarises the audit log without reading it whole.
type AuditStatus struct {
	Records  uint64 `json:"records"`
	Anchored bool   `json:"anchored_in_tpm"`
	// Recovered is the problem found at start, when the log had been
	// tampered with or damaged and a new one was started.
	Recovered string `json:"recovered,omitempty"`
	// TrailBreak is what the current log's first record says about the
	// log it replaced because that one failed verification: the break
	// stays visible after further restarts.
	TrailBreak string `json:"trail_break,omitempty"`
}

func (d *daemon) collectStatus() Status {
	st := Status{
		Version:  d.opts.Version,
		SystemID: d.cfg.Device.SystemID,
		Started:  d.started,
		Config:   d.cfg.Path,
		Spool:    d.spool.Stats(),
		Hardware: d.monitor.Snapshot(),
		Policy:   d.policy.Status(),
		Pending:  d.policy.Approvals().Pending(),
	}
	d.mu.Lock()
	id, up, hb, rm := d.id, d.uploader, d.hb, d.remote
	st.EnrollError = d.enrollErr
	st.ReloadRefused = d.reloadErr
	d.mu.Unlock()
	if id != nil {
		s := id.Status()
		st.Enrolled, st.Identity = true, &s
	}
	if hb != nil {
		s := hb.Status()
		st.Heartbeat = &s
	}
	if up != nil {
		s := up.Status()
		st.Upload = &s
	}
	if rm != nil {
		st.Sessions = rm.Sessions()
	}
	last := d.audit.Last()
	st.Audit = AuditStatus{Records: last.Seq, Anchored: d.audit.Anchored()}
	if t := d.audit.Recovered(); t != nil {
		st.Audit.Recovered = t.Error()
	}
	if p, err := audit.ReadPrevious(d.audit.Path()); err == nil && p != nil && p.Problem != "" {
		st.Audit.TrailBreak = fmt.Sprintf("log %s was set aside (kept as %s): %s", p.LogID, p.File, p.Problem)
	}
	if d.syslog != nil {
		s := d.syslog.Status()
		st.Syslog = &s
	}
	return st
}

func (d *daemon) statusHandler(ctx context.Context, peer status.Peer, params json.RawMessage) (any, error) {
	return d.collectStatus(), nil
}

// healthExtra adds the agent's own state to every health report,
// including what the spool had to drop or set aside, so the vendor learns
// of it.
func (d *daemon) healthExtra() map[string]any {
	st := d.spool.Stats()
	return map[string]any{
		"agent_version":  d.opts.Version,
		"uptime_seconds": int64(time.Since(d.started).Seconds()),
		"spool": map[string]any{
			"backlog":       int64(st.Backlog),
			"backlog_bytes": st.BacklogBytes,
			"dropped":       st.DroppedTotal() - st.Refused,
			"quarantined":   st.Quarantined,
			"refused":       st.Refused,
		},
	}
}
