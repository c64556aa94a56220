package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/work"
)

// The test binary doubles as two helpers: "dial-helper ADDR" tries a TCP
// connection (run from inside a script's namespace), and
// "isolated-helper DIR" runs RunIsolated as whatever user started it.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "listen-helper" {
		listenHelper(os.Args[2], os.Args[3])
	}
	if len(os.Args) == 3 && os.Args[1] == "dial-helper" {
		c, err := net.DialTimeout("tcp", os.Args[2], 3*time.Second)
		if err != nil {
			fmt.Println("DIAL FAILED:", err)
			os.Exit(0)
		}
		c.Close()
		fmt.Println("DIAL OK")
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == "isolated-helper" {
		r, err := RunIsolated(context.Background(), os.Args[2], []byte("cat /proc/net/dev\n"), 10*time.Second, 4096, nil)
		if err != nil {
			fmt.Println("NOT RUN:", err)
			os.Exit(0)
		}
		fmt.Printf("RAN %s:\n%s", r.Status, r.Output)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func (f *fixture) runScript(t *testing.T, name, body string, timeoutSecs int) work.Result {
	t.Helper()
	content := []byte(body)
	sig, err := SignNamed(f.vendor, policy.DomainScript, name, content)
	if err != nil {
		t.Fatal(err)
	}
	return f.m.Handle(context.Background(), item(work.KindScript, work.Script{Name: name, Content: content, Signature: sig, TimeoutSecs: timeoutSecs}))
}

func (f *fixture) lastResult(t *testing.T) map[string]any {
	t.Helper()
	evs := f.sink.all()
	if len(evs) == 0 || evs[len(evs)-1].Type != event.TypeCommandResult {
		t.Fatal("no command_result event")
	}
	return evs[len(evs)-1].Payload
}

func TestScriptRunsIsolated(t *testing.T) {
	// A service on the host's loopback that the script must not reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := newFixture(t, "all script allow\n", nil)
	body := fmt.Sprintf("echo hello from $DCAGENT_WORK_ID\ncat /proc/net/dev\n%s dial-helper %s\n", os.Args[0], ln.Addr())
	r := f.runScript(t, "net-check", body, 0)
	if !r.OK {
		t.Fatal(r.Detail)
	}
	p := f.lastResult(t)
	out := p["output"].(string)
	if !strings.Contains(out, "hello from w-diagnostic_script") {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(out, "DIAL FAILED") || strings.Contains(out, "DIAL OK") {
		t.Fatalf("the script reached the host's network:\n%s", out)
	}
	// Only a loopback interface in its namespace.
	if ifaces := interfaces(out); len(ifaces) != 1 || ifaces[0] != "lo" {
		t.Fatalf("interfaces in the script's namespace: %v\n%s", ifaces, out)
	}
	if p["work_id"] != "w-diagnostic_script" || p["exit_code"] != 0 || p["ok"] != true {
		t.Fatalf("result %+v", p)
	}
	runs := f.records(t, audit.KindScriptRun)
	if len(runs) != 1 || runs[0].Fields["status"] != "ok" || runs[0].Fields["name"] != "net-check" || len(runs[0].Fields["digest"]) != 64 {
		t.Fatalf("run record %+v", runs)
	}
}

func TestScriptLimits(t *testing.T) {
	f := newFixture(t, "all script allow\n", func(c *Remote) { c.ScriptMaxOutput = 1000; c.ScriptTimeout = 20 * time.Second })
	// Exit status.
	r := f.runScript(t, "fails", "echo oops >&2\nexit 3\n", 0)
	if p := f.lastResult(t); r.OK || p["exit_code"] != 3 || !strings.Contains(p["output"].(string), "oops") || !strings.Contains(r.Detail, "failed, exit status 3") {
		t.Fatalf("%+v %+v", r, p)
	}
	// Output limit.
	r = f.runScript(t, "chatty", "i=0\nwhile [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done\n", 0)
	if p := f.lastResult(t); !r.OK || len(p["output"].(string)) != 1000 || !strings.Contains(r.Detail, "output cut at 1000 bytes") {
		t.Fatalf("%+v output %d bytes", r, len(p["output"].(string)))
	}
	// Time limit (the script asks for 1s): killed, with everything it
	// started in the background.
	marker := fmt.Sprintf("%d.%d", 3000+os.Getpid()%1000, time.Now().Nanosecond()%1000)
	start := time.Now()
	r = f.runScript(t, "slow", "sleep "+marker+" &\necho started\nsleep 30\necho never\n", 1)
	p := f.lastResult(t)
	if r.OK || !strings.Contains(r.Detail, "timeout") || !strings.Contains(p["output"].(string), "started") || strings.Contains(p["output"].(string), "never") {
		t.Fatalf("%+v %+v", r, p)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatalf("the timeout did not stop the script (%v)", time.Since(start))
	}
	if pid := findProcess(t, "sleep", marker); pid != 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the script's background process %d outlived it", pid)
	}
	// A script that finishes but leaves a child behind: the child dies
	// with the script's PID namespace.
	marker2 := marker + "1"
	if r := f.runScript(t, "leaves-child", "sleep "+marker2+" &\necho bye\n", 0); !r.OK {
		t.Fatal(r.Detail)
	}
	time.Sleep(100 * time.Millisecond)
	if pid := findProcess(t, "sleep", marker2); pid != 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("a child left by the script is still running (%d)", pid)
	}
	// The run folder is cleaned up.
	ents, _ := os.ReadDir(filepath.Join(f.dir, "run"))
	if len(ents) != 0 {
		t.Fatalf("run folder holds %d entries", len(ents))
	}
}

// interfaces picks the interface names out of /proc/net/dev as printed
// (the indented lines after its "Inter-|" and " face |" headers).
func interfaces(out string) []string {
	var names []string
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "Inter-|") {
			continue
		}
		for _, l := range lines[i+2:] {
			name, _, ok := strings.Cut(l, ":")
			if !ok || !strings.HasPrefix(l, " ") {
				break // interface lines are indented
			}
			names = append(names, strings.TrimSpace(name))
		}
		break
	}
	return names
}

