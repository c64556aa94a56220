package predict

import (
	"encoding/json"
	"testing"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
)

func defaultCfg() config.Predict { return config.Default().Predict }

func TestRiskJSON(t *testing.T) {
	b, err := json.Marshal(Risk{Level: LevelWarn, Reasons: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"level":"warn","reasons":["x"]}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	b, _ = json.Marshal(Risk{})
	if got, want := string(b), `{"level":"ok","reasons":[]}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	var back Risk
	if err := json.Unmarshal([]byte(`{"level":"fail","reasons":["a","b"]}`), &back); err != nil || back.Level != LevelFail || len(back.Reasons) != 2 {
		t.Errorf("round trip: %+v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"level":"dire"}`), &back); err == nil {
		t.Error("an unknown level was accepted")
	}
	if _, err := json.Marshal(Risk{Level: Level(9)}); err == nil {
		t.Error("an invalid level was marshalled")
	}
}

// TestSnapshotRules checks each single-snapshot rule: the level it gives
// and the words it uses.
func TestSnapshotRules(t *testing.T) {
	type tc struct {
		name   string
		snap   func() hal.DriveSnapshot
		level  Level
		reason string
	}
	cases := []tc{
		{"healthy ATA", func() hal.DriveSnapshot { return ataDrive("A") }, LevelOK, ""},
		{"verdict FAILED", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.SmartPassed = ptrBool(false)
			return s
		}, LevelFail, "SMART overall health FAILED"},
		{"exit bit 3 without verdict", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.SmartPassed = nil
			s.ExitStatus = new(int)
			*s.ExitStatus = 8
			return s
		}, LevelFail, "exit status bit 3"},
		{"self-test errors", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.ExitStatus = new(int)
			*s.ExitStatus = 128
			return s
		}, LevelWarn, "failed self-test"},
		{"attribute failing now", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.FailingAttributes = []hal.AttributeFailure{{ID: 5, Name: "Reallocated_Sector_Ct", When: "now", Value: 1, Thresh: 36, Raw: 7461}}
			return s
		}, LevelFail, "attribute 5 Reallocated_Sector_Ct is at or below its failure threshold now (value 1, threshold 36)"},
		{"temperature attribute failing now", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.FailingAttributes = []hal.AttributeFailure{{ID: 194, Name: "Temperature_Celsius", When: "now", Value: 20, Thresh: 22}}
			return s
		}, LevelWarn, "too hot"},
		{"attribute failed in the past", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.FailingAttributes = []hal.AttributeFailure{{ID: 184, Name: "End-to-End_Error", When: "past", Value: 97, Thresh: 99}}
			return s
		}, LevelWarn, "in the past"},
		{"exit bit 5 without a listed attribute", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.ExitStatus = new(int)
			*s.ExitStatus = 32
			return s
		}, LevelWarn, "exit status bit 5"},
		{"pending sectors", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.PendingSectors = hal.U64(24)
			return s
		}, LevelWarn, "24 sectors pending reallocation: the drive could not read them (ATA 197)"},
		{"many pending sectors", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.PendingSectors = hal.U64(878)
			return s
		}, LevelFail, "878 sectors pending"},
		{"offline uncorrectable", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.OfflineUncorrectable = hal.U64(1)
			return s
		}, LevelWarn, "1 sector the drive's offline scan could not read (ATA 198)"},
		{"reported uncorrectable", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.ReportedUncorrectable = hal.U64(3)
			return s
		}, LevelWarn, "(ATA 187)"},
		{"a few reallocated sectors", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.ReallocatedSectors = hal.U64(8)
			return s
		}, LevelWatch, "8 reallocated sectors (ATA 5)"},
		{"many reallocated sectors", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.ReallocatedSectors = hal.U64(2063)
			return s
		}, LevelWarn, "2063 reallocated sectors"},
		{"Seagate packed command timeouts", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.CommandTimeouts = hal.U64(4295032833) // 0x0001_0001_0001
			return s
		}, LevelWatch, "1 command timeout (ATA 188)"},
		{"CRC errors alone, one snapshot", func() hal.DriveSnapshot {
			s := ataDrive("A")
			s.Counters.UDMACRCErrors = hal.U64(40)
			return s
		}, LevelOK, ""},
		{"NVMe healthy", func() hal.DriveSnapshot { return nvmeDrive("N") }, LevelOK, ""},
		{"NVMe spare below threshold", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.AvailableSpare = hal.U64(8)
			return s
		}, LevelFail, "NVMe available spare 8% below threshold 10%"},
		{"NVMe spare near threshold", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.AvailableSpare = hal.U64(15)
			return s
		}, LevelWatch, "close to its threshold"},
		{"NVMe full spare with a high threshold", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.AvailableSpareThreshold = hal.U64(99)
			return s
		}, LevelOK, ""},
		{"NVMe reliability degraded", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.CriticalWarning = hal.U64(0x04)
			return s
		}, LevelFail, "NVMe critical warning 0x04: NVM subsystem reliability degraded"},
		{"NVMe read-only", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.CriticalWarning = hal.U64(0x08)
			return s
		}, LevelFail, "read-only"},
		{"NVMe temperature warning bit", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.CriticalWarning = hal.U64(0x02)
			return s
		}, LevelWarn, "temperature outside its limits"},
		{"NVMe endurance used up", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.PercentageUsed = hal.U64(112)
			return s
		}, LevelWarn, "rated write endurance used up (NVMe percentage used 112%)"},
		{"NVMe endurance near", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.PercentageUsed = hal.U64(93)
			return s
		}, LevelWatch, "93% of rated write endurance used"},
		{"NVMe media errors", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.Counters.MediaErrors = hal.U64(15732)
			return s
		}, LevelWarn, "15732 unrecovered media and data integrity errors (NVMe)"},
		{"NVMe above critical temperature", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.TemperatureC = hal.F64(82)
			return s
		}, LevelWarn, "temperature 82 °C is at or above the drive's critical limit 80 °C"},
		{"NVMe above warning temperature", func() hal.DriveSnapshot {
			s := nvmeDrive("N")
			s.TemperatureC = hal.F64(71)
			return s
		}, LevelWatch, "warning limit 70 °C"},
		{"SAS grown defects", func() hal.DriveSnapshot {
			return hal.DriveSnapshot{Protocol: hal.ProtocolSCSI, Serial: "S", SmartPassed: ptrBool(true),
				Counters: hal.Counters{GrownDefects: hal.U64(195), UncorrectedErrors: hal.U64(0)}}
		}, LevelWarn, "195 grown defects: sectors remapped in service (SAS)"},
		{"SAS uncorrected errors", func() hal.DriveSnapshot {
			return hal.DriveSnapshot{Protocol: hal.ProtocolSCSI, Serial: "S", SmartPassed: ptrBool(true),
				Counters: hal.Counters{GrownDefects: hal.U64(0), UncorrectedErrors: hal.U64(2)}}
		}, LevelWarn, "2 uncorrected read, write or verify errors"},
		{"no health data", func() hal.DriveSnapshot {
			return hal.DriveSnapshot{Model: "VBOX HARDDISK", Serial: "VB1"}
		}, LevelOK, "risk not assessed"},
		{"device not opened", func() hal.DriveSnapshot {
			s := hal.DriveSnapshot{Source: "/dev/sdz"}
			s.ExitStatus = new(int)
			*s.ExitStatus = 2
			return s
		}, LevelOK, "could not open the device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Assess(c.snap())
			wantLevel(t, r, c.level)
			if c.reason != "" {
				hasReason(t, r, c.reason)
			} else if len(r.Reasons) != 0 {
				t.Errorf("reasons %q, want none", r.Reasons)
			}
		})
	}
}

