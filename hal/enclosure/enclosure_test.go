package enclosure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// kernelTree builds an enclosure tree the way the kernel lays it out: the
// class entry links to the SES device's enclosure directory, components are
// directories in it, and an occupied slot's device link points at a SCSI
// device with a block/<sdX> directory.
type kernelTree struct {
	t    *testing.T
	root string
	enc  string // real enclosure directory
}

const hostDir = "sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/host0"

func newKernelTree(t *testing.T, id string) *kernelTree {
	t.Helper()
	root := t.TempDir()
	ses := filepath.Join(root, hostDir, "target"+strings.TrimSuffix(id, ":0"), id)
	enc := filepath.Join(ses, "enclosure", id)
	must(t, os.MkdirAll(enc, 0o755))
	write(t, filepath.Join(ses, "vendor"), "DCSIM   \n")
	write(t, filepath.Join(ses, "model"), "Backplane 12    \n")
	write(t, filepath.Join(ses, "rev"), "0001\n")
	must(t, os.Symlink("../../../"+id, filepath.Join(enc, "device")))
	must(t, os.MkdirAll(filepath.Join(enc, "power"), 0o755))
	write(t, filepath.Join(enc, "id"), "0x500304801f715f3f\n")
	write(t, filepath.Join(enc, "uevent"), "")
	class := filepath.Join(root, "sys", "class", "enclosure")
	must(t, os.MkdirAll(class, 0o755))
	rel, err := filepath.Rel(class, enc)
	must(t, err)
	must(t, os.Symlink(rel, filepath.Join(class, id)))
	return &kernelTree{t: t, root: root, enc: enc}
}

// slot adds a component; block is the block device in it ("" for empty).
func (k *kernelTree) slot(name string, number int, status string, fault, locate bool, block string) string {
	t := k.t
	dir := filepath.Join(k.enc, name)
	must(t, os.MkdirAll(filepath.Join(dir, "power"), 0o755))
	b := func(v bool) string {
		if v {
			return "1\n"
		}
		return "0\n"
	}
	write(t, filepath.Join(dir, "status"), status+"\n")
	write(t, filepath.Join(dir, "fault"), b(fault))
	write(t, filepath.Join(dir, "locate"), b(locate))
	write(t, filepath.Join(dir, "active"), b(block != ""))
	write(t, filepath.Join(dir, "type"), "array device\n")
	write(t, filepath.Join(dir, "slot"), fmt.Sprintf("%d\n", number))
	write(t, filepath.Join(dir, "power_status"), "on\n")
	if block != "" {
		sdev := filepath.Join(k.root, hostDir, fmt.Sprintf("target0:0:%d", number), fmt.Sprintf("0:0:%d:0", number))
		must(t, os.MkdirAll(filepath.Join(sdev, "block", block), 0o755))
		rel, err := filepath.Rel(dir, sdev)
		must(t, err)
		must(t, os.Symlink(rel, filepath.Join(dir, "device")))
	}
	return dir
}

func (k *kernelTree) components(n int) {
	write(k.t, filepath.Join(k.enc, "components"), fmt.Sprintf("%d\n", n))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	must(t, os.WriteFile(p, []byte(s), 0o644))
}

func readAll(t *testing.T, root string) []Enclosure {
	t.Helper()
	encs, err := (&Reader{Root: root}).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return encs
}

