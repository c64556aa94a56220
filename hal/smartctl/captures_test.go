package smartctl

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/internal/testenv"
)

// captureExpectation is what a capture that does not describe a drive must
// give instead of a snapshot.
type captureExpectation struct {
	err  error    // errors.Is target
	want []string // substrings of the error text
	exit *ExitStatus
}

func exitPtr(e ExitStatus) *ExitStatus { return &e }

// notDeviceReports lists every capture under ../shared/testdata/smart that
// must fail, and how. Every other capture must parse.
var notDeviceReports = map[string]captureExpectation{
	"json/beszel/scan.json":                               {err: ErrScanOutput, want: []string{"2 device(s)", "/dev/sda:sat", "/dev/nvme0:nvme"}},
	"json/netdata/type-nvme/scan.json":                    {err: ErrScanOutput, want: []string{"1 device(s)", "/dev/nvme0:nvme"}},
	"json/netdata/type-sat/scan.json":                     {err: ErrScanOutput, want: []string{"2 device(s)"}},
	"json/netdata/type-scsi/scan.json":                    {err: ErrScanOutput, want: []string{"/dev/sda:scsi"}},
	"json/telegraf/testcases_scan/all/response.json":      {err: ErrScanOutput, want: []string{"3 device(s)"}},
	"json/telegraf/testcases_scan/megaraid/response.json": {err: ErrScanOutput, want: []string{"10 device(s)", "/dev/bus/6:megaraid,14"}},
	"json/datadog-smartctl/smartctl-output-error-perm.json": {
		err: ErrNoDeviceData, exit: exitPtr(2),
		want: []string{"exit status 2", "could not be opened", "Permission denied"},
	},
	"json/plasma-disks/invalid-cmdline-bad-usb-bridge.json": {
		err: ErrNoDeviceData, exit: exitPtr(1),
		want: []string{"exit status 1", "command line", "Unknown USB bridge"},
	},
	"json/plasma-disks/missing-status.json": {
		err: ErrNoDeviceData, exit: exitPtr(4),
		want: []string{"exit status 4", "Read Error Information Log failed"},
	},
	"json-edge/libblockdev/01_old_ver.json":   {err: ErrUnsupportedFormat, want: []string{"json_format_version 0.0", "major version 1"}},
	"json-edge/libblockdev/04_malformed.json": {err: ErrMalformedJSON, want: []string{"byte offset 485", "line 29, column 3"}},
	"json-edge/libblockdev/05_empty.json":     {err: ErrEmpty, want: []string{"0 bytes"}},
	// Fragments that hold only "this log is not supported" or nothing.
	"text/py-SMART/megaraid_jbod_sas_hdd_0_issue_85/_-d_scsi_-l_background__dev_sdd": {
		err: ErrNoDeviceData, want: []string{"Device does not support Background scan results logging"},
	},
	"text/py-SMART/megaraid_jbod_sas_hdd_0_issue_85/_-d_scsi_-l_sasphy__dev_sdd": {
		err: ErrNoDeviceData, want: []string{"printed no message"},
	},
	"text/py-SMART/megaraid_vd_0/_-d_scsi_-l_background__dev_sda": {
		err: ErrNoDeviceData, want: []string{"Device does not support Background scan results logging"},
	},
}

// walkCaptures returns every file under shared/testdata/smart, relative.
func walkCaptures(t testing.TB) (root string, files []string) {
	t.Helper()
	root = filepath.Join(testenv.SharedTestdata(t), "smart")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// PROVENANCE.md: 45 JSON, 5 JSON edge cases, 82 text outputs.
	if len(files) < 132 {
		t.Fatalf("found %d captures under %s, want at least 132", len(files), root)
	}
	return root, files
}

func TestEveryCapture(t *testing.T) {
	root, files := walkCaptures(t)
	seen := map[string]bool{}
	for _, rel := range files {
		seen[rel] = true
		t.Run(rel, func(t *testing.T) {
			path := filepath.Join(root, filepath.FromSlash(rel))
			s, err := ParseFile(path)
			if exp, ok := notDeviceReports[rel]; ok {
				checkExpectedError(t, path, err, exp)
				return
			}
			if err != nil {
				t.Fatalf("want a snapshot, got error: %v", err)
			}
			checkSnapshotInvariants(t, path, rel, s)
		})
	}
	for rel := range notDeviceReports {
		if !seen[rel] {
			t.Errorf("expected capture %s is missing from the shared test data", rel)
		}
	}
}

