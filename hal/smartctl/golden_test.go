package smartctl

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/dcagent/dcagent/internal/testenv"
)

// -update rewrites testdata/smart-golden from the parser's output. The
// values in those files were checked by hand against the captures (see
// testdata/smart-golden/README.md); after -update, check the diff the same
// way before committing it.
var update = flag.Bool("update", false, "rewrite the golden snapshots in testdata/smart-golden")

// goldenCaptures maps a golden file name to the capture it pins, relative
// to ../shared/testdata/smart.
var goldenCaptures = []struct{ name, capture string }{
	{"json-ata-hdd-hgst-hus726060ala640", "json/libblockdev/HGST_HUS726060ALA640.json"},
	{"json-ata-ssd-intel-ssdsc2bb120g4l", "json/libblockdev/INTEL_SSDSC2BB120G4L.json"},
	{"json-ata-ssd-crucial-ct240bx200-sct-temp-0", "json/datadog-smartctl/smartctl-output-ct240bx.json"},
	{"json-ata-failing-st3000dm001-exit-192", "json/plasma-disks/failing-sectors-passing-status.json"},
	{"json-sas-hdd-7.4-scsi-keys", "json/telegraf/testcases_device/scsi_extended/response.json"},
	{"json-sas-hdd-7.2-vendor-product-keys", "json/telegraf/testcases_device/scsi/response.json"},
	{"json-sas-ssd-hgst-husmr3280ass200", "json/libblockdev/HGST_HUSMR3280ASS200.json"},
	{"json-nvme-peladn-7.5", "json/beszel/nvme0.json"},
	{"text-ata-hdd-failed-wd4000fyyz-7.0", "text/linuxhw-EnterpriseDrive/HDD/WDC/WD4000/WD4000FYYZ-01UL1B0/3D8DF1DAF458"},
	{"text-ata-failed-h-only-collapsed-6.2", "text/zbx-smartctl/examples/failed-test-2.txt"},
	{"text-ata-brief-pve-6.4", "text/pve-storage/disk_tests/hdd_smart/sdb_smart"},
	{"text-ata-ssd-samsung-850-5.43", "text/zbx-smartctl/tests/examples/sata_ssd_megaraid_samsung_evo.txt"},
	{"text-nvme-failed-dell-pm1725-7.1", "text/linuxhw-EnterpriseDrive/NVMe/Dell/Express Flash NVMe PM1725/Express Flash NVMe PM1725 1.6TB AIC/23A840B7671B"},
	{"text-nvme-windows-latin1-7.3", "text/py-SMART/nvme_9_issue_72/_-d_nvme_--all__dev_sda"},
	{"text-sas-hdd-wd4001fyyg-6.5", "text/zbx-smartctl/tests/examples/sas_hdd_wd.txt"},
	{"text-sas-hdd-seagate-collapsed-6.3", "text/zbx-smartctl/tests/examples/sas_hdd_seagate.txt"},
	{"text-sas-ssd-samsung-x-7.3", "text/py-SMART/sas_ssd_0_issue_57/_-x__dev_sdb"},
	{"text-sas-headerless-pve", "text/pve-storage/disk_tests/sas/sda_smart"},
}

func TestGoldenSnapshots(t *testing.T) {
	smart := filepath.Join(testenv.SharedTestdata(t), "smart")
	goldenDir := filepath.Join(testenv.RepoRoot(t), "testdata", "smart-golden")
	for _, g := range goldenCaptures {
		t.Run(g.name, func(t *testing.T) {
			s, err := ParseFile(filepath.Join(smart, filepath.FromSlash(g.capture)))
			if err != nil {
				t.Fatal(err)
			}
			// The machine's path to the captures is not part of the result.
			s.Source = "shared/testdata/smart/" + g.capture
			got, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join(goldenDir, g.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("golden file: %v (run go test -run TestGoldenSnapshots -update, then check it by hand)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("snapshot of %s differs from %s\n--- got\n%s\n--- want\n%s", g.capture, path, got, want)
			}
		})
	}
}