func TestReadKernelLayout(t *testing.T) {
	k := newKernelTree(t, "0:0:12:0")
	k.slot("Slot 1", 1, "OK", false, false, "sda")
	k.slot("Slot 2", 2, "critical", true, false, "sdb")
	k.slot("Slot 10", 10, "OK", false, true, "sdc")
	k.slot("Slot 3", 3, "not installed", false, false, "")
	k.components(4)

	encs := readAll(t, k.root)
	if len(encs) != 1 {
		t.Fatalf("enclosures = %d", len(encs))
	}
	e := encs[0]
	if e.ID != "0:0:12:0" || e.LogicalID != "0x500304801f715f3f" || e.Vendor != "DCSIM" || e.Model != "Backplane 12" || e.Revision != "0001" {
		t.Errorf("enclosure = %+v", e)
	}
	if e.Components == nil || *e.Components != 4 || len(e.Problems) != 0 {
		t.Errorf("components = %v problems = %v", e.Components, e.Problems)
	}
	if e.Describe() != "enclosure 0:0:12:0 (DCSIM Backplane 12)" {
		t.Errorf("Describe = %q", e.Describe())
	}
	var names []string
	for _, s := range e.Slots {
		names = append(names, s.Slot.Slot)
		if len(s.Problems) != 0 {
			t.Errorf("%s: problems %v", s.Describe(), s.Problems)
		}
	}
	if got := strings.Join(names, ","); got != "Slot 1,Slot 2,Slot 3,Slot 10" {
		t.Errorf("slot order = %s", got)
	}
	s1, s2, s3, s10 := e.Slots[0], e.Slots[1], e.Slots[2], e.Slots[3]
	if s1.Device != "sda" || s1.Status != "OK" || s1.Fault || !s1.Active || s1.Type != "array device" || *s1.Number != 1 || !*s1.PowerOn || s1.Enclosure != "0:0:12:0" {
		t.Errorf("slot 1 = %+v", s1)
	}
	if want := "/" + hostDir + "/target0:0:1/0:0:1:0"; s1.DevicePath != want {
		t.Errorf("slot 1 device path = %q, want %q", s1.DevicePath, want)
	}
	if s2.Device != "sdb" || !s2.Fault || s2.Status != "critical" {
		t.Errorf("slot 2 = %+v", s2)
	}
	if s3.Device != "" || !s3.Empty() || s3.Active {
		t.Errorf("slot 3 = %+v", s3)
	}
	if s10.Device != "sdc" || !s10.Locate {
		t.Errorf("slot 10 = %+v", s10)
	}
	by := BySlotDevice(encs)
	if by["sdb"] == nil || by["sdb"].Slot.Slot != "Slot 2" || len(by) != 3 {
		t.Errorf("BySlotDevice = %v", by)
	}
	if h := HAL(encs); len(h) != 4 || h[1].Device != "sdb" || !h[1].Fault {
		t.Errorf("HAL = %+v", h)
	}
}

func TestReadMissingAndOddValues(t *testing.T) {
	k := newKernelTree(t, "1:0:0:0")
	a := k.slot("0", 0, "OK", false, false, "sda")
	b := k.slot("1", 1, "OK", false, false, "sdb")
	c := k.slot("2", 2, "OK", false, false, "")
	d := k.slot("3", 3, "OK", false, false, "sdd")
	k.components(5)

	os.Remove(filepath.Join(a, "status"))
	write(t, filepath.Join(a, "fault"), "2\n")
	write(t, filepath.Join(a, "slot"), "x\n")
	write(t, filepath.Join(b, "status"), "on fire\n")
	os.Remove(filepath.Join(b, "locate"))
	must(t, os.Mkdir(filepath.Join(b, "locate"), 0o755)) // EISDIR
	write(t, filepath.Join(b, "power_status"), "maybe\n")
	os.Remove(filepath.Join(b, "power_status"))
	write(t, filepath.Join(b, "power_status"), "maybe\n")
	// A device link whose target went away.
	must(t, os.Symlink("../../../../../target0:0:9/0:0:9:0", filepath.Join(c, "device")))
	// A SCSI device with no block device.
	real, err := filepath.EvalSymlinks(filepath.Join(d, "device"))
	must(t, err)
	must(t, os.RemoveAll(filepath.Join(real, "block")))

	e := readAll(t, k.root)[0]
	if len(e.Problems) != 1 || !strings.Contains(e.Problems[0], "reports 5 components but 4") {
		t.Errorf("enclosure problems = %v", e.Problems)
	}
	want := [][]string{
		{`status: missing`, `fault: "2" is neither 0 nor 1`, `slot: "x" is not a slot number`},
		{`status: "on fire" is not a status`, `locate: is a directory`, `power_status: "maybe"`},
		{`device: the link points to ../../../../../target0:0:9/0:0:9:0, which does not exist`},
		{`has no block device`},
	}
	for i, s := range e.Slots {
		got := strings.Join(s.Problems, " | ")
		for _, w := range want[i] {
			if !strings.Contains(got, w) {
				t.Errorf("slot %s problems %q lack %q", s.Slot.Slot, got, w)
			}
		}
		if len(s.Problems) != len(want[i]) {
			t.Errorf("slot %s: %d problems, want %d: %q", s.Slot.Slot, len(s.Problems), len(want[i]), got)
		}
	}
	if e.Slots[0].Device != "sda" || e.Slots[1].Device != "sdb" || e.Slots[3].Device != "" {
		t.Errorf("devices: %q %q %q", e.Slots[0].Device, e.Slots[1].Device, e.Slots[3].Device)
	}
}

