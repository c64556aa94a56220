package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// ErrNoIsolation means a script could not be cut off from the network, so
// it was not run.
var ErrNoIsolation = errors.New("cannot run the script without network access: creating a network namespace was refused")

// RunIsolated runs content with /bin/sh in new network and PID namespaces,
// at most limit long, keeping at most maxOutput bytes of its combined
// output. dir holds a private folder per run (removed afterwards). The
// error is for a script that could not be started at all.
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
	out := &cappedBuffer{max: maxOutput}
	run := func(attr *syscall.SysProcAttr) (*exec.Cmd, error) {
		cmd := exec.Command(scriptShell, file)
		cmd.Dir = work
		cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LANG=C", "TMPDIR=" + work}, env...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = attr
		cmd.WaitDelay = 2 * time.Second
		return cmd, cmd.Start()
	}
	// A new network namespace has only a loopback interface, and it is
	// down: the script reaches nothing. In a new PID namespace the shell
	// is PID 1, and when it exits or is killed the kernel kills every
	// process it left behind.
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	cmd, err := run(attr)
	if err != nil && errors.Is(err, syscall.EPERM) && os.Geteuid() != 0 {
		// Not root: an unprivileged user namespace can own the new
		// namespaces, where the kernel allows it.
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}}
		cmd, err = run(attr)
	}
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("%w (%v)", ErrNoIsolation, err)
		}
		return nil, fmt.Errorf("start %s: %w", scriptShell, err)
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
