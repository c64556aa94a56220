package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/daemon"
	"github.com/dcagent/dcagent/agent/status"
)

func init() {
	register(command{name: "status", summary: "ask the running daemon how it is: status [--json]", run: runStatus})
}

func runStatus(env *cmdEnv, args []string) int {
	fs := env.newFlags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	sock, err := socketPath(env)
	if err != nil {
		return fail(env, "status", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st daemon.Status
	if err := status.Call(ctx, sock, "status", nil, &st); err != nil {
		return fail(env, "status", err)
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fail(env, "status", err)
		}
		return 0
	}
	writeStatus(env.stdout, st, time.Now())
	return 0
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func writeStatus(w io.Writer, st daemon.Status, now time.Time) {
	fmt.Fprintf(w, "dcagent %s, system %s, running since %s\n", st.Version, st.SystemID, st.Started.Format(time.RFC3339))
	if st.ReloadRefused != "" {
		fmt.Fprintf(w, "Configuration: the file changed but its reload was refused, the previous configuration is in force: %s\n", st.ReloadRefused)
	}
	if !st.Enrolled {
		fmt.Fprintf(w, "Identity: NOT LOADED, so nothing is sent home: %s\n", st.EnrollError)
	} else if id := st.Identity; id != nil {
		fmt.Fprintf(w, "Enrollment: enrolled, key in %s; certificate valid until %s (renews at %s)", id.KeyStore, id.NotAfter.Format(time.RFC3339), id.RenewAt.Format(time.RFC3339))
		if id.LastError != "" {
			fmt.Fprintf(w, "; last renewal problem: %s", id.LastError)
		}
		fmt.Fprintln(w)
	}
	if hb := st.Heartbeat; hb != nil {
		ch := string(hb.Channel)
		if ch == "" {
			ch = "none yet"
		}
		fmt.Fprintf(w, "Heartbeat: last answered %s over %s, round trip %s", ago(now, hb.LastHeartbeat), strings.ToUpper(ch), hb.RTT.Round(time.Microsecond))
		if hb.ConsecutiveFailures > 0 {
			fmt.Fprintf(w, "; %d unanswered since (%s)", hb.ConsecutiveFailures, hb.LastError)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "Heartbeat: not started (waiting for enrollment)")
	}
	fmt.Fprintf(w, "Spool: %d events waiting (%d bytes)", st.Spool.Backlog, st.Spool.BacklogBytes)
	if n := st.Spool.DroppedTotal(); n > 0 {
		fmt.Fprintf(w, ", %d dropped for room", n)
	}
	if st.Spool.LastError != "" {
		fmt.Fprintf(w, "; problem: %s", st.Spool.LastError)
	}
	fmt.Fprintln(w)
	if up := st.Upload; up != nil {
		fmt.Fprintf(w, "Upload: last delivered %s", ago(now, up.LastSuccess))
		if up.Channel != "" {
			fmt.Fprintf(w, " by %s", up.Channel)
		}
		if !up.FailingSince.IsZero() {
			fmt.Fprintf(w, "; failing since %s: %s", up.FailingSince.Format(time.RFC3339), up.LastError)
		}
		fmt.Fprintln(w)
	}
	var levels []string
	for l, n := range st.Hardware.DrivesByRisk {
		levels = append(levels, fmt.Sprintf("%s %d", l, n))
	}
	sort.Strings(levels)
	fmt.Fprintf(w, "Drives: %s (last read %s)\n", noneYet(strings.Join(levels, ", ")), ago(now, st.Hardware.LastDriveRead))
	for _, d := range st.Hardware.Drives {
		if d.Risk.Level.String() == "ok" {
			continue
		}
		fmt.Fprintf(w, "  %s %s (%s): %s\n", d.Model, d.Serial, d.Device, d.Risk.Level)
		for _, r := range d.Risk.Reasons {
			fmt.Fprintf(w, "    %s\n", r)
		}
	}
	for _, b := range st.Hardware.Backplanes {
		fmt.Fprintf(w, "  backplane or cable suspected: enclosure %s, slots %s\n", b.Enclosure, strings.Join(b.Slots, ", "))
	}
	fmt.Fprintf(w, "Sensor alarms: %d\n", len(st.Hardware.SensorAlarms))
	fmt.Fprintf(w, "Policy: from %s, version %d, %d rules, loaded %s", st.Policy.Source, st.Policy.Version, st.Policy.Rules, ago(now, st.Policy.Loaded))
	if st.Policy.LastError != "" {
		fmt.Fprintf(w, "; last problem: %s", st.Policy.LastError)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Pending approvals: %d\n", len(st.Pending))
	for _, p := range st.Pending {
		fmt.Fprintf(w, "  %s: %s for %s (%s); answer with dcagent approve %s or dcagent deny %s before %s\n", p.ID, p.Action, p.Requester, p.ServiceRequest, p.ID, p.ID, p.Expires.Format(time.Kitchen))
	}
	fmt.Fprintf(w, "Remote sessions: %d open\n", len(st.Sessions))
	anchor := "not anchored (no TPM counter, no syslog stream)"
	switch {
	case st.Audit.Anchored:
		anchor = "anchored in the TPM counter"
	case st.Syslog != nil:
		anchor = "anchored in the syslog stream only"
	}
	fmt.Fprintf(w, "Audit: %d records, %s", st.Audit.Records, anchor)
	switch {
	case st.Audit.Recovered != "":
		fmt.Fprintf(w, "; a damaged log was set aside at start: %s", st.Audit.Recovered)
	case st.Audit.TrailBreak != "":
		fmt.Fprintf(w, "; the trail has a break: %s", st.Audit.TrailBreak)
	}
	fmt.Fprintln(w)
}

func noneYet(s string) string {
	if s == "" {
		return "none read yet"
	}
	return s
}
