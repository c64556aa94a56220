package hwmon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/internal/testenv"
)

func capture(t testing.TB, parts ...string) string {
	t.Helper()
	return filepath.Join(append([]string{testenv.SharedTestdata(t), "hwmon"}, parts...)...)
}

func read(t *testing.T, r *Reader) *Reading {
	t.Helper()
	rd, err := r.Read(context.Background())
	if err != nil {
		t.Fatalf("Read(%s): %v", r.Root, err)
	}
	return rd
}

// sensor finds a sensor by chip device path and channel name ("temp2").
func sensor(t *testing.T, rd *Reading, devicePath, name string) Sensor {
	t.Helper()
	for _, s := range rd.Sensors() {
		if s.DevicePath == devicePath && s.Name() == name {
			return s
		}
	}
	t.Fatalf("no sensor %s on %s; have %s", name, devicePath, describeAll(rd))
	return Sensor{}
}

func describeAll(rd *Reading) string {
	var b []string
	for _, s := range rd.Sensors() {
		b = append(b, s.Describe())
	}
	return strings.Join(b, "; ")
}

func val(t *testing.T, s Sensor) float64 {
	t.Helper()
	if s.Value == nil {
		t.Fatalf("%s: no value (unreadable: %q)", s.Describe(), s.Unreadable)
	}
	return *s.Value
}

func eqp(p *float64, want float64) bool { return p != nil && *p == want }

// Values checked by hand against the files in
// ../shared/testdata/hwmon/node_exporter (see PROVENANCE.md).
func TestReadNodeExporterCapture(t *testing.T) {
	rd := read(t, &Reader{Root: capture(t, "node_exporter")})
	if len(rd.Chips) != 9 {
		t.Fatalf("chips = %d, want 9 (hwmon0-3, 6-10)", len(rd.Chips))
	}
	// Two chips named coretemp are told apart by their path.
	c0 := sensor(t, rd, "/sys/class/hwmon/hwmon0", "temp1")
	c1 := sensor(t, rd, "/sys/class/hwmon/hwmon1", "temp1")
	if c0.Chip != "coretemp" || c1.Chip != "coretemp" || c0.DevicePath == c1.DevicePath {
		t.Errorf("coretemp chips not told apart: %q %q", c0.DevicePath, c1.DevicePath)
	}
	if c0.Label != "Physical id 0" || val(t, c0) != 55 || !eqp(c0.Max, 84) || !eqp(c0.Crit, 100) || c0.Alarm {
		t.Errorf("coretemp temp1 = %+v", c0)
	}
	core3 := sensor(t, rd, "/sys/class/hwmon/hwmon0", "temp5")
	if core3.Label != "Core 3" || val(t, core3) != 50 {
		t.Errorf("coretemp temp5 = %+v", core3)
	}

	// applesmc: old layout, everything under device/.
	var apple *Chip
	for i := range rd.Chips {
		if rd.Chips[i].Name == "applesmc" {
			apple = &rd.Chips[i]
		}
	}
	if apple == nil || !apple.OldStyle || filepath.Base(apple.Dir) != "device" {
		t.Fatalf("applesmc old layout not read: %+v", apple)
	}
	left := sensor(t, rd, "/sys/class/hwmon/hwmon2", "fan1")
	if left.Label != "Left side" || val(t, left) != 0 || !eqp(left.Min, 2160) || !eqp(left.Max, 6156) {
		t.Errorf("applesmc fan1 = %+v", left)
	}
	right := sensor(t, rd, "/sys/class/hwmon/hwmon2", "fan2")
	if val(t, right) != 1998 || !eqp(right.Min, 2000) {
		t.Errorf("applesmc fan2 = %+v", right)
	}

	// nct6779: millivolts to volts, the in1 alarm, chassis intrusion.
	in0 := sensor(t, rd, "/sys/class/hwmon/hwmon3", "in0")
	if val(t, in0) != 0.792 || !eqp(in0.Max, 1.744) || in0.Alarm {
		t.Errorf("nct6779 in0 = %+v", in0)
	}
	in1 := sensor(t, rd, "/sys/class/hwmon/hwmon3", "in1")
	if val(t, in1) != 1.024 || !in1.Alarm || in1.Alarms[0] != "alarm" || in1.Min != nil || in1.Max != nil {
		t.Errorf("nct6779 in1 = %+v (min=max=0 is no limit; alarm set)", in1)
	}
	fan2 := sensor(t, rd, "/sys/class/hwmon/hwmon3", "fan2")
	if val(t, fan2) != 1098 || fan2.Min != nil {
		t.Errorf("nct6779 fan2 = %+v", fan2)
	}
	intr := sensor(t, rd, "/sys/class/hwmon/hwmon3", "intrusion0")
	if intr.Kind != KindIntrusion || !intr.Alarm || intr.Value != nil {
		t.Errorf("intrusion0 = %+v", intr)
	}
	// asus: only pwm1_enable, so a chip without sensors.
	for _, c := range rd.Chips {
		if c.Name == "asus" && len(c.Sensors) != 0 {
			t.Errorf("asus has sensors: %+v", c.Sensors)
		}
	}
	wifi := sensor(t, rd, "/sys/class/hwmon/hwmon10", "temp1")
	if wifi.Chip != "mt7996_phy0_2" || val(t, wifi) != 57 {
		t.Errorf("hwmon10 = %+v", wifi)
	}
	if errs := rd.Errors(); len(errs) != 0 {
		t.Errorf("unexpected chip errors: %v", errs)
	}
	if got := len(rd.HAL()); got != len(rd.Sensors()) || got != 20 {
		t.Errorf("HAL() = %d sensors, Sensors() = %d, want 20", got, len(rd.Sensors()))
	}
}

