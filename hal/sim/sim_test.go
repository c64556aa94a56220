package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/enclosure"
	"github.com/dcagent/dcagent/hal/hwmon"
	"github.com/dcagent/dcagent/hal/smartctl"
	"github.com/dcagent/dcagent/internal/testenv"
)

// TestMain lets the test binary be the smartctl stand-in: the wrapper
// script Create writes runs `<this binary> hardware smartctl --state ...`,
// which is what dcsim does, so the tests exercise a real exec of the
// script with real exit statuses.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "hardware" && os.Args[2] == "smartctl" {
		os.Exit(RunSmartctl(os.Args[3:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

var fixedStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func captures(t testing.TB) string {
	return filepath.Join(testenv.SharedTestdata(t), "smart", "json")
}

func create(t *testing.T, o Options) *Hardware {
	t.Helper()
	if o.Root == "" {
		o.Root = t.TempDir()
	}
	if o.Captures == "" {
		o.Captures = captures(t)
	}
	if o.Start.IsZero() {
		o.Start = fixedStart
	}
	h, err := Create(o)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return h
}

func advance(t *testing.T, h *Hardware, n int) []Change {
	t.Helper()
	ch, err := h.Advance(n)
	if err != nil {
		t.Fatalf("Advance(%d): %v", n, err)
	}
	return ch
}

// smartctlRun runs the installed stand-in script as the agent would.
func smartctlRun(t *testing.T, h *Hardware, args ...string) ([]byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.SmartctlPath(), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.Bytes(), 0
	case errors.As(err, &ee):
		return out.Bytes(), ee.ExitCode()
	}
	t.Fatalf("running %s: %v (stderr %s)", h.SmartctlPath(), err, errb.String())
	return nil, 0
}

func exitInJSON(t *testing.T, out []byte) int {
	t.Helper()
	var v struct {
		Smartctl struct {
			ExitStatus int `json:"exit_status"`
		} `json:"smartctl"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("stand-in output is not JSON: %v: %.200s", err, out)
	}
	return v.Smartctl.ExitStatus
}

// The tree the simulator writes, read back by the agent's own readers.
func TestTreeReadBack(t *testing.T) {
	h := create(t, Options{Drives: 5, NVMe: 2})
	rd, err := (&hwmon.Reader{Root: h.SysfsRoot()}).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	paths := map[string]bool{}
	for _, c := range rd.Chips {
		names = append(names, c.Name)
		if paths[c.DevicePath] {
			t.Errorf("device path %s used twice", c.DevicePath)
		}
		paths[c.DevicePath] = true
	}
	if got := strings.Join(names, ","); got != "coretemp,coretemp,nct6779,pmbus,pmbus,nvme,nvme" {
		t.Errorf("chips = %s", got)
	}
	if !paths["/sys/devices/platform/coretemp.1"] || !paths["/sys/devices/pci0000:00/0000:00:1f.4/i2c-0/0-0059"] {
		t.Errorf("device paths = %v", paths)
	}
	kinds := map[hal.SensorKind]int{}
	for _, s := range rd.Sensors() {
		kinds[s.Kind]++
		if s.Unreadable != "" || s.Alarm || len(s.Problems) > 0 {
			t.Errorf("%s at step 0: unreadable=%q alarms=%v problems=%v", s.Describe(), s.Unreadable, s.Alarms, s.Problems)
		}
		if s.Value != nil && s.Crit != nil && *s.Value >= *s.Crit {
			t.Errorf("%s at step 0 is past crit", s.Describe())
		}
	}
	want := map[hal.SensorKind]int{hal.SensorTemp: 10 + 3 + 2 + 2, hal.SensorVoltage: 7 + 4, hal.SensorFan: 4 + 2, hal.SensorCurrent: 4, hal.SensorPower: 4, hwmon.KindIntrusion: 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%s sensors = %d, want %d", k, kinds[k], n)
		}
	}

	encs, err := (&enclosure.Reader{Root: h.SysfsRoot()}).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(encs) != 1 || encs[0].ID != "0:0:12:0" || len(encs[0].Slots) != 12 || len(encs[0].Problems) != 0 {
		t.Fatalf("enclosures = %+v", encs)
	}
	if encs[0].Vendor != "DCSIM" || encs[0].Model != "SAS Backplane 12" {
		t.Errorf("enclosure identity = %q %q", encs[0].Vendor, encs[0].Model)
	}
	by := enclosure.BySlotDevice(encs)
	for _, d := range h.Drives() {
		if d.Slot < 0 {
			continue
		}
		s := by[d.Name]
		if s == nil || s.Number == nil || *s.Number != d.Slot || s.Status != "OK" || !s.Active || s.Fault {
			t.Errorf("%s: slot %+v", d.Name, s)
		}
	}
	for _, s := range encs[0].Slots[5:] {
		if !s.Empty() || s.Device != "" || len(s.Problems) != 0 {
			t.Errorf("slot %s should be empty: %+v", s.Slot.Slot, s)
		}
	}
}

// Events change what the readers see, at the step they name.
func TestEventsReadBack(t *testing.T) {
	h := create(t, Options{Events: []Event{
		{Step: 1, Kind: EventFanFail, Target: 3},
		{Step: 2, Kind: EventPSUFail, Target: 1},
		{Step: 1, Kind: EventOverheat, Target: 1},
		{Step: 2, Kind: EventSlotFault, Target: 2},
		{Step: 1, Kind: EventLocate, Target: 0},
	}})
	read := func() (*hwmon.Reading, []enclosure.Enclosure) {
		rd, err := (&hwmon.Reader{Root: h.SysfsRoot()}).Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		encs, err := (&enclosure.Reader{Root: h.SysfsRoot()}).Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rd, encs
	}
	alarms := func(rd *hwmon.Reading) []string {
		var out []string
		for _, s := range rd.Sensors() {
			if s.Alarm {
				out = append(out, s.DevicePath+" "+s.Name())
			}
		}
		return out
	}
	ch := advance(t, h, 1)
	if len(ch) != 3 {
		t.Errorf("step 1 changes = %v", ch)
	}
	rd, encs := read()
	if got := alarms(rd); len(got) != 1 || got[0] != "/sys/devices/platform/nct6775.656 fan3" {
		t.Errorf("step 1 alarms = %v", got)
	}
	if !encs[0].Slots[0].Locate || encs[0].Slots[2].Fault {
		t.Errorf("step 1 slots = %+v", encs[0].Slots[:3])
	}
	advance(t, h, 1)
	rd, encs = read()
	got := strings.Join(alarms(rd), "; ")
	for _, w := range []string{"fan3", "0-0058 in1", "0-0058 in2", "0-0058 fan1"} {
		if !strings.Contains(got, w) {
			t.Errorf("step 2 alarms %q lack %q", got, w)
		}
	}
	if s := encs[0].Slots[2]; !s.Fault || s.Status != "critical" {
		t.Errorf("step 2 slot 2 = %+v", s)
	}
	// The surviving supply carries the whole load.
	for _, s := range rd.Sensors() {
		if s.DevicePath == "/sys/devices/pci0000:00/0000:00:1f.4/i2c-0/0-0059" && s.Label == "pout1" && (s.Value == nil || *s.Value != 600) {
			t.Errorf("surviving PSU pout1 = %v, want 600 W", s.Value)
		}
	}
	// CPU 1 climbs 6 °C a step until past its critical limit.
	advance(t, h, 8)
	rd, _ = read()
	var hot bool
	for _, s := range rd.Sensors() {
		if s.DevicePath == "/sys/devices/platform/coretemp.1" && s.Index == 1 {
			hot = s.Value != nil && *s.Value >= 100 && s.Alarm
		}
	}
	if !hot {
		t.Errorf("CPU 1 package not past crit with its alarm after 10 steps")
	}
}

// The stand-in answers through its script with smartctl's exit bits, and
// its JSON carries the same status as the process.
func TestStandinExitStatus(t *testing.T) {
	h := create(t, Options{Drives: 3, Degrade: "0"})
	for _, tc := range []struct {
		name string
		args []string
		exit int
	}{
		{"healthy drive", []string{"--json=c", "-a", "/dev/sdb"}, 0},
		{"healthy drive with type", []string{"--json=c", "-a", "-d", "sat", "/dev/sdb"}, 0},
		{"sas drive", []string{"--json", "-x", "-d", "scsi", "/dev/sdc"}, 0},
		{"nvme drive", []string{"-j", "-a", "/dev/nvme0"}, 0},
		{"no such device", []string{"--json=c", "-a", "/dev/sdq"}, 2},
		{"wrong type", []string{"--json=c", "-a", "-d", "nvme", "/dev/sda"}, 2},
		{"raid type", []string{"--json=c", "-a", "-d", "megaraid,3", "/dev/sda"}, 2},
		{"unknown option", []string{"--json=c", "--frobnicate", "/dev/sda"}, 1},
		{"bad json flags", []string{"--json=z", "-a", "/dev/sda"}, 1},
		{"no device", []string{"--json=c", "-a"}, 1},
		{"two devices", []string{"--json=c", "-a", "/dev/sda", "/dev/sdb"}, 1},
		{"missing -d argument", []string{"--json=c", "-a", "-d"}, 1},
		{"text asked", []string{"-a", "/dev/sda"}, 1},
		{"scan", []string{"--scan", "--json=c"}, 0},
		{"version", []string{"--version"}, 0},
	} {
		out, code := smartctlRun(t, h, tc.args...)
		if code != tc.exit {
			t.Errorf("%s: exit %d, want %d (%.300s)", tc.name, code, tc.exit, out)
			continue
		}
		if strings.Contains(strings.Join(tc.args, " "), "-j") && tc.name != "version" {
			if got := exitInJSON(t, out); got != code {
				t.Errorf("%s: JSON exit_status %d, process %d", tc.name, got, code)
			}
		}
	}

	// The degrading drive: error log at once, then failing verdict and
	// prefail attribute below threshold.
	out, code := smartctlRun(t, h, "--json=c", "-a", "/dev/sda")
	if code != 0 {
		t.Fatalf("step 0 exit = %d, want a healthy baseline: %.300s", code, out)
	}
	advance(t, h, 1)
	if _, code = smartctlRun(t, h, "--json=c", "-a", "/dev/sda"); code != exitErrorLog {
		t.Errorf("step 1 exit = %d, want %d (error log)", code, exitErrorLog)
	}
	advance(t, h, 14)
	out, code = smartctlRun(t, h, "--json=c", "-a", "/dev/sda")
	if code != exitErrorLog|exitDiskFailing|exitPrefailNow || exitInJSON(t, out) != code {
		t.Errorf("step 15 exit = %d, want %d", code, exitErrorLog|exitDiskFailing|exitPrefailNow)
	}
}

// Degradation is a function of the step: two simulations made alike give
// the same reports at every step, and the counters follow their schedule.
func TestDegradationIsDeterministic(t *testing.T) {
	opts := func() Options { return Options{Drives: 3, Degrade: "1", Onset: 2, StepDuration: 6 * time.Hour} }
	a, b := create(t, opts()), create(t, opts())
	var prevPending uint64
	for step := 0; step <= 6; step++ {
		ra, err := a.Report("sdb")
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := b.Report("sdb")
		if !bytes.Equal(ra, rb) {
			t.Fatalf("step %d: reports of twin simulations differ", step)
		}
		r, _ := decodeReport(ra)
		f := factsOf(r)
		k := uint64(0)
		if step >= 2 {
			k = uint64(step - 1)
		}
		if f.Pending == nil || *f.Pending != 8*tri(k) || *f.Offline != 4*tri(k) {
			t.Errorf("step %d: pending %v offline %v, want %d and %d", step, deref(f.Pending), deref(f.Offline), 8*tri(k), 4*tri(k))
		}
		if *f.Pending < prevPending {
			t.Errorf("step %d: pending fell", step)
		}
		prevPending = *f.Pending
		// The report's clock moves six hours a step.
		var lt struct {
			LocalTime struct {
				TimeT int64 `json:"time_t"`
			} `json:"local_time"`
		}
		json.Unmarshal(ra, &lt)
		if want := fixedStart.Add(time.Duration(step) * 6 * time.Hour).Unix(); lt.LocalTime.TimeT != want {
			t.Errorf("step %d: local_time %d, want %d", step, lt.LocalTime.TimeT, want)
		}
		advance(t, a, 1)
		advance(t, b, 1)
	}
	// Other drives do not move.
	for _, h := range []*Hardware{a} {
		r, _ := h.Report("sda")
		rr, _ := decodeReport(r)
		if f := factsOf(rr); deref(f.Pending) != 0 || f.ExitStatus != 0 {
			t.Errorf("healthy sda changed: %+v", f)
		}
	}
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 1<<64 - 1
	}
	return *p
}

// A backplane fault: interface errors rise on the drives behind it, media
// counters stay flat, and the SAS phy log shows with -x only.
func TestBackplaneFault(t *testing.T) {
	h := create(t, Options{Drives: 4, Backplane: []int{0, 2, 3}})
	base := map[string]Facts{}
	for _, d := range h.Drives() {
		r, _ := h.Report(d.Name)
		rr, _ := decodeReport(r)
		base[d.Name] = factsOf(rr)
	}
	advance(t, h, 5)
	for _, d := range h.Drives() {
		r, _ := h.Report(d.Name)
		rr, _ := decodeReport(r)
		f, b := factsOf(rr), base[d.Name]
		media := func(f Facts) [6]uint64 {
			return [6]uint64{deref(f.Reallocated), deref(f.Pending), deref(f.Offline), deref(f.Grown), deref(f.Uncorrected), deref(f.MediaErrors)}
		}
		if media(f) != media(b) || f.ExitStatus != b.ExitStatus {
			t.Errorf("%s: media counters or exit status moved: %v -> %v", d.Name, media(b), media(f))
		}
		rising := d.Role == RoleBackplane
		switch d.Protocol {
		case "ATA":
			if got := deref(f.CRC) > deref(b.CRC) || (b.CRC == nil && f.CRC != nil); got != rising {
				t.Errorf("%s (%s): CRC %v -> %v, rising=%v", d.Name, d.Role, b.CRC, f.CRC, rising)
			}
		case "SCSI":
			if got := f.LinkErrors != nil && *f.LinkErrors > 0; got != rising {
				t.Errorf("%s (%s): link errors %v, rising=%v", d.Name, d.Role, f.LinkErrors, rising)
			}
		}
	}
	// The SAS drive (slot 2) shows its phy log with -x, not with -a.
	out, _ := smartctlRun(t, h, "--json=c", "-a", "/dev/sdc")
	if bytes.Contains(out, []byte("scsi_sas_port_0")) {
		t.Errorf("-a printed the SAS phy log")
	}
	out, _ = smartctlRun(t, h, "--json=c", "-x", "/dev/sdc")
	if !bytes.Contains(out, []byte(`"invalid_dword_count"`)) {
		t.Errorf("-x lacks the SAS phy log: %.300s", out)
	}
	out, _ = smartctlRun(t, h, "--json=c", "-a", "-l", "sasphy", "/dev/sdc")
	if !bytes.Contains(out, []byte(`"loss_of_dword_synchronization_count"`)) {
		t.Errorf("-l sasphy lacks the SAS phy log")
	}
}

// A degrading drive can replay a series of captures in time order.
func TestSeriesReplay(t *testing.T) {
	src := filepath.Join(captures(t), "libblockdev", "HGST_HMS5C4040BLE640.json")
	dir := t.TempDir()
	var series []string
	for i, pending := range []uint64{0, 16, 400} {
		r, err := loadReport(src)
		if err != nil {
			t.Fatal(err)
		}
		r.ensureAttr(197).setRaw(pending)
		b, _ := json.Marshal(r)
		p := filepath.Join(dir, string(rune('a'+i))+".json")
		os.WriteFile(p, b, 0o644)
		series = append(series, p)
	}
	h := create(t, Options{Drives: 2, Degrade: "1", Series: series})
	for step, want := range []uint64{0, 16, 400, 400, 400} {
		r, _ := h.Report("/dev/sdb")
		rr, _ := decodeReport(r)
		if f := factsOf(rr); deref(f.Pending) != want {
			t.Errorf("step %d: pending = %d, want %d", step, deref(f.Pending), want)
		}
		advance(t, h, 1)
	}
	if d := h.Drives()[1]; len(d.Series) != 3 || d.Serial != "PL01234567890J" || !strings.Contains(d.Source, "series of 3") {
		t.Errorf("drive = %+v", d)
	}
	// A series mixing drives of two protocols is refused.
	_, err := Create(Options{Root: t.TempDir(), Captures: captures(t), Degrade: "0", Series: []string{src, filepath.Join(captures(t), "beszel", "nvme0.json")}})
	if err == nil || !strings.Contains(err.Error(), "one drive over time") {
		t.Errorf("mixed series: err = %v", err)
	}
}

// Without captures the simulator makes drives up and says so; its made-up
// drives degrade the same way.
func TestMadeUpDrives(t *testing.T) {
	h := create(t, Options{Captures: "none", Drives: 3, Degrade: "nvme0"})
	st := h.State()
	if !st.MadeUp {
		t.Fatal("not marked made up")
	}
	var sum bytes.Buffer
	h.WriteSummary(&sum)
	if !strings.Contains(sum.String(), "made up by the simulator: no captures were found") {
		t.Errorf("summary does not say the drives are made up:\n%s", sum.String())
	}
	protos := ""
	for _, d := range st.Drives {
		protos += d.Protocol + " "
		if !strings.HasPrefix(d.Serial, "DCSIM") || d.Source != "made up (no captures)" {
			t.Errorf("%s: serial %q source %q", d.Name, d.Serial, d.Source)
		}
	}
	if protos != "ATA ATA SCSI NVMe " {
		t.Errorf("protocols = %q", protos)
	}
	advance(t, h, 20)
	out, code := smartctlRun(t, h, "--json=c", "-a", "/dev/nvme0")
	r, _ := decodeReport(out)
	f := factsOf(r)
	if code != exitDiskFailing || deref(f.CritWarning)&1 == 0 || deref(f.Spare) >= 10 || f.Passed == nil || *f.Passed {
		t.Errorf("made-up NVMe after 20 steps: exit %d facts %+v", code, f)
	}
}

func TestCreateRoots(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "precious"), []byte("x"), 0o644)
	if _, err := Create(Options{Root: root, Captures: "none"}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty root: err = %v", err)
	}
	root = t.TempDir()
	h := create(t, Options{Root: root, Drives: 6})
	advance(t, h, 3)
	h2 := create(t, Options{Root: root, Drives: 2})
	if h2.Step() != 0 || len(h2.Drives()) != 3 {
		t.Errorf("re-created sim: step %d, %d drives", h2.Step(), len(h2.Drives()))
	}
	if _, err := os.Stat(filepath.Join(root, "state", "drives", "sdf.json")); !os.IsNotExist(err) {
		t.Errorf("the earlier simulation's drive sdf is still there")
	}
	for _, o := range []Options{
		{Drives: 5, Slots: 4},
		{Degrade: "7"},
		{Degrade: "sdz"},
		{Backplane: []int{9}},
		{Events: []Event{{Kind: EventFanFail, Target: 9}}},
		{Events: []Event{{Kind: EventSlotFault, Target: 12}}},
		{Series: []string{"x.json"}},
	} {
		o.Root, o.Captures = t.TempDir(), "none"
		if _, err := Create(o); err == nil {
			t.Errorf("Create(%+v) succeeded", o)
		}
	}
	if _, err := Create(Options{Root: t.TempDir(), Captures: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "holds no smartctl JSON report") {
		t.Errorf("empty captures folder: err = %v", err)
	}
	if _, err := Open(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "no simulated hardware") {
		t.Errorf("Open of an empty dir: err = %v", err)
	}
}

// Another process (here another Hardware on the same root) steps the same
// simulation; each sees the other's steps.
func TestOpenAndStepTogether(t *testing.T) {
	h := create(t, Options{Degrade: "0"})
	o, err := Open(h.Root(), nil)
	if err != nil {
		t.Fatal(err)
	}
	advance(t, o, 2)
	advance(t, h, 1)
	if h.Step() != 3 {
		t.Errorf("step = %d, want 3", h.Step())
	}
	o2, _ := Open(h.Root(), nil)
	if o2.Step() != 3 {
		t.Errorf("reopened at step %d", o2.Step())
	}
}

func TestRun(t *testing.T) {
	h := create(t, Options{})
	var seen []int
	if err := h.Run(context.Background(), 0, 3, func(step int, _ []Change) { seen = append(seen, step) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[2] != 3 {
		t.Errorf("steps seen = %v", seen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, 5*time.Millisecond, 0, nil) }()
	deadline := time.Now().Add(20 * time.Second)
	for h.Step() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop when its context ended")
	}
	if err := h.Run(context.Background(), 0, 0, nil); err == nil {
		t.Error("Run with neither tick nor steps succeeded")
	}
}

func TestParseEvent(t *testing.T) {
	e, err := ParseEvent("5:fan-fail:2")
	if err != nil || e != (Event{Step: 5, Kind: EventFanFail, Target: 2}) {
		t.Errorf("ParseEvent = %+v, %v", e, err)
	}
	e, err = ParseEvent("3:psu-fail")
	if err != nil || e.Target != 2 {
		t.Errorf("default target: %+v, %v", e, err)
	}
	for _, bad := range []string{"", "5", "x:fan-fail", "-1:fan-fail", "5:explode", "5:fan-fail:x", "1:2:3:4"} {
		if _, err := ParseEvent(bad); err == nil {
			t.Errorf("ParseEvent(%q) succeeded", bad)
		}
	}
}

func TestSdName(t *testing.T) {
	for i, want := range map[int]string{0: "sda", 25: "sdz", 26: "sdaa", 27: "sdab", 701: "sdzz"} {
		if got := sdName(i); got != want {
			t.Errorf("sdName(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestDefaultCaptures(t *testing.T) {
	shared := testenv.SharedTestdata(t)
	t.Setenv("DCAGENT_SHARED_TESTDATA", shared)
	if got := DefaultCaptures(); got != filepath.Join(shared, "smart", "json") {
		t.Errorf("DefaultCaptures = %q", got)
	}
	t.Setenv("DCAGENT_SHARED_TESTDATA", "")
	t.Chdir(t.TempDir())
	if got := DefaultCaptures(); got != "" {
		t.Errorf("DefaultCaptures from an unrelated dir = %q", got)
	}
}

// Every capture the simulator picks is a healthy baseline.
func TestCaptureSelection(t *testing.T) {
	c, err := findCaptures(captures(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(c["ATA"]) < 5 || len(c["SCSI"]) < 3 || len(c["NVMe"]) < 3 {
		t.Errorf("captures: %d ATA, %d SCSI, %d NVMe", len(c["ATA"]), len(c["SCSI"]), len(c["NVMe"]))
	}
	for _, list := range c {
		if !list[0].clean {
			t.Errorf("first %s capture %s is not clean", list[0].protocol, list[0].path)
		}
		for _, x := range list {
			if strings.Contains(x.path, "HUS726060ALA640") && x.clean {
				t.Errorf("%s has 1040 reallocated sectors but is marked clean", x.path)
			}
		}
	}
	h := create(t, Options{Drives: 12})
	for _, d := range h.Drives() {
		r, _ := h.Report(d.Name)
		rr, _ := decodeReport(r)
		f := factsOf(rr)
		dirty := func(p *uint64) bool { return p != nil && *p > 0 }
		if dirty(f.Reallocated) || dirty(f.Pending) || dirty(f.Offline) || dirty(f.CRC) || dirty(f.Reported) || dirty(f.MediaErrors) {
			t.Errorf("%s from %s is not a clean baseline: %+v", d.Name, d.Source, f)
		}
	}
}

// The project's smartctl parser reads every stand-in report, through the
// same Runner the agent uses, and sees the degradation.
func TestParsedBySmartctlRunner(t *testing.T) {
	h := create(t, Options{Drives: 4, Degrade: "1", Backplane: []int{0, 2, 3}})
	run := &smartctl.Runner{Program: h.SmartctlPath(), Timeout: 30 * time.Second}
	ctx := context.Background()
	specs, err := run.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 5 {
		t.Fatalf("scan = %v", specs)
	}
	snaps := func() map[string]*hal.DriveSnapshot {
		m := map[string]*hal.DriveSnapshot{}
		for _, s := range specs {
			snap, err := run.Read(ctx, s)
			if err != nil {
				t.Fatalf("Read(%s): %v", s, err)
			}
			m[s.Device] = snap
		}
		return m
	}
	before := snaps()
	for dev, s := range before {
		if s.SmartPassed == nil || !*s.SmartPassed || s.Serial == "" || s.Model == "" || s.ExitStatus == nil || *s.ExitStatus != 0 {
			t.Errorf("%s at step 0: %+v", dev, s)
		}
	}
	advance(t, h, 12)
	after := snaps()
	sdb := after["/dev/sdb"]
	if sdb.SmartPassed == nil || *sdb.SmartPassed || *sdb.Counters.PendingSectors != 8*tri(12) || *sdb.Counters.ReallocatedSectors != 4*tri(11) {
		t.Errorf("degraded sdb = passed %v pending %v realloc %v", sdb.SmartPassed, deref(sdb.Counters.PendingSectors), deref(sdb.Counters.ReallocatedSectors))
	}
	es := smartctl.ExitStatus(*sdb.ExitStatus)
	if !es.DiskFailing() || !es.PrefailAttributesNow() || !es.ErrorLogHasErrors() || len(sdb.FailingAttributes) == 0 {
		t.Errorf("sdb exit %s failing attributes %+v", es, sdb.FailingAttributes)
	}
	for _, dev := range []string{"/dev/sda", "/dev/sdd"} {
		b, a := before[dev].Counters, after[dev].Counters
		if deref(a.UDMACRCErrors) <= deref(b.UDMACRCErrors) && b.UDMACRCErrors != nil {
			t.Errorf("%s CRC errors did not rise: %d -> %d", dev, deref(b.UDMACRCErrors), deref(a.UDMACRCErrors))
		}
		if deref(a.PendingSectors) != deref(b.PendingSectors) || deref(a.ReallocatedSectors) != deref(b.ReallocatedSectors) {
			t.Errorf("%s media counters moved", dev)
		}
	}
	// The SAS drive's link errors come with -x, which the Runner does not
	// ask for; the raw stand-in output read by Parse shows them.
	out, _ := smartctlRun(t, h, "--json=c", "-x", "/dev/sdc")
	snap, err := smartctl.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counters.LinkErrors == nil || *snap.Counters.LinkErrors == 0 || deref(snap.Counters.GrownDefects) != deref(before["/dev/sdc"].Counters.GrownDefects) {
		t.Errorf("sdc -x: link errors %v grown %v", snap.Counters.LinkErrors, snap.Counters.GrownDefects)
	}
	if _, err := run.Read(ctx, smartctl.DriveSpec{Device: "/dev/sdx"}); err == nil || !errors.Is(err, smartctl.ErrNoDeviceData) {
		t.Errorf("missing drive: err = %v", err)
	}
}
