package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/work"
)

// scriptShell runs diagnostic scripts.
const scriptShell = "/bin/sh"

// ScriptResult is how a script run ended.
type ScriptResult struct {
	// Status is ok (exit 0), failed (other exit status), timeout, or
	// error (could not run).
	Status    string
	ExitCode  int
	Output    string
	Truncated bool
	Duration  time.Duration
}

// script verifies, authorises and runs a diagnostic script, and sends the
// result home.
func (m *Manager) script(ctx context.Context, workID string, s work.Script) (bool, string) {
	sum := sha256.Sum256(s.Content)
	digest := hex.EncodeToString(sum[:])
	result := func(ok bool, detail string, r *ScriptResult) (bool, string) {
		payload := map[string]any{"work_id": workID, "kind": string(work.KindScript), "ok": ok, "detail": detail}
		if r != nil {
			payload["exit_code"] = r.ExitCode
			payload["output"] = r.Output
			payload["duration_ms"] = r.Duration.Milliseconds()
		}
		if m.opts.Events != nil {
			if err := m.opts.Events.Put(&event.Event{Type: event.TypeCommandResult, Severity: event.SeverityNotice, Created: time.Now().UTC(), Payload: payload}); err != nil {
				m.logger.Warn("remote: script result not spooled", "work", workID, "err", err)
			}
		}
		return ok, detail
	}
	refuse := func(reason string) (bool, string) {
		m.record(audit.KindScriptRefused, "", map[string]string{"name": clipText(s.Name), "digest": digest, "request": workID, "reason": reason})
		return result(false, "script not run: "+reason, nil)
	}
	if err := policy.CheckAction("script:" + s.Name); err != nil {
		return refuse(fmt.Sprintf("script name %q is not 1-64 of a-z 0-9 . _ -", clipText(s.Name)))
	}
	if m.vendorKey == nil {
		return refuse(fmt.Sprintf("no vendor key to verify it with (%v)", m.keyErr))
	}
	if err := policy.VerifySignature(m.vendorKey, policy.DomainScript, signedNamed(s.Name, s.Content), s.Signature); err != nil {
		return refuse("the vendor signature does not verify: the script was changed or not signed by the vendor")
	}
	out := m.opts.Policy.Authorize(ctx, policy.Request{ID: workID, Action: "script:" + s.Name, Detail: fmt.Sprintf("run diagnostic script %s (sha256 %.16s…)", s.Name, digest)})
	if !out.Allowed {
		return refuse("policy: " + out.Reason)
	}
	limit := m.opts.Config.ScriptTimeout
	if s.TimeoutSecs > 0 && time.Duration(s.TimeoutSecs)*time.Second < limit {
		limit = time.Duration(s.TimeoutSecs) * time.Second
	}
	r, err := RunIsolated(ctx, filepath.Join(m.opts.StateDir, "run"), s.Content, limit, m.opts.Config.ScriptMaxOutput, []string{"DCAGENT_WORK_ID=" + workID})
	if err != nil {
		return refuse(err.Error())
	}
	m.record(audit.KindScriptRun, "", map[string]string{
		"name": s.Name, "digest": digest, "request": workID, "status": r.Status, "exit_code": strconv.Itoa(r.ExitCode),
		"duration": r.Duration.Round(time.Millisecond).String(), "output_bytes": strconv.Itoa(len(r.Output)), "output_truncated": strconv.FormatBool(r.Truncated),
	})
	detail := fmt.Sprintf("script %s: %s, exit status %d after %v", s.Name, r.Status, r.ExitCode, r.Duration.Round(time.Millisecond))
	if r.Truncated {
		detail += fmt.Sprintf(", output cut at %d bytes", m.opts.Config.ScriptMaxOutput)
	}
	return result(r.Status == "ok", detail, r)
}

// ErrNoIsolation means a script could not be cut off from the network and
// the host's processes, so it was not run.
var ErrNoIsolation = errors.New("cannot run the script isolated from the network and the host's processes")

// sandboxArg0 is the argv[0] under which the agent's own binary, started
// by RunIsolated in fresh namespaces, prepares them and then executes the
// shell (see init and enterSandbox).
const sandboxArg0 = "dcagent-script-sandbox"

// sandboxStatusFD is the descriptor on which the sandbox reports why it
// could not prepare the namespaces. It is close-on-exec, so when the shell
// starts the parent reads end-of-file and nothing else.
const sandboxStatusFD = 3

// capSysAdmin is CAP_SYS_ADMIN (linux/capability.h).
const capSysAdmin = 21

func init() {
	// Runs before main in every binary that links this package (the agent
	// and its test binaries): the sandbox step must happen after clone and
	// before the shell, and Go gives no hook in between.
	if len(os.Args) >= 2 && os.Args[0] == sandboxArg0 {
		enterSandbox(os.Args[1:])
	}
}