func TestReadNVMeChipWithUnsetLimits(t *testing.T) {
	r := &Reader{Root: capture(t, "node_exporter")}
	chip := r.ReadChip(capture(t, "node_exporter", "unlinked", "pci-0000_01_00.0-nvme0-hwmon3"))
	if chip.Name != "nvme" || chip.Err != nil || len(chip.Sensors) != 4 {
		t.Fatalf("chip = %+v", chip)
	}
	comp := chip.Sensors[0]
	if comp.Label != "Composite" || *comp.Value != 43.85 || !eqp(comp.Max, 84.85) || !eqp(comp.Crit, 94.85) || !eqp(comp.Min, -0.15) {
		t.Errorf("Composite = %+v", comp)
	}
	// temp2_max is 65261850 (0xffff kelvin): not a limit.
	s1 := chip.Sensors[1]
	if s1.Label != "Sensor 1" || s1.Max != nil || s1.Unreadable != "" {
		t.Errorf("Sensor 1 = %+v", s1)
	}
	if chip.Sensors[3].Index != 9 || chip.Sensors[3].Label != "Sensor 8" {
		t.Errorf("temp9 = %+v", chip.Sensors[3])
	}
	if chip.DevicePath != "/unlinked/pci-0000_01_00.0-nvme0-hwmon3" {
		t.Errorf("device path = %q", chip.DevicePath)
	}
}

func TestReadTelegrafCaptures(t *testing.T) {
	rd := read(t, &Reader{Root: capture(t, "telegraf", "with_name")})
	if len(rd.Chips) != 3 {
		t.Fatalf("chips = %d", len(rd.Chips))
	}
	names := []string{rd.Chips[0].Name, rd.Chips[1].Name, rd.Chips[2].Name}
	if names[0] != "nvme" || names[1] != "nvme" || names[2] != "k10temp" {
		t.Errorf("names = %v", names)
	}
	comp := sensor(t, rd, "/sys/class/hwmon/hwmon0", "temp1")
	if comp.Label != "Composite" || comp.Value == nil || comp.Crit == nil || comp.Alarm {
		t.Errorf("nvme Composite = %+v", comp)
	}
	tctl := sensor(t, rd, "/sys/class/hwmon/hwmon2", "temp1")
	if tctl.Label != "Tctl" || tctl.Value == nil {
		t.Errorf("k10temp Tctl = %+v", tctl)
	}
	rd = read(t, &Reader{Root: capture(t, "telegraf", "general")})
	if len(rd.Chips) != 2 || len(rd.Sensors()) != 5 {
		t.Errorf("general: %d chips %d sensors: %s", len(rd.Chips), len(rd.Sensors()), describeAll(rd))
	}
}

