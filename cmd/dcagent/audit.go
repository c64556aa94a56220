package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/diag"
	"github.com/dcagent/dcagent/agent/status"
	"github.com/dcagent/dcagent/crypto/keystore"
)

func init() {
	register(command{name: "audit", summary: "check or print the audit log: audit verify | audit show [--since T] [--json]", run: runAudit})
	addDiagChecks(diagSource{name: "audit", checks: auditChecks})
}

const auditUsage = `usage: dcagent audit verify [--json] [--against FILE]
       dcagent audit show [--since T] [--kind PREFIX] [--json]

verify checks the audit log's chain from its first record to its last, and
its anchors: the head file, and the TPM counter when the log is anchored in
one (through the running daemon, which holds the TPM, or directly when no
daemon runs). It names the first bad record and what is wrong with it, and
exits 1 when the log does not verify.
  --against FILE  also compare the log with the copy the customer's syslog
                  server received (its RFC 5424 file): a record changed,
                  removed or cut off after it was sent is found there even
                  when the whole chain was recomputed.

show prints the records, oldest first.
  --since T       only records at or after T: an RFC 3339 time
                  (2025-03-01T12:00:00Z), a date (2025-03-01) or an age (24h)
  --kind PREFIX   only records whose kind starts with PREFIX (remote.)
  --json          a JSON array of the records as they are stored
`

func auditDir(cfg *config.Config) string { return filepath.Join(cfg.Device.StateDir, "audit") }

func runAudit(env *cmdEnv, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stderr, auditUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(env, args[1:])
	case "show":
		return runAuditShow(env, args[1:])
	}
	fmt.Fprintf(env.stderr, "dcagent audit: unknown sub-command %q\n\n%s", args[0], auditUsage)
	return 2
}

// verifyOutcome is what `audit verify --json` prints.
type verifyOutcome struct {
	status.VerifyResult
	// Via says who verified: "daemon" (with its TPM connection) or
	// "local".
	Via string `json:"via"`
	// Notes are what could not be checked, and warnings.
	Notes []string `json:"notes,omitempty"`
	// Copy is the comparison with the syslog server's copy (--against).
	Copy *audit.CopyReport `json:"copy,omitempty"`
	// Previous is the log this one replaced, as its first record says
	// (read from the file, so it does not depend on the daemon's memory
	// of its last start); PreviousFileGone says the file it was kept in
	// is no longer in the audit directory.
	Previous         *audit.PreviousLog `json:"previous,omitempty"`
	PreviousFileGone bool               `json:"previous_file_gone,omitempty"`
	// TrailBroken: this log replaced one that failed verification.
	TrailBroken bool `json:"trail_broken,omitempty"`
}

func runAuditVerify(env *cmdEnv, args []string) int {
	fs := env.newFlags("audit verify")
	asJSON := fs.Bool("json", false, "print the outcome as one JSON object")
	against := fs.String("against", "", "the syslog server's copy of the log to compare with")
	fs.Usage = func() { fmt.Fprint(env.stderr, auditUsage) }
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "dcagent audit verify: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := env.loadConfig()
	if err != nil {
		return fail(env, "audit verify", err)
	}
	out, err := verifyAudit(cfg)
	if err != nil {
		return fail(env, "audit verify", err)
	}
	if *against != "" {
		data, err := os.ReadFile(*against)
		if err != nil {
			return fail(env, "audit verify", err)
		}
		crep, err := audit.CompareWithCopy(filepath.Join(auditDir(cfg), audit.LogName), bytes.NewReader(data))
		var te *audit.TamperError
		if err != nil && !errors.As(err, &te) {
			return fail(env, "audit verify", err)
		}
		out.Copy = crep
		if te != nil && out.OK {
			out.OK, out.Problem, out.ProblemSeq = false, te.Error(), te.Seq
		}
	}
	// A log that began by setting a broken one aside is a break in the
	// audit trail: the records since verify, but the trail as a whole does
	// not, and that stays visible (exit status 1) for as long as this log
	// lives, however often the daemon restarts.
	out.TrailBroken = out.Previous != nil && out.Previous.Problem != ""
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		printVerify(env, out)
	}
	if !out.OK || out.TrailBroken {
		return 1
	}
	return 0
}

