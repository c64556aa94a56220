package sim

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
)

// tree is a rendered sysfs tree: directories, symbolic links and file
// contents, with paths relative to the root.
type tree struct {
	dirs  []string
	links map[string]string // link path -> target path (both relative to the root)
	files map[string]string
}

func newTree() *tree { return &tree{links: map[string]string{}, files: map[string]string{}} }

func (t *tree) dir(p string) { t.dirs = append(t.dirs, p) }

func (t *tree) file(p, content string) { t.files[p] = content }

func (t *tree) num(p string, v int64) { t.files[p] = fmt.Sprintf("%d\n", v) }

func (t *tree) link(p, target string) { t.links[p] = target }

// Kernel paths of the simulated machine.
const (
	pciHost    = "sys/devices/pci0000:00"
	scsiHost   = pciHost + "/0000:00:1c.0/0000:02:00.0/host0"
	i2cBus     = pciHost + "/0000:00:1f.4/i2c-0"
	nvmeBus    = pciHost + "/0000:00:1d.0"
	classHwmon = "sys/class/hwmon"
)

// jitter gives a repeatable small offset in [-amp, amp] for one value at
// one step, so the sensors look alive without making tests flaky.
func jitter(seed int64, step int, key string, amp int64) int64 {
	if amp == 0 {
		return 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/%s", seed, step, key)
	return int64(h.Sum64()%uint64(2*amp+1)) - amp
}

// eventActive reports whether an event of kind for target has happened
// by step, and how many steps ago it began (1 at its own step).
func (s *State) eventActive(kind EventKind, target, step int) (int, bool) {
	best := -1
	for _, e := range s.Events {
		if e.Kind == kind && e.Target == target && e.Step <= step {
			if best < 0 || e.Step < best {
				best = e.Step
			}
		}
	}
	if best < 0 {
		return 0, false
	}
	return step - best + 1, true
}

// buildTree renders the whole sysfs tree at a step.
func buildTree(st *State, step int) *tree {
	t := newTree()
	hw := 0
	chip := func(devDir, name string) string {
		d := fmt.Sprintf("%s/hwmon/hwmon%d", devDir, hw)
		t.dir(d)
		t.link(d+"/device", devDir)
		t.link(fmt.Sprintf("%s/hwmon%d", classHwmon, hw), d)
		t.file(d+"/name", name+"\n")
		t.file(d+"/uevent", "")
		hw++
		return d
	}
	t.dir(classHwmon)
	b := st.Board

	// CPU packages: coretemp, one chip per package, same name.
	for p := 0; p < b.CPUs; p++ {
		d := chip(fmt.Sprintf("sys/devices/platform/coretemp.%d", p), "coretemp")
		heat := int64(0)
		if k, ok := st.eventActive(EventOverheat, p, step); ok {
			heat = min(int64(k)*6000, 66000) // climbs 6 °C a step to past crit
		}
		for c := 0; c <= b.Cores; c++ {
			i := c + 1
			label := fmt.Sprintf("Core %d", c-1)
			base := int64(44000 + 1000*int64(c%3) + 2000*int64(p))
			if c == 0 {
				label = fmt.Sprintf("Package id %d", p)
				base = int64(47000 + 2000*int64(p))
			}
			v := base + heat + 1000*jitter(st.Seed, step, fmt.Sprintf("cpu%d/%d", p, c), 1)
			t.num(fmt.Sprintf("%s/temp%d_input", d, i), v)
			t.file(fmt.Sprintf("%s/temp%d_label", d, i), label+"\n")
			t.num(fmt.Sprintf("%s/temp%d_max", d, i), 84000)
			t.num(fmt.Sprintf("%s/temp%d_crit", d, i), 100000)
			t.num(fmt.Sprintf("%s/temp%d_crit_alarm", d, i), b2i(v >= 100000))
		}
	}

	// The board's Super-I/O chip: voltages, system fans, board temperatures.
	{
		d := chip("sys/devices/platform/nct6775.656", "nct6779")
		volts := []struct{ nominal, min, max int64 }{
			{1050, 800, 1500}, {3312, 2976, 3632}, {3328, 2976, 3632}, {1808, 1704, 1896},
			{1208, 1104, 1296}, {3296, 2976, 3632}, {3104, 2800, 3400},
		}
		for i, v := range volts {
			val := v.nominal + 8*jitter(st.Seed, step, fmt.Sprintf("in%d", i), 1)
			t.num(fmt.Sprintf("%s/in%d_input", d, i), val)
			t.num(fmt.Sprintf("%s/in%d_min", d, i), v.min)
			t.num(fmt.Sprintf("%s/in%d_max", d, i), v.max)
			t.num(fmt.Sprintf("%s/in%d_alarm", d, i), b2i(val < v.min || val > v.max))
			t.num(fmt.Sprintf("%s/in%d_beep", d, i), 0)
		}
		for f := 1; f <= b.Fans; f++ {
			rpm := int64(4200+150*f) + jitter(st.Seed, step, fmt.Sprintf("fan%d", f), 60)
			if _, failed := st.eventActive(EventFanFail, f, step); failed {
				rpm = 0
			}
			t.num(fmt.Sprintf("%s/fan%d_input", d, f), rpm)
			t.num(fmt.Sprintf("%s/fan%d_min", d, f), 1000)
			t.num(fmt.Sprintf("%s/fan%d_alarm", d, f), b2i(rpm < 1000))
			t.num(fmt.Sprintf("%s/fan%d_beep", d, f), 0)
			t.num(fmt.Sprintf("%s/fan%d_pulses", d, f), 2)
		}
		for i, label := range []string{"SYSTIN", "CPUTIN", "AUXTIN0"} {
			v := int64(31000+4000*i) + 1000*jitter(st.Seed, step, "board"+label, 1)
			n := i + 1
			t.num(fmt.Sprintf("%s/temp%d_input", d, n), v)
			t.file(fmt.Sprintf("%s/temp%d_label", d, n), label+"\n")
			t.num(fmt.Sprintf("%s/temp%d_max", d, n), 80000)
			t.num(fmt.Sprintf("%s/temp%d_max_hyst", d, n), 75000)
			t.num(fmt.Sprintf("%s/temp%d_alarm", d, n), b2i(v >= 80000))
		}
		t.num(d+"/intrusion0_alarm", 0)
		t.num(d+"/intrusion0_beep", 0)
		t.num(d+"/pwm1", 153)
		t.num(d+"/pwm1_enable", 5)
	}

	// Power supplies on PMBus: the same chip name twice.
	failed := 0
	for p := 1; p <= b.PSUs; p++ {
		if _, ok := st.eventActive(EventPSUFail, p, step); ok {
			failed++
		}
	}
	for p := 1; p <= b.PSUs; p++ {
		d := chip(fmt.Sprintf("%s/0-%04x", i2cBus, 0x57+p), "pmbus")
		_, down := st.eventActive(EventPSUFail, p, step)
		share := int64(b.PSUs - failed)
		if share < 1 {
			share = 1
		}
		load := 600_000_000 / share // µW: the machine's 600 W shared by the live supplies
		j := func(key string, amp int64) int64 { return jitter(st.Seed, step, fmt.Sprintf("psu%d/%s", p, key), amp) }
		vin, vout, iin, iout, pin, pout, temp, fan := 230000+100*j("vin", 5), 12100+10*j("vout", 3), int64(0), int64(0), load*105/100, load, 33000+1000*j("temp", 1), 7200+j("fan", 80)
		iin = pin / vin
		iout = pout / vout
		if down {
			vin, vout, iin, iout, pin, pout, fan = 0, 0, 0, 0, 0, 0, 0
		}
		type ch struct {
			prefix, label            string
			v, lcrit, min, max, crit int64 // 0 limits are left out
		}
		for _, c := range []ch{
			{"in1", "vin", vin, 90000, 180000, 264000, 300000},
			{"in2", "vout1", vout, 11000, 11400, 12600, 13000},
			{"curr1", "iin", iin, 0, 0, 10000, 12000},
			{"curr2", "iout1", iout, 0, 0, 80000, 90000},
			{"temp1", "temp1", temp, 0, 0, 60000, 70000},
		} {
			t.num(d+"/"+c.prefix+"_input", c.v)
			t.file(d+"/"+c.prefix+"_label", c.label+"\n")
			for _, l := range []struct {
				item  string
				limit int64
				bad   bool
			}{
				{"lcrit", c.lcrit, c.v < c.lcrit},
				{"min", c.min, c.v < c.min},
				{"max", c.max, c.v > c.max},
				{"crit", c.crit, c.v > c.crit},
			} {
				if l.limit == 0 {
					continue
				}
				t.num(d+"/"+c.prefix+"_"+l.item, l.limit)
				t.num(d+"/"+c.prefix+"_"+l.item+"_alarm", b2i(l.bad))
			}
		}
		for i, pw := range []struct {
			label string
			v     int64
		}{{"pin", pin}, {"pout1", pout}} {
			n := i + 1
			t.num(fmt.Sprintf("%s/power%d_input", d, n), pw.v)
			t.file(fmt.Sprintf("%s/power%d_label", d, n), pw.label+"\n")
			t.num(fmt.Sprintf("%s/power%d_max", d, n), 1_100_000_000)
			t.num(fmt.Sprintf("%s/power%d_alarm", d, n), b2i(pw.v > 1_100_000_000))
		}
		t.num(d+"/fan1_input", fan)
		t.num(d+"/fan1_alarm", b2i(fan < 1000))
		t.num(d+"/fan1_fault", 0)
	}

	// NVMe drives outside the enclosure have their own temperature chip.
	for i := range st.Drives {
		dr := &st.Drives[i]
		if dr.Protocol != "NVMe" {
			continue
		}
		ctrl := fmt.Sprintf("%s/0000:%02x:00.0/nvme/%s", nvmeBus, 0x3d+i, dr.Name)
		t.file(ctrl+"/model", dr.Model+"\n")
		t.file(ctrl+"/serial", dr.Serial+"\n")
		d := chip(ctrl, "nvme")
		t.num(d+"/temp1_input", 36850+1000*jitter(st.Seed, step, dr.Name, 1))
		t.file(d+"/temp1_label", "Composite\n")
		t.num(d+"/temp1_min", -20150)
		t.num(d+"/temp1_max", 84850)
		t.num(d+"/temp1_crit", 89850)
		t.num(d+"/temp1_alarm", 0)
	}

	buildEnclosure(t, st, step)
	return t
}

// buildEnclosure renders the SES backplane and the SCSI disks in it.
func buildEnclosure(t *tree, st *State, step int) {
	e := st.Enclosure
	if e.Slots == 0 {
		return
	}
	bySlot := map[int]*Drive{}
	for i := range st.Drives {
		if st.Drives[i].Slot >= 0 {
			bySlot[st.Drives[i].Slot] = &st.Drives[i]
		}
	}
	ses := fmt.Sprintf("%s/target%s/%s", scsiHost, strings.TrimSuffix(e.ID, ":0"), e.ID)
	t.file(ses+"/vendor", "DCSIM   \n")
	t.file(ses+"/model", fmt.Sprintf("%-16s\n", fmt.Sprintf("SAS Backplane %d", e.Slots)))
	t.file(ses+"/rev", "0001\n")
	t.num(ses+"/type", 13) // enclosure services device
	enc := ses + "/enclosure/" + e.ID
	t.dir(enc)
	t.dir(enc + "/power")
	t.link(enc+"/device", ses)
	t.link("sys/class/enclosure/"+e.ID, enc)
	t.num(enc+"/components", int64(e.Slots))
	t.file(enc+"/id", e.LogicalID+"\n")
	t.file(enc+"/uevent", "")
	for s := 0; s < e.Slots; s++ {
		comp := fmt.Sprintf("%s/Slot%02d", enc, s)
		t.dir(comp + "/power")
		d := bySlot[s]
		status := "not installed"
		if d != nil {
			status = "OK"
		}
		_, fault := st.eventActive(EventSlotFault, s, step)
		if fault {
			status = "critical"
		}
		_, locate := st.eventActive(EventLocate, s, step)
		t.file(comp+"/status", status+"\n")
		t.num(comp+"/fault", b2i(fault))
		t.num(comp+"/locate", b2i(locate))
		t.num(comp+"/active", b2i(d != nil))
		t.file(comp+"/type", "array device\n")
		t.num(comp+"/slot", int64(s))
		t.file(comp+"/power_status", "on\n")
		t.file(comp+"/uevent", "")
		if d == nil {
			continue
		}
		sdev := fmt.Sprintf("%s/target%s/%s", scsiHost, strings.TrimSuffix(d.SCSIAddr, ":0"), d.SCSIAddr)
		vendor, model := "ATA", d.Model
		if d.Protocol == "SCSI" {
			vendor, model, _ = strings.Cut(d.Model, " ")
		}
		t.file(sdev+"/vendor", fmt.Sprintf("%-8.8s\n", vendor))
		t.file(sdev+"/model", fmt.Sprintf("%-16.16s\n", model))
		t.num(sdev+"/type", 0)
		blk := sdev + "/block/" + d.Name
		t.file(blk+"/dev", fmt.Sprintf("8:%d\n", 16*s))
		t.file(blk+"/size", "7814037168\n")
		t.link("sys/block/"+d.Name, blk)
		t.link(comp+"/device", sdev)
		t.link(fmt.Sprintf("%s/enclosure_device:Slot%02d", sdev, s), comp)
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// writeTree writes a rendered tree under root. With prev nil everything
// is written (directories, links, files); otherwise only files whose
// content changed, each replaced atomically so a reader never sees half a
// value.
func writeTree(root string, t, prev *tree) error {
	if prev == nil {
		for _, d := range t.dirs {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				return err
			}
		}
		for p := range t.files {
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
				return err
			}
		}
		for p, target := range t.links {
			abs := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(root, target), 0o755); err != nil {
				return err
			}
			rel, err := filepath.Rel(filepath.Dir(abs), filepath.Join(root, target))
			if err != nil {
				return err
			}
			if cur, err := os.Readlink(abs); err == nil && cur == rel {
				continue
			}
			os.Remove(abs)
			if err := os.Symlink(rel, abs); err != nil {
				return err
			}
		}
	}
	for p, c := range t.files {
		if prev != nil {
			if old, ok := prev.files[p]; ok && old == c {
				continue
			}
		} else if cur, err := os.ReadFile(filepath.Join(root, p)); err == nil && string(cur) == c {
			continue
		}
		if err := writeAtomic(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}