func TestReadChipOldStylePlatformDevice(t *testing.T) {
	dir := capture(t, "fan-control", "iMac9,1", "sys", "devices", "platform", "applesmc.768")
	r := &Reader{Root: capture(t, "fan-control", "iMac9,1")}
	chip := r.ReadChip(dir)
	if chip.Name != "applesmc" || chip.DevicePath != "/sys/devices/platform/applesmc.768" {
		t.Fatalf("chip %q at %q", chip.Name, chip.DevicePath)
	}
	var temps, fans int
	for _, s := range chip.Sensors {
		switch s.Kind {
		case hal.SensorTemp:
			temps++
		case hal.SensorFan:
			fans++
		}
		// The capture's GPU diodes TG0D/TG0H/TG0P read -127 °C: the SMC's
		// "no reading", which must come out unreadable, not as a cold GPU.
		wantBad := s.Kind == hal.SensorTemp && s.Index >= 5 && s.Index <= 7
		if bad := s.Unreadable != ""; bad != wantBad || (bad && !strings.Contains(s.Unreadable, "value -127 °C is outside")) {
			t.Errorf("%s unreadable = %q", s.Describe(), s.Unreadable)
		}
	}
	if temps != 15 || fans != 3 {
		t.Errorf("temps=%d fans=%d, want 15 and 3", temps, fans)
	}
	if chip.Sensors[0].Label != "TA0P" || *chip.Sensors[0].Value != 31.25 {
		t.Errorf("temp1 = %+v", chip.Sensors[0])
	}
}

func TestReadNoHwmonClass(t *testing.T) {
	_, err := (&Reader{Root: t.TempDir()}).Read(context.Background())
	if !errors.Is(err, ErrNoHwmon) {
		t.Fatalf("err = %v, want ErrNoHwmon", err)
	}
	if !strings.Contains(err.Error(), "sysfs_root") {
		t.Errorf("error does not say what to check: %v", err)
	}
}

