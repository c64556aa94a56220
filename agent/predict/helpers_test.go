package predict

import (
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
)

// t0 is an arbitrary fixed start for test histories.
var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func ptrBool(b bool) *bool { return &b }

// ataDrive is a healthy SATA hard drive with every ATA counter at zero.
func ataDrive(serial string) hal.DriveSnapshot {
	return hal.DriveSnapshot{
		Protocol: hal.ProtocolATA, Model: "TEST HDD 4TB", Serial: serial, Firmware: "FW1",
		CapacityBytes: hal.U64(4e12), SmartPassed: ptrBool(true), PowerOnHours: hal.U64(10000),
		TemperatureC: hal.F64(35),
		Counters: hal.Counters{
			ReallocatedSectors: hal.U64(0), PendingSectors: hal.U64(0), OfflineUncorrectable: hal.U64(0),
			ReportedUncorrectable: hal.U64(0), CommandTimeouts: hal.U64(0), UDMACRCErrors: hal.U64(0),
		},
	}
}

func nvmeDrive(serial string) hal.DriveSnapshot {
	return hal.DriveSnapshot{
		Protocol: hal.ProtocolNVMe, Model: "TEST NVME 1TB", Serial: serial,
		SmartPassed: ptrBool(true), PowerOnHours: hal.U64(5000), TemperatureC: hal.F64(40),
		TempWarnC: hal.F64(70), TempCritC: hal.F64(80),
		Counters: hal.Counters{
			CriticalWarning: hal.U64(0), MediaErrors: hal.U64(0), PercentageUsed: hal.U64(3),
			AvailableSpare: hal.U64(100), AvailableSpareThreshold: hal.U64(10),
		},
	}
}

// hasReason fails the test unless one reason contains want.
func hasReason(t *testing.T, r Risk, want string) {
	t.Helper()
	for _, s := range r.Reasons {
		if strings.Contains(s, want) {
			return
		}
	}
	t.Errorf("no reason contains %q; reasons: %q", want, r.Reasons)
}

func noReason(t *testing.T, r Risk, unwanted string) {
	t.Helper()
	for _, s := range r.Reasons {
		if strings.Contains(s, unwanted) {
			t.Errorf("reason %q should not be there", s)
		}
	}
}

func wantLevel(t *testing.T, r Risk, want Level) {
	t.Helper()
	if r.Level != want {
		t.Errorf("level %s, want %s; reasons: %q", r.Level, want, r.Reasons)
	}
}

// memPredictor is a predictor with histories in memory only.
func memPredictor(t testing.TB) *Predictor {
	t.Helper()
	p, err := New(defaultCfg(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptrCfg() *config.Predict {
	c := defaultCfg()
	return &c
}
