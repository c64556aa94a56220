package hwmon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeServerTree writes the hwmon tree of a realistic two-socket server:
// two coretemp chips with 17 temperatures each, a Super-I/O chip with 15
// voltages, 7 fans and 6 temperatures, two PMBus power supplies, and four
// NVMe drives. It returns the number of sensors written.
func writeServerTree(tb testing.TB, root string) int {
	tb.Helper()
	n := 0
	chip := func(idx int, name string, files map[string]string) {
		dir := filepath.Join(root, "sys", "class", "hwmon", fmt.Sprintf("hwmon%d", idx))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		files["name"] = name + "\n"
		files["uevent"] = ""
		for f, c := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	idx := 0
	for pkg := 0; pkg < 2; pkg++ {
		f := map[string]string{}
		for i := 1; i <= 17; i++ {
			f[fmt.Sprintf("temp%d_input", i)] = fmt.Sprintf("%d\n", 40000+i*500)
			f[fmt.Sprintf("temp%d_max", i)] = "84000\n"
			f[fmt.Sprintf("temp%d_crit", i)] = "100000\n"
			f[fmt.Sprintf("temp%d_crit_alarm", i)] = "0\n"
			f[fmt.Sprintf("temp%d_label", i)] = fmt.Sprintf("Core %d\n", i-2)
			n++
		}
		chip(idx, "coretemp", f)
		idx++
	}
	sio := map[string]string{}
	for i := 0; i < 15; i++ {
		for _, item := range []string{"input", "min", "max", "alarm", "beep"} {
			sio[fmt.Sprintf("in%d_%s", i, item)] = "1000\n"
		}
		n++
	}
	for i := 1; i <= 7; i++ {
		for _, item := range []string{"input", "min", "alarm", "beep", "pulses", "target"} {
			sio[fmt.Sprintf("fan%d_%s", i, item)] = "2000\n"
		}
		n++
	}
	for i := 1; i <= 6; i++ {
		for _, item := range []string{"input", "max", "max_hyst", "alarm", "type", "label"} {
			sio[fmt.Sprintf("temp%d_%s", i, item)] = "30000\n"
		}
		n++
	}
	for i := 1; i <= 5; i++ {
		sio[fmt.Sprintf("pwm%d", i)] = "128\n"
		sio[fmt.Sprintf("pwm%d_enable", i)] = "5\n"
	}
	chip(idx, "nct6779", sio)
	idx++
	for psu := 0; psu < 2; psu++ {
		f := map[string]string{}
		for _, k := range []string{"in1", "in2", "curr1", "curr2", "temp1", "temp2", "fan1"} {
			for _, item := range []string{"input", "label", "max", "crit", "max_alarm", "crit_alarm"} {
				f[k+"_"+item] = "12000\n"
			}
			n++
		}
		for _, k := range []string{"power1", "power2"} {
			for _, item := range []string{"input", "label", "max", "cap", "alarm"} {
				f[k+"_"+item] = "400000000\n"
			}
			n++
		}
		chip(idx, "pmbus", f)
		idx++
	}
	for d := 0; d < 4; d++ {
		f := map[string]string{}
		for i := 1; i <= 3; i++ {
			for _, item := range []string{"input", "label", "min", "max", "crit", "alarm"} {
				f[fmt.Sprintf("temp%d_%s", i, item)] = "38850\n"
			}
			n++
		}
		chip(idx, "nvme", f)
		idx++
	}
	return n
}

// BenchmarkReadServerTree reads a realistic server's hwmon tree (some 100
// sensors, 600 files) from a real filesystem.
func BenchmarkReadServerTree(b *testing.B) {
	root := b.TempDir()
	want := writeServerTree(b, root)
	r := &Reader{Root: root}
	b.ReportAllocs()
	for b.Loop() {
		rd, err := r.Read(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if got := len(rd.Sensors()); got != want {
			b.Fatalf("read %d sensors, want %d", got, want)
		}
	}
}

func TestServerTreeReads(t *testing.T) {
	root := t.TempDir()
	want := writeServerTree(t, root)
	rd := read(t, &Reader{Root: root})
	if got := len(rd.Sensors()); got != want {
		t.Fatalf("read %d sensors, want %d", got, want)
	}
	for _, s := range rd.Sensors() {
		if s.Unreadable != "" {
			t.Errorf("%s: %s", s.Describe(), s.Unreadable)
		}
	}
}
