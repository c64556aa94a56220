package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/policy"
)

// The test binary doubles as a client run under another uid: with
// DCAGENT_STATUS_HELPER set it makes one call and prints the outcome.
func TestMain(m *testing.M) {
	if os.Getenv("DCAGENT_STATUS_HELPER") == "1" {
		var params any
		if p := os.Getenv("HELPER_PARAMS"); p != "" {
			params = json.RawMessage(p)
		}
		var out json.RawMessage
		err := Call(context.Background(), os.Getenv("HELPER_SOCKET"), os.Getenv("HELPER_METHOD"), params, &out)
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(0)
		}
		fmt.Println("OK", string(out))
		os.Exit(0)
	}
	code := m.Run()
	if helperPath != "" {
		os.RemoveAll(filepath.Dir(helperPath))
	}
	os.Exit(code)
}

// asUser runs one call from a process with the given uid and gid.
func asUser(t *testing.T, uid, gid uint32, socket, method, params string) string {
	t.Helper()
	cmd := exec.Command(helperBinary(t), "-test.run=^$")
	cmd.Env = append(os.Environ(), "DCAGENT_STATUS_HELPER=1", "HELPER_SOCKET="+socket, "HELPER_METHOD="+method, "HELPER_PARAMS="+params)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, out)
	}
	return strings.TrimSpace(string(out))
}

var helperPath string

