package demo

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/daemon"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/internal/testenv"
)

// agentBin and simBin are the dcagent and dcsim binaries the tests run,
// built once.
var agentBin, simBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dcagent-e2e-bin-")
	if err != nil {
		panic(err)
	}
	agentBin, simBin = filepath.Join(dir, "dcagent"), filepath.Join(dir, "dcsim")
	for bin, pkg := range map[string]string{agentBin: "./cmd/dcagent", simBin: "./cmd/dcsim"} {
		cmd := exec.Command("go", "build", "-o", bin, "github.com/dcagent/dcagent/"+pkg[2:])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			panic("building " + pkg + ": " + err.Error())
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLab makes an enrolled lab whose agent is running and heartbeating.
func newLab(t *testing.T, o LabOptions) *Lab {
	t.Helper()
	o.Agent, o.Simulator = agentBin, simBin
	if o.Captures == "" {
		o.Captures = filepath.Join(testenv.SharedTestdata(t), "smart", "json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := NewLab(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", l.AgentLog())
		}
		l.Close()
	})
	if out, err := l.Enroll(ctx); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := l.StartAgent(); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitHeartbeats(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return l
}

func agentStatus(t *testing.T, l *Lab) daemon.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.Agent(ctx, "status", "--json")
	if err != nil {
		t.Fatalf("dcagent status: %v\n%s", err, out)
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return st
}

func auditVerify(t *testing.T, l *Lab) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.Agent(ctx, "audit", "verify")
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	return out
}

// The whole demo, as a new user runs it.
func TestDemo(t *testing.T) {
	var out strings.Builder
	err := Run(context.Background(), Options{LabOptions: LabOptions{Agent: agentBin, Simulator: simBin, Captures: filepath.Join(testenv.SharedTestdata(t), "smart", "json"), Tick: time.Second}}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"Enrolling", "heartbeat 1 from SYS-DEMO-0001 over DTLS", "ALERT", "risk rose", "CASE OPENED", "Part to dispatch: replacement drive",
		"dcagent approve", "engineer sees:", "web console", "remote.session.end", "audit log OK", "anchored in the TPM counter"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's story lacks %q:\n%s", want, out.String())
		}
	}
}

// The daemon listens on no network port: only its Unix control socket.
func TestDaemonListensOnNothing(t *testing.T) {
	l := newLab(t, LabOptions{})
	socks, err := remote.ListeningSockets(l.AgentPID())
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 0 {
		t.Fatalf("the running agent listens on %v", socks)
	}
}

// A configuration with a mistake: the daemon refuses to start and names
// the file, the line and the key.
func TestDaemonRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "bad.conf")
	os.WriteFile(conf, []byte("[device]\nsystem_id = S1\nstate_dir = "+dir+"\n[heartbeat]\nintervall = 5s\n"), 0o600)
	out, err := exec.Command(agentBin, "--config", conf, "run").CombinedOutput()
	if err == nil {
		t.Fatalf("started with a bad configuration:\n%s", out)
	}
	for _, want := range []string{conf + ":5", "[heartbeat] intervall", "unknown key"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error lacks %q: %s", want, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the refused daemon wrote into its state directory: %v", entries)
	}
}

// SIGHUP re-reads the configuration; a broken one is refused and the
// running configuration stays.
func TestDaemonSIGHUP(t *testing.T) {
	l := newLab(t, LabOptions{})
	orig, _ := os.ReadFile(l.Config)
	changed := strings.Replace(string(orig), "[heartbeat]\ninterval = 2s", "[heartbeat]\ninterval = 1s", 1)
	if changed == string(orig) {
		t.Fatal("the lab's configuration has no heartbeat interval to change")
	}
	os.WriteFile(l.Config, []byte(changed), 0o600)
	syscall.Kill(l.AgentPID(), syscall.SIGHUP)
	waitLog(t, l, "configuration reloaded")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.WaitHeartbeats(ctx, 2); err != nil {
		t.Fatal(err)
	}

	os.WriteFile(l.Config, []byte(changed+"\n[nosuchsection]\n"), 0o600)
	syscall.Kill(l.AgentPID(), syscall.SIGHUP)
	waitLog(t, l, "configuration reload refused")
	if err := l.WaitHeartbeats(ctx, 2); err != nil {
		t.Fatalf("the agent stopped after a refused reload: %v", err)
	}
	// The broken file does not lock a person out of the running daemon, and
	// status says the file on disk is not the configuration in force.
	out, err := l.Agent(ctx, "status")
	if err != nil || !strings.Contains(out, "reload was refused") || !strings.Contains(out, "nosuchsection") {
		t.Fatalf("status with a broken file on disk: %v\n%s", err, out)
	}
	if out, err := l.Agent(ctx, "pending"); err != nil {
		t.Fatalf("pending with a broken file on disk: %v\n%s", err, out)
	}
}

