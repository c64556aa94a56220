package policy

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// testManager is an in-test policy manager (agent tests may not use sim/;
// sim/policymgr is tested against this engine in its own package).
type testManager struct {
	srv *httptest.Server
	mu  sync.Mutex
	doc []byte
	// status, when not 0, is answered instead of the document.
	status      int
	requests    int
	notModified int
}

func (m *testManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	if m.status != 0 {
		w.WriteHeader(m.status)
		return
	}
	sum := sha256.Sum256(m.doc)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if r.Header.Get("If-None-Match") == etag {
		m.notModified++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Write(m.doc)
}

func (m *testManager) set(doc []byte) {
	m.mu.Lock()
	m.doc, m.status = doc, 0
	m.mu.Unlock()
}

type fixture struct {
	dir     string
	ca      *testpki.CA
	key     crypto.Signer
	mgr     *testManager
	cfg     config.Policy
	log     *audit.Log
	keyFile string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), ca: testpki.NewCA(t, "customer CA"), mgr: &testManager{}}
	f.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.mgr.srv = httptest.NewUnstartedServer(f.mgr)
	f.mgr.srv.TLS = tlsconf.Server(f.ca.Server(t), nil, false)
	f.mgr.srv.StartTLS()
	t.Cleanup(f.mgr.srv.Close)
	pemKey, _ := MarshalPublicKey(f.key.Public())
	f.keyFile = filepath.Join(f.dir, "pm-key.pem")
	os.WriteFile(f.keyFile, pemKey, 0o644)
	f.cfg = config.Default().Policy
	f.cfg.ManagerURL = f.mgr.srv.URL + "/v1/policy"
	f.cfg.ManagerCAFile = f.ca.WriteCAFile(t, f.dir)
	f.cfg.ManagerKeyFile = f.keyFile
	var err error
	f.log, err = audit.Open(audit.Options{Dir: filepath.Join(f.dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	return f
}

func (f *fixture) signed(t *testing.T, version int, rules string) []byte {
	t.Helper()
	doc, err := SignDocument([]byte(fmt.Sprintf("dcagent-policy 1\nversion %d\n%s", version, rules)), f.key)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func (f *fixture) engine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(Options{Config: f.cfg, StateDir: f.dir, Device: Device{Type: "server", Model: "R750", Serial: "S1"}, Audit: f.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// records returns the audit records of a kind.
func (f *fixture) records(t *testing.T, kind string) []audit.Record {
	t.Helper()
	file, err := os.Open(f.log.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var out []audit.Record
	audit.Scan(file, func(_ int, r audit.Record, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == kind {
			out = append(out, r)
		}
		return nil
	})
	return out
}

func TestEngineSyncFromManager(t *testing.T) {
	f := newFixture(t)
	e := f.engine(t)
	if e.Current() != nil || e.Decide("remote:ssh").Effect != Deny {
		t.Fatal("a policy before the first fetch")
	}
	ctx := context.Background()

	f.mgr.set(f.signed(t, 1, "all remote:ssh ask\n"))
	if err := e.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide("remote:ssh"); d.Effect != Ask || !e.Current().Signed {
		t.Fatalf("after fetch: %+v", d)
	}
	// Unchanged: a conditional request, answered 304.
	if err := e.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	if f.mgr.notModified != 1 {
		t.Fatalf("conditional requests answered 304: %d", f.mgr.notModified)
	}
	f.mgr.set(f.signed(t, 2, "all remote:ssh allow\n"))
	if err := e.SyncNow(ctx); err != nil || e.Decide("remote:ssh").Effect != Allow {
		t.Fatalf("version 2: %v", err)
	}
	changes := f.records(t, audit.KindPolicyChange)
	last := changes[len(changes)-1]
	if last.Fields["version"] != "2" || last.Fields["previous_version"] != "1" || last.Fields["source"] != "manager "+f.cfg.ManagerURL {
		t.Fatalf("change record %+v", last.Fields)
	}

	// Every bad policy is rejected with its reason; version 2 stays.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDoc, _ := SignDocument([]byte("dcagent-policy 1\nversion 3\nall * allow\n"), other)
	v2 := f.signed(t, 2, "all remote:ssh allow\n")
	bad := []struct {
		name string
		doc  []byte
		want string
	}{
		{"malformed", f.signed(t, 3, "all remote:ssh maybe\n"), `line 3: effect "maybe"`},
		{"unsigned", []byte("dcagent-policy 1\nversion 3\nall * allow\n"), "not signed"},
		{"other key", otherDoc, "signature does not verify"},
		{"tampered", []byte(strings.Replace(string(f.signed(t, 3, "all remote:ssh deny\n")), "deny", "allow", 1)), "signature does not verify"},
		{"rollback", f.signed(t, 1, "all * allow\n"), "version 1 is older than version 2"},
		{"same version changed", f.signed(t, 2, "all * allow\n"), "its version 2 did not"},
		{"too big", append(v2, make([]byte, MaxDocumentBytes)...), "more than"},
	}
	for _, b := range bad {
		f.mgr.set(b.doc)
		err := e.SyncNow(ctx)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: got %v, want %q", b.name, err, b.want)
		}
		if st := e.Status(); st.Version != 2 || !strings.Contains(st.LastError, b.want) {
			t.Errorf("%s: status %+v", b.name, st)
		}
		if e.Decide("remote:ssh").Effect != Allow {
			t.Errorf("%s: the policy in force changed", b.name)
		}
	}
	// A rejection is audited once, not at every poll: "other key" and
	// "tampered" give the same reason in a row, so one record for both.
	before := len(f.records(t, audit.KindPolicyRejected))
	if before != len(bad)-1 {
		t.Errorf("%d rejection records, want %d", before, len(bad)-1)
	}
	f.mgr.set(otherDoc)
	e.SyncNow(ctx)
	e.SyncNow(ctx)
	e.SyncNow(ctx)
	if n := len(f.records(t, audit.KindPolicyRejected)); n != before+1 {
		t.Errorf("%d rejection records after three polls of one bad policy, want %d", n, before+1)
	}

	// The manager fails or goes away: the policy in force stays.
	f.mgr.mu.Lock()
	f.mgr.status = http.StatusServiceUnavailable
	f.mgr.mu.Unlock()
	if err := e.SyncNow(ctx); err == nil || !strings.Contains(e.Status().LastError, "503") {
		t.Fatalf("503: %v %+v", err, e.Status())
	}
	f.mgr.srv.Close()
	if err := e.SyncNow(ctx); err == nil || !strings.Contains(e.Status().LastError, "unreachable") {
		t.Fatalf("down: %v %+v", err, e.Status())
	}
	if e.Decide("remote:ssh").Effect != Allow {
		t.Fatal("policy lost while the manager is down")
	}
	e.Close()

	// A restart while the manager is down: the cached copy, verified again.
	e2 := f.engine(t)
	cur := e2.Current()
	if cur == nil || cur.Version != 2 || !strings.HasPrefix(cur.Source, "cache of ") || !cur.Signed {
		t.Fatalf("after restart: %+v", cur)
	}
}

// A cache changed on disk is refused at start; the local file takes over.
func TestEngineRejectsTamperedCache(t *testing.T) {
	f := newFixture(t)
	f.mgr.set(f.signed(t, 4, "all remote:ssh ask\n"))
	e := f.engine(t)
	if err := e.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	cache := filepath.Join(f.dir, "policy", cacheDoc)
	data, _ := os.ReadFile(cache)
	os.WriteFile(cache, []byte(strings.Replace(string(data), "ask", "allow", 1)), 0o600)
	local := filepath.Join(f.dir, "local.policy")
	os.WriteFile(local, []byte("dcagent-policy 1\nversion 1\nall remote:ssh deny\n"), 0o600)
	f.cfg.File = local

	e2 := f.engine(t)
	if cur := e2.Current(); cur == nil || cur.Source != "file "+local {
		t.Fatalf("after a tampered cache: %+v", cur)
	}
	rej := f.records(t, audit.KindPolicyRejected)
	if len(rej) != 1 || rej[0].Fields["source"] != "cache" || !strings.Contains(rej[0].Fields["reason"], "signature does not verify") {
		t.Fatalf("rejection records %+v", rej)
	}
	if !strings.Contains(e2.Status().LastError, "signature does not verify") {
		t.Fatalf("status %+v", e2.Status())
	}
}

// The manager's certificate must chain to the pinned CA.
func TestEngineManagerWrongCA(t *testing.T) {
	f := newFixture(t)
	f.mgr.set(f.signed(t, 1, "all remote:ssh ask\n"))
	f.cfg.ManagerCAFile = testpki.NewCA(t, "other").WriteCAFile(t, t.TempDir())
	e := f.engine(t)
	err := e.SyncNow(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") || e.Current() != nil {
		t.Fatalf("got %v, policy %+v", err, e.Current())
	}
}

func TestEngineNeedsKeyAndAudit(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.ManagerKeyFile = ""
	if _, err := New(Options{Config: cfg, StateDir: f.dir, Audit: f.log}); err == nil || !strings.Contains(err.Error(), "manager_key_file") {
		t.Errorf("no key: %v", err)
	}
	cfg.ManagerKeyFile = filepath.Join(f.dir, "missing.pem")
	if _, err := New(Options{Config: cfg, StateDir: f.dir, Audit: f.log}); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing key file: %v", err)
	}
	if _, err := New(Options{Config: f.cfg, StateDir: f.dir}); err == nil || !strings.Contains(err.Error(), "audit") {
		t.Errorf("no audit: %v", err)
	}
}

func TestEngineLocalFile(t *testing.T) {
	f := newFixture(t)
	f.cfg.ManagerURL = ""
	local := filepath.Join(f.dir, "local.policy")
	os.WriteFile(local, []byte("dcagent-policy 1\nversion 1\nall remote:ssh allow\n"), 0o600)
	f.cfg.File = local
	e := f.engine(t)
	if e.Decide("remote:ssh").Effect != Allow || e.Current().Signed {
		t.Fatal("local file")
	}
	// SIGHUP with a broken file: the old policy stays and the error names
	// the line.
	os.WriteFile(local, []byte("dcagent-policy 1\nversion 2\nall remote:ssh allo\n"), 0o600)
	if err := e.Reload(); err == nil || !strings.Contains(err.Error(), local+": line 3") {
		t.Fatalf("reload: %v", err)
	}
	if e.Decide("remote:ssh").Effect != Allow {
		t.Fatal("policy lost on a bad reload")
	}
	os.WriteFile(local, []byte("dcagent-policy 1\nversion 2\nall remote:ssh deny\n"), 0o600)
	if err := e.Reload(); err != nil || e.Decide("remote:ssh").Effect != Deny {
		t.Fatalf("reload: %v", err)
	}
	// A broken local file as the only source stops the start.
	os.WriteFile(local, []byte("version 2\n"), 0o600)
	if _, err := New(Options{Config: f.cfg, StateDir: f.dir, Audit: f.log}); err == nil || !strings.Contains(err.Error(), local) {
		t.Fatalf("start with a broken file: %v", err)
	}
	// A signed local file must verify with the manager's key when one is
	// configured.
	doc := f.signed(t, 3, "all remote:ssh ask\n")
	os.WriteFile(local, []byte(strings.Replace(string(doc), "ask", "allow", 1)), 0o600)
	if _, err := New(Options{Config: f.cfg, StateDir: f.dir, Audit: f.log}); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("tampered signed file: %v", err)
	}
}

type brokenAudit struct{}

func (brokenAudit) Append(audit.Entry) (audit.Record, error) {
	return audit.Record{}, errors.New("disk full")
}

func TestAuthorize(t *testing.T) {
	f := newFixture(t)
	f.cfg.ManagerURL = ""
	local := filepath.Join(f.dir, "local.policy")
	os.WriteFile(local, []byte("dcagent-policy 1\nversion 7\nall remote:ssh ask\nall script allow\n"), 0o600)
	f.cfg.File = local
	f.cfg.AskTimeout = 300 * time.Millisecond
	e := f.engine(t)
	ctx := context.Background()

	if out := e.Authorize(ctx, Request{ID: "w1", Action: "script:smart", Requester: "alice"}); !out.Allowed {
		t.Fatalf("allow: %+v", out)
	}
	if out := e.Authorize(ctx, Request{ID: "w2", Action: "file-put", Requester: "alice"}); out.Allowed {
		t.Fatalf("deny: %+v", out)
	}

	// Ask, answered by a local approver (the id is typed in any case).
	f.cfg.AskTimeout = 20 * time.Second
	e2 := f.engine(t) // a long timeout, so that the answer surely comes first
	answer := func(approve bool, by string) {
		for {
			if p := e2.Approvals().Pending(); len(p) == 1 {
				if err := e2.Approvals().Answer(strings.ToUpper(p[0].ID), approve, by); err != nil {
					t.Error(err)
				}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	go answer(true, "uid:0(root)")
	out := e2.Authorize(ctx, Request{ID: "w3", Action: "remote:ssh", Requester: "bob", ServiceRequest: "SR-9"})
	if !out.Allowed || out.Answer.By != "uid:0(root)" || out.AskID == "" || out.Reason != "approved by uid:0(root)" {
		t.Fatalf("approved: %+v", out)
	}
	// Unanswered: denied at the timeout (e has 300ms).
	start := time.Now()
	out = e.Authorize(ctx, Request{ID: "w4", Action: "remote:ssh", Requester: "carol"})
	if out.Allowed || out.Answer.Outcome != "timeout" || !strings.Contains(out.Reason, "nobody answered") || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("timeout: %+v", out)
	}
	if len(e.Approvals().Pending()) != 0 {
		t.Fatal("an expired request is still pending")
	}
	// Denied by a person.
	go answer(false, "uid:1000(ops)")
	if out := e2.Authorize(ctx, Request{ID: "w5", Action: "remote:ssh"}); out.Allowed || out.Answer.Outcome != "denied" {
		t.Fatalf("denied: %+v", out)
	}
	// Cancelled (the agent shuts down).
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if out := e2.Authorize(cctx, Request{ID: "w6", Action: "remote:ssh"}); out.Allowed || out.Answer.Outcome != "cancelled" {
		t.Fatalf("cancelled: %+v", out)
	}

	// Every decision and answer is in the audit log.
	dec := f.records(t, audit.KindDecision)
	ans := f.records(t, audit.KindAskAnswered)
	if len(dec) != 6 || len(ans) != 4 {
		t.Fatalf("%d decisions, %d answers recorded", len(dec), len(ans))
	}
	if d := dec[0]; d.Fields["request"] != "w1" || d.Fields["effect"] != "allow" || d.Fields["rule"] != "line 4: all script allow" || d.Fields["policy_version"] != "7" || d.Actor != "alice" {
		t.Fatalf("decision record %+v %s", d.Fields, d.Actor)
	}
	outcomes := []string{}
	for _, a := range ans {
		outcomes = append(outcomes, a.Fields["answer"])
	}
	if strings.Join(outcomes, ",") != "approved,timeout,denied,cancelled" {
		t.Fatalf("answers %v", outcomes)
	}
	if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}

	// No audit log, no permission.
	eb, err := New(Options{Config: f.cfg, StateDir: f.dir, Audit: brokenAudit{}})
	if err != nil {
		t.Fatal(err)
	}
	if out := eb.Authorize(ctx, Request{Action: "script:x"}); out.Allowed || !strings.Contains(out.Reason, "audit") {
		t.Fatalf("unrecorded decision allowed: %+v", out)
	}
}

func TestApprovalsAnswerUnknown(t *testing.T) {
	a := NewApprovals(time.Minute, nil)
	if err := a.Answer("nope", true, "x"); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("got %v", err)
	}
	done := make(chan Answer)
	go func() {
		_, ans := a.Ask(context.Background(), Pending{Action: "remote:ssh"})
		done <- ans
	}()
	var id string
	for id == "" {
		if p := a.Pending(); len(p) == 1 {
			id = p[0].ID
			if p[0].Expires.Sub(p[0].Asked) != time.Minute {
				t.Errorf("expires %v", p[0].Expires)
			}
		}
		time.Sleep(time.Millisecond)
	}
	if err := a.Answer(id, false, "u"); err != nil {
		t.Fatal(err)
	}
	if ans := <-done; ans.Approved || ans.Outcome != "denied" || ans.By != "u" {
		t.Fatalf("%+v", ans)
	}
	if err := a.Answer(id, true, "u"); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("second answer: %v", err)
	}
	if len(a.Pending()) != 0 {
		t.Fatal("answered request still pending")
	}
}

// Start polls: the first fetch at once, then every poll interval.
func TestEnginePolls(t *testing.T) {
	f := newFixture(t)
	f.cfg.PollInterval = 50 * time.Millisecond
	f.mgr.set(f.signed(t, 1, "all remote:ssh ask\n"))
	e := f.engine(t)
	e.Start()
	waitFor(t, func() bool { return e.Decide("remote:ssh").Effect == Ask })
	f.mgr.set(f.signed(t, 2, "all remote:ssh allow\n"))
	waitFor(t, func() bool { return e.Decide("remote:ssh").Effect == Allow })
	st := e.Status()
	if st.Version != 2 || st.LastCheck.IsZero() || st.LastError != "" || !st.Signed || st.Rules != 1 {
		t.Fatalf("status %+v", st)
	}
	e.Close()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoadWithoutSideEffects(t *testing.T) {
	f := newFixture(t)
	f.mgr.set(f.signed(t, 5, "all remote:ssh ask\n"))
	e := f.engine(t)
	if err := e.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := f.log.Last().Seq
	p, notes, err := Load(f.cfg, f.dir)
	if err != nil || p == nil || p.Version != 5 || !p.Signed || len(notes) != 0 {
		t.Fatalf("%+v %v %v", p, notes, err)
	}
	if f.log.Last().Seq != before {
		t.Fatal("Load wrote to the audit log")
	}
	// A tampered cache is passed over, with the reason, for the file.
	cache := filepath.Join(f.dir, "policy", cacheDoc)
	data, _ := os.ReadFile(cache)
	os.WriteFile(cache, []byte(strings.Replace(string(data), "ask", "allow", 1)), 0o600)
	local := filepath.Join(f.dir, "local.policy")
	os.WriteFile(local, []byte("dcagent-policy 1\nversion 1\nall remote:ssh deny\n"), 0o600)
	f.cfg.File = local
	p, notes, err = Load(f.cfg, f.dir)
	if err != nil || p.Source != "file "+local || len(notes) != 1 || !strings.Contains(notes[0], "signature does not verify") {
		t.Fatalf("%+v %v %v", p, notes, err)
	}
	f.cfg.File = ""
	if p, _, err := Load(f.cfg, f.dir); p != nil || err != nil {
		t.Fatalf("no source: %+v %v", p, err)
	}
}
