package diag

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/sim"
	"github.com/dcagent/dcagent/hal/smartctl"
	"github.com/dcagent/dcagent/internal/testenv"
)

// TestMain lets this test binary act as the simulator's smartctl stand-in
// (the script the simulator writes runs `<binary> hardware smartctl ...`).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "hardware" && os.Args[2] == "smartctl" {
		os.Exit(sim.RunSmartctl(os.Args[3:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func halConfig(root, smartctlPath string) config.HAL {
	h := config.Default().HAL
	h.SysfsRoot = root
	h.Smartctl = smartctlPath
	h.SmartctlTimeout = 30 * time.Second
	return h
}

func runChecks(t *testing.T, hw Hardware) *Report {
	t.Helper()
	return Run(context.Background(), hw.Checks(), time.Minute)
}

func find(r *Report, check, subject string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Check == check && strings.Contains(f.Subject, subject) {
			out = append(out, f)
		}
	}
	return out
}

func one(t *testing.T, r *Report, check, subject string) Finding {
	t.Helper()
	fs := find(r, check, subject)
	if len(fs) != 1 {
		t.Fatalf("%d %s findings about %q, want 1; all: %+v", len(fs), check, subject, r.Findings)
	}
	return fs[0]
}

// The real node_exporter capture: an nct6779 voltage alarm and chassis
// intrusion, an applesmc fan at 0 RPM and one just under its minimum.
func TestSensorsOnCapture(t *testing.T) {
	root := filepath.Join(testenv.SharedTestdata(t), "hwmon", "node_exporter")
	hw := HardwareFromConfig(halConfig(root, "smartctl"), nil)
	hw.Drives, hw.Enclosures = nil, nil
	r := runChecks(t, hw)
	if r.Status != Fail || r.ExitStatus() != 1 {
		t.Errorf("status = %s", r.Status)
	}
	in1 := one(t, r, "sensors", "nct6779 in1")
	if in1.Status != Fail || !strings.Contains(in1.Message, "reads 1.024 V with its alarm set (alarm)") || !strings.Contains(in1.Action, "ignore_sensors = nct6779/in1") {
		t.Errorf("in1 = %+v", in1)
	}
	intr := one(t, r, "sensors", "nct6779 intrusion0")
	if intr.Status != Warn || !strings.Contains(intr.Message, "case was opened") {
		t.Errorf("intrusion0 = %+v", intr)
	}
	left := one(t, r, "sensors", `applesmc fan1 "Left side"`)
	if left.Status != Fail || left.Message != "the fan has stopped (0 RPM)" {
		t.Errorf("fan1 = %+v", left)
	}
	right := one(t, r, "sensors", `applesmc fan2`)
	if right.Status != Fail || !strings.Contains(right.Message, "1998 RPM, below its minimum 2000 RPM") {
		t.Errorf("fan2 = %+v", right)
	}
	if n := len(find(r, "sensors", "coretemp")); n != 0 {
		t.Errorf("%d findings about healthy coretemp sensors", n)
	}

	// Ignoring the board's unconnected input and the intrusion switch.
	hw.IgnoreSensors = []string{"nct6779/in1", "nct6779/intrusion*", "applesmc/*"}
	r = runChecks(t, hw)
	if r.Status != OK || len(r.Findings) != 1 || !strings.Contains(r.Findings[0].Message, "all within their limits") || !strings.Contains(r.Findings[0].Message, "ignored by [hal] ignore_sensors") {
		t.Errorf("with ignores: %+v", r.Findings)
	}
}

func TestSensorsUnreadableAndMissing(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sys", "class", "hwmon", "hwmon0")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "name"), []byte("lm75\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "temp1_input"), []byte("-128000\n"), 0o644)
	os.Symlink("/proc/self/mem", filepath.Join(dir, "temp2_input"))
	os.WriteFile(filepath.Join(dir, "temp3_input"), []byte("70000\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "temp3_max"), []byte("65000\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "temp4_input"), []byte("30000\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "temp4_max_alarm"), 0o755)
	hw := HardwareFromConfig(halConfig(root, "smartctl"), nil)
	r := Run(context.Background(), []Check{hw.Checks()[0]}, time.Minute)
	t1 := one(t, r, "sensors", "temp1")
	if t1.Status != Warn || !strings.Contains(t1.Message, "value -128 °C is outside") {
		t.Errorf("temp1 = %+v", t1)
	}
	t2 := one(t, r, "sensors", "temp2")
	if t2.Status != Warn || !strings.Contains(t2.Message, "EIO") {
		t.Errorf("temp2 = %+v", t2)
	}
	t3 := one(t, r, "sensors", "temp3")
	if t3.Status != Warn || !strings.Contains(t3.Message, "at 70 °C, above its high limit 65 °C") {
		t.Errorf("temp3 = %+v", t3)
	}
	t4 := one(t, r, "sensors", "temp4")
	if t4.Status != Warn || !strings.Contains(t4.Message, "temp4_max_alarm") {
		t.Errorf("temp4 = %+v", t4)
	}
	if r.ExitStatus() != 0 {
		t.Errorf("warnings alone gave exit %d", r.ExitStatus())
	}

	hw = HardwareFromConfig(halConfig(t.TempDir(), "smartctl"), nil)
	r = Run(context.Background(), hw.Checks()[:2], time.Minute)
	if s := one(t, r, "sensors", ""); s.Status != Warn || !strings.Contains(s.Message, "no hardware sensors found") {
		t.Errorf("no hwmon = %+v", s)
	}
	if e := one(t, r, "enclosures", ""); e.Status != OK || !strings.Contains(e.Message, "no SES enclosure") {
		t.Errorf("no enclosure = %+v", e)
	}
}

func newSim(t *testing.T, o sim.Options) *sim.Hardware {
	t.Helper()
	o.Root = t.TempDir()
	o.Captures = filepath.Join(testenv.SharedTestdata(t), "smart", "json")
	hw, err := sim.Create(o)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

// The whole hardware check on simulated hardware, healthy and then with a
// drive failing, a backplane fault, a stopped fan, a dead PSU and a slot
// fault.
func TestHardwareOnSimulator(t *testing.T) {
	s := newSim(t, sim.Options{Drives: 4, Degrade: "1", Backplane: []int{0, 3}, Events: []sim.Event{
		{Step: 2, Kind: sim.EventFanFail, Target: 2},
		{Step: 2, Kind: sim.EventPSUFail, Target: 1},
		{Step: 3, Kind: sim.EventSlotFault, Target: 1},
		{Step: 1, Kind: sim.EventLocate, Target: 2},
	}})
	hw := HardwareFromConfig(halConfig(s.SysfsRoot(), s.SmartctlPath()), nil)

	r := runChecks(t, hw)
	if r.Status != OK {
		t.Fatalf("step 0 is not all well: %+v", r.Findings)
	}
	if n := len(find(r, "drives", "/dev/")); n != 5 {
		t.Errorf("%d drive findings, want 5", n)
	}
	sdb := one(t, r, "drives", "/dev/sdb")
	if !strings.Contains(sdb.Subject, `enclosure 0:0:12:0 slot "Slot01"`) || !strings.Contains(sdb.Message, "healthy: SMART verdict PASSED") {
		t.Errorf("sdb at step 0 = %+v", sdb)
	}
	if e := one(t, r, "enclosures", "0:0:12:0"); !strings.Contains(e.Message, "12 slots, 4 drives, no faults") {
		t.Errorf("enclosure = %+v", e)
	}

	if _, err := s.Advance(12); err != nil {
		t.Fatal(err)
	}
	r = runChecks(t, hw)
	if r.Status != Fail || r.ExitStatus() != 1 {
		t.Errorf("status = %s", r.Status)
	}
	sdb = one(t, r, "drives", "/dev/sdb")
	for _, w := range []string{"SMART verdict is FAILED", "Reallocated_Sector_Ct is at or below its threshold now", "sectors pending reallocation", "error log records errors"} {
		if !strings.Contains(sdb.Message, w) {
			t.Errorf("sdb message %q lacks %q", sdb.Message, w)
		}
	}
	if sdb.Status != Fail || !strings.HasPrefix(sdb.Action, "Replace the drive soon") {
		t.Errorf("sdb = %+v", sdb)
	}
	for _, dev := range []string{"/dev/sda", "/dev/sdd"} {
		f := one(t, r, "drives", dev)
		if f.Status != Warn || !strings.Contains(f.Message, "interface CRC errors (ATA 199)") || !strings.Contains(f.Action, "backplane") || strings.Contains(f.Message, "pending") {
			t.Errorf("%s = %+v", dev, f)
		}
	}
	var bp Finding
	for _, f := range find(r, "drives", "enclosure 0:0:12:0") {
		if f.Subject == "enclosure 0:0:12:0" {
			bp = f
		}
	}
	if bp.Status != Warn || !strings.Contains(bp.Message, `2 drives behind this backplane report interface errors (sda in "Slot00", sdd in "Slot03")`) {
		t.Errorf("backplane finding = %+v", bp)
	}
	if f := one(t, r, "drives", "/dev/sdc"); f.Status != OK {
		t.Errorf("sdc = %+v", f)
	}
	fan := one(t, r, "sensors", "nct6779 fan2")
	if fan.Status != Fail || fan.Message != "the fan has stopped (0 RPM)" {
		t.Errorf("fan2 = %+v", fan)
	}
	psu := find(r, "sensors", "0-0058")
	if len(psu) < 3 {
		t.Errorf("PSU 1 findings = %+v", psu)
	}
	for _, f := range psu {
		if f.Status != Fail || !strings.Contains(f.Action, "power supply") {
			t.Errorf("PSU finding = %+v", f)
		}
	}
	slot := one(t, r, "enclosures", "Slot01")
	if slot.Status != Fail || !strings.Contains(slot.Message, "fault indicator is on; status critical") || !strings.Contains(slot.Subject, "(sdb)") {
		t.Errorf("slot 1 = %+v", slot)
	}
	loc := one(t, r, "enclosures", "Slot02")
	if loc.Status != OK || !strings.Contains(loc.Message, "locate indicator is on") {
		t.Errorf("slot 2 = %+v", loc)
	}
}

func TestDrivesWithoutSmartctl(t *testing.T) {
	s := newSim(t, sim.Options{Drives: 1})
	hw := HardwareFromConfig(halConfig(s.SysfsRoot(), filepath.Join(t.TempDir(), "no-smartctl")), nil)
	r := Run(context.Background(), hw.Checks()[2:], time.Minute)
	f := one(t, r, "drives", "")
	if f.Status != Fail || !strings.Contains(f.Message, "not found") || !strings.Contains(f.Action, "Install smartmontools") {
		t.Errorf("finding = %+v", f)
	}

	// A configured drive that does not exist, next to one that does.
	hw = HardwareFromConfig(halConfig(s.SysfsRoot(), s.SmartctlPath()), nil)
	hw.DriveList = []string{"/dev/sda:sat", "/dev/sdq"}
	r = Run(context.Background(), hw.Checks()[2:], time.Minute)
	if f := one(t, r, "drives", "/dev/sda"); f.Status != OK {
		t.Errorf("sda = %+v", f)
	}
	if f := one(t, r, "drives", "/dev/sdq"); f.Status != Fail || !strings.Contains(f.Message, "No such device") {
		t.Errorf("sdq = %+v", f)
	}
}

// stubDrives is a DriveReader for cases the stand-in does not produce.
type stubDrives struct {
	specs []smartctl.DriveSpec
	snaps map[string]*hal.DriveSnapshot
	err   error
	block bool
}

func (s *stubDrives) Drives(ctx context.Context, _ []string) ([]smartctl.DriveSpec, error) {
	return s.specs, s.err
}

func (s *stubDrives) Read(ctx context.Context, d smartctl.DriveSpec) (*hal.DriveSnapshot, error) {
	if s.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.snaps[d.Device], nil
}

func TestJudgeDrive(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	b := func(v bool) *bool { return &v }
	ex := func(v int) *int { return &v }
	snaps := map[string]*hal.DriveSnapshot{
		"/dev/nvme0": {Model: "N", SmartPassed: b(false), ExitStatus: ex(8), Counters: hal.Counters{CriticalWarning: hal.U64(0x09), AvailableSpare: hal.U64(4), AvailableSpareThreshold: hal.U64(10), PercentageUsed: hal.U64(112), MediaErrors: hal.U64(9)}},
		"/dev/sda":   {Model: "A", SmartPassed: b(true), TemperatureC: f(71), TempWarnC: f(60), TempCritC: f(70), ExitStatus: ex(0xA0)},
		"/dev/sdb":   {Model: "B", SmartPassed: b(true), TemperatureC: f(62), TempWarnC: f(60), TempCritC: f(70), FailingAttributes: []hal.AttributeFailure{{ID: 184, Name: "End-to-End_Error", When: "past", Thresh: 99}}},
		"/dev/sdc":   {Model: "C", Counters: hal.Counters{GrownDefects: hal.U64(195), UncorrectedErrors: hal.U64(0), LinkErrors: hal.U64(7)}},
		"/dev/sdd":   {Model: "D", SmartPassed: b(true), PowerOnHours: hal.U64(1234), TemperatureC: f(30), Counters: hal.Counters{ReallocatedSectors: hal.U64(0)}},
	}
	var specs []smartctl.DriveSpec
	for _, d := range []string{"/dev/nvme0", "/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd"} {
		specs = append(specs, smartctl.DriveSpec{Device: d})
	}
	hw := Hardware{Drives: &stubDrives{specs: specs, snaps: snaps}}
	r := runChecks(t, hw)
	nv := one(t, r, "drives", "/dev/nvme0")
	for _, w := range []string{"critical warning 0x09 (spare below threshold, media read-only)", "available spare 4% is below its threshold 10%", "112% of its rated endurance", "9 NVMe media errors"} {
		if !strings.Contains(nv.Message, w) || nv.Status != Fail {
			t.Errorf("nvme0 %q lacks %q", nv.Message, w)
		}
	}
	sda := one(t, r, "drives", "/dev/sda")
	if sda.Status != Fail || !strings.Contains(sda.Message, "at 71 °C, at or above its critical temperature 70 °C") || !strings.Contains(sda.Message, "self-test log records a failed self-test") {
		t.Errorf("sda = %+v", sda)
	}
	sdb := one(t, r, "drives", "/dev/sdb")
	if sdb.Status != Warn || !strings.Contains(sdb.Message, "above its warning temperature") || !strings.Contains(sdb.Message, "fell to its threshold in the past") {
		t.Errorf("sdb = %+v", sdb)
	}
	sdc := one(t, r, "drives", "/dev/sdc")
	if sdc.Status != Warn || !strings.Contains(sdc.Message, "7 SAS link errors (invalid DWORDs, lost sync, phy resets); 195 grown defects") || strings.Contains(sdc.Message, "uncorrected") {
		t.Errorf("sdc = %+v", sdc)
	}
	sdd := one(t, r, "drives", "/dev/sdd")
	if sdd.Status != OK || sdd.Message != "healthy: SMART verdict PASSED, 1234 power-on hours, 30 °C" {
		t.Errorf("sdd = %+v", sdd)
	}

	r = runChecks(t, Hardware{Drives: &stubDrives{}})
	if f := one(t, r, "drives", ""); f.Status != Warn || !strings.Contains(f.Action, "[hal] drives") {
		t.Errorf("no drives = %+v", f)
	}
	r = runChecks(t, Hardware{Drives: &stubDrives{err: errors.New("smartctl --scan: exit status 2")}})
	if f := one(t, r, "drives", ""); f.Status != Fail || !strings.Contains(f.Message, "cannot list the drives") {
		t.Errorf("scan error = %+v", f)
	}
	// A drive that hangs smartctl: the check is cut off at its time limit.
	r = Run(context.Background(), Hardware{Drives: &stubDrives{specs: specs[:1], block: true}}.Checks(), 100*time.Millisecond)
	if f := one(t, r, "drives", ""); f.Status != Fail || !strings.Contains(f.Message, "did not finish within 100ms") {
		t.Errorf("hung drive = %+v", r.Findings)
	}
}