func waitLog(t *testing.T, l *Lab, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.AgentLog(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent never logged %q", text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SIGKILL at any moment, then a restart: the agent heartbeats again, the
// events it had spooled arrive once, and the audit log still verifies
// against the TPM counter.
func TestDaemonSurvivesSIGKILL(t *testing.T) {
	l := newLab(t, LabOptions{Degrade: "1", Tick: time.Second})
	l.RunHardware(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(700+i*300) * time.Millisecond)
		l.agent.Process.Kill()
		<-l.agentDone
		l.agent = nil
		if err := l.StartAgent(); err != nil {
			t.Fatal(err)
		}
		if err := l.WaitHeartbeats(ctx, 1); err != nil {
			t.Fatalf("after kill %d: %v", i+1, err)
		}
	}
	// The spool drains and nothing arrived twice.
	deadline := time.Now().Add(30 * time.Second)
	for agentStatus(t, l).Spool.Backlog != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool never drained: %+v", agentStatus(t, l).Spool)
		}
		time.Sleep(200 * time.Millisecond)
	}
	seen := map[string]int{}
	for _, r := range l.Backend.Events.Events() {
		ev, err := r.Event()
		if err != nil {
			t.Fatal(err)
		}
		seen[ev.ID]++
		if seen[ev.ID] > 1 {
			t.Errorf("event %s stored twice", ev.ID)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no event arrived")
	}
	if err := l.StopAgent(); err != nil {
		t.Fatal(err)
	}
	if out := auditVerify(t, l); !strings.Contains(out, "audit log OK") {
		t.Fatalf("audit verify: %s", out)
	}
}

// The backend goes away: heartbeats fail, events wait in the spool; when it
// returns (same addresses, same state) everything resumes and the events
// arrive.
func TestDaemonBackendOutage(t *testing.T) {
	l := newLab(t, LabOptions{Degrade: "1", Tick: time.Second})
	l.StopBackend()
	l.RunHardware(nil)
	deadline := time.Now().Add(40 * time.Second)
	for {
		st := agentStatus(t, l)
		if st.Spool.Backlog > 0 && st.Heartbeat != nil && st.Heartbeat.ConsecutiveFailures > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backlog or no failed heartbeat while the backend is down: %+v %+v", st.Spool, st.Heartbeat)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := l.RestartBackend(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := l.WaitHeartbeats(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for agentStatus(t, l).Spool.Backlog != 0 {
		if ctx.Err() != nil {
			t.Fatalf("backlog never drained after the backend returned: %+v", agentStatus(t, l).Spool)
		}
		time.Sleep(300 * time.Millisecond)
	}
	alerts := 0
	for _, r := range l.Backend.Events.Events() {
		if ev, err := r.Event(); err == nil && ev.Type == event.TypeAlert {
			alerts++
		}
	}
	if alerts == 0 {
		t.Error("the alerts raised during the outage never arrived")
	}
}

// The TPM simulator restarts under the running agent: it reconnects, keeps
// heartbeating, and its audit log, anchored in the TPM's counter, verifies.
func TestDaemonTPMRestart(t *testing.T) {
	l := newLab(t, LabOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.TPM.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// Something that needs the TPM: an approval round (audit records,
	// anchored by the counter) and new TLS handshakes for the uploads.
	if out, err := l.Agent(ctx, "pending"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := l.WaitHeartbeats(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.StopAgent(); err != nil {
		t.Fatal(err)
	}
	if out := auditVerify(t, l); !strings.Contains(out, "audit log OK") {
		t.Fatalf("audit verify: %s", out)
	}
}

// The state directory's disk fills up: the daemon keeps running and
// heartbeating, says what is wrong in its status, and events flow again
// once there is room; the audit log still verifies.
func TestDaemonFullDisk(t *testing.T) {
	l := newLab(t, LabOptions{Degrade: "1", Tick: time.Second, StateTmpfs: 8 << 20})
	state := filepath.Join(l.Dir, "state")
	// Fill the filesystem to the last block.
	filler := filepath.Join(state, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	l.RunHardware(nil)

	deadline := time.Now().Add(60 * time.Second)
	for {
		st := agentStatus(t, l)
		if strings.Contains(st.Spool.LastError, "no space") || strings.Contains(st.Spool.LastError, "full") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the full disk was never reported: %+v", st.Spool)
		}
		time.Sleep(300 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.WaitHeartbeats(ctx, 2); err != nil {
		t.Fatalf("heartbeats stopped on a full disk: %v", err)
	}
	if l.agent == nil || l.agent.ProcessState != nil {
		t.Fatal("the agent exited on a full disk")
	}
	before := l.Backend.Events.Count()

	os.Remove(filler)
	for l.Backend.Events.Count() == before {
		if ctx.Err() != nil {
			t.Fatalf("no event arrived after space was freed (%d before)", before)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := l.StopAgent(); err != nil {
		t.Fatal(err)
	}
	if out := auditVerify(t, l); !strings.Contains(out, "audit log OK") {
		t.Fatalf("audit verify after a full disk: %s", out)
	}
}

// A second daemon on the same state directory refuses before it touches
// anything: the running one's audit log stays one chain.
func TestSecondDaemonRefused(t *testing.T) {
	l := newLab(t, LabOptions{})
	out, err := exec.Command(agentBin, "--config", l.Config, "run").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another dcagent daemon") {
		t.Fatalf("second daemon: %v\n%s", err, out)
	}
	if err := l.StopAgent(); err != nil {
		t.Fatal(err)
	}
	if v := auditVerify(t, l); !strings.Contains(v, "audit log OK") {
		t.Fatalf("audit verify after a refused second daemon: %s", v)
	}
}