// findProcess returns the pid of a process whose command line is exactly
// argv, or 0.
func findProcess(t *testing.T, argv ...string) int {
	t.Helper()
	want := strings.Join(argv, "\x00") + "\x00"
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == want {
			return pid
		}
	}
	return 0
}

func TestScriptRefusals(t *testing.T) {
	f := newFixture(t, "all script:allowed allow\n", nil)
	cases := []struct {
		name  string
		build func() work.Script
		want  string
	}{
		{"unsigned", func() work.Script { return work.Script{Name: "allowed", Content: []byte("echo hi\n")} }, "signature does not verify"},
		{"tampered", func() work.Script {
			sig, _ := SignNamed(f.vendor, policy.DomainScript, "allowed", []byte("echo hi\n"))
			return work.Script{Name: "allowed", Content: []byte("rm -rf /\n"), Signature: sig}
		}, "signature does not verify"},
		{"file signature", func() work.Script {
			sig, _ := SignNamed(f.vendor, policy.DomainFile, "allowed", []byte("echo hi\n"))
			return work.Script{Name: "allowed", Content: []byte("echo hi\n"), Signature: sig}
		}, "signature does not verify"},
		{"renamed", func() work.Script {
			sig, _ := SignNamed(f.vendor, policy.DomainScript, "allowed", []byte("echo hi\n"))
			return work.Script{Name: "other", Content: []byte("echo hi\n"), Signature: sig}
		}, "signature does not verify"},
		{"not allowed", func() work.Script {
			sig, _ := SignNamed(f.vendor, policy.DomainScript, "other", []byte("echo hi\n"))
			return work.Script{Name: "other", Content: []byte("echo hi\n"), Signature: sig}
		}, "policy: no rule applies to script:other"},
		{"bad name", func() work.Script { return work.Script{Name: "../x", Content: []byte("echo\n")} }, "script name"},
	}
	for _, c := range cases {
		r := f.m.Handle(context.Background(), item(work.KindScript, c.build()))
		if r.OK || !strings.Contains(r.Detail, c.want) {
			t.Errorf("%s: %+v, want %q", c.name, r, c.want)
		}
		if p := f.lastResult(t); p["ok"] != false || !strings.Contains(p["detail"].(string), "script not run") {
			t.Errorf("%s: result event %+v", c.name, p)
		}
	}
	if n := len(f.records(t, audit.KindScriptRefused)); n != len(cases) {
		t.Fatalf("%d refusals recorded", n)
	}
	if n := len(f.records(t, audit.KindScriptRun)); n != 0 {
		t.Fatal("a refused script ran")
	}
}

