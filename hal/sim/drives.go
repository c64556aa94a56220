package sim

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// capture is a usable device report found in a captures folder.
type capture struct {
	path     string
	protocol string // ATA, SCSI, NVMe
	model    string
	serial   string
	exit     uint64
	// attr5Thresh is the threshold of ATA attribute 5 (0 when absent):
	// a drive with one can be degraded all the way to a failing verdict.
	attr5Thresh uint64
	// clean is true when the drive's error counters (media and, for ATA,
	// interface CRC) are all zero, so it makes a healthy baseline.
	clean bool
}

// findCaptures walks dir for smartctl JSON reports of healthy drives
// (health PASSED, smartctl reached the device, the tables the simulator
// edits present). Reports that already show a failure are left out: the
// simulator makes its own failures.
func findCaptures(dir string) (map[string][]capture, error) {
	// A fleet makes many simulations from one folder; read it once.
	if c, ok := captureCache.Load(dir); ok {
		return c.(map[string][]capture), nil
	}
	out, err := scanCaptures(dir)
	if err != nil {
		return nil, err
	}
	captureCache.Store(dir, out)
	return out, nil
}

// captureCache holds each folder's captures, read once per process. The
// lists are never modified after they are stored.
var captureCache sync.Map

func scanCaptures(dir string) (map[string][]capture, error) {
	out := map[string][]capture{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		r, err := loadReport(p)
		if err != nil {
			return nil // not JSON, or not ours to judge; the parser's tests cover it
		}
		c, ok := usableCapture(r)
		if !ok {
			return nil
		}
		c.path = p
		out[c.protocol] = append(out[c.protocol], c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sim: reading captures in %s: %w", dir, err)
	}
	for _, list := range out {
		// Drives with clean media counters and a clean exit status first,
		// then by path, so that the simulated drives start healthy and the
		// choice is repeatable. (A capture can pass its own health check
		// with a thousand reallocated sectors.)
		sort.SliceStable(list, func(i, j int) bool {
			if list[i].clean != list[j].clean {
				return list[i].clean
			}
			if (list[i].exit == 0) != (list[j].exit == 0) {
				return list[i].exit == 0
			}
			return list[i].path < list[j].path
		})
	}
	return out, nil
}

func usableCapture(r report) (capture, bool) {
	dev := r.path("device")
	proto := dev.str("protocol")
	exit, _ := r.path("smartctl").num("exit_status")
	passed, ok := r.path("smart_status").boolean("passed")
	if !ok || !passed || exit&0x1f != 0 {
		return capture{}, false
	}
	c := capture{protocol: proto, exit: exit, serial: r.str("serial_number")}
	c.model = firstNonEmpty(r.str("model_name"), r.str("scsi_model_name"))
	if c.model == "" {
		return capture{}, false
	}
	switch proto {
	case "ATA":
		if len(r.ataTable()) == 0 {
			return capture{}, false
		}
		if a := r.ataAttr(5); a != nil {
			c.attr5Thresh, _ = a.num("thresh")
		}
		c.clean = true
		for _, id := range []uint64{5, 187, 197, 198, 199} {
			if v, ok := r.ataRaw(id); ok && v != 0 {
				c.clean = false
			}
		}
	case "SCSI":
		g, ok := r.num("scsi_grown_defect_list")
		if !ok {
			return capture{}, false
		}
		c.clean = g == 0
	case "NVMe":
		h := r.path("nvme_smart_health_information_log")
		if h == nil {
			return capture{}, false
		}
		me, _ := h.num("media_errors")
		cw, _ := h.num("critical_warning")
		c.clean = me == 0 && cw == 0
	default:
		return capture{}, false
	}
	return c, true
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// DefaultCaptures finds the shared captures folder the way the project's
// tests do: $DCAGENT_SHARED_TESTDATA/smart/json, else a shared/testdata
// beside the current directory or one of its parents. "" when none exists.
func DefaultCaptures() string {
	if p := os.Getenv("DCAGENT_SHARED_TESTDATA"); p != "" {
		if dirExists(filepath.Join(p, "smart", "json")) {
			return filepath.Join(p, "smart", "json")
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for i := 0; i < 5; i++ {
		p := filepath.Join(filepath.Dir(dir), "shared", "testdata", "smart", "json")
		if dirExists(p) {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// sdName gives the kernel's name for the i-th SCSI disk: sda..sdz, sdaa...
func sdName(i int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	s := ""
	for n := i; ; n = n/26 - 1 {
		s = string(letters[n%26]) + s
		if n < 26 {
			break
		}
	}
	return "sd" + s
}

// typeFor is the smartctl -d type of a protocol.
func typeFor(protocol string) string {
	switch protocol {
	case "SCSI":
		return "scsi"
	case "NVMe":
		return "nvme"
	}
	return "sat"
}

// madeUpReport invents a plausible report for a drive when no captures are
// available. The serial says it is simulated.
func madeUpReport(protocol string, n int) report {
	serial := fmt.Sprintf("DCSIM%s%04d", protocol[:1], n)
	base := map[string]any{
		"json_format_version": []any{json.Number("1"), json.Number("0")},
		"smartctl": map[string]any{
			"version":       []any{json.Number("7"), json.Number("3")},
			"platform_info": "dcsim",
			"build_info":    "(dcsim: a made-up drive; no captures were found)",
			"exit_status":   json.Number("0"),
		},
		"serial_number":      serial,
		"firmware_version":   "SIM1",
		"smart_support":      map[string]any{"available": true, "enabled": true},
		"smart_status":       map[string]any{"passed": true},
		"power_on_time":      map[string]any{"hours": json.Number(strconv.Itoa(18000 + 977*n))},
		"power_cycle_count":  json.Number(strconv.Itoa(40 + n)),
		"temperature":        map[string]any{"current": json.Number(strconv.Itoa(33 + n%4))},
		"logical_block_size": json.Number("512"),
	}
	r := report(base)
	switch protocol {
	case "ATA":
		r["device"] = map[string]any{"type": "sat", "protocol": "ATA"}
		r["model_family"] = "DCSIM simulated SATA hard disks"
		r["model_name"] = "DCSIM SATA HDD 8TB"
		r["user_capacity"] = map[string]any{"blocks": json.Number("15628053168"), "bytes": json.Number("8001563222016")}
		r["rotation_rate"] = json.Number("7200")
		var rows []any
		poh := 18000 + 977*uint64(n)
		for _, id := range []uint64{1, 3, 4, 5, 7, 9, 10, 12, 187, 188, 194, 197, 198, 199} {
			raw := uint64(0)
			switch id {
			case 4, 12:
				raw = 40 + uint64(n)
			case 9:
				raw = poh
			case 194:
				raw = 33 + uint64(n%4)
			}
			rows = append(rows, newAttrRow(ataSpecs[id], raw))
		}
		r["ata_smart_attributes"] = map[string]any{"revision": json.Number("16"), "table": rows}
		r["ata_smart_error_log"] = map[string]any{"summary": map[string]any{"revision": json.Number("1"), "count": json.Number("0")}}
		r["ata_smart_self_test_log"] = map[string]any{"standard": map[string]any{"revision": json.Number("1"), "count": json.Number("0")}}
	case "SCSI":
		r["device"] = map[string]any{"type": "scsi", "protocol": "SCSI"}
		r["scsi_vendor"] = "DCSIM"
		r["scsi_product"] = "SAS HDD 4TB"
		r["scsi_model_name"] = "DCSIM SAS HDD 4TB"
		r["scsi_revision"] = "S001"
		r["scsi_version"] = "SPC-5"
		r["user_capacity"] = map[string]any{"blocks": json.Number("7814037168"), "bytes": json.Number("4000787030016")}
		r["rotation_rate"] = json.Number("7200")
		r["temperature"] = map[string]any{"current": json.Number("31"), "drive_trip": json.Number("60")}
		r["scsi_grown_defect_list"] = json.Number("0")
		counters := func(gb string) map[string]any {
			return map[string]any{
				"errors_corrected_by_eccfast": json.Number("0"), "errors_corrected_by_eccdelayed": json.Number("0"),
				"errors_corrected_by_rereads_rewrites": json.Number("0"), "total_errors_corrected": json.Number("0"),
				"correction_algorithm_invocations": json.Number("0"), "gigabytes_processed": gb,
				"total_uncorrected_errors": json.Number("0"),
			}
		}
		r["scsi_error_counter_log"] = map[string]any{"read": counters("48211.507"), "write": counters("20316.214"), "verify": counters("0.000")}
	case "NVMe":
		r["device"] = map[string]any{"type": "nvme", "protocol": "NVMe"}
		r["model_name"] = "DCSIM NVMe SSD 1.6TB"
		r["nvme_total_capacity"] = json.Number("1600321314816")
		r["user_capacity"] = map[string]any{"blocks": json.Number("3125627568"), "bytes": json.Number("1600321314816")}
		r["smart_status"] = map[string]any{"passed": true, "nvme": map[string]any{"value": json.Number("0")}}
		r["nvme_smart_health_information_log"] = map[string]any{
			"critical_warning": json.Number("0"), "temperature": json.Number("36"),
			"available_spare": json.Number("100"), "available_spare_threshold": json.Number("10"),
			"percentage_used": json.Number("3"), "data_units_read": json.Number("51234567"),
			"data_units_written": json.Number("40123456"), "host_reads": json.Number("912345678"),
			"host_writes": json.Number("712345678"), "controller_busy_time": json.Number("1234"),
			"power_cycles": json.Number(strconv.Itoa(40 + n)), "power_on_hours": json.Number(strconv.Itoa(18000 + 977*n)),
			"unsafe_shutdowns": json.Number("7"), "media_errors": json.Number("0"),
			"num_err_log_entries": json.Number("0"), "warning_temp_time": json.Number("0"),
			"critical_comp_time": json.Number("0"),
		}
	}
	return r
}

// onsetSteps is how many steps of change a drive has seen at step: 0
// before the onset, 1 at it, and so on.
func onsetSteps(st *State, step int) uint64 {
	if step < st.Onset {
		return 0
	}
	return uint64(step - st.Onset + 1)
}

// tri is the k-th triangular number: counters that grow faster and faster,
// as a failing drive's do.
func tri(k uint64) uint64 { return k * (k + 1) / 2 }

// Exit status bits the simulator sets (smartctl(8), RETURN VALUES).
const (
	exitDiskFailing = 1 << 3
	exitPrefailNow  = 1 << 4
	exitErrorLog    = 1 << 6
)

// renderDrive builds the report the stand-in prints for a drive at a
// step: the base report (or the series entry), its identity fitted to the
// simulated device, the clock advanced, and the drive's role applied.
func renderDrive(stateDir string, st *State, d *Drive, step int) (report, error) {
	file := d.Base
	if len(d.Series) > 0 {
		i := step
		if i >= len(d.Series) {
			i = len(d.Series) - 1
		}
		file = d.Series[i]
	}
	r, err := loadReport(filepath.Join(stateDir, file))
	if err != nil {
		return nil, fmt.Errorf("sim: drive %s: %w", d.Name, err)
	}
	dev := r.obj("device", true)
	dev["name"] = d.Device
	dev["info_name"] = d.Device
	if d.Protocol == "ATA" {
		dev["info_name"] = d.Device + " [SAT]"
	}
	dev["type"] = d.Type
	dev["protocol"] = d.Protocol
	r["serial_number"] = d.Serial
	now := st.At(step)
	r["local_time"] = map[string]any{
		"time_t":  json.Number(strconv.FormatInt(now.Unix(), 10)),
		"asctime": now.UTC().Format("Mon Jan _2 15:04:05 2006 UTC"),
	}
	if len(d.Series) > 0 {
		// A series is replayed as captured; only the identity and clock move.
		return r, nil
	}
	hours := uint64(time.Duration(step) * time.Duration(st.StepDuration) / time.Hour)
	if hours > 0 {
		if p := r.path("power_on_time"); p != nil {
			p.add("hours", hours)
		}
		if a := r.ataAttr(9); a != nil {
			if v, ok := a.obj("raw", false).num("value"); ok {
				a.setRaw(v + hours)
			}
		}
	}
	exit, _ := r.path("smartctl").num("exit_status")
	k := onsetSteps(st, step)
	switch d.Role {
	case RoleDegrading:
		exit = degrade(r, d.Protocol, k, exit)
	case RoleBackplane:
		linkErrors(r, d.Protocol, k, uint64(3+d.Slot%3))
	}
	r.obj("smartctl", true).setNum("exit_status", exit)
	return r, nil
}

// degrade grows a drive's media counters k steps into its decline and
// returns the exit status that goes with them.
func degrade(r report, protocol string, k, exit uint64) uint64 {
	if k == 0 {
		return exit
	}
	switch protocol {
	case "ATA":
		bump := func(id, delta uint64) {
			a := r.ensureAttr(id)
			v, _ := a.obj("raw", false).num("value")
			a.setRaw(v + delta)
		}
		bump(197, 8*tri(k)) // pending sectors
		bump(198, 4*tri(k)) // offline uncorrectable
		bump(5, 4*tri(k-1)) // reallocated, a step behind the pending ones
		bump(187, tri(k))   // reported uncorrectable
		// Reallocations use up the spare area: attribute 5's normalised
		// value falls until it reaches its threshold, and then the drive's
		// own verdict is FAILED.
		a5 := r.ensureAttr(5)
		val, _ := toInt(a5["value"])
		worst, _ := toInt(a5["worst"])
		thresh, _ := toInt(a5["thresh"])
		nv := val - int64(2*tri(k-1))
		if nv < 1 {
			nv = 1
		}
		a5.setInt("value", nv)
		if nv < worst {
			a5.setInt("worst", nv)
		}
		if thresh > 0 && nv <= thresh {
			a5["when_failed"] = "now"
			r.obj("smart_status", true)["passed"] = false
			exit |= exitDiskFailing | exitPrefailNow
		}
		log := r.obj("ata_smart_error_log", true).obj("summary", true)
		log.add("count", tri(k))
		exit |= exitErrorLog
	case "SCSI":
		grown := 6 * tri(k)
		r.add("scsi_grown_defect_list", grown)
		rd := r.obj("scsi_error_counter_log", true).obj("read", true)
		rd.add("total_uncorrected_errors", tri(k))
		if grown >= 150 {
			r.obj("smart_status", true)["passed"] = false
			exit |= exitDiskFailing
		}
	case "NVMe":
		h := r.obj("nvme_smart_health_information_log", true)
		h.add("media_errors", 5*tri(k))
		h.add("num_err_log_entries", 5*tri(k))
		spare, _ := h.num("available_spare")
		if spare > 6*k {
			spare -= 6 * k
		} else {
			spare = 0
		}
		h.setNum("available_spare", spare)
		used, _ := h.num("percentage_used")
		h.setNum("percentage_used", min(used+2*k, 255))
		if thr, ok := h.num("available_spare_threshold"); ok && spare < thr {
			cw, _ := h.num("critical_warning")
			h.setNum("critical_warning", cw|1)
			ss := r.obj("smart_status", true)
			ss["passed"] = false
			if n := ss.obj("nvme", false); n != nil {
				n.setNum("value", cw|1)
			}
			exit |= exitDiskFailing
		}
	}
	return exit
}

// linkErrors grows a drive's interface error counters k steps into a
// backplane or cable fault; mult varies the pace between drives. Media
// counters are not touched.
func linkErrors(r report, protocol string, k, mult uint64) {
	switch protocol {
	case "ATA":
		a := r.ensureAttr(199)
		v, _ := a.obj("raw", false).num("value")
		a.setRaw(v + mult*tri(k))
	case "SCSI":
		phy := sasPhy(r)
		phy.add("invalid_dword_count", 8*mult*tri(k))
		phy.add("running_disparity_error_count", 8*mult*tri(k))
		phy.add("loss_of_dword_synchronization_count", mult*tri(k))
		phy.add("phy_reset_problem_count", tri(k)/2)
	}
}

// sasPhy returns port 0 phy 0 of the SAS protocol-specific log page,
// adding the page as smartctl 7.3+ prints it when the report lacks it.
func sasPhy(r report) report {
	port := r.obj("scsi_sas_port_0", true)
	if _, ok := port["number_of_phys"]; !ok {
		port.setNum("relative_target_port_id", 1)
		port.setNum("generation_code", 0)
		port.setNum("number_of_phys", 1)
	}
	phy := port.obj("phy_0", true)
	if _, ok := phy["identifier"]; !ok {
		phy.setNum("identifier", 0)
		phy["attached_device_type"] = "expander device"
		phy["attached_reason"] = "SMP phy control function"
		phy["reason"] = "loss of dword synchronization"
		phy["negotiated_logical_link_rate"] = "phy enabled; 12 Gbps"
		phy.setNum("attached_phy_identifier", 0)
		for _, c := range []string{"invalid_dword_count", "running_disparity_error_count", "loss_of_dword_synchronization_count", "phy_reset_problem_count"} {
			phy.setNum(c, 0)
		}
	}
	return phy
}

// Facts are the counters the simulator changes, read back from a rendered
// report, for the "what changed" lines and the tests.
type Facts struct {
	Passed      *bool
	ExitStatus  uint64
	Reallocated *uint64
	Pending     *uint64
	Offline     *uint64
	Reported    *uint64
	CRC         *uint64
	Grown       *uint64
	Uncorrected *uint64
	LinkErrors  *uint64
	MediaErrors *uint64
	Spare       *uint64
	CritWarning *uint64
}

func factsOf(r report) Facts {
	var f Facts
	ptr := func(v uint64, ok bool) *uint64 {
		if !ok {
			return nil
		}
		return &v
	}
	if b, ok := r.path("smart_status").boolean("passed"); ok {
		f.Passed = &b
	}
	f.ExitStatus, _ = r.path("smartctl").num("exit_status")
	f.Reallocated = ptr(r.ataRaw(5))
	f.Pending = ptr(r.ataRaw(197))
	f.Offline = ptr(r.ataRaw(198))
	f.Reported = ptr(r.ataRaw(187))
	f.CRC = ptr(r.ataRaw(199))
	f.Grown = ptr(r.num("scsi_grown_defect_list"))
	f.Uncorrected = ptr(r.path("scsi_error_counter_log", "read").num("total_uncorrected_errors"))
	if phy := r.path("scsi_sas_port_0", "phy_0"); phy != nil {
		// Summed as hal/smartctl sums them: invalid DWORDs, loss of DWORD
		// sync and phy reset problems.
		a, ok1 := phy.num("invalid_dword_count")
		b, ok2 := phy.num("loss_of_dword_synchronization_count")
		c, ok3 := phy.num("phy_reset_problem_count")
		f.LinkErrors = ptr(a+b+c, ok1 || ok2 || ok3)
	}
	h := r.path("nvme_smart_health_information_log")
	f.MediaErrors = ptr(h.num("media_errors"))
	f.Spare = ptr(h.num("available_spare"))
	f.CritWarning = ptr(h.num("critical_warning"))
	return f
}

// changes lists what differs between two readings of one drive, in words.
func (f Facts) changes(prev Facts) []string {
	var out []string
	num := func(name string, a, b *uint64) {
		if b != nil && (a == nil || *a != *b) {
			from := "absent"
			if a != nil {
				from = strconv.FormatUint(*a, 10)
			}
			out = append(out, fmt.Sprintf("%s %s -> %d", name, from, *b))
		}
	}
	num("reallocated sectors", prev.Reallocated, f.Reallocated)
	num("pending sectors", prev.Pending, f.Pending)
	num("offline uncorrectable", prev.Offline, f.Offline)
	num("reported uncorrectable", prev.Reported, f.Reported)
	num("UDMA CRC errors", prev.CRC, f.CRC)
	num("grown defects", prev.Grown, f.Grown)
	num("uncorrected read errors", prev.Uncorrected, f.Uncorrected)
	num("SAS link errors", prev.LinkErrors, f.LinkErrors)
	num("media errors", prev.MediaErrors, f.MediaErrors)
	num("available spare %", prev.Spare, f.Spare)
	num("critical warning", prev.CritWarning, f.CritWarning)
	if f.Passed != nil && (prev.Passed == nil || *prev.Passed != *f.Passed) {
		v := "PASSED"
		if !*f.Passed {
			v = "FAILED"
		}
		out = append(out, "SMART overall health "+v)
	}
	if f.ExitStatus != prev.ExitStatus {
		out = append(out, fmt.Sprintf("smartctl exit status %d -> %d", prev.ExitStatus, f.ExitStatus))
	}
	return out
}