// tree writes a chip directory under root/sys/class/hwmon/<name> with the
// given files and returns the directory.
func tree(t *testing.T, root, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(root, "sys", "class", "hwmon", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, c := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func chipSensor(t *testing.T, rd *Reading, chip int, name string) Sensor {
	t.Helper()
	if chip >= len(rd.Chips) {
		t.Fatalf("no chip %d: %+v", chip, rd.Chips)
	}
	for _, s := range rd.Chips[chip].Sensors {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no %s in chip %d: %s", name, chip, describeAll(rd))
	return Sensor{}
}

// Failures a real filesystem produces, each with the other sensors still read.
func TestReadFailuresOnRealFiles(t *testing.T) {
	root := t.TempDir()
	dir := tree(t, root, "hwmon0", map[string]string{
		"name":         "testchip\n",
		"temp1_input":  "41000\n", // the good one
		"temp1_label":  "Good\n",
		"temp2_input":  "garbage\n",
		"temp3_input":  "-128000\n", // open diode
		"temp4_input":  "",
		"fan1_input":   "65535000\n",
		"in0_input":    strings.Repeat("1", 400), // longer than any attribute
		"temp7_input":  "30000\n",
		"temp7_fault":  "1\n",
		"temp8_input":  "30000\n",
		"temp8_enable": "0\n",
	})
	// EISDIR: a directory where a value file belongs.
	if err := os.Mkdir(filepath.Join(dir, "temp5_input"), 0o755); err != nil {
		t.Fatal(err)
	}
	// EIO: /proc/self/mem read at offset 0 (an unmapped page) fails with EIO.
	if err := os.Symlink("/proc/self/mem", filepath.Join(dir, "temp6_input")); err != nil {
		t.Fatal(err)
	}
	// EAGAIN: a FIFO whose writer is open but silent.
	fifo := filepath.Join(dir, "power1_input")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	wfd, err := syscall.Open(fifo, syscall.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(wfd) })
	// A FIFO with no writer reads as empty instead of hanging the reader.
	if err := syscall.Mkfifo(filepath.Join(dir, "curr1_input"), 0o644); err != nil {
		t.Fatal(err)
	}

	rd := read(t, &Reader{Root: root})
	good := chipSensor(t, rd, 0, "temp1")
	if good.Unreadable != "" || val(t, good) != 41 || good.Label != "Good" {
		t.Errorf("good sensor = %+v", good)
	}
	for _, tc := range []struct{ name, want string }{
		{"temp2", `"garbage" is not a number`},
		{"temp3", "value -128 °C is outside"},
		{"temp4", "the file is empty"},
		{"fan1", "value 6.5535e+07 RPM is outside"},
		{"in0", "longer than 255 bytes"},
		{"temp5", "EISDIR"},
		{"temp6", "EIO"},
		{"power1", "EAGAIN"},
		{"curr1", "the file is empty"},
		{"temp7", "fault on this sensor"},
	} {
		s := chipSensor(t, rd, 0, tc.name)
		if s.Value != nil || !strings.Contains(s.Unreadable, tc.want) {
			t.Errorf("%s: value=%v unreadable=%q, want it unreadable with %q", tc.name, s.Value, s.Unreadable, tc.want)
		}
	}
	for _, s := range rd.Sensors() {
		if s.Name() == "temp8" {
			t.Errorf("disabled temp8 reported: %+v", s)
		}
	}
}

// hookFS wraps the real filesystem and runs a hook after a directory has
// been listed, to remove files between listing and reading as a device
// that goes away does.
type hookFS struct {
	FS
	afterList func(dir string)
}

func (h hookFS) ReadDirNames(dir string) ([]string, error) {
	names, err := h.FS.ReadDirNames(dir)
	if err == nil && h.afterList != nil {
		h.afterList(dir)
	}
	return names, err
}

func TestReadVanishedMidRead(t *testing.T) {
	root := t.TempDir()
	d0 := tree(t, root, "hwmon0", map[string]string{"name": "keep\n", "temp1_input": "20000\n", "temp2_input": "21000\n", "temp2_max": "80000\n"})
	d1 := tree(t, root, "hwmon1", map[string]string{"name": "gone\n", "temp1_input": "20000\n"})
	class := filepath.Dir(d0)
	r := &Reader{Root: root, FS: hookFS{FS: OS, afterList: func(dir string) {
		switch dir {
		case class:
			// The whole chip goes after the class was listed.
			os.RemoveAll(d1)
		case d0:
			// One sensor's value and another's limit go after the chip was listed.
			os.Remove(filepath.Join(d0, "temp1_input"))
			os.Remove(filepath.Join(d0, "temp2_max"))
		}
	}}}
	rd := read(t, r)
	if len(rd.Chips) != 2 {
		t.Fatalf("chips = %+v", rd.Chips)
	}
	t1 := chipSensor(t, rd, 0, "temp1")
	if t1.Value != nil || !strings.Contains(t1.Unreadable, "vanished") {
		t.Errorf("temp1 = %+v, want unreadable: vanished", t1)
	}
	t2 := chipSensor(t, rd, 0, "temp2")
	if val(t, t2) != 21 || t2.Max != nil || len(t2.Problems) != 1 || !strings.Contains(t2.Problems[0], "temp2_max: the sensor vanished") {
		t.Errorf("temp2 = %+v, want a value and a problem with its max", t2)
	}
	gone := rd.Chips[1]
	if gone.Err == nil || !errors.Is(gone.Err, fs.ErrNotExist) || !strings.Contains(gone.Problem, "vanished") {
		t.Errorf("vanished chip = %+v", gone)
	}
	if len(rd.Errors()) != 1 || !strings.Contains(rd.Errors()[0].Error(), "hwmon1") {
		t.Errorf("Errors() = %v", rd.Errors())
	}
}

// Errno values only a driver produces, through the injectable FS.
func TestReadDriverErrnos(t *testing.T) {
	m := newMemFS()
	d := "/r/sys/class/hwmon/hwmon0"
	m.add(d+"/name", "pmbus\n")
	for i, e := range []syscall.Errno{syscall.ENODATA, syscall.EIO, syscall.EAGAIN, syscall.ETIMEDOUT, syscall.ENXIO, syscall.ENODEV, syscall.EOPNOTSUPP} {
		m.errs[d+"/in"+string(rune('1'+i))+"_input"] = e
	}
	m.add(d+"/temp1_input", "35000\n")
	m.add(d+"/temp1_label", "ok\n")
	m.errs[d+"/temp1_max_alarm"] = syscall.EIO
	m.add(d+"/temp1_crit_alarm", "1\n")
	m.errs[d+"/temp2_label"] = syscall.EIO
	m.add(d+"/temp2_input", "36000\n")
	m.add(d+"/power1_average", "250000000\n")
	m.add(d+"/power1_cap", "300000000\n")
	m.add(d+"/curr1_input", "12500\n")
	m.add(d+"/curr1_lcrit", "-1000\n")
	m.add(d+"/energy1_input", "123456789\n")
	rd := read(t, &Reader{Root: "/r", FS: m})
	want := map[string]string{"in1": "ENODATA", "in2": "EIO", "in3": "EAGAIN", "in4": "ETIMEDOUT", "in5": "ENXIO", "in6": "ENODEV", "in7": "EOPNOTSUPP"}
	for name, errno := range want {
		s := chipSensor(t, rd, 0, name)
		if s.Value != nil || !strings.Contains(s.Unreadable, errno) {
			t.Errorf("%s = %+v, want unreadable %s", name, s, errno)
		}
	}
	t1 := chipSensor(t, rd, 0, "temp1")
	if val(t, t1) != 35 || !t1.Alarm || len(t1.Alarms) != 1 || t1.Alarms[0] != "crit_alarm" || len(t1.Problems) != 1 || !strings.Contains(t1.Problems[0], "temp1_max_alarm: the chip did not answer") {
		t.Errorf("temp1 = %+v", t1)
	}
	t2 := chipSensor(t, rd, 0, "temp2")
	if val(t, t2) != 36 || t2.Label != "" || len(t2.Problems) != 1 {
		t.Errorf("temp2 = %+v", t2)
	}
	p := chipSensor(t, rd, 0, "power1")
	if val(t, p) != 250 || !eqp(p.Max, 300) {
		t.Errorf("power1 = %+v", p)
	}
	c := chipSensor(t, rd, 0, "curr1")
	if val(t, c) != 12.5 || !eqp(c.LCrit, -1) {
		t.Errorf("curr1 = %+v", c)
	}
	e := chipSensor(t, rd, 0, "energy1")
	if val(t, e) != 123.456789 || e.Kind != KindEnergy {
		t.Errorf("energy1 = %+v", e)
	}
}

func TestReadUnlistableChipAndClass(t *testing.T) {
	m := newMemFS()
	m.add("/r/sys/class/hwmon/hwmon0/name", "a\n")
	m.add("/r/sys/class/hwmon/hwmon0/temp1_input", "1000\n")
	m.errs["/r/sys/class/hwmon/hwmon1"] = syscall.EIO
	rd := read(t, &Reader{Root: "/r", FS: m})
	if len(rd.Chips) != 2 || rd.Chips[1].Err == nil || !strings.Contains(rd.Chips[1].Problem, "EIO") || len(rd.Chips[0].Sensors) != 1 {
		t.Errorf("chips = %+v", rd.Chips)
	}
	m.errs["/r/sys/class/hwmon"] = syscall.EACCES
	_, err := (&Reader{Root: "/r", FS: m}).Read(context.Background())
	if err == nil || errors.Is(err, ErrNoHwmon) || !strings.Contains(err.Error(), "EACCES") {
		t.Errorf("err = %v", err)
	}
}

// A tree laid out as the kernel does it: class entries are links into
// /sys/devices, each chip has a device link.
func TestDevicePathFromKernelLinks(t *testing.T) {
	root := t.TempDir()
	mk := func(dev, hw string, link bool) {
		real := filepath.Join(root, "sys", "devices", dev, "hwmon", hw)
		if err := os.MkdirAll(real, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(real, "name"), []byte("coretemp\n"), 0o644)
		os.WriteFile(filepath.Join(real, "temp1_input"), []byte("40000\n"), 0o644)
		if link {
			if err := os.Symlink("../../../"+filepath.Base(dev), filepath.Join(real, "device")); err != nil {
				t.Fatal(err)
			}
		}
		class := filepath.Join(root, "sys", "class", "hwmon")
		os.MkdirAll(class, 0o755)
		if err := os.Symlink(filepath.Join("..", "..", "devices", dev, "hwmon", hw), filepath.Join(class, hw)); err != nil {
			t.Fatal(err)
		}
	}
	mk("platform/coretemp.0", "hwmon0", true)
	mk("platform/coretemp.1", "hwmon1", false) // no device link: from the class link
	rd := read(t, &Reader{Root: root})
	if got := rd.Chips[0].DevicePath; got != "/sys/devices/platform/coretemp.0" {
		t.Errorf("hwmon0 device path = %q", got)
	}
	if got := rd.Chips[1].DevicePath; got != "/sys/devices/platform/coretemp.1" {
		t.Errorf("hwmon1 device path = %q", got)
	}
}

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		attr, text string
		want       float64
		err        string
	}{
		{"temp1_input", "45000\n", 45, ""},
		{"temp1_input", "-5500", -5.5, ""},
		{"in0_input", "1200\n", 1.2, ""},
		{"curr2_input", "+250", 0.25, ""},
		{"power1_input", "125000000\n", 125, ""},
		{"energy1_input", "1000000", 1, ""},
		{"fan3_input", "2400\n", 2400, ""},
		{"temp1_input", "", 0, "empty"},
		{"temp1_input", "4.5", 0, "not a number"},
		{"temp1_input", "-", 0, "not a number the kernel"},
		{"temp1_input", "9999999999999999999", 0, "not a number the kernel"},
		{"temp1_input", "300000", 300, "outside"},
		{"fan1_input", "-1", -1, "outside"},
		{"name", "x", 0, "not a sensor attribute"},
		{"temp_input", "1", 0, "not a sensor attribute"},
		{"temp1_", "1", 0, "not a sensor attribute"},
		{"temp1234567_input", "1", 0, "not a sensor attribute"},
	} {
		got, err := ParseValue(tc.attr, []byte(tc.text))
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("ParseValue(%q, %q) = %v, %v; want %v", tc.attr, tc.text, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseValue(%q, %q) err = %v; want %q", tc.attr, tc.text, err, tc.err)
		}
	}
}

