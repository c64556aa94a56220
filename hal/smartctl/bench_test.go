package smartctl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dcagent/dcagent/internal/testenv"
)

func benchParse(b *testing.B, capture string) {
	data, err := os.ReadFile(filepath.Join(testenv.SharedTestdata(b), "smart", capture))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// A typical `smartctl --json -a` of an ATA disk (12 KB).
func BenchmarkParseJSONATA(b *testing.B) {
	benchParse(b, "json/libblockdev/HGST_HUS726060ALA640.json")
}

// `smartctl --json -x` with every log (40 KB), the largest JSON capture.
func BenchmarkParseJSONATAExtended(b *testing.B) {
	benchParse(b, "json/datadog-smartctl/smartctl-output-wd-red.json")
}

func BenchmarkParseJSONNVMe(b *testing.B) {
	benchParse(b, "json/beszel/nvme0.json")
}

func BenchmarkParseJSONSCSI(b *testing.B) {
	benchParse(b, "json/telegraf/testcases_device/scsi_extended/response.json")
}

// `smartctl --all` text of an ATA disk (93 lines).
func BenchmarkParseTextATA(b *testing.B) {
	benchParse(b, "text/py-SMART/sata_hdd_1_issue46/_-d_ata_--all__dev_sdau")
}

// `smartctl -x` text with every log (316 lines).
func BenchmarkParseTextATAExtended(b *testing.B) {
	benchParse(b, "text/linuxhw-EnterpriseDrive/HDD/WDC/WD4000/WD4000FYYZ-01UL1B0/3D8DF1DAF458")
}

func BenchmarkParseTextSCSI(b *testing.B) {
	benchParse(b, "text/zbx-smartctl/tests/examples/sas_hdd_seagate.txt")
}