func TestReadNoEnclosureClass(t *testing.T) {
	_, err := (&Reader{Root: t.TempDir()}).Read(context.Background())
	if !errors.Is(err, ErrNoEnclosures) || !strings.Contains(err.Error(), "ses driver") {
		t.Errorf("err = %v", err)
	}
}

func TestReadBrokenEnclosureEntry(t *testing.T) {
	k := newKernelTree(t, "0:0:1:0")
	k.slot("0", 0, "OK", false, false, "sda")
	k.components(1)
	class := filepath.Join(k.root, "sys", "class", "enclosure")
	// A class entry whose device went away, and a file where a directory belongs.
	must(t, os.Symlink("../../devices/gone/enclosure/2:0:0:0", filepath.Join(class, "2:0:0:0")))
	write(t, filepath.Join(class, "3:0:0:0"), "")
	// A FIFO where an enclosure belongs must not block the reader.
	must(t, syscall.Mkfifo(filepath.Join(class, "4:0:0:0"), 0o644))
	encs := readAll(t, k.root)
	if len(encs) != 4 {
		t.Fatalf("enclosures = %d", len(encs))
	}
	if encs[0].Err != nil || len(encs[0].Slots) != 1 {
		t.Errorf("good enclosure = %+v", encs[0])
	}
	for _, e := range encs[1:] {
		if e.Err == nil || len(e.Problems) != 1 || !strings.Contains(e.Problems[0], "cannot list the enclosure") {
			t.Errorf("%s = %+v", e.ID, e)
		}
	}
}

// A tree copied with links flattened into directories still reads.
func TestReadFlattenedCopy(t *testing.T) {
	root := t.TempDir()
	enc := filepath.Join(root, "sys", "class", "enclosure", "0:0:5:0")
	slot := filepath.Join(enc, "SLOT 01")
	must(t, os.MkdirAll(filepath.Join(slot, "device", "block", "sdq"), 0o755))
	write(t, filepath.Join(enc, "components"), "1\n")
	for f, v := range map[string]string{"status": "OK", "fault": "0", "locate": "0", "active": "1", "type": "array device", "slot": "1"} {
		write(t, filepath.Join(slot, f), v+"\n")
	}
	e := readAll(t, root)[0]
	if len(e.Slots) != 1 || e.Slots[0].Device != "sdq" || len(e.Slots[0].Problems) != 0 || e.Slots[0].PowerOn != nil {
		t.Errorf("slots = %+v", e.Slots)
	}
}

func TestLessNatural(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"Slot 2", "Slot 10", true}, {"Slot 10", "Slot 2", false}, {"2", "10", true}, {"a", "b", true}, {"Slot01", "Slot1", true}, {"x", "x", false}, {"x", "x1", true}} {
		if got := lessNatural(c.a, c.b); got != c.want {
			t.Errorf("lessNatural(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// FuzzEnclosure writes fuzz bytes as a slot's attribute values and the
// components count; the reader must not panic and must report anything it
// does not understand as a problem rather than as a fact.
func FuzzEnclosure(f *testing.F) {
	f.Add("OK", "0", "1", "1", "4")
	f.Add("critical", "1", "0", "-1", "x")
	f.Add("not installed", "", "\xff", "99999999999999999999", "")
	f.Fuzz(func(t *testing.T, status, fault, locate, slot, components string) {
		root := t.TempDir()
		dir := filepath.Join(root, "sys", "class", "enclosure", "0:0:0:0", "0")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{"status": status, "fault": fault, "locate": locate, "slot": slot, "active": "0", "type": "device"}
		for n, v := range files {
			os.WriteFile(filepath.Join(dir, n), []byte(v), 0o644)
		}
		os.WriteFile(filepath.Join(filepath.Dir(dir), "components"), []byte(components), 0o644)
		encs, err := (&Reader{Root: root}).Read(context.Background())
		if err != nil || len(encs) != 1 || len(encs[0].Slots) != 1 {
			t.Fatalf("read: %v %+v", err, encs)
		}
		s := encs[0].Slots[0]
		if st := strings.TrimSpace(status); !knownStatus[st] && len(s.Problems) == 0 {
			t.Fatalf("status %q accepted without a problem", status)
		}
		if v := strings.TrimSpace(fault); v != "0" && v != "1" && s.Fault {
			t.Fatalf("fault %q read as set", fault)
		}
	})
}