func TestParseLabel(t *testing.T) {
	if got := parseLabel([]byte(" Core\x00 0\xff\n")); got != "Core? 0?" {
		t.Errorf("parseLabel = %q", got)
	}
	if got := parseLabel([]byte(strings.Repeat("é", 100))); len([]rune(got)) != 64 {
		t.Errorf("label not clipped: %d runes", len([]rune(got)))
	}
}

func TestReadHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Reader{Root: capture(t, "node_exporter")}).Read(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestIgnorePatterns(t *testing.T) {
	rd := read(t, &Reader{Root: capture(t, "node_exporter")})
	kept, n := rd.Without([]string{"nct6779/in1", "nct6779/intrusion*", "coretemp/Core ?", "applesmc/Left side"})
	// 1 voltage, 2 intrusion switches, 4 cores on each of 2 packages, 1 fan.
	if n != 1+2+8+1 || len(kept.Sensors()) != len(rd.Sensors())-n {
		t.Errorf("ignored %d of %d, kept %d", n, len(rd.Sensors()), len(kept.Sensors()))
	}
	for _, s := range kept.Sensors() {
		if s.Chip == "coretemp" && s.Label != "Physical id 0" {
			t.Errorf("kept %s", s.Describe())
		}
	}
	if len(rd.Sensors()) != 20 {
		t.Errorf("Without changed the original reading")
	}
}

// A FIFO or a plain file where a chip directory belongs is a chip error,
// not a hang.
func TestReadOddClassEntries(t *testing.T) {
	root := t.TempDir()
	tree(t, root, "hwmon0", map[string]string{"name": "ok\n", "temp1_input": "1000\n"})
	class := filepath.Join(root, "sys", "class", "hwmon")
	if err := syscall.Mkfifo(filepath.Join(class, "hwmon1"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(class, "hwmon2"), []byte("x"), 0o644)
	os.Symlink("hwmon3", filepath.Join(class, "hwmon3")) // a link to itself
	done := make(chan *Reading, 1)
	go func() {
		rd, _ := (&Reader{Root: root}).Read(context.Background())
		done <- rd
	}()
	var rd *Reading
	select {
	case rd = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the reader hung on a FIFO in the class directory")
	}
	if len(rd.Chips) != 4 || len(rd.Chips[0].Sensors) != 1 {
		t.Fatalf("chips = %+v", rd.Chips)
	}
	for _, c := range rd.Chips[1:] {
		if c.Err == nil || !strings.Contains(c.Problem, "cannot list") {
			t.Errorf("%s: err %v problem %q", c.Dir, c.Err, c.Problem)
		}
	}
}