func checkExpectedError(t *testing.T, path string, err error, exp captureExpectation) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %v, got a snapshot", exp.err)
	}
	if !errors.Is(err, exp.err) {
		t.Fatalf("want errors.Is(err, %q), got %v", exp.err, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, path+": ") {
		t.Errorf("error does not start with the file name: %v", err)
	}
	for _, w := range exp.want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if exp.exit != nil {
		var nd *NoDataError
		if !errors.As(err, &nd) || nd.ExitStatus == nil || *nd.ExitStatus != *exp.exit {
			t.Errorf("want a NoDataError with exit status %d, got %#v", *exp.exit, nd)
		}
	}
}

// checkSnapshotInvariants holds for every drive report.
func checkSnapshotInvariants(t *testing.T, path, rel string, s *hal.DriveSnapshot) {
	t.Helper()
	if s.Source != path {
		t.Errorf("Source = %q, want the path", s.Source)
	}
	if !snapshotHasData(s) {
		t.Errorf("snapshot has no device data: %+v", s)
	}
	isJSON := strings.HasPrefix(rel, "json")
	if isJSON && s.ExitStatus == nil {
		t.Error("a JSON report must keep smartctl's exit status")
	}
	if !isJSON && s.ExitStatus != nil {
		t.Error("text output has no exit status; got one")
	}
	if s.Protocol == "" && rel != "text/pve-storage/disk_tests/hdd_smart/sda_health" {
		// Only `smartctl -H` of an ATA or NVMe drive says nothing about the protocol.
		t.Error("protocol not recognised")
	}
	c := s.Counters
	switch s.Protocol {
	case hal.ProtocolATA:
		if c.CriticalWarning != nil || c.MediaErrors != nil || c.GrownDefects != nil || c.NonMediumErrors != nil {
			t.Errorf("ATA drive with NVMe or SCSI counters: %+v", c)
		}
	case hal.ProtocolNVMe:
		if c.ReallocatedSectors != nil || c.GrownDefects != nil || len(s.FailingAttributes) > 0 {
			t.Errorf("NVMe drive with ATA or SCSI data: %+v", c)
		}
	case hal.ProtocolSCSI:
		if c.ReallocatedSectors != nil || c.CriticalWarning != nil || len(s.FailingAttributes) > 0 {
			t.Errorf("SCSI drive with ATA or NVMe data: %+v", c)
		}
	}
	if s.TemperatureC != nil && (*s.TemperatureC <= 0 || *s.TemperatureC > 100) {
		t.Errorf("implausible temperature %v °C", *s.TemperatureC)
	}
	if s.CapacityBytes != nil && *s.CapacityBytes < 1e9 {
		t.Errorf("implausible capacity %d bytes", *s.CapacityBytes)
	}
	for _, m := range s.Messages {
		if strings.TrimSpace(m) == "" {
			t.Error("empty message")
		}
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("snapshot does not marshal: %v", err)
	}
}

// TestSameDriveJSONAndText reads one drive saved both ways (the WD
// Ultrastar DC HC550 of py-SMART issue 46, minutes apart) and wants the
// same snapshot from each, apart from what only one form carries.
func TestSameDriveJSONAndText(t *testing.T) {
	smart := filepath.Join(testenv.SharedTestdata(t), "smart")
	j, err := ParseFile(filepath.Join(smart, "json/py-SMART/sata_hdd_1_issue46/heliumhdd.json"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := ParseFile(filepath.Join(smart, "text/py-SMART/sata_hdd_1_issue46/_-d_ata_--all__dev_sdau"))
	if err != nil {
		t.Fatal(err)
	}
	// Only the JSON has the exit status and the time; the text capture was
	// taken an hour of power-on earlier.
	j.Source, x.Source = "", ""
	j.ExitStatus, j.Time = nil, x.Time
	if *j.PowerOnHours != *x.PowerOnHours+1 {
		t.Errorf("power-on hours: JSON %d, text %d; want one hour apart", *j.PowerOnHours, *x.PowerOnHours)
	}
	j.PowerOnHours = x.PowerOnHours
	jb, _ := json.Marshal(j)
	xb, _ := json.Marshal(x)
	if string(jb) != string(xb) {
		t.Errorf("JSON and text of one drive differ:\njson: %s\ntext: %s", jb, xb)
	}
}
