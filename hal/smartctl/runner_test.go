package smartctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/testenv"
)

// standIn writes a stand-in smartctl into a temporary directory: a shell
// script that records its arguments, prints a real capture and exits with
// the given status, as the real program does. It returns the script's path
// and the file its arguments are appended to.
func standIn(t *testing.T, capture string, status int) (program, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" >> '%s'\n", argsFile)
	if capture != "" {
		script += fmt.Sprintf("cat '%s'\n", filepath.Join(testenv.SharedTestdata(t), "smart", capture))
	}
	script += fmt.Sprintf("exit %d\n", status)
	return writeScript(t, dir, script), argsFile
}

func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "smartctl")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readArgs(t *testing.T, argsFile string) []string {
	t.Helper()
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestRunnerReadArgsAndData(t *testing.T) {
	prog, args := standIn(t, "json/telegraf/testcases_device/megaraid/response.json", 4)
	r := &Runner{Program: prog, Timeout: 20 * time.Second}
	s, err := r.Read(context.Background(), DriveSpec{Device: "/dev/bus/6", Type: "megaraid,14"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readArgs(t, args); len(got) != 1 || got[0] != "--json=c -a -d megaraid,14 /dev/bus/6" {
		t.Errorf("smartctl ran with %q", got)
	}
	if s.Source != "/dev/bus/6:megaraid,14" || s.Model != "ST6000NM0115-1YZ110" {
		t.Errorf("snapshot %+v", s)
	}
	if s.ExitStatus == nil || *s.ExitStatus != 4 {
		t.Errorf("exit status %v, want 4", s.ExitStatus)
	}

	// Without a type, no -d.
	prog, args = standIn(t, "json/libblockdev/HGST_HUS726060ALA640.json", 0)
	r.Program = prog
	if _, err := r.Read(context.Background(), DriveSpec{Device: "/dev/sdd"}); err != nil {
		t.Fatal(err)
	}
	if got := readArgs(t, args); got[0] != "--json=c -a /dev/sdd" {
		t.Errorf("smartctl ran with %q", got)
	}
}

// Bits 2 to 7 come with a full report: the snapshot keeps the bit and the data.
func TestRunnerExitBitsWithData(t *testing.T) {
	for bit := 2; bit < 8; bit++ {
		t.Run(fmt.Sprintf("bit%d", bit), func(t *testing.T) {
			prog, _ := standIn(t, "json/libblockdev/HGST_HUS726060ALA640.json", 1<<bit)
			s, err := (&Runner{Program: prog}).Read(context.Background(), DriveSpec{Device: "/dev/sdd"})
			if err != nil {
				t.Fatal(err)
			}
			es, ok := SnapshotExitStatus(s.ExitStatus)
			if !ok || es != ExitStatus(1<<bit) {
				t.Fatalf("exit status %v, want %d", s.ExitStatus, 1<<bit)
			}
			if es.RunFailed() || (bit >= 3) != es.DiskProblem() {
				t.Errorf("bit %d: RunFailed %v DiskProblem %v", bit, es.RunFailed(), es.DiskProblem())
			}
			if s.Counters.PendingSectors == nil || *s.Counters.PendingSectors != 878 {
				t.Errorf("data lost: %+v", s.Counters)
			}
			// The process's status wins over the capture's "exit_status": 0, noted.
			if !hasMessage(s.Messages, "the process exited with") {
				t.Errorf("mismatch not noted: %q", s.Messages)
			}
		})
	}
}

// Bits 0 and 1 with no device data: a clear error naming the device.
func TestRunnerExitBitsNoData(t *testing.T) {
	for _, c := range []struct {
		capture string
		status  int
		want    string
	}{
		{"json/plasma-disks/invalid-cmdline-bad-usb-bridge.json", 1, "Unknown USB bridge"},
		{"json/datadog-smartctl/smartctl-output-error-perm.json", 2, "Permission denied"},
	} {
		prog, _ := standIn(t, c.capture, c.status)
		_, err := (&Runner{Program: prog}).Read(context.Background(), DriveSpec{Device: "/dev/sdb", Type: "sat"})
		var nd *NoDataError
		if !errors.As(err, &nd) || !errors.Is(err, ErrNoDeviceData) {
			t.Fatalf("exit %d: want NoDataError, got %v", c.status, err)
		}
		if nd.ExitStatus == nil || int(*nd.ExitStatus) != c.status {
			t.Errorf("exit %d: NoDataError.ExitStatus = %v", c.status, nd.ExitStatus)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "smartctl /dev/sdb:sat: ") || !strings.Contains(msg, c.want) {
			t.Errorf("exit %d: error %q does not name the device or say %q", c.status, msg, c.want)
		}
	}
	// Bits 0-2 set but a full report printed (libblockdev's 02_exit_err): data.
	prog, _ := standIn(t, "json-edge/libblockdev/02_exit_err.json", 7)
	s, err := (&Runner{Program: prog}).Read(context.Background(), DriveSpec{Device: "/dev/sda"})
	if err != nil || s.ExitStatus == nil || *s.ExitStatus != 7 || s.Model != "TOSHIBA THNSNH128GBST" {
		t.Errorf("exit 7 with data: %+v, %v", s, err)
	}
}

// Nothing on stdout, the reason on stderr.
func TestRunnerStderrOnly(t *testing.T) {
	dir := t.TempDir()
	prog := writeScript(t, dir, "#!/bin/sh\necho 'smartctl: /dev/sdq: Permission denied' >&2\nexit 2\n")
	_, err := (&Runner{Program: prog}).Read(context.Background(), DriveSpec{Device: "/dev/sdq"})
	if !errors.Is(err, ErrNoDeviceData) || !strings.Contains(err.Error(), "Permission denied") || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("got %v", err)
	}
}

func TestRunnerTimeoutKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	childFile := filepath.Join(dir, "child")
	// A wrapper whose child holds stdout open: the kill must reach it.
	prog := writeScript(t, dir, fmt.Sprintf("#!/bin/sh\nsleep 120 &\necho $! > '%s'\nwait\n", childFile))
	r := &Runner{Program: prog, Timeout: 300 * time.Millisecond}
	_, err := r.Read(context.Background(), DriveSpec{Device: "/dev/sda"})
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") || !strings.Contains(err.Error(), "/dev/sda") {
		t.Fatalf("want a timeout error naming the device, got %v", err)
	}
	b, err := os.ReadFile(childFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	deadline := time.Now().Add(15 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in's child %d outlived the timeout", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive reports whether pid runs (a zombie waiting to be reaped
// does not count).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func TestRunnerContextCancelled(t *testing.T) {
	dir := t.TempDir()
	prog := writeScript(t, dir, "#!/bin/sh\nexec sleep 120\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err := (&Runner{Program: prog}).Read(ctx, DriveSpec{Device: "/dev/sda"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("want context.Canceled, got %v", err)
	}
}

func TestRunnerMissingProgram(t *testing.T) {
	for _, prog := range []string{filepath.Join(t.TempDir(), "no-smartctl-here"), "dcagent-test-no-such-smartctl"} {
		_, err := (&Runner{Program: prog}).Read(context.Background(), DriveSpec{Device: "/dev/sda"})
		if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), prog) || !strings.Contains(err.Error(), "smartmontools") {
			t.Errorf("%s: got %v", prog, err)
		}
	}
	// A file that is not executable.
	p := filepath.Join(t.TempDir(), "smartctl")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Runner{Program: p}).Read(context.Background(), DriveSpec{Device: "/dev/sda"}); err == nil || !strings.Contains(err.Error(), "could not run") {
		t.Errorf("non-executable program: %v", err)
	}
}