// Without root: the script runs in an unprivileged user namespace where
// the kernel allows one, and is not run at all where it does not; it never
// runs with the network.
func TestScriptWithoutRoot(t *testing.T) {
	dir, err := os.MkdirTemp("", "remote-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "helper.test")
	data, _ := os.ReadFile(os.Args[0])
	os.WriteFile(bin, data, 0o755)
	run := filepath.Join(dir, "run")
	os.Mkdir(run, 0o777)
	os.Chmod(run, 0o777)
	cmd := exec.Command(bin, "isolated-helper", run)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	switch {
	case strings.HasPrefix(s, "NOT RUN:"):
		if !strings.Contains(s, ErrNoIsolation.Error()) {
			t.Fatalf("refusal does not say why: %s", s)
		}
	case strings.HasPrefix(s, "RAN ok:"):
		if ifs := interfaces(s); len(ifs) != 1 || ifs[0] != "lo" {
			t.Fatalf("the script saw more than a loopback interface: %v\n%s", ifs, s)
		}
	default:
		t.Fatalf("unexpected: %s", s)
	}
	t.Logf("as nobody: %s", strings.SplitN(s, "\n", 2)[0])
}

// A script running as root tries to leave its namespaces: through a handle
// on the host's network namespace (bind-mounted where it can see it, so
// the kernel's setns check itself is tested), through any process
// /proc shows in another namespace, and by unmounting its /proc. Every way
// fails, and its ordinary output still comes back.
func TestScriptCannotLeaveItsNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs the script as root, as the daemon does (CI runs tests as root)")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("nsenter (util-linux) is needed to attempt the escape: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// A handle on this process's network namespace, reachable from the
	// script's mount namespace (a copy of this one).
	hostNet := filepath.Join(t.TempDir(), "net")
	if err := os.WriteFile(hostNet, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(fmt.Sprintf("/proc/%d/ns/net", os.Getpid()), hostNet, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind the host's network namespace: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(hostNet, syscall.MNT_DETACH) })
	self, _ := os.ReadFile("/proc/self/cmdline")
	// The script only tries to unmount its /proc in a mount namespace of
	// its own: never this one's.
	hostMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`echo hello pid=$$ uid=$(id -u)
%[1]s dial-helper %[2]s
%[3]s --net=%[4]s %[1]s dial-helper %[2]s; echo via-handle-net-exit=$?
me=$(readlink /proc/self/ns/net)
for p in /proc/[0-9]*; do
	n=$(readlink $p/ns/net 2>/dev/null) || continue
	[ "$n" != "$me" ] && { echo other-netns=${p#/proc/}; %[3]s -t ${p#/proc/} -n %[1]s dial-helper %[2]s; }
done
if [ "$(readlink /proc/self/ns/mnt)" = "%[6]s" ]; then echo SAME-MOUNT-NS; else umount /proc && echo UMOUNTED-PROC; fi
echo test-process-cmdline=$(tr '\0' ' ' < /proc/%[5]d/cmdline 2>/dev/null)
`, os.Args[0], ln.Addr(), nsenter, hostNet, os.Getpid(), hostMnt)
	r, err := RunIsolated(context.Background(), filepath.Join(t.TempDir(), "run"), []byte(body), 20*time.Second, 1<<16, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := r.Output
	t.Logf("status %s exit %d:\n%s", r.Status, r.ExitCode, out)
	if !strings.Contains(out, "hello pid=1 uid=0") {
		t.Fatalf("the script did not run as root, PID 1 of its namespace, or its output is lost:\n%s", out)
	}
	if strings.Contains(out, "DIAL OK") || !strings.Contains(out, "DIAL FAILED") {
		t.Errorf("the script reached the host's loopback service")
	}
	if strings.Contains(out, "via-handle-net-exit=0") || !strings.Contains(out, "via-handle-net-exit=") {
		t.Errorf("setns into the host's network namespace was not refused")
	}
	if strings.Contains(out, "other-netns=") {
		t.Errorf("the script's /proc shows a process in another network namespace")
	}
	if strings.Contains(out, "SAME-MOUNT-NS") {
		t.Errorf("the script runs in the host's mount namespace")
	}
	if strings.Contains(out, "UMOUNTED-PROC") {
		t.Errorf("the script could unmount its /proc")
	}
	if bin := strings.TrimRight(strings.SplitN(string(self), "\x00", 2)[0], "\x00"); strings.Contains(out, "test-process-cmdline="+bin) {
		t.Errorf("the script sees this test process (a host process) in /proc")
	}
}

// The sandbox step changes mounts, so it refuses to act anywhere but as PID
// 1 of a new PID namespace (never in the host's mount namespace, whoever
// starts the binary under that name).
func TestSandboxRefusesOutsideItsNamespaces(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Args = []string{sandboxArg0, "/bin/echo", "RAN"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 126 || strings.Contains(string(out), "RAN") || !strings.Contains(string(out), "not the first process of a new PID namespace") {
		t.Fatalf("err %v, output %q", err, out)
	}
}