// verifyAudit verifies through the daemon when one runs, else locally, and
// reads what the log's first record says about a log it replaced.
func verifyAudit(cfg *config.Config) (*verifyOutcome, error) {
	out, err := verifyAuditVia(cfg)
	if err != nil {
		return nil, err
	}
	if out.Previous == nil {
		prev, err := audit.ReadPrevious(filepath.Join(auditDir(cfg), audit.LogName))
		if err != nil {
			out.Notes = append(out.Notes, "the log's first record could not be read: "+err.Error())
		}
		out.Previous = prev
	}
	if p := out.Previous; p != nil && p.File != "" {
		// Base: the name comes from the file, which is not to be trusted
		// to stay inside the audit directory.
		_, err := os.Lstat(filepath.Join(auditDir(cfg), filepath.Base(p.File)))
		out.PreviousFileGone = errors.Is(err, os.ErrNotExist)
	}
	return out, nil
}

func verifyAuditVia(cfg *config.Config) (*verifyOutcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sock := filepath.Join(cfg.Device.StateDir, status.SocketName)
	var vr status.VerifyResult
	err := status.Call(ctx, sock, "audit_verify", nil, &vr)
	if err == nil {
		return &verifyOutcome{VerifyResult: vr, Via: "daemon"}, nil
	}
	out := &verifyOutcome{Via: "local"}
	if !errors.Is(err, status.ErrNotRunning) {
		out.Notes = append(out.Notes, "the daemon could not be asked ("+err.Error()+"); verified the files directly")
	}
	dir := auditDir(cfg)
	opts := audit.VerifyOptions{}
	head, herr := audit.ReadHead(filepath.Join(dir, audit.HeadName))
	var te *audit.TamperError
	switch {
	case errors.As(herr, &te):
		out.VerifyResult = status.VerifyResult{File: te.File, OK: false, Problem: te.Error()}
		return out, nil
	case herr != nil:
		return nil, herr
	}
	opts.Head = head
	if c, closeStore, note := openCounter(ctx, cfg); c != nil {
		v, err := c.Read()
		closeStore()
		if err != nil {
			out.Notes = append(out.Notes, "TPM counter not read: "+err.Error())
		} else {
			opts.Counter, opts.HaveCounter = v, true
		}
	} else if note != "" {
		out.Notes = append(out.Notes, note)
	}
	rep, err := audit.VerifyFile(filepath.Join(dir, audit.LogName), opts)
	if err != nil && !errors.As(err, &te) {
		return nil, err
	}
	out.VerifyResult = status.NewVerifyResult(rep, nil)
	out.Previous = rep.Previous
	if rep.Anchored && !rep.CounterChecked {
		out.Notes = append(out.Notes, "the log is anchored in a TPM counter that was not checked: a log cut short at its end would not show")
	}
	if rep.CounterBehind > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("the TPM counter is %d increment(s) behind the last record (the daemon catches it up at its next start)", rep.CounterBehind))
	}
	if rep.TornTail > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("an incomplete last line of %d bytes (a write cut by power loss; the daemon moves it aside at its next start)", rep.TornTail))
	}
	return out, nil
}

// openCounter opens the audit's TPM counter through the key store, when
// the configuration has one.
func openCounter(ctx context.Context, cfg *config.Config) (c interface{ Read() (uint64, error) }, closeStore func(), note string) {
	idx, ok, err := cfg.Audit.CounterIndex()
	if err != nil || !ok || !strings.HasPrefix(cfg.Identity.KeyURI, "tpm:") {
		return nil, nil, ""
	}
	st, err := keystore.Open(ctx, cfg.Identity.KeyURI, keystore.Options{StateDir: cfg.Device.StateDir})
	if err != nil {
		return nil, nil, "TPM counter not checked: " + err.Error()
	}
	cs, ok := st.(keystore.CounterStore)
	if !ok {
		st.Close()
		return nil, nil, "TPM counter not checked: the key store has no counters"
	}
	counter, err := cs.Counter(idx)
	if err != nil {
		st.Close()
		return nil, nil, "TPM counter not checked: " + err.Error()
	}
	return counter, func() { st.Close() }, ""
}

