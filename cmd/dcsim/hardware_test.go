package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/testenv"
)

// buildDcsim builds this command once per test binary run, so that the
// smartctl stand-in script has a real dcsim to exec.
func buildDcsim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dcsim")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(testenv.RepoRoot(t), "cmd", "dcsim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func run(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "DCAGENT_SHARED_TESTDATA="+testenv.SharedTestdata(t))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func TestHardwareCommand(t *testing.T) {
	bin := buildDcsim(t)
	root := filepath.Join(t.TempDir(), "hw")

	out, errs, code := run(t, bin, "hardware", "--root", root, "--degrade", "1", "--backplane-fault", "0,2", "--at", "2:fan-fail:1", "--tick", "0", "--steps", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"sysfs root:  " + root, "smartctl:    " + filepath.Join(root, "bin", "smartctl"), "DEGRADING from step 1", "BACKPLANE FAULT", "replaying captures from", "step 1: /dev/sdb (slot 1): pending sectors 0 -> 8", "step 2: nct6779 fan1: the fan stopped", "stopped at step 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The stand-in script execs this dcsim.
	sm := filepath.Join(root, "bin", "smartctl")
	cmd := exec.Command(sm, "--json=c", "-a", "/dev/sdb")
	b, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	var rep struct {
		Smartctl struct {
			ExitStatus int `json:"exit_status"`
		} `json:"smartctl"`
		Device struct {
			Name string `json:"name"`
		} `json:"device"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.Device.Name != "/dev/sdb" || rep.Smartctl.ExitStatus != cmd.ProcessState.ExitCode() || rep.Smartctl.ExitStatus&64 == 0 {
		t.Errorf("stand-in: %v %+v exit %d", err, rep, cmd.ProcessState.ExitCode())
	}

	out, errs, code = run(t, bin, "hardware", "step", "--root", root, "--json", "2")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"step":5`) {
		t.Errorf("step: exit %d out %q err %q", code, out, errs)
	}
	out, _, code = run(t, bin, "hardware", "show", "--root", root, "--json")
	var show struct {
		SysfsRoot string `json:"sysfs_root"`
		State     struct {
			Step int `json:"step"`
		} `json:"state"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &show) != nil || show.State.Step != 5 || show.SysfsRoot != root {
		t.Errorf("show: exit %d %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"hardware"}, 2, "--root DIR is required"},
		{[]string{"hardware", "--root", root, "--at", "x"}, 2, "want STEP:KIND"},
		{[]string{"hardware", "--root", root, "--backplane-fault", "a"}, 2, "not a slot number"},
		{[]string{"hardware", "--root", root, "--series", "/nonexistent.json"}, 2, "--series"},
		{[]string{"hardware", "--root", root, "--tick", "0", "--degrade", "99"}, 1, "slots 0 to 3"},
		{[]string{"hardware", "step", "--root", t.TempDir()}, 1, "no simulated hardware"},
		{[]string{"hardware", "step", "--root", root, "0"}, 2, "not a number of steps"},
		{[]string{"hardware", "smartctl"}, 1, "usage"},
		{[]string{"hardware", "-h"}, 0, "-backplane-fault string"},
	} {
		_, errs, code := run(t, bin, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q lacks %q", tc.args, code, tc.code, errs, tc.want)
		}
	}
}

// dcsim hardware runs until SIGTERM and stops cleanly.
func TestHardwareStopsOnSignal(t *testing.T) {
	bin := buildDcsim(t)
	root := filepath.Join(t.TempDir(), "hw")
	cmd := exec.Command(bin, "hardware", "--root", root, "--captures", "none", "--tick", "20ms")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(root, "state", "state.json")); err == nil && !bytes.Contains(b, []byte(`"step": 0,`)) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dcsim hardware exited with %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dcsim hardware did not stop on SIGTERM")
	}
	if !strings.Contains(out.String(), "made up by the simulator") || !strings.Contains(out.String(), "stopped at step") {
		t.Errorf("output:\n%s", out.String())
	}
}