// TestReasonsOrdered: the most severe reason comes first.
func TestReasonsOrdered(t *testing.T) {
	s := ataDrive("A")
	s.Counters.ReallocatedSectors = hal.U64(8)
	s.Counters.PendingSectors = hal.U64(2)
	s.SmartPassed = ptrBool(false)
	r := Assess(s)
	wantLevel(t, r, LevelFail)
	if len(r.Reasons) != 3 {
		t.Fatalf("reasons %q", r.Reasons)
	}
	for i, want := range []string{"SMART overall health FAILED", "pending", "reallocated"} {
		if !contains(r.Reasons[i], want) {
			t.Errorf("reason %d is %q, want one about %q", i, r.Reasons[i], want)
		}
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestParseLevel(t *testing.T) {
	for _, n := range []string{"ok", "watch", "warn", "fail"} {
		l, err := ParseLevel(n)
		if err != nil || l.String() != n {
			t.Errorf("%s: %v %v", n, l, err)
		}
	}
	if _, err := ParseLevel("bad"); err == nil {
		t.Error("bad level parsed")
	}
	if Level(7).String() != "level(7)" {
		t.Error(Level(7).String())
	}
}

func TestDriveKey(t *testing.T) {
	for _, c := range []struct{ serial, wwn, want string }{
		{"ZA1B2C3", "", "ZA1B2C3"},
		{"  ZA1B2C3 ", "", "ZA1B2C3"},
		{"REDACTED", "5000c500a1b2c3d4", "wwn-5000c500a1b2c3d4"},
		{"--", "", ""},
		{"ZZZZZZZZ", "", ""},
		{"", "", ""},
	} {
		s := hal.DriveSnapshot{Serial: c.serial, WWN: c.wwn}
		if got := DriveKey(&s); got != c.want {
			t.Errorf("DriveKey(%q, %q) = %q, want %q", c.serial, c.wwn, got, c.want)
		}
	}
}
