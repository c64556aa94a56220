package predict

import (
	"testing"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// feed runs a pass every step from start, n times, with the drives gen
// returns for pass i; it returns the last result.
func feed(p *Predictor, start time.Time, step time.Duration, n int, gen func(i int) []DriveInput) Result {
	var r Result
	for i := 0; i < n; i++ {
		r = p.Assess(start.Add(time.Duration(i)*step), gen(i))
	}
	return r
}

func one(s hal.DriveSnapshot) []DriveInput { return []DriveInput{{Snapshot: s}} }

// TestTrendOutweighsLevel: 8 reallocated sectors for two years is watch; 8
// that appeared today is warn.
func TestTrendOutweighsLevel(t *testing.T) {
	twoYears := 2 * 365 * 24 * time.Hour
	stableFor := func(historyDays int) Risk {
		cfg := defaultCfg()
		cfg.HistoryDays = historyDays
		p, err := New(cfg, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		r := feed(p, t0, 6*time.Hour, int(twoYears/(6*time.Hour))+1, func(int) []DriveInput {
			s := ataDrive("OLD")
			s.Counters.ReallocatedSectors = hal.U64(8)
			return one(s)
		})
		return r.Drives[0].Risk
	}
	old := stableFor(800)
	wantLevel(t, old, LevelWatch)
	hasReason(t, old, "8 reallocated sectors (ATA 5), unchanged for 2 years")
	// With the default year of history kept, the agent no longer knows
	// the second year, and says so.
	kept := stableFor(365)
	wantLevel(t, kept, LevelWatch)
	hasReason(t, kept, "8 reallocated sectors (ATA 5), unchanged for at least 12 months")

	fresh := memPredictor(t)
	var r Result
	// Two years at zero, then 8 new ones in the last five hours.
	n := int(twoYears/(time.Hour)) + 1
	r = feed(fresh, t0, time.Hour, n, func(i int) []DriveInput {
		s := ataDrive("NEW")
		if i >= n-5 {
			s.Counters.ReallocatedSectors = hal.U64(8)
		}
		return one(s)
	})
	now := r.Drives[0].Risk
	wantLevel(t, now, LevelWarn)
	hasReason(t, now, "reallocated sectors rose from 0 to 8 in 5 hours (ATA 5)")
	if now.Level <= old.Level {
		t.Errorf("new growth (%s) does not outweigh an old stable count (%s)", now.Level, old.Level)
	}
}

// TestPendingRise is the issue's own example: readings every 30 minutes,
// zero pending sectors until six hours ago, 24 now.
func TestPendingRise(t *testing.T) {
	p := memPredictor(t)
	var r Result
	for i := 0; i <= 60; i++ {
		s := ataDrive("P")
		if i > 48 {
			s.Counters.PendingSectors = hal.U64(uint64(2 * (i - 48)))
		}
		r = p.Assess(t0.Add(time.Duration(i)*30*time.Minute), one(s))
	}
	wantLevel(t, r.Drives[0].Risk, LevelWarn)
	hasReason(t, r.Drives[0].Risk, "pending sectors rose from 0 to 24 in 6 hours (ATA 197)")
}

// TestFastGrowthFails: fifty new bad sectors within a day is fail.
func TestFastGrowthFails(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, time.Hour, 30, func(i int) []DriveInput {
		s := ataDrive("F")
		if i >= 20 {
			s.Counters.ReallocatedSectors = hal.U64(uint64(6 * (i - 19)))
		}
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelFail)
	hasReason(t, r.Drives[0].Risk, "reallocated sectors rose from 0 to 60 in 10 hours (ATA 5), fast: 50 or more in the last 24 hours")
}

// TestRisingOnSeparateDaysFails: a few new sectors every day is a drive
// still getting worse.
func TestRisingOnSeparateDaysFails(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, 6*time.Hour, 4*10, func(i int) []DriveInput {
		s := ataDrive("D")
		day := i / 4
		if day >= 6 {
			s.Counters.ReallocatedSectors = hal.U64(uint64(2 * (day - 5)))
		}
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelFail)
	hasReason(t, r.Drives[0].Risk, "rising on 4 separate days in the last 30 days: still getting worse")

	// The same growth in one step is only warn.
	p = memPredictor(t)
	r = feed(p, t0, 6*time.Hour, 4*10, func(i int) []DriveInput {
		s := ataDrive("D")
		if i >= 4*9 {
			s.Counters.ReallocatedSectors = hal.U64(8)
		}
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelWarn)
}

// TestGrowthAgesOut: growth older than the growth window is a level again.
func TestGrowthAgesOut(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, 12*time.Hour, 2*90, func(i int) []DriveInput {
		s := ataDrive("G")
		if i >= 10 {
			s.Counters.ReallocatedSectors = hal.U64(8)
		}
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelWatch)
	hasReason(t, r.Drives[0].Risk, "8 reallocated sectors (ATA 5), unchanged for 2 months")
}

// TestPendingFellBack: sectors that were pending and were rewritten leave
// a trace at watch.
func TestPendingFellBack(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, time.Hour, 48, func(i int) []DriveInput {
		s := ataDrive("B")
		if i >= 10 && i < 20 {
			s.Counters.PendingSectors = hal.U64(5)
		}
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelWatch)
	hasReason(t, r.Drives[0].Risk, "pending sectors rose to 5 in the last 30 days and fell back to 0 (ATA 197)")
}

// TestAboveThresholdWithGrowth: a count already at fail keeps the count
// first and says how much of it is new.
func TestAboveThresholdWithGrowth(t *testing.T) {
	p := memPredictor(t)
	s := ataDrive("X")
	s.Counters.PendingSectors = hal.U64(149)
	p.Assess(t0, one(s))
	s.Counters.PendingSectors = hal.U64(150)
	r := p.Assess(t0.Add(3*time.Hour), one(s))
	wantLevel(t, r.Drives[0].Risk, LevelFail)
	hasReason(t, r.Drives[0].Risk, "150 sectors pending reallocation: the drive could not read them (ATA 197); up from 149 in 3 hours")
}

// TestVerdictTurnsFailed says when the drive last passed.
func TestVerdictTurnsFailed(t *testing.T) {
	p := memPredictor(t)
	p.Assess(t0, one(nvmeDrive("V")))
	s := nvmeDrive("V")
	s.SmartPassed = ptrBool(false)
	r := p.Assess(t0.Add(2*time.Hour), one(s))
	wantLevel(t, r.Drives[0].Risk, LevelFail)
	hasReason(t, r.Drives[0].Risk, "SMART overall health FAILED: the drive predicts its own failure (it passed 2 hours ago)")
}

// TestSpareDecline: NVMe spare falling is watched before it crosses the
// threshold.
func TestSpareDecline(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, 24*time.Hour, 12, func(i int) []DriveInput {
		s := nvmeDrive("S")
		s.Counters.AvailableSpare = hal.U64(uint64(100 - 5*i))
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelWatch)
	hasReason(t, r.Drives[0].Risk, "NVMe available spare fell from 100% to 45% in 11 days")
}

// TestMediaErrorsGrowth: NVMe media errors count like pending sectors.
func TestMediaErrorsGrowth(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, time.Hour, 10, func(i int) []DriveInput {
		s := nvmeDrive("M")
		s.Counters.MediaErrors = hal.U64(uint64(10 * i))
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelFail)
	hasReason(t, r.Drives[0].Risk, "media errors rose from 0 to 90 in 9 hours (NVMe), fast")
}

// TestTimeoutGrowthIsWatch: timeouts rising are not media damage.
func TestTimeoutGrowthIsWatch(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, time.Hour, 10, func(i int) []DriveInput {
		s := ataDrive("T")
		s.Counters.CommandTimeouts = hal.U64(uint64(i))
		return one(s)
	})
	wantLevel(t, r.Drives[0].Risk, LevelWatch)
	hasReason(t, r.Drives[0].Risk, "command timeouts rose from 0 to 9 in 9 hours (ATA 188)")
}

func TestHumanDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "under a minute"},
		{time.Minute, "1 minute"},
		{45 * time.Minute, "45 minutes"},
		{time.Hour, "1 hour"},
		{90 * time.Minute, "1 hour 30 minutes"},
		{6 * time.Hour, "6 hours"},
		{6*time.Hour + 20*time.Minute, "6 hours"},
		{3 * 24 * time.Hour, "3 days"},
		{100 * 24 * time.Hour, "3 months"},
		{2 * 365 * 24 * time.Hour, "2 years"},
	} {
		if got := humanDuration(c.d); got != c.want {
			t.Errorf("humanDuration(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

// TestClockWentBack: a device whose clock falls back to 1970 keeps its
// history and judges drives as of the last good time.
func TestClockWentBack(t *testing.T) {
	p := memPredictor(t)
	feed(p, t0, time.Hour, 48, func(int) []DriveInput { return one(ataDrive("CLK")) })
	s := ataDrive("CLK")
	s.Counters.PendingSectors = hal.U64(12)
	r := p.Assess(time.Unix(0, 0), one(s))
	wantLevel(t, r.Drives[0].Risk, LevelWarn)
	hasReason(t, r.Drives[0].Risk, "pending sectors rose from 0 to 12 in 1 hour (ATA 197)")
	if n := len(p.drives["CLK"].h.Samples); n != 48 {
		t.Errorf("%d samples after the clock went back, want 48", n)
	}
	// Time moves on from the last good reading once the clock is right.
	r = p.Assess(t0.Add(49*time.Hour), one(s))
	hasReason(t, r.Drives[0].Risk, "pending sectors rose from 0 to 12")
}
