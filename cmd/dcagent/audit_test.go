package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/diag"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/status"
)

// securityEnv is a state directory with an audit log and a configuration
// naming it.
type securityEnv struct {
	dir, conf string
}

func newSecurityEnv(t *testing.T, extra string) *securityEnv {
	t.Helper()
	e := &securityEnv{dir: t.TempDir()}
	e.conf = filepath.Join(e.dir, "dcagent.conf")
	os.WriteFile(e.conf, []byte(fmt.Sprintf("[device]\nsystem_id = SYS-CLI\nstate_dir = %s\ntype = storage\nmodel = ME5\nserial = SN-9\nlabels = location=lab\n[audit]\ntpm_counter = none\n%s", e.dir, extra)), 0o600)
	return e
}

func (e *securityEnv) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	st := runMain(append([]string{"--config", e.conf}, args...), &out, &errOut)
	return st, out.String(), errOut.String()
}

func (e *securityEnv) writeLog(t *testing.T, n int) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Options{Dir: filepath.Join(e.dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		l.Append(audit.Entry{Kind: audit.KindSessionEnd, Actor: "alice", Fields: map[string]string{"reason": "idle timeout", "n": fmt.Sprint(i)}})
	}
	return l
}

func TestAuditVerifyAndShow(t *testing.T) {
	e := newSecurityEnv(t, "")
	l := e.writeLog(t, 5)
	l.Close()
	st, out, errOut := e.run(t, "audit", "verify")
	if st != 0 || !strings.Contains(out, "audit log OK: 6 records, last #6") || !strings.Contains(out, "files directly (no daemon)") {
		t.Fatalf("verify: %d\n%s%s", st, out, errOut)
	}
	st, out, _ = e.run(t, "audit", "show")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if st != 0 || len(lines) != 6 || !strings.Contains(lines[5], "remote.session.end") || !strings.Contains(lines[5], "by alice") || !strings.Contains(lines[5], `reason="idle timeout"`) {
		t.Fatalf("show: %d\n%s", st, out)
	}
	st, out, _ = e.run(t, "audit", "show", "--json", "--kind", "remote.")
	var recs []audit.Record
	if err := json.Unmarshal([]byte(out), &recs); err != nil || st != 0 || len(recs) != 5 || recs[0].Hash == "" {
		t.Fatalf("show --json: %v %d %s", err, st, out)
	}
	st, out, _ = e.run(t, "audit", "show", "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
	if st != 0 || out != "" {
		t.Fatalf("show --since the future: %q", out)
	}
	if st, _, errOut := e.run(t, "audit", "show", "--since", "yesterday"); st != 2 || !strings.Contains(errOut, "not a time") {
		t.Fatalf("bad --since: %d %s", st, errOut)
	}

	// Edit record 4: verify names it and fails.
	path := filepath.Join(e.dir, "audit", audit.LogName)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"n":"2"`), []byte(`"n":"7"`), 1), 0o600)
	st, out, _ = e.run(t, "audit", "verify")
	if st != 1 || !strings.Contains(out, "line 4 (record 4): its content does not match its hash") || !strings.Contains(out, "the 3 records before it verify") {
		t.Fatalf("tampered: %d\n%s", st, out)
	}
	st, out, _ = e.run(t, "audit", "verify", "--json")
	var v verifyOutcome
	if json.Unmarshal([]byte(out), &v); st != 1 || v.OK || v.ProblemLine != 4 || v.ProblemSeq != 4 {
		t.Fatalf("--json: %d %s", st, out)
	}
	// show still prints, and flags the bad line.
	st, _, errOut = e.run(t, "audit", "show")
	if st != 1 || !strings.Contains(errOut, "line 4") {
		t.Fatalf("show of a bad log: %d %s", st, errOut)
	}
}

func TestAuditVerifyAgainstCopy(t *testing.T) {
	e := newSecurityEnv(t, "")
	l := e.writeLog(t, 3)
	l.Close()
	// The server's copy, as the stream would send it, holds a record the
	// local log lost afterwards (the log was cut and the head rewritten).
	path := filepath.Join(e.dir, "audit", audit.LogName)
	full, _ := os.ReadFile(path)
	var copyBuf bytes.Buffer
	for _, line := range bytes.SplitAfter(full, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		r, _ := audit.DecodeRecord(line[:len(line)-1])
		fmt.Fprintf(&copyBuf, "<109>1 %s SYS-CLI dcagent 1 %s [dcagent@32473 log=\"%s\" seq=\"%d\" hash=\"%s\"] %s", r.Time.Format(time.RFC3339), r.Kind, l.LogID(), r.Seq, r.Hash, line)
	}
	copyFile := filepath.Join(e.dir, "copy.log")
	os.WriteFile(copyFile, copyBuf.Bytes(), 0o600)
	if st, out, _ := e.run(t, "audit", "verify", "--against", copyFile); st != 0 || !strings.Contains(out, "syslog copy: 4 of 4 records received") {
		t.Fatalf("against an intact copy: %d %s", st, out)
	}
	lines := bytes.SplitAfter(full, []byte("\n"))
	os.WriteFile(path, bytes.Join(lines[:3], nil), 0o600)
	last, _ := audit.DecodeRecord(lines[2][:len(lines[2])-1])
	os.WriteFile(filepath.Join(e.dir, "audit", audit.HeadName), []byte(fmt.Sprintf("%020d %s %020d\n", last.Seq, last.Hash, 0)), 0o600)
	st, out, _ := e.run(t, "audit", "verify", "--against", copyFile)
	if st != 1 || !strings.Contains(out, "the syslog server received record 4 but the local log ends at record 3") {
		t.Fatalf("cut log against the copy: %d %s", st, out)
	}
}

// With a daemon running, verify asks it (it holds the TPM connection).
func TestAuditVerifyThroughDaemon(t *testing.T) {
	e := newSecurityEnv(t, "")
	l := e.writeLog(t, 2)
	defer l.Close()
	srv, err := status.Listen(status.Options{Path: filepath.Join(e.dir, status.SocketName), Audit: l})
	if err != nil {
		t.Fatal(err)
	}
	status.RegisterAudit(srv, l)
	srv.Start()
	defer srv.Close()
	st, out, _ := e.run(t, "audit", "verify")
	if st != 0 || !strings.Contains(out, "verified by the running daemon") {
		t.Fatalf("%d %s", st, out)
	}
}

func TestAnswerCommands(t *testing.T) {
	e := newSecurityEnv(t, "[policy]\napprovers = root\n")
	if st, _, errOut := e.run(t, "pending"); st != 1 || !strings.Contains(errOut, "not running") {
		t.Fatalf("no daemon: %d %s", st, errOut)
	}
	l := e.writeLog(t, 0)
	defer l.Close()
	srv, err := status.Listen(status.Options{Path: filepath.Join(e.dir, status.SocketName), Approvers: []string{"root"}, Audit: l})
	if err != nil {
		t.Fatal(err)
	}
	apps := policy.NewApprovals(time.Minute, nil)
	status.RegisterApprovals(srv, apps)
	srv.Start()
	defer srv.Close()

	if st, out, _ := e.run(t, "pending"); st != 0 || !strings.Contains(out, "nothing is waiting") {
		t.Fatalf("empty: %d %s", st, out)
	}
	answers := make(chan policy.Answer, 2)
	ask := func(sr string) string {
		go func() {
			_, a := apps.Ask(context.Background(), policy.Pending{Action: "remote:ssh", Requester: "alice@vendor", ServiceRequest: sr, Detail: "ssh session"})
			answers <- a
		}()
		for {
			for _, p := range apps.Pending() {
				if p.ServiceRequest == sr {
					return p.ID
				}
			}
			time.Sleep(time.Millisecond)
		}
	}
	id := ask("SR-1")
	st, out, _ := e.run(t, "pending")
	if st != 0 || !strings.Contains(out, id) || !strings.Contains(out, "remote:ssh") || !strings.Contains(out, "dcagent approve ID") {
		t.Fatalf("pending: %s", out)
	}
	st, out, _ = e.run(t, "approve", id)
	if st != 0 || out != fmt.Sprintf("approved %s: remote:ssh for alice@vendor (service request SR-1), as uid:0(root)\n", id) {
		t.Fatalf("approve: %d %q", st, out)
	}
	if a := <-answers; !a.Approved {
		t.Fatal("not approved")
	}
	id = ask("SR-2")
	if st, out, _ := e.run(t, "deny", id); st != 0 || !strings.HasPrefix(out, "denied "+id) {
		t.Fatalf("deny: %d %s", st, out)
	}
	if a := <-answers; a.Approved || a.Outcome != "denied" {
		t.Fatal("not denied")
	}
	if st, _, errOut := e.run(t, "approve", "nosuchid"); st != 1 || !strings.Contains(errOut, "no request with that id is waiting") {
		t.Fatalf("unknown id: %d %s", st, errOut)
	}
	if st, _, _ := e.run(t, "approve"); st != 2 {
		t.Fatal("approve without an id")
	}
}

func TestAuditAndPolicyDiagChecks(t *testing.T) {
	e := newSecurityEnv(t, "")
	cfg, err := loadConfigFile(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	run := func(checks []diagCheck) string {
		f := checks[0].Run(context.Background())
		return string(f[0].Status) + ": " + f[0].Message
	}
	if got := run(auditChecks(cfg, nil)); !strings.HasPrefix(got, "ok: there is no audit log yet") {
		t.Fatal(got)
	}
	l := e.writeLog(t, 3)
	l.Close()
	if got := run(auditChecks(cfg, nil)); got != "ok: the audit log verifies (4 records)" {
		t.Fatal(got)
	}
	path := filepath.Join(e.dir, "audit", audit.LogName)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)/2], 0o600)
	if got := run(auditChecks(cfg, nil)); !strings.HasPrefix(got, "fail: the audit log fails verification") {
		t.Fatal(got)
	}
	if got := run(policyChecks(cfg, nil)); !strings.HasPrefix(got, "ok: no policy is in force, so every remote session") {
		t.Fatal(got)
	}
	cfg.Policy.File = filepath.Join(e.dir, "missing.policy")
	if got := run(policyChecks(cfg, nil)); !strings.HasPrefix(got, "fail: the policy cannot be read") {
		t.Fatal(got)
	}
}

type diagCheck = diag.Check

func loadConfigFile(p string) (*config.Config, error) { return config.Load(p) }

// Text from the backend or a requester cannot forge a line of audit show,
// move the terminal's cursor or hide text: control and format characters
// in the actor, the field names and values show as escapes.
func TestFormatRecordEscapesControlCharacters(t *testing.T) {
	r := audit.Record{Seq: 7, Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Kind: audit.KindSessionStart,
		Actor: "eng@vendor\n#8      2025-03-01 13:00:00  remote.session.end     by eng@vendor",
		Fields: map[string]string{
			"service_request": "SR-1\x1b[2K\x1b[1A",
			"session":         "S1",
			"note":            "csi\u009b2Jnel\u0085bidi\u202eevil\u200bzw\rcr\x00nul\x7fdel",
			"path":            `C:\n`,
			"bad\nkey":        "v",
			"raw":             "\xff\xfe",
		}}
	line := formatRecord(r)
	t.Logf("%s", line)
	for _, c := range line {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x200b || c == 0x202e || c == utf8.RuneError {
			t.Fatalf("control or format character %U reaches the output: %q", c, line)
		}
	}
	for _, want := range []string{
		`by "eng@vendor\n#8      2025-03-01 13:00:00  remote.session.end     by eng@vendor"`,
		`service_request="SR-1\x1b[2K\x1b[1A"`,
		`note="csi\u009b2Jnel\u0085bidi\u202eevil\u200bzw\rcr\x00nul\x7fdel"`,
		`path="C:\\n"`, // a backslash typed as such is not mistaken for an escape
		`"bad\nkey"=v`,
		`raw="\xff\xfe"`,
		" session=S1",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("missing %s in\n%s", want, line)
		}
	}
}

// syslogCopy is the syslog server's file after it received every record of
// the logs at paths.
func syslogCopy(t *testing.T, paths ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var id string
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			r, err := audit.DecodeRecord(line[:len(line)-1])
			if err != nil {
				t.Fatal(err)
			}
			if r.Seq == 1 {
				id = r.Fields["log_id"]
			}
			fmt.Fprintf(&b, "<109>1 %s SYS-CLI dcagent 1 %s [dcagent@32473 log=\"%s\" seq=\"%d\" hash=\"%s\"] %s", r.Time.Format(time.RFC3339), r.Kind, id, r.Seq, r.Hash, line)
		}
	}
	return b.Bytes()
}

// Without a daemon, verify still says that the log replaced a broken one
// (its first record says so), where that one was kept and whether it is
// still there; against the syslog copy, a removed set-aside log fails.
func TestAuditVerifySaysLogReplaced(t *testing.T) {
	e := newSecurityEnv(t, "")
	l := e.writeLog(t, 2)
	oldID := l.LogID()
	l.Close()
	path := filepath.Join(e.dir, "audit", audit.LogName)
	oldCopy := syslogCopy(t, path)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"n":"1"`), []byte(`"n":"9"`), 1), 0o600)
	l, err := audit.Open(audit.Options{Dir: filepath.Join(e.dir, "audit")}) // sets the edited log aside
	if err != nil || l.Recovered() == nil {
		t.Fatalf("%v %v", err, l.Recovered())
	}
	l.Close()
	copyFile := filepath.Join(e.dir, "copy.log")
	os.WriteFile(copyFile, append(oldCopy, syslogCopy(t, path)...), 0o600)
	broken, _ := filepath.Glob(path + ".broken-*")
	if len(broken) != 1 {
		t.Fatalf("broken files %v", broken)
	}
	kept := filepath.Base(broken[0])

	st, out, errOut := e.run(t, "audit", "verify")
	t.Logf("audit verify:\n%s", out)
	// The break in the trail stays visible: exit 1, however often the
	// daemon restarts.
	if st != 1 || !strings.Contains(out, "audit trail BROKEN") || !strings.Contains(out, "this log replaced log "+oldID+" (last good record #2), which failed verification: ") || !strings.Contains(out, "line 3 (record 3)") || !strings.Contains(out, "it is kept as "+kept) {
		t.Fatalf("verify: %d\n%s%s", st, out, errOut)
	}
	// The edited record is in the kept file: the copy shows the change.
	if st, out, _ := e.run(t, "audit", "verify", "--against", copyFile); st != 1 || !strings.Contains(out, "1 record(s) of earlier log "+oldID+" that differ from the device's copy") {
		t.Fatalf("verify --against with the kept file: %d\n%s", st, out)
	}

	os.Remove(broken[0])
	st, out, _ = e.run(t, "audit", "verify")
	if st != 1 || !strings.Contains(out, "it was kept as "+kept+", which is no longer there") {
		t.Fatalf("verify without the kept file: %d\n%s", st, out)
	}
	st, out, _ = e.run(t, "audit", "verify", "--json")
	var v verifyOutcome
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Previous == nil || v.Previous.LogID != oldID || !v.PreviousFileGone || !v.TrailBroken {
		t.Fatalf("--json: %v %s", err, out)
	}
	st, out, _ = e.run(t, "audit", "verify", "--against", copyFile)
	if st != 1 || !strings.Contains(out, "the syslog server holds 3 record(s) of earlier log "+oldID+" that the device no longer has") {
		t.Fatalf("verify --against without the kept file: %d\n%s", st, out)
	}
}
