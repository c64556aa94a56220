package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/hal/sim"
	"github.com/dcagent/dcagent/internal/testenv"
)

// simulated builds dcsim (the smartctl stand-in runs it) and a simulated
// machine, and writes a configuration pointing at it.
func simulated(t *testing.T, o sim.Options) (*sim.Hardware, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dcsim")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dcsim")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build dcsim: %v\n%s", err, out)
	}
	o.Root = t.TempDir()
	o.Captures = filepath.Join(testenv.SharedTestdata(t), "smart", "json")
	o.SmartctlCommand = []string{bin, "hardware", "smartctl"}
	hw, err := sim.Create(o)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "dcagent.conf")
	os.WriteFile(conf, []byte("[device]\nsystem_id = SIM-1\n[hal]\nsysfs_root = "+hw.SysfsRoot()+"\nsmartctl = "+hw.SmartctlPath()+"\nsmartctl_timeout = 30s\n"), 0o644)
	return hw, conf
}

func diagRun(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestDiagOfflineOnSimulatedHardware(t *testing.T) {
	hw, conf := simulated(t, sim.Options{Drives: 3, Degrade: "1", Events: []sim.Event{{Step: 1, Kind: sim.EventFanFail, Target: 1}}})

	out, errs, code := diagRun("--config", conf, "diag", "--offline")
	// The hardware is healthy; the device is not enrolled, which diag
	// reports as the one failure.
	if code != 1 || !strings.Contains(out, "FAIL  identity") {
		t.Fatalf("healthy, unenrolled machine: exit %d\n%s%s", code, out, errs)
	}
	for _, bad := range []string{"FAIL  sensors", "FAIL  drives", "FAIL  enclosures", "FAIL  config"} {
		if strings.Contains(out, bad) {
			t.Errorf("healthy hardware reported %q:\n%s", bad, out)
		}
	}
	for _, w := range []string{"ok    config", "read and valid", "sensors on 6 chips read", "12 slots, 3 drives, no faults", "/dev/sdb (", "healthy: SMART verdict PASSED"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(out, "the network checks were skipped") {
		t.Errorf("offline run does not say the network checks were skipped:\n%s", out)
	}

	if _, err := hw.Advance(12); err != nil {
		t.Fatal(err)
	}
	out, _, code = diagRun("--config", conf, "diag", "--offline")
	if code != 1 {
		t.Errorf("failing drive and fan: exit %d, want 1\n%s", code, out)
	}
	for _, w := range []string{"problem", "FAIL  drives", "SMART verdict is FAILED", "What to do: Replace the drive soon", "FAIL  sensors", "nct6779 fan1", "the fan has stopped"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	out, _, code = diagRun("--config", conf, "diag", "--json")
	var rep struct {
		Status   string `json:"status"`
		Findings []struct {
			Check, Status, Subject, Message, Action string
		} `json:"findings"`
		Notes []string `json:"notes"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if code != 1 || rep.Status != "fail" || len(rep.Findings) < 5 || rep.Findings[0].Status != "fail" {
		t.Errorf("JSON report: exit %d %+v", code, rep)
	}
	// Without --offline the backend is checked too: this configuration
	// names none.
	backend := false
	for _, f := range rep.Findings {
		if f.Check == "backend" && f.Status == "fail" {
			backend = true
		}
	}
	if !backend || len(rep.Notes) != 0 {
		t.Errorf("no backend finding, or notes %q: %+v", rep.Notes, rep.Findings)
	}
}

func TestDiagConfigProblems(t *testing.T) {
	hw, _ := simulated(t, sim.Options{Drives: 1, NVMe: -1})
	// No configuration file: defaults, a warning, and the overrides still work.
	missing := filepath.Join(t.TempDir(), "none.conf")
	out, _, code := diagRun("--config", missing, "diag", "--offline", "--sysfs-root", hw.SysfsRoot(), "--smartctl", hw.SmartctlPath())
	// (exit 1: with no configuration there is no vendor CA, so the
	// identity check fails; the hardware is healthy.)
	if code != 1 || !strings.Contains(out, "FAIL  identity") || !strings.Contains(out, "WARN  config") || !strings.Contains(out, "no configuration file here") || !strings.Contains(out, "healthy: SMART verdict PASSED") {
		t.Errorf("missing config: exit %d\n%s", code, out)
	}
	// A broken configuration is a failure naming the key, and the hardware
	// is still checked.
	bad := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(bad, []byte("[device]\nsystem_id = X\n[hal]\nsysfs_root = relative\n"), 0o644)
	out, _, code = diagRun("--config", bad, "diag", "--offline", "--sysfs-root", hw.SysfsRoot(), "--smartctl", hw.SmartctlPath())
	if code != 1 || !strings.Contains(out, "FAIL  config") || !strings.Contains(out, "[hal] sysfs_root") || !strings.Contains(out, "sensors on") {
		t.Errorf("bad config: exit %d\n%s", code, out)
	}
	// smartctl missing: a failure that says to install it.
	out, _, code = diagRun("--config", missing, "diag", "--offline", "--sysfs-root", hw.SysfsRoot(), "--smartctl", filepath.Join(t.TempDir(), "smartctl"))
	if code != 1 || !strings.Contains(out, "Install smartmontools") {
		t.Errorf("no smartctl: exit %d\n%s", code, out)
	}
}

func TestDiagUsage(t *testing.T) {
	_, errs, code := diagRun("diag", "-h")
	if code != 0 || !strings.Contains(errs, "--offline") || !strings.Contains(errs, "exit status is 1") {
		t.Errorf("-h: exit %d\n%s", code, errs)
	}
	if _, _, code := diagRun("diag", "--bogus"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	if _, errs, code := diagRun("diag", "extra"); code != 2 || !strings.Contains(errs, "unexpected argument") {
		t.Errorf("extra argument: exit %d %s", code, errs)
	}
}