// enterSandbox runs as PID 1 of the script's new namespaces. It makes every
// mount private (nothing done here propagates to the host), mounts a proc
// of the new PID namespace over /proc (host processes are not visible),
// drops CAP_SYS_ADMIN from the bounding set (the shell, root of its own
// user namespace, cannot unmount that /proc to uncover the host's) and
// executes argv. It never returns.
func enterSandbox(argv []string) {
	if os.Getpid() != 1 {
		// Not started by RunIsolated: touch nothing.
		fmt.Fprintln(os.Stderr, sandboxArg0+": not the first process of a new PID namespace; refusing")
		os.Exit(126)
	}
	status := os.NewFile(sandboxStatusFD, "sandbox-status")
	fail := func(step string, err error) {
		fmt.Fprintf(status, "%s: %v", step, err)
		os.Exit(126)
	}
	// The bounding set is per thread, and execve keeps the calling
	// thread's: drop and execute on the same one.
	runtime.LockOSThread()
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fail("make mounts private", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		fail("mount /proc of the new PID namespace", err)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_CAPBSET_DROP, capSysAdmin, 0); errno != 0 {
		fail("drop CAP_SYS_ADMIN", errno)
	}
	syscall.CloseOnExec(sandboxStatusFD)
	err := syscall.Exec(argv[0], argv, os.Environ())
	fail("execute "+argv[0], err)
}

// RunIsolated runs content with /bin/sh at most limit long, keeping at
// most maxOutput bytes of its combined output, in new user, network, PID
// and mount namespaces:
//
//   - user: uid and gid 0 inside map to the caller's (0 when the agent
//     runs as root, so the script can read root-owned files). The script
//     has no capability in the host's user namespace, so the kernel
//     refuses it setns(2) into the host's network or PID namespace, even
//     when it finds a handle to them.
//   - network: only a loopback interface, down; the script reaches nothing.
//   - PID: the shell is PID 1, and when it exits or is killed the kernel
//     kills every process it left behind.
//   - mount: private propagation and its own /proc, which lists only the
//     script's processes.
//
// dir holds a private folder per run (removed afterwards). The error is
// for a script that could not be started at all; ErrNoIsolation when the
// kernel refused the namespaces (for example unprivileged user namespaces
// disabled for a non-root agent).
func RunIsolated(ctx context.Context, dir string, content []byte, limit time.Duration, maxOutput int64, env []string) (*ScriptResult, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(dir, "script-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	file := filepath.Join(work, "script.sh")
	if err := os.WriteFile(file, content, 0o500); err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statusR.Close()
	out := &cappedBuffer{max: maxOutput}
	// The agent's own binary, whatever its path now (it may have been
	// replaced on disk by an update).
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{sandboxArg0, scriptShell, file}
	cmd.Dir = work
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LANG=C", "TMPDIR=" + work}, env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{statusW} // descriptor 3 = sandboxStatusFD
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	err = cmd.Start()
	statusW.Close()
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w: creating the namespaces was refused (%v)", ErrNoIsolation, err)
		}
		return nil, fmt.Errorf("start %s: %w", scriptShell, err)
	}
	// End of file as soon as the shell is executed; a reason if the
	// sandbox could not be prepared (then the script never ran).
	reason, _ := io.ReadAll(io.LimitReader(statusR, 4096))
	if len(reason) > 0 {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%w: %s", ErrNoIsolation, reason)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	r := &ScriptResult{}
	var werr error
	select {
	case werr = <-done:
	case <-timer.C:
		cmd.Process.Kill() // PID 1 of its namespace: everything goes
		werr = <-done
		r.Status = "timeout"
	case <-ctx.Done():
		cmd.Process.Kill()
		werr = <-done
		r.Status = "cancelled"
	}
	r.Duration = time.Since(start)
	r.ExitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.ExitCode = 128 + int(ws.Signal())
	}
	r.Output, r.Truncated = out.String()
	if r.Status == "" {
		var ee *exec.ExitError
		switch {
		case werr == nil:
			r.Status = "ok"
		case errors.As(werr, &ee):
			r.Status = "failed"
		default:
			r.Status = "error"
			r.Output += "\n[dcagent: " + werr.Error() + "]"
		}
	}
	return r, nil
}

// cappedBuffer keeps the first max bytes written and counts the rest.
type cappedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	max     int64
	dropped int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - int64(c.buf.Len())
	if room >= int64(len(p)) {
		c.buf.Write(p)
	} else {
		if room > 0 {
			c.buf.Write(p[:room])
		}
		c.dropped += int64(len(p)) - max(room, 0)
	}
	return len(p), nil
}

// String returns the kept output as valid UTF-8 and whether some was cut.
func (c *cappedBuffer) String() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf.Bytes()
	if c.dropped > 0 {
		// Do not end inside a UTF-8 sequence.
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), c.dropped > 0
}
