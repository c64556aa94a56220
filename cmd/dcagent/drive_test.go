package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/internal/testenv"
)

func runDriveCmd(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	status = runMain(append([]string{"drive"}, args...), &out, &errOut)
	return status, out.String(), errOut.String()
}

func capture(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(testenv.SharedTestdata(t), "smart", filepath.FromSlash(rel))
}

func TestDriveInspectText(t *testing.T) {
	ata := capture(t, "json/libblockdev/HGST_HUS726060ALA640.json")
	nvme := capture(t, "text/linuxhw-EnterpriseDrive/NVMe/Dell/Express Flash NVMe PM1725/Express Flash NVMe PM1725 1.6TB AIC/23A840B7671B")
	sas := capture(t, "text/zbx-smartctl/tests/examples/sas_hdd_wd.txt")
	status, out, errOut := runDriveCmd(t, "inspect", ata, nvme, sas)
	if status != 0 || errOut != "" {
		t.Fatalf("status %d, stderr %q", status, errOut)
	}
	for _, want := range []string{
		ata, "HGST HUS726060ALA640", "6.00 TB (6,001,175,126,016 bytes)", "hard disk, 7200 rpm",
		"PASSED", "43,177 hours", "29 °C", "Reallocated sectors (ATA 5)", "1,040",
		"Command timeouts (ATA 188)                   not reported", "smartctl exit        0 (no problem found)",
		nvme, "FAILED: the drive itself predicts its failure", "0x04 (reliability degraded by media or internal errors)",
		"2,137", "98 %", "NVM subsystem reliability has been degraded",
		sas, "WD WD4001FYYG-01SL3", "Grown defects (SCSI)", "195", "Non-medium errors (SCSI)", "332",
		"37 °C (drive's limits: critical at 69 °C)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// The JSON contract for scripts: one array, one object per file, with the
// keys the issue names, absent when unknown.
func TestDriveInspectJSON(t *testing.T) {
	files := []string{
		capture(t, "json/plasma-disks/failing-sectors-passing-status.json"),
		capture(t, "json/beszel/nvme0.json"),
		capture(t, "json/libblockdev/SEAGATE_ST600MP0036.json"),
		capture(t, "text/pve-storage/disk_tests/hdd_smart/sda_health"),
	}
	status, out, errOut := runDriveCmd(t, append([]string{"inspect", "--json"}, files...)...)
	if status != 0 || errOut != "" {
		t.Fatalf("status %d, stderr %q", status, errOut)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if len(got) != len(files) {
		t.Fatalf("%d objects for %d files", len(got), len(files))
	}
	for i, obj := range got {
		if obj["file"] != files[i] {
			t.Errorf("object %d is for %v, want %s (order of the arguments)", i, obj["file"], files[i])
		}
	}
	ata, nvme, sas, healthOnly := got[0], got[1], got[2], got[3]
	for _, key := range []string{"protocol", "model", "serial", "firmware", "capacity_bytes", "smart_passed", "power_on_hours", "temperature_c", "counters"} {
		for name, obj := range map[string]map[string]any{"ata": ata, "nvme": nvme, "sas": sas} {
			if _, ok := obj[key]; !ok {
				t.Errorf("%s: key %q missing", name, key)
			}
		}
	}
	counters := func(obj map[string]any) map[string]any { return obj["counters"].(map[string]any) }
	wantCounters := map[string]map[string]float64{
		"ata":  {"reallocated_sectors": 8, "pending_sectors": 1640, "offline_uncorrectable": 1640, "reported_uncorrectable": 89, "command_timeouts": 5, "udma_crc_errors": 0},
		"nvme": {"critical_warning": 0, "media_errors": 0, "percentage_used": 0, "available_spare": 100, "available_spare_threshold": 32},
		"sas":  {"grown_defects": 0, "uncorrected_errors": 0},
	}
	for name, obj := range map[string]map[string]any{"ata": ata, "nvme": nvme, "sas": sas} {
		c := counters(obj)
		for k, v := range wantCounters[name] {
			if c[k] != v {
				t.Errorf("%s: counters.%s = %v, want %v", name, k, c[k], v)
			}
		}
		if name != "nvme" && c["media_errors"] != nil {
			t.Errorf("%s: media_errors present for a drive that does not report it", name)
		}
	}
	if ata["smart_passed"] != true || ata["protocol"] != string(hal.ProtocolATA) || ata["smartctl_exit_status"] != 192.0 {
		t.Errorf("ata object: %v", ata)
	}
	// `smartctl -H` alone: smart_passed, and no absent value as a zero.
	for _, key := range []string{"protocol", "model", "power_on_hours", "temperature_c", "capacity_bytes", "time"} {
		if _, ok := healthOnly[key]; ok {
			t.Errorf("-H only: key %q present", key)
		}
	}
	if healthOnly["smart_passed"] != true || len(counters(healthOnly)) != 0 {
		t.Errorf("-H only: %v", healthOnly)
	}
}

// A file that cannot be read is named on stderr; the others are printed;
// the exit status is 1.
func TestDriveInspectBadFiles(t *testing.T) {
	dir := t.TempDir()
	notSmart := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notSmart, []byte("shopping list\neggs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := capture(t, "json/libblockdev/TOSHIBA_AL15SEB120NY.json")
	bad := map[string]string{
		capture(t, "json-edge/libblockdev/04_malformed.json"):               "malformed JSON at byte offset 485 (line 29, column 3)",
		capture(t, "json-edge/libblockdev/05_empty.json"):                   "empty input",
		capture(t, "json-edge/libblockdev/01_old_ver.json"):                 "json_format_version 0.0",
		capture(t, "json/beszel/scan.json"):                                 "smartctl --scan output",
		capture(t, "json/datadog-smartctl/smartctl-output-error-perm.json"): "Permission denied",
		filepath.Join(dir, "missing.json"):                                  "no such file or directory",
		notSmart:                                                            "not smartctl output",
	}
	for _, asJSON := range []bool{false, true} {
		args := []string{"inspect"}
		if asJSON {
			args = append(args, "--json")
		}
		args = append(args, good)
		for f := range bad {
			args = append(args, f)
		}
		status, out, errOut := runDriveCmd(t, args...)
		if status != 1 {
			t.Errorf("json=%v: status %d, want 1", asJSON, status)
		}
		if !strings.Contains(out, "TOSHIBA AL15SEB120NY") {
			t.Errorf("json=%v: the good file was not printed:\n%s", asJSON, out)
		}
		for f, why := range bad {
			line := "dcagent drive inspect: " + f + ": "
			if !strings.Contains(errOut, line) || !strings.Contains(errOut, why) {
				t.Errorf("json=%v: stderr does not name %s with %q:\n%s", asJSON, f, why, errOut)
			}
		}
		if asJSON {
			var arr []map[string]any
			if err := json.Unmarshal([]byte(out), &arr); err != nil || len(arr) != 1 {
				t.Errorf("JSON output with failures: %v, %d objects", err, len(arr))
			}
		}
	}
}

func TestDriveInspectUsage(t *testing.T) {
	if st, _, errOut := runDriveCmd(t); st != 2 || !strings.Contains(errOut, "usage: dcagent drive inspect") {
		t.Errorf("no subcommand: %d %q", st, errOut)
	}
	if st, _, errOut := runDriveCmd(t, "inspect"); st != 2 || !strings.Contains(errOut, "no FILE given") {
		t.Errorf("no files: %d %q", st, errOut)
	}
	if st, _, _ := runDriveCmd(t, "inspect", "--bogus", "x"); st != 2 {
		t.Errorf("bad flag: %d", st)
	}
	if st, out, _ := runDriveCmd(t, "--help"); st != 0 || !strings.Contains(out, "--json") {
		t.Errorf("help: %d %q", st, out)
	}
	// Flags after the files, and "--" before a file whose name starts with '-'.
	f := capture(t, "json/beszel/nvme0.json")
	st, out, _ := runDriveCmd(t, "inspect", f, "--json")
	if st != 0 || !strings.HasPrefix(out, "[") {
		t.Errorf("flag after file: %d %q", st, out)
	}
	dir := t.TempDir()
	dash := filepath.Join(dir, "-x.json")
	data, _ := os.ReadFile(f)
	if err := os.WriteFile(dash, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if st, out, errOut := runDriveCmd(t, "inspect", "--json", "--", "-x.json"); st != 0 || !strings.Contains(out, "PELADN") {
		t.Errorf("-- then -x.json: %d %q %q", st, out, errOut)
	}
}

// Extra sections (the lead adds the risk from agent/predict) land in both
// renderings without disturbing the snapshot's keys.
func TestDriveReportExtraSections(t *testing.T) {
	s := &hal.DriveSnapshot{Protocol: hal.ProtocolATA, Model: "M", Counters: hal.Counters{PendingSectors: hal.U64(3)}}
	r := inspectReport("f.json", s, predict.Assess(*s))
	b, err := driveJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	risk, _ := obj["risk"].(map[string]any)
	reasons, _ := risk["reasons"].([]any)
	if obj["model"] != "M" || obj["file"] != "f.json" || risk["level"] == "ok" || len(reasons) == 0 {
		t.Errorf("object %s", b)
	}
	if _, ok := obj["time"]; ok {
		t.Errorf("zero time printed: %s", b)
	}
	var text bytes.Buffer
	writeDriveText(&text, r)
	if !strings.Contains(text.String(), "Risk: "+risk["level"].(string)+"\n    "+reasons[0].(string)) {
		t.Errorf("text:\n%s", text.String())
	}
}

// The risk of a capture with failing counters is printed with its reasons,
// and a healthy drive says it is at ok.
func TestDriveInspectRisk(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	failing := filepath.Join(dir, "smart/json/libblockdev/HGST_HUS726060ALA640.json")
	healthy := filepath.Join(dir, "smart/json/libblockdev/HGST_HMS5C4040BLE640.json")
	status, out, errOut := runDriveCmd(t, "inspect", "--json", failing, healthy)
	if status != 0 {
		t.Fatalf("status %d: %s", status, errOut)
	}
	var objs []struct {
		Serial string
		Risk   struct {
			Level   string   `json:"level"`
			Reasons []string `json:"reasons"`
		} `json:"risk"`
	}
	if err := json.Unmarshal([]byte(out), &objs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(objs) != 2 {
		t.Fatalf("%d objects", len(objs))
	}
	if objs[0].Risk.Level != "fail" || !strings.Contains(strings.Join(objs[0].Risk.Reasons, "|"), "pending") {
		t.Errorf("failing drive: %+v", objs[0].Risk)
	}
	if objs[1].Risk.Level != "ok" {
		t.Errorf("healthy drive: %+v", objs[1].Risk)
	}
	_, text, _ := runDriveCmd(t, "inspect", failing)
	if !strings.Contains(text, "Risk: fail") {
		t.Errorf("text output has no risk:\n%s", text)
	}
}

func TestHumanNumbers(t *testing.T) {
	for in, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", 18446744073709551615: "18,446,744,073,709,551,615"} {
		if got := groupDigits(in); got != want {
			t.Errorf("groupDigits(%d) = %q", in, got)
		}
	}
	for in, want := range map[uint64]string{512: "512 bytes", 6001175126016: "6.00 TB", 500107862016: "500.11 GB"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q", in, got)
		}
	}
	if got := criticalWarningWords(0x0c); got != "0x0c (reliability degraded by media or internal errors; media placed in read-only mode)" {
		t.Errorf("criticalWarningWords(0x0c) = %q", got)
	}
}

// A FIFO with no writer, a directory or a device is refused at once, by
// name; the regular files given with it are still printed.
func TestDriveInspectRefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "capture.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	good := capture(t, "json/libblockdev/TOSHIBA_AL15SEB120NY.json")
	type result struct {
		status      int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		st, out, errOut := runDriveCmd(t, "inspect", fifo, dir, "/dev/zero", good)
		done <- result{st, out, errOut}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		// Give the blocked open a writer so the goroutine ends.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("drive inspect blocked on a FIFO with no writer")
	}
	if r.status != 1 || !strings.Contains(r.out, "TOSHIBA AL15SEB120NY") {
		t.Errorf("status %d, stdout:\n%s", r.status, r.out)
	}
	for _, want := range []string{
		"dcagent drive inspect: " + fifo + ": a named pipe (FIFO), not a regular file",
		"dcagent drive inspect: " + dir + ": a directory, not a regular file",
		"dcagent drive inspect: /dev/zero: a character device, not a regular file",
	} {
		if !strings.Contains(r.errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.errOut)
		}
	}
}

// writeCapture saves a real capture with some of its keys replaced.
func writeCapture(t *testing.T, rel string, edit func(map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(capture(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "edited.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A 10 MB model name, a terminal escape in the serial number and values no
// drive can have: the plain words stay short, printable, and say plainly
// what cannot be right.
func TestDriveInspectHostileValues(t *testing.T) {
	huge := strings.Repeat("M", 10<<20)
	p := writeCapture(t, "json/libblockdev/HGST_HUS726060ALA640.json", func(d map[string]any) {
		d["model_name"] = huge
		d["serial_number"] = "NCGTEK\x1b[2J\x1b]0;owned\x07"
		d["temperature"] = map[string]any{"current": 250}
		d["power_on_time"] = map[string]any{"hours": 5_000_000}
		d["smartctl"].(map[string]any)["messages"] = []any{map[string]any{"string": strings.Repeat("w", 1<<20), "severity": "warning"}}
	})
	status, out, errOut := runDriveCmd(t, "inspect", p)
	if status != 0 || errOut != "" {
		t.Fatalf("status %d, stderr %q", status, errOut)
	}
	if len(out) > 8000 {
		t.Errorf("output is %d bytes long", len(out))
	}
	for _, want := range []string{
		"Drive                " + strings.Repeat("M", maxShownBytes) + "… [" + strconv.Itoa(len(huge)-maxShownBytes) + " more bytes cut]",
		`NCGTEK\x1b[2J\x1b]0;owned\x07`,
		"250 °C (IMPLAUSIBLE: no drive runs below -60 °C or above 200 °C",
		"5,000,000 hours (570.4 years) (IMPLAUSIBLE: no drive has run that long)",
		"more bytes cut]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%.3000s", want, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("a control character reached the output: %q", out)
	}

	// The lower bound, and a plausible value has no warning.
	for temp, warn := range map[float64]bool{-61: true, -60: false, 45: false, 200: false, 201: true} {
		p := writeCapture(t, "json/libblockdev/HGST_HUS726060ALA640.json", func(d map[string]any) {
			d["temperature"] = map[string]any{"current": temp}
		})
		_, out, _ := runDriveCmd(t, "inspect", p)
		if strings.Contains(out, "IMPLAUSIBLE") != warn || !strings.Contains(out, fmt.Sprintf("%g °C", temp)) {
			t.Errorf("%g °C: warning %v wanted:\n%s", temp, warn, out)
		}
	}
}