func printVerify(env *cmdEnv, out *verifyOutcome) {
	w := env.stdout
	if out.OK && out.TrailBroken {
		fmt.Fprintf(w, "audit trail BROKEN: the current log verifies (%d records, last #%d, log %s), but it began by setting aside a log that failed verification\n", out.Records, out.LastSeq, out.LogID)
	} else if out.OK {
		fmt.Fprintf(w, "audit log OK: %d records, last #%d, log %s\n", out.Records, out.LastSeq, out.LogID)
	} else {
		fmt.Fprintf(w, "audit log FAILS verification: %s\n", plainText(out.Problem))
		if out.Records > 0 {
			fmt.Fprintf(w, "  the %d records before it verify (last good #%d)\n", out.Records, out.LastSeq)
		}
		fmt.Fprintln(w, "  what to do: keep the file as evidence; the daemon sets a broken log aside at its next start and begins a new one that names it")
	}
	switch {
	case out.CounterChecked:
		fmt.Fprintln(w, "  anchored in the TPM counter: checked, the log is not cut short")
	case out.Anchored:
		fmt.Fprintln(w, "  anchored in the TPM counter: NOT checked")
	default:
		fmt.Fprintln(w, "  not anchored in a TPM: only the head file and the syslog copy (--against) show a log cut short")
	}
	if out.Recovered != "" {
		fmt.Fprintf(w, "  at its last start the daemon set aside a broken log: %s\n", plainText(out.Recovered))
	}
	if p := out.Previous; p != nil {
		fmt.Fprintf(w, "  this log replaced log %s (last good record #%s), which failed verification: %s\n", showText(p.LogID), showText(p.LastSeq), plainText(p.Problem))
		switch {
		case p.File == "":
			fmt.Fprintln(w, "    the first record does not say where it was kept")
		case out.PreviousFileGone:
			fmt.Fprintf(w, "    it was kept as %s, which is no longer there: compare with the syslog copy (--against) for what it held\n", showText(p.File))
		default:
			fmt.Fprintf(w, "    it is kept as %s\n", showText(p.File))
		}
	}
	if c := out.Copy; c != nil {
		fmt.Fprintf(w, "  syslog copy: %d of %d records received (%d repeats, %d earlier-log records)\n", c.Received, c.Local, c.Repeats, sumValues(c.OtherLogs))
	}
	for _, n := range out.Notes {
		fmt.Fprintf(w, "  note: %s\n", plainText(n))
	}
	fmt.Fprintf(w, "  verified by the %s\n", map[string]string{"daemon": "running daemon", "local": "files directly (no daemon)"}[out.Via])
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// parseSince reads an RFC 3339 time, a date, or an age.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q is not a time (2025-03-01T12:00:00Z), a date (2025-03-01) or an age (24h)", s)
}

func runAuditShow(env *cmdEnv, args []string) int {
	fs := env.newFlags("audit show")
	asJSON := fs.Bool("json", false, "print a JSON array of the records")
	since := fs.String("since", "", "only records at or after this time, date or age")
	kind := fs.String("kind", "", "only records whose kind starts with this")
	fs.Usage = func() { fmt.Fprint(env.stderr, auditUsage) }
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "dcagent audit show: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var from time.Time
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			fmt.Fprintf(env.stderr, "dcagent audit show: %v\n", err)
			return 2
		}
		from = t
	}
	cfg, err := env.loadConfig()
	if err != nil {
		return fail(env, "audit show", err)
	}
	path := filepath.Join(auditDir(cfg), audit.LogName)
	f, err := os.Open(path)
	if err != nil {
		return fail(env, "audit show", err)
	}
	defer f.Close()
	status := 0
	first := true
	if *asJSON {
		fmt.Fprint(env.stdout, "[")
	}
	err = audit.Scan(f, func(line int, r audit.Record, rerr error) error {
		if rerr != nil {
			fmt.Fprintf(env.stderr, "dcagent audit show: %s line %d: %v (run dcagent audit verify)\n", path, line, rerr)
			status = 1
			return nil
		}
		if r.Time.Before(from) || !strings.HasPrefix(r.Kind, *kind) {
			return nil
		}
		if *asJSON {
			b, _ := json.Marshal(r)
			if !first {
				fmt.Fprint(env.stdout, ",")
			}
			fmt.Fprintf(env.stdout, "\n%s", b)
		} else {
			fmt.Fprintln(env.stdout, formatRecord(r))
		}
		first = false
		return nil
	})
	if *asJSON {
		if !first {
			fmt.Fprintln(env.stdout)
		}
		fmt.Fprintln(env.stdout, "]")
	}
	if err != nil {
		return fail(env, "audit show", err)
	}
	return status
}