// smartctl before 7.0 has no --json: the runner asks again for text.
func TestRunnerOldSmartctlFallsBackToText(t *testing.T) {
	dir := t.TempDir()
	capture := filepath.Join(testenv.SharedTestdata(t), "smart", "text/zbx-smartctl/tests/examples/sas_hdd_wd.txt")
	argsFile := filepath.Join(dir, "args")
	prog := writeScript(t, dir, fmt.Sprintf(`#!/bin/sh
echo "$@" >> '%s'
case "$1" in
--json*) echo "smartctl 6.5 2016-05-07 r4318 [x86_64-linux] (local build)"; echo "=======> UNRECOGNIZED OPTION: json=c"; exit 1;;
esac
cat '%s'
exit 0
`, argsFile, capture))
	s, err := (&Runner{Program: prog}).Read(context.Background(), DriveSpec{Device: "/dev/sg2", Type: "scsi"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readArgs(t, argsFile); len(got) != 2 || got[1] != "-a -d scsi /dev/sg2" {
		t.Errorf("runs: %q", got)
	}
	if s.Counters.GrownDefects == nil || *s.Counters.GrownDefects != 195 || s.ExitStatus == nil || *s.ExitStatus != 0 {
		t.Errorf("snapshot %+v", s)
	}
}

func TestRunnerScan(t *testing.T) {
	prog, args := standIn(t, "json/telegraf/testcases_scan/megaraid/response.json", 0)
	devs, err := (&Runner{Program: prog}).Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 10 || devs[9] != (DriveSpec{Device: "/dev/bus/6", Type: "megaraid,14"}) {
		t.Errorf("scan: %v", devs)
	}
	if got := readArgs(t, args); got[0] != "--scan --json=c" {
		t.Errorf("ran %q", got)
	}

	// Text form, and Drives preferring configured entries.
	dir := t.TempDir()
	prog = writeScript(t, dir, "#!/bin/sh\necho '/dev/sda -d scsi # /dev/sda, SCSI device'\necho '/dev/nvme0 -d nvme # /dev/nvme0, NVMe device'\n")
	r := &Runner{Program: prog}
	devs, err = r.Drives(context.Background(), nil)
	if err != nil || len(devs) != 2 || devs[1].Type != "nvme" {
		t.Errorf("text scan: %v, %v", devs, err)
	}
	devs, err = r.Drives(context.Background(), []string{"/dev/sdx:sat"})
	if err != nil || len(devs) != 1 || devs[0] != (DriveSpec{"/dev/sdx", "sat"}) {
		t.Errorf("configured: %v, %v", devs, err)
	}

	// A device report is not scan output.
	prog, _ = standIn(t, "json/beszel/nvme0.json", 0)
	if _, err := (&Runner{Program: prog}).Scan(context.Background()); !errors.Is(err, ErrNotSmartctl) {
		t.Errorf("device report as scan: %v", err)
	}
}

func TestParseDriveSpec(t *testing.T) {
	for in, want := range map[string]DriveSpec{
		"/dev/sda":                                  {"/dev/sda", ""},
		"/dev/sda:sat":                              {"/dev/sda", "sat"},
		" /dev/bus/0:megaraid,14 ":                  {"/dev/bus/0", "megaraid,14"},
		"/dev/sdb:sat+megaraid,0":                   {"/dev/sdb", "sat+megaraid,0"},
		"/dev/nvme0:nvme,0xffffffff":                {"/dev/nvme0", "nvme,0xffffffff"},
		"IOService:/AppleARMPE/arm-io@10F00000/ans": {"IOService:/AppleARMPE/arm-io@10F00000/ans", ""},
	} {
		got, err := ParseDriveSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseDriveSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if err == nil {
			if back, _ := ParseDriveSpec(got.String()); back != got {
				t.Errorf("%q does not round-trip: %q", in, got.String())
			}
		}
	}
	for _, bad := range []string{"", ":sat", "/dev/sda:", "-a:sat", "/dev/sda:sat x"} {
		if _, err := ParseDriveSpec(bad); err == nil {
			t.Errorf("ParseDriveSpec(%q) accepted", bad)
		}
	}
	if _, err := ParseDriveSpecs([]string{"/dev/sda", ""}); err == nil || !strings.Contains(err.Error(), "empty drive entry") {
		t.Errorf("ParseDriveSpecs: %v", err)
	}
}

// The real smartctl (Debian smartmontools, installed by scripts/deps.sh)
// accepts the runner's arguments: a missing device gives exit status 2
// with its message, not bit 0, and --scan --json runs.
func TestRealSmartctl(t *testing.T) {
	r := &Runner{Program: "smartctl", Timeout: 30 * time.Second}
	_, err := r.Read(context.Background(), DriveSpec{Device: "/dev/dcagent-no-such-disk", Type: "sat"})
	var nd *NoDataError
	if !errors.As(err, &nd) {
		t.Fatalf("want NoDataError from the real smartctl, got %v", err)
	}
	if nd.ExitStatus == nil || nd.ExitStatus.CommandLineError() || !nd.ExitStatus.DeviceOpenFailed() {
		t.Errorf("exit status %v: smartctl did not accept the arguments or did open something", nd.ExitStatus)
	}
	if !strings.Contains(err.Error(), "/dev/dcagent-no-such-disk") {
		t.Errorf("error does not name the device: %v", err)
	}
	if _, err := r.Scan(context.Background()); err != nil {
		t.Errorf("smartctl --scan: %v", err)
	}
}

func TestParseScanEmpty(t *testing.T) {
	// smartctl 7.3 with no drives: no "devices" key at all.
	devs, err := ParseScan([]byte(`{"json_format_version":[1,0],"smartctl":{"version":[7,3],"argv":["smartctl","--scan","--json=c"],"exit_status":0}}`))
	if err != nil || len(devs) != 0 {
		t.Errorf("empty scan: %v, %v", devs, err)
	}
	if devs, err := ParseScan(nil); err != nil || devs != nil {
		t.Errorf("no output: %v, %v", devs, err)
	}
}

// A stand-in that floods stdout (50 MB, as a reviewer's did) is stopped
// once it passes the limit: the runner never holds more than the limit,
// says clearly what happened and does not wait for the flood to end.
func TestRunnerStdoutFloodStopped(t *testing.T) {
	dir := t.TempDir()
	prog := writeScript(t, dir, "#!/bin/sh\nhead -c 50000000 /dev/zero | tr '\\0' 'x'\nsleep 60\n")
	r := &Runner{Program: prog, Timeout: 50 * time.Second}
	for name, call := range map[string]func() error{
		"read": func() error { _, err := r.Read(context.Background(), DriveSpec{Device: "/dev/sda"}); return err },
		"scan": func() error { _, err := r.Scan(context.Background()); return err },
	} {
		began := time.Now()
		err := call()
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d bytes on stdout", maxOutput)) || !strings.Contains(err.Error(), "stopped") {
			t.Fatalf("%s: want a too-much-output error, got %v", name, err)
		}
		if len(err.Error()) > 1000 {
			t.Errorf("%s: error is %d bytes long", name, len(err.Error()))
		}
		// The kill, not the timeout, ended the run.
		if strings.Contains(err.Error(), "no answer within") || time.Since(began) > 45*time.Second {
			t.Errorf("%s: the run was not stopped at the limit: %v after %s", name, err, time.Since(began))
		}
	}
}

// The buffer itself keeps at most its limit, whatever is written and
// however it is copied in (os/exec uses io.Copy, which must go through
// Write and not a ReadFrom of an embedded bytes.Buffer).
func TestCappedBufferBounded(t *testing.T) {
	if _, ok := any(&cappedBuffer{}).(io.ReaderFrom); ok {
		t.Fatal("cappedBuffer has a ReadFrom: io.Copy would bypass its limit")
	}
	stopped := 0
	b := &cappedBuffer{keep: 1000, stopAfter: 5000, stop: func() { stopped++ }}
	n, err := io.Copy(b, io.LimitReader(zeroReader{}, 50_000_000))
	if !errors.Is(err, errTooMuchOutput) || n > 5000+32<<10 {
		t.Errorf("copy: %d bytes, %v", n, err)
	}
	if len(b.buf) != 1000 || cap(b.buf) > 1000 || stopped != 1 || !b.stopped {
		t.Errorf("kept %d bytes (cap %d), stop called %d times", len(b.buf), cap(b.buf), stopped)
	}
	// Under the stop limit, the rest is counted and dropped.
	b = &cappedBuffer{keep: 10, stopAfter: 1 << 20, stop: func() { t.Error("stopped") }}
	if n, err := io.Copy(b, strings.NewReader(strings.Repeat("y", 100_000))); err != nil || n != 100_000 {
		t.Errorf("copy: %d, %v", n, err)
	}
	if string(b.buf) != "yyyyyyyyyy" || cap(b.buf) > 10 || b.total != 100_000 {
		t.Errorf("kept %q (cap %d), total %d", b.buf, cap(b.buf), b.total)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A flood on stderr then exit 2 (a reviewer's 30 MB): the error holds a
// short, printable excerpt, not the flood.
func TestRunnerStderrFlood(t *testing.T) {
	dir := t.TempDir()
	// Starts with a terminal escape and a carriage return; a long line.
	prog := writeScript(t, dir, "#!/bin/sh\nprintf '\\033[2Jsmartctl: /dev/sdq: Permission denied\\r\\n' >&2\nhead -c 30000000 /dev/zero | tr '\\0' 'e' >&2\nexit 2\n")
	_, err := (&Runner{Program: prog, Timeout: 50 * time.Second}).Read(context.Background(), DriveSpec{Device: "/dev/sdq"})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if len(msg) > 1000 {
		t.Fatalf("error is %d bytes long", len(msg))
	}
	if !strings.Contains(msg, `\x1b[2Jsmartctl: /dev/sdq: Permission denied\r`) || strings.ContainsAny(msg, "\x1b\r\n") {
		t.Errorf("control characters not made visible: %q", msg)
	}
	if !strings.Contains(msg, fmt.Sprintf("more than %d bytes on stderr", maxStderr)) || !strings.Contains(msg, "/dev/sdq") {
		t.Errorf("error does not say what happened: %q", msg)
	}

	// Less than the stop limit: exit 2 and its message, the rest dropped
	// and said so.
	prog = writeScript(t, dir, "#!/bin/sh\necho 'smartctl: /dev/sdq: Permission denied' >&2\nhead -c 300000 /dev/zero | tr '\\0' 'e' >&2\nexit 2\n")
	_, err = (&Runner{Program: prog, Timeout: 50 * time.Second}).Read(context.Background(), DriveSpec{Device: "/dev/sdq"})
	var nd *NoDataError
	if !errors.As(err, &nd) || nd.ExitStatus == nil || *nd.ExitStatus != 2 {
		t.Fatalf("want NoDataError with exit 2, got %v", err)
	}
	msg = err.Error()
	if len(msg) > 2000 || !strings.Contains(msg, "Permission denied") || !strings.Contains(msg, "printed 300038 bytes on stderr; only the first 512 are kept") || !strings.Contains(msg, "more bytes cut]") {
		t.Errorf("%d bytes: %q", len(msg), msg)
	}
}

// smartctl's own messages in a report can be anything: the error quoting
// them stays short and printable.
func TestNoDataErrorBounded(t *testing.T) {
	msgs := []string{strings.Repeat("m", 10<<20), "\x1b]0;owned\x07"}
	for range 100 {
		msgs = append(msgs, "another")
	}
	msg := (&NoDataError{Messages: msgs}).Error()
	if len(msg) > 2000 || !strings.Contains(msg, `\x1b]0;owned\x07`) || !strings.Contains(msg, "(94 more messages)") || !strings.Contains(msg, "more bytes cut]") {
		t.Errorf("%d bytes: %.500q", len(msg), msg)
	}
	devs := make([]DriveSpec, 1000)
	for i := range devs {
		devs[i] = DriveSpec{Device: strings.Repeat("d", 1000)}
	}
	if msg := (&ScanOutputError{Devices: devs}).Error(); len(msg) > 6000 || !strings.Contains(msg, "1000 device(s)") || !strings.Contains(msg, "and 968 more") {
		t.Errorf("%d bytes: %.500q", len(msg), msg)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain ascii":          "plain ascii",
		"Temp 40 °C":           "Temp 40 °C",
		"a\x1b[31mred\r\n\x00": `a\x1b[31mred\r\n\x00`,
		"bad \xff utf8":        `bad \xff utf8`,
		"c1 \u0085 next":       `c1 \x85 next`,
		"sep \u2028":           `sep \u2028`,
	} {
		if got := Printable(in, 0); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
	// Clipped on a rune boundary, with a marker.
	if got := Printable("ab°cd", 3); got != "ab… [4 more bytes cut]" {
		t.Errorf("clip: %q", got)
	}
	if got := Printable(strings.Repeat("x", 10<<20), MaxMessageBytes); len(got) > MaxMessageBytes+40 {
		t.Errorf("clip: %d bytes", len(got))
	}
}

// A SAS drive's link errors come from its phy log, read with a second
// smartctl call because -a leaves it out; an ATA drive gets no such call.
func TestRunnerReadsSASPhyLog(t *testing.T) {
	dir := t.TempDir()
	capture := filepath.Join(testenv.SharedTestdata(t), "smart", "json", "libblockdev", "SEAGATE_ST600MP0036.json")
	phy := filepath.Join(dir, "phy.json")
	os.WriteFile(phy, []byte(`{"json_format_version":[1,0],"smartctl":{"exit_status":0},
	  "scsi_sas_port_1":{"phy_0":{"invalid_dword_count":7,"loss_of_dword_synchronization_count":2,"phy_reset_problem_count":1}}}`), 0o644)
	args := filepath.Join(dir, "args")
	prog := writeScript(t, dir, fmt.Sprintf("#!/bin/sh\necho \"$@\" >> '%s'\ncase \"$*\" in *sasphy*) cat '%s';; *) cat '%s';; esac\n", args, phy, capture))
	r := &Runner{Program: prog, Timeout: 20 * time.Second}
	s, err := r.Read(context.Background(), DriveSpec{Device: "/dev/sdb", Type: "scsi"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Counters.LinkErrors == nil || *s.Counters.LinkErrors != 10 {
		t.Fatalf("link errors %v", s.Counters.LinkErrors)
	}
	calls, _ := os.ReadFile(args)
	if !strings.Contains(string(calls), "--json=c -l sasphy -d scsi /dev/sdb") {
		t.Errorf("calls:\n%s", calls)
	}

	ata, argsATA := standIn(t, "json/libblockdev/HGST_HMS5C4040BLE640.json", 0)
	r = &Runner{Program: ata, Timeout: 20 * time.Second}
	if _, err := r.Read(context.Background(), DriveSpec{Device: "/dev/sda"}); err != nil {
		t.Fatal(err)
	}
	if calls, _ := os.ReadFile(argsATA); strings.Contains(string(calls), "sasphy") {
		t.Errorf("an ATA drive got a phy log call:\n%s", calls)
	}
}