// helperBinary copies the test binary where another user may run it (the
// go tool builds it in a 0700 folder).
func helperBinary(t *testing.T) string {
	t.Helper()
	if helperPath != "" {
		return helperPath
	}
	dir, err := os.MkdirTemp("", "status-helper-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "helper.test")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	helperPath = p
	return p
}

type env struct {
	dir  string
	log  *audit.Log
	srv  *Server
	apps *policy.Approvals
}

func start(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	// Let other users reach the socket's folder (the test's temporary
	// folders are 0700); the socket's own mode still decides.
	for d := e.dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	var err error
	e.log, err = audit.Open(audit.Options{Dir: filepath.Join(e.dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.log.Close() })
	opts.Path = filepath.Join(e.dir, SocketName)
	opts.Audit = e.log
	e.srv, err = Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.apps = policy.NewApprovals(time.Minute, nil)
	RegisterApprovals(e.srv, e.apps)
	RegisterAudit(e.srv, e.log)
	e.srv.Register("status", Anyone, func(_ context.Context, p Peer, _ json.RawMessage) (any, error) {
		return map[string]any{"peer": p.String()}, nil
	})
	e.srv.Start()
	t.Cleanup(func() { e.srv.Close() })
	return e
}

// ask starts an ask and returns its id and a channel with its answer.
func (e *env) ask(t *testing.T) (string, chan policy.Answer) {
	t.Helper()
	ch := make(chan policy.Answer, 1)
	go func() {
		_, a := e.apps.Ask(context.Background(), policy.Pending{Action: "remote:ssh", Requester: "eng"})
		ch <- a
	}()
	for i := 0; i < 2000; i++ {
		if p := e.apps.Pending(); len(p) > 0 {
			return p[len(p)-1].ID, ch
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("ask did not register")
	return "", nil
}

func (e *env) requests(t *testing.T) []audit.Record {
	t.Helper()
	f, _ := os.Open(e.log.Path())
	defer f.Close()
	var out []audit.Record
	audit.Scan(f, func(_ int, r audit.Record, _ error) error {
		if r.Kind == audit.KindLocalRequest {
			out = append(out, r)
		}
		return nil
	})
	return out
}

func TestSocketModeAndRootApprover(t *testing.T) {
	e := start(t, Options{Approvers: []string{"root"}})
	fi, err := os.Stat(e.srv.Path())
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v mode %v", err, fi.Mode())
	}
	ctx := context.Background()
	var st map[string]string
	if err := Call(ctx, e.srv.Path(), "status", nil, &st); err != nil || st["peer"] != "uid:0(root)" {
		t.Fatalf("status: %v %v", err, st)
	}
	id, answer := e.ask(t)
	var pend []policy.Pending
	if err := Call(ctx, e.srv.Path(), "pending", nil, &pend); err != nil || len(pend) != 1 || pend[0].ID != id {
		t.Fatalf("pending: %v %+v", err, pend)
	}
	var res AnswerResult
	if err := Call(ctx, e.srv.Path(), "approve", IDParams{ID: id}, &res); err != nil || !res.Approved || res.By != "uid:0(root)" {
		t.Fatalf("approve: %v %+v", err, res)
	}
	if a := <-answer; !a.Approved || a.By != "uid:0(root)" {
		t.Fatalf("answer %+v", a)
	}
	// Errors come back named.
	var rerr *RemoteError
	if err := Call(ctx, e.srv.Path(), "approve", IDParams{ID: id}, nil); !errors.As(err, &rerr) || !strings.Contains(err.Error(), "no request with that id") {
		t.Fatalf("second approve: %v", err)
	}
	if err := Call(ctx, e.srv.Path(), "approve", nil, nil); err == nil || !strings.Contains(err.Error(), `{"id": ID}`) {
		t.Fatalf("no id: %v", err)
	}
	if err := Call(ctx, e.srv.Path(), "reboot", nil, nil); err == nil || !strings.Contains(err.Error(), "unknown method") || !strings.Contains(err.Error(), "approve, audit_verify, deny, pending, status") {
		t.Fatalf("unknown: %v", err)
	}
	var vr VerifyResult
	if err := Call(ctx, e.srv.Path(), "audit_verify", nil, &vr); err != nil || !vr.OK || vr.Records < 5 {
		t.Fatalf("audit_verify: %v %+v", err, vr)
	}
	// Every use is in the audit log, with the peer's pid.
	reqs := e.requests(t)
	if len(reqs) != 7 {
		t.Fatalf("%d local.request records, want 7", len(reqs))
	}
	if r := reqs[0]; r.Actor != "uid:0(root)" || r.Fields["method"] != "status" || r.Fields["pid"] != fmt.Sprint(os.Getpid()) || r.Fields["allowed"] != "true" {
		t.Fatalf("record %+v %s", r.Fields, r.Actor)
	}
}

// Peer credentials decide: another user cannot reach a 0660 root socket,
// reaches it through the socket group, may read but not approve unless
// named, and every refusal is recorded.
func TestPeerCredentials(t *testing.T) {
	const nobody, nogroup = 65534, 65534
	e := start(t, Options{Approvers: []string{"root"}})
	out := asUser(t, nobody, nogroup, e.srv.Path(), "pending", "")
	if !strings.Contains(out, "permission denied") || !strings.Contains(out, "socket_group") {
		t.Fatalf("nobody on a root socket: %s", out)
	}
	e.srv.Close()

	e = start(t, Options{Approvers: []string{"root"}, Group: "nogroup"})
	fi, _ := os.Stat(e.srv.Path())
	if st := fi.Sys().(*syscall.Stat_t); st.Gid != nogroup {
		t.Fatalf("socket group %d", st.Gid)
	}
	if out := asUser(t, nobody, nogroup, e.srv.Path(), "pending", ""); out != "OK []" {
		t.Fatalf("pending as nobody: %s", out)
	}
	id, answer := e.ask(t)
	out = asUser(t, nobody, nogroup, e.srv.Path(), "approve", `{"id":"`+id+`"}`)
	if !strings.Contains(out, "uid:65534(nobody) may not call approve") {
		t.Fatalf("approve as nobody: %s", out)
	}
	if len(e.apps.Pending()) != 1 {
		t.Fatal("a refused approval answered the request")
	}
	reqs := e.requests(t)
	last := reqs[len(reqs)-1]
	if last.Fields["allowed"] != "false" || last.Fields["reason"] != "not an approver" || last.Actor != "uid:65534(nobody)" {
		t.Fatalf("refusal record %+v", last.Fields)
	}
	e.srv.Close()

	// group:nogroup names nobody's primary group: now nobody may deny.
	e2 := start(t, Options{Approvers: []string{"root", "group:nogroup"}, Group: "nogroup"})
	id, answer = e2.ask(t)
	out = asUser(t, nobody, nogroup, e2.srv.Path(), "deny", `{"id":"`+id+`"}`)
	if !strings.HasPrefix(out, "OK ") {
		t.Fatalf("deny as a group approver: %s", out)
	}
	if a := <-answer; a.Approved || a.By != "uid:65534(nobody)" {
		t.Fatalf("answer %+v", a)
	}
	// By user name too.
	e3 := start(t, Options{Approvers: []string{"daemon"}, Group: "daemon"})
	id, answer = e3.ask(t)
	if out := asUser(t, 1, 1, e3.srv.Path(), "approve", `{"id":"`+id+`"}`); !strings.HasPrefix(out, "OK ") {
		t.Fatalf("approve as daemon: %s", out)
	}
	if a := <-answer; !a.Approved || a.By != "uid:1(daemon)" {
		t.Fatalf("answer %+v", a)
	}
}

func TestListenRefusesRunningDaemonAndReplacesStale(t *testing.T) {
	e := start(t, Options{})
	if _, err := Listen(Options{Path: e.srv.Path(), Audit: e.log}); err == nil || !strings.Contains(err.Error(), "another dcagent daemon") {
		t.Fatalf("second daemon: %v", err)
	}
	// A socket file left behind by a daemon that died.
	stale := filepath.Join(t.TempDir(), SocketName)
	ln, err := Listen(Options{Path: stale, Audit: e.log})
	if err != nil {
		t.Fatal(err)
	}
	ln.ln.Close() // the listener dies, the file stays
	s2, err := Listen(Options{Path: stale, Audit: e.log})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s2.Close()
	// Not a socket: refused, not removed.
	plain := filepath.Join(t.TempDir(), SocketName)
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := Listen(Options{Path: plain, Audit: e.log}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("plain file: %v", err)
	}
	if _, err := Listen(Options{Path: plain}); err == nil || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("no audit: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	err := Call(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "status", nil, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("got %v", err)
	}
	e := start(t, Options{})
	// A malformed request gets a clear answer and is recorded.
	c, err := netDial(e.srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello\n"))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.Contains(string(buf[:n]), "malformed request") {
		t.Fatalf("answer %q", buf[:n])
	}
	if r := e.requests(t); len(r) != 1 || r[0].Fields["method"] != "(malformed)" {
		t.Fatalf("records %+v", r)
	}
}

// A request longer than the limit is refused as soon as the limit is
// reached, without waiting for its end.
func TestOversizedRequest(t *testing.T) {
	e := start(t, Options{})
	c, err := netDial(e.srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Write([]byte(strings.Repeat("x", maxRequestBytes+10)))
	buf := make([]byte, 512)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, _ := c.Read(buf)
	if time.Since(start) >= readTimeout {
		t.Fatal("the oversized request was cut by the read timeout, not by its size")
	}
	if !strings.Contains(string(buf[:n]), "malformed request") {
		t.Fatalf("answer %q", buf[:n])
	}
}

// A script that polls status does not grow the audit log by a record per
// call: read-only uses are recorded once per window, with the count of
// the calls in between; answers (approve, deny) are always recorded.
func TestReadOnlyUsesCoalesced(t *testing.T) {
	e := start(t, Options{Approvers: []string{"root"}})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := Call(ctx, e.srv.Path(), "status", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, r := range e.requests(t) {
		if r.Fields["method"] == "status" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d status records for 5 calls, want 1", n)
	}
	// After the window, the next call is recorded with the count.
	e.srv.mu.Lock()
	for _, c := range e.srv.coalesce {
		c.last = c.last.Add(-readOnlyWindow)
	}
	e.srv.mu.Unlock()
	if err := Call(ctx, e.srv.Path(), "status", nil, nil); err != nil {
		t.Fatal(err)
	}
	var last audit.Record
	for _, r := range e.requests(t) {
		if r.Fields["method"] == "status" {
			last = r
		}
	}
	if last.Fields["calls_not_recorded_since_last"] != "4" {
		t.Fatalf("last status record %+v", last.Fields)
	}
}