// formatRecord is one line for a person. The actor and field values come
// from the backend and from whoever asked for a session: every text is
// shown through showText, so none can start a line of its own, move the
// cursor or hide what follows.
func formatRecord(r audit.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%-6d %s  %-22s", r.Seq, r.Time.Local().Format("2006-01-02 15:04:05"), showText(r.Kind))
	if r.Actor != "" {
		fmt.Fprintf(&b, " by %s", showText(r.Actor))
	}
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := r.Fields[k]
		if v == "" {
			continue
		}
		fmt.Fprintf(&b, " %s=%s", showText(k), showText(v))
	}
	return b.String()
}

// showText returns s as it is when every character in it is printable and
// none is a space, quote or backslash; otherwise a Go-quoted string, in
// which newlines, escape characters, other C0 and C1 controls, Unicode
// format characters (bidirectional overrides, zero-width) and invalid
// UTF-8 show as visible escapes (\n, \x1b, \u009b, \u202e).
func showText(s string) string {
	for _, c := range s {
		if c == ' ' || c == '"' || c == '\\' || c == utf8.RuneError || !strconv.IsPrint(c) {
			return strconv.Quote(s)
		}
	}
	return s
}

// plainText is a message for a person with any control or format
// character in it escaped as in showText, without quotes around it (a
// verification problem can quote a log id or a file name from the files).
func plainText(s string) string {
	for _, c := range s {
		if c == utf8.RuneError || !strconv.IsPrint(c) {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// auditChecks are dcagent diag's checks of the audit log.
func auditChecks(cfg *config.Config, _ *slog.Logger) []diag.Check {
	return []diag.Check{{Name: "audit", Run: func(ctx context.Context) []diag.Finding {
		out, err := verifyAudit(cfg)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return []diag.Finding{{Check: "audit", Status: diag.OK, Message: "there is no audit log yet: the daemon creates it at its first start"}}
		case err != nil:
			return []diag.Finding{{Check: "audit", Status: diag.Fail, Message: "the audit log cannot be checked: " + err.Error(), Action: "check that " + auditDir(cfg) + " is readable (run as root)"}}
		case !out.OK:
			return []diag.Finding{{Check: "audit", Status: diag.Fail, Subject: out.File, Message: "the audit log fails verification: " + out.Problem, Action: "keep the file as evidence and report it to the customer's security contact; the daemon starts a new log at its next start"}}
		}
		f := diag.Finding{Check: "audit", Status: diag.OK, Message: fmt.Sprintf("the audit log verifies (%d records)", out.Records)}
		if p := out.Previous; p != nil && p.Problem != "" {
			return []diag.Finding{{Check: "audit", Status: diag.Fail, Subject: out.File,
				Message: fmt.Sprintf("the audit trail has a break: the current log (%d records) verifies, but it began by setting aside log %s, which failed verification: %s", out.Records, p.LogID, p.Problem),
				Action:  "report it to the customer's security contact with the kept file (" + p.File + ") and the syslog server's copy (dcagent audit verify --against COPY)"}}
		}
		if out.Anchored && !out.CounterChecked {
			f.Status, f.Action = diag.Warn, "check that the TPM is reachable; without it a log cut short at its end would not show"
			f.Message += ", but its TPM anchor was not checked"
		}
		return []diag.Finding{f}
	}}}
}
