package predict

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// TestReplacedDrive: a new drive in a slot starts a new history, and the
// replacement is reported; the old drive's trouble does not follow the slot.
func TestReplacedDrive(t *testing.T) {
	dir := t.TempDir()
	p, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := feed(p, t0, time.Hour, 10, func(i int) []DriveInput {
		s := ataDrive("OLD1")
		s.Counters.PendingSectors = hal.U64(uint64(3 * i))
		return []DriveInput{{Snapshot: s, Enclosure: "0:0:1:0", Slot: "3"}}
	})
	if r.Drives[0].Risk.Level < LevelWarn {
		t.Fatalf("the failing drive is only at %s", r.Drives[0].Risk.Level)
	}
	swap := t0.Add(11 * time.Hour)
	r = p.Assess(swap, []DriveInput{{Snapshot: ataDrive("NEW2"), Enclosure: "0:0:1:0", Slot: "3"}})
	if len(r.Replacements) != 1 {
		t.Fatalf("replacements %+v, want one", r.Replacements)
	}
	rep := r.Replacements[0]
	if rep.Enclosure != "0:0:1:0" || rep.Slot != "3" || rep.OldSerial != "OLD1" || rep.NewSerial != "NEW2" {
		t.Errorf("replacement %+v", rep)
	}
	d := r.Drives[0]
	wantLevel(t, d.Risk, LevelOK)
	if !d.HistorySince.Equal(swap) {
		t.Errorf("the new drive's history starts %s, want %s", d.HistorySince, swap)
	}

	// After a restart the slot map is remembered: a second swap is seen.
	p2, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r = p2.Assess(swap.Add(time.Hour), []DriveInput{{Snapshot: ataDrive("THIRD3"), Enclosure: "0:0:1:0", Slot: "3"}})
	if len(r.Replacements) != 1 || r.Replacements[0].OldSerial != "NEW2" {
		t.Errorf("after restart: replacements %+v", r.Replacements)
	}
	// The same drive seen again is not a replacement.
	r = p2.Assess(swap.Add(2*time.Hour), []DriveInput{{Snapshot: ataDrive("THIRD3"), Enclosure: "0:0:1:0", Slot: "3"}})
	if len(r.Replacements) != 0 {
		t.Errorf("no swap, yet replacements %+v", r.Replacements)
	}
}

// TestSameSerialOtherDrive: a history whose model or power-on hours do not
// fit the drive now carrying its serial starts afresh.
func TestSameSerialOtherDrive(t *testing.T) {
	p := memPredictor(t)
	s := ataDrive("DUP")
	s.PowerOnHours = hal.U64(30000)
	s.Counters.PendingSectors = hal.U64(0)
	p.Assess(t0, one(s))
	s.Counters.PendingSectors = hal.U64(40)
	p.Assess(t0.Add(time.Hour), one(s))

	other := ataDrive("DUP")
	other.PowerOnHours = hal.U64(12)
	other.Counters.PendingSectors = hal.U64(0)
	r := p.Assess(t0.Add(2*time.Hour), one(other))
	wantLevel(t, r.Drives[0].Risk, LevelOK)
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "power-on hours went back from 30000 to 12") {
		t.Errorf("notes %q", r.Notes)
	}

	m := ataDrive("DUP")
	m.Model = "OTHER MODEL"
	r = p.Assess(t0.Add(3*time.Hour), one(m))
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], `model changed from "TEST HDD 4TB" to "OTHER MODEL"`) {
		t.Errorf("notes %q", r.Notes)
	}
}

// backplanePass feeds drives behind one enclosure; crc(i, slot) gives each
// drive's UDMA CRC count at pass i, media its reallocated count.
func backplanePass(p *Predictor, n int, slots []string, crc func(i int, slot string) uint64, media func(i int, slot string) uint64) Result {
	return feed(p, t0, 30*time.Minute, n, func(i int) []DriveInput {
		var in []DriveInput
		for _, sl := range slots {
			s := ataDrive("SER" + sl)
			s.Counters.UDMACRCErrors = hal.U64(crc(i, sl))
			s.Counters.ReallocatedSectors = hal.U64(media(i, sl))
			in = append(in, DriveInput{Snapshot: s, Enclosure: "0:0:1:0", Slot: sl})
		}
		return in
	})
}

// TestBackplaneSuspected: CRC errors rise on three drives of one
// enclosure with media flat: one backplane verdict, no drive failure.
func TestBackplaneSuspected(t *testing.T) {
	p := memPredictor(t)
	slots := []string{"1", "2", "5", "7"}
	r := backplanePass(p, 20, slots,
		func(i int, slot string) uint64 {
			if slot == "7" || i < 12 {
				return 0
			}
			return uint64(5 * (i - 11))
		},
		func(int, string) uint64 { return 0 })
	if len(r.Backplanes) != 1 {
		t.Fatalf("backplane verdicts %+v, want one", r.Backplanes)
	}
	bp := r.Backplanes[0]
	if bp.Enclosure != "0:0:1:0" || strings.Join(bp.Slots, ",") != "1,2,5" || strings.Join(bp.Serials, ",") != "SER1,SER2,SER5" {
		t.Errorf("verdict %+v", bp)
	}
	if !strings.Contains(bp.Reasons[0], "interface errors rose on 3 drives behind enclosure 0:0:1:0 (slots 1, 2, 5)") ||
		!strings.Contains(bp.Reasons[0], "backplane or cable suspected") {
		t.Errorf("reason %q", bp.Reasons[0])
	}
	for _, d := range r.Drives {
		if d.Slot == "7" {
			wantLevel(t, d.Risk, LevelOK)
			continue
		}
		wantLevel(t, d.Risk, LevelWatch)
		hasReason(t, d.Risk, "UDMA CRC errors (ATA 199) rose from 0 to 40 in 4 hours while its media counters stayed flat, as on 2 other drives behind enclosure 0:0:1:0: backplane or cable suspected, not this drive")
	}
}

// TestBackplaneNegativeOneDrive: one drive alone points at its own slot
// or cable.
func TestBackplaneNegativeOneDrive(t *testing.T) {
	p := memPredictor(t)
	r := backplanePass(p, 20, []string{"1", "2", "5"},
		func(i int, slot string) uint64 {
			if slot != "2" || i < 12 {
				return 0
			}
			return uint64(5 * (i - 11))
		},
		func(int, string) uint64 { return 0 })
	if len(r.Backplanes) != 0 {
		t.Fatalf("backplane suspected for one drive: %+v", r.Backplanes)
	}
	for _, d := range r.Drives {
		if d.Slot != "2" {
			wantLevel(t, d.Risk, LevelOK)
			continue
		}
		wantLevel(t, d.Risk, LevelWatch)
		hasReason(t, d.Risk, "UDMA CRC errors (ATA 199) rose from 0 to 40 in 4 hours while its media counters stayed flat: check this drive's own slot and cable")
		noReason(t, d.Risk, "backplane")
	}
}

// TestBackplaneNotWhenMediaRises: drives whose media counters rise too are
// failing drives, not a backplane.
func TestBackplaneNotWhenMediaRises(t *testing.T) {
	p := memPredictor(t)
	r := backplanePass(p, 20, []string{"1", "2", "5"},
		func(i int, slot string) uint64 {
			if i < 12 {
				return 0
			}
			return uint64(5 * (i - 11))
		},
		func(i int, slot string) uint64 {
			if slot == "5" {
				return 0
			}
			if i < 12 {
				return 0
			}
			return uint64(i - 11)
		})
	if len(r.Backplanes) != 0 {
		t.Fatalf("backplane suspected while media counters rise on two of three drives: %+v", r.Backplanes)
	}
	for _, d := range r.Drives {
		if d.Slot == "5" {
			hasReason(t, d.Risk, "check this drive's own slot and cable")
			continue
		}
		wantLevel(t, d.Risk, LevelWarn)
		hasReason(t, d.Risk, "together with its media counters")
	}
}

// TestBackplaneSeparateEnclosures: one rising drive in each of two
// enclosures is not a backplane fault.
func TestBackplaneSeparateEnclosures(t *testing.T) {
	p := memPredictor(t)
	r := feed(p, t0, 30*time.Minute, 20, func(i int) []DriveInput {
		var in []DriveInput
		for _, e := range []string{"A", "B"} {
			s := ataDrive("S" + e)
			if i >= 12 {
				s.Counters.UDMACRCErrors = hal.U64(uint64(i))
			}
			in = append(in, DriveInput{Snapshot: s, Enclosure: e, Slot: "1"})
		}
		return in
	})
	if len(r.Backplanes) != 0 {
		t.Errorf("backplane suspected across enclosures: %+v", r.Backplanes)
	}
}

// TestBackplaneOldRiseForgotten: a rise outside the window is history.
func TestBackplaneOldRiseForgotten(t *testing.T) {
	p := memPredictor(t)
	r := backplanePass(p, 4*24, []string{"1", "2", "3"},
		func(i int, slot string) uint64 {
			if i < 10 {
				return 0
			}
			return 50
		},
		func(int, string) uint64 { return 0 })
	if len(r.Backplanes) != 0 {
		t.Errorf("a rise two days old still raises a verdict: %+v", r.Backplanes)
	}
}

// TestTemperatureExcursion: time above the drive's own limits, counted
// across readings.
func TestTemperatureExcursion(t *testing.T) {
	hot := func(hotHours int, temp float64) Risk {
		p := memPredictor(t)
		n := 7 * 24 * 2 // a week of half-hourly readings
		r := feed(p, t0, 30*time.Minute, n, func(i int) []DriveInput {
			s := nvmeDrive("H")
			// The excursion ends two days before the last reading.
			if i >= n-96-2*hotHours && i < n-96 {
				s.TemperatureC = hal.F64(temp)
			}
			return one(s)
		})
		return r.Drives[0].Risk
	}
	r := hot(3, 72)
	wantLevel(t, r, LevelWatch)
	hasReason(t, r, "temperature was at or above the drive's warning limit 70 °C for 3 hours in the last 7 days (1 excursion, peak 72 °C)")

	r = hot(30, 72)
	wantLevel(t, r, LevelWarn)
	hasReason(t, r, "warning limit 70 °C for 30 hours in the last 7 days")

	r = hot(1, 85)
	wantLevel(t, r, LevelWarn)
	hasReason(t, r, "critical limit 80 °C for 1 hour in the last 7 days")

	// Without limits of its own a drive has no excursions.
	p := memPredictor(t)
	res := feed(p, t0, time.Hour, 48, func(i int) []DriveInput {
		s := ataDrive("NL")
		s.TemperatureC = hal.F64(65)
		return one(s)
	})
	wantLevel(t, res.Drives[0].Risk, LevelOK)

	// Two excursions are counted as two; the peak survives thinning.
	p = memPredictor(t)
	res = feed(p, t0, 30*time.Minute, 20*24*2, func(i int) []DriveInput {
		s := nvmeDrive("TWO")
		day := i / 48
		if (day == 14 || day == 16) && i%48 < 4 {
			s.TemperatureC = hal.F64(71 + float64(day-14))
		}
		return one(s)
	})
	hasReason(t, res.Drives[0].Risk, "for 4 hours in the last 7 days (2 excursions, peak 73 °C)")
}

// TestHistoryRestart: histories survive a restart; trends span it.
func TestHistoryRestart(t *testing.T) {
	dir := t.TempDir()
	p, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	feed(p, t0, time.Hour, 24, func(int) []DriveInput { return one(ataDrive("R1")) })
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "R1.hist")); err != nil {
		t.Fatal(err)
	}

	p2, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := ataDrive("R1")
	s.Counters.PendingSectors = hal.U64(4)
	r := p2.Assess(t0.Add(25*time.Hour), one(s))
	if !r.Drives[0].HistorySince.Equal(t0) {
		t.Errorf("history since %s after restart, want %s", r.Drives[0].HistorySince, t0)
	}
	hasReason(t, r.Drives[0].Risk, "pending sectors rose from 0 to 4 in 2 hours (ATA 197)")
}

// TestHistoryWrittenOnChange: a change is on disk at once, without Flush;
// an unchanged reading waits for history_flush.
func TestHistoryWrittenOnChange(t *testing.T) {
	dir := t.TempDir()
	p, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "W1.hist")
	p.Assess(t0, one(ataDrive("W1")))
	st1, err := os.Stat(path)
	if err != nil {
		t.Fatalf("first reading not written: %v", err)
	}
	b1, _ := os.ReadFile(path)
	p.Assess(t0.Add(10*time.Minute), one(ataDrive("W1")))
	if b2, _ := os.ReadFile(path); string(b1) != string(b2) {
		t.Error("an unchanged reading was written before history_flush")
	}
	s := ataDrive("W1")
	s.Counters.PendingSectors = hal.U64(1)
	p.Assess(t0.Add(20*time.Minute), one(s))
	h, err := (&Store{dir: dir}).Load("W1")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := h.last().get(fPending); v != 1 || len(h.Samples) != 3 {
		t.Errorf("on disk: %d samples, pending %d; want 3 and 1", len(h.Samples), v)
	}
	_ = st1
}

// TestCorruptHistory: every kind of damage gives a clear error, the file
// goes to quarantine and the drive starts a new history; nothing panics.
func TestCorruptHistory(t *testing.T) {
	good := func() []byte {
		h := &History{Key: "C1"}
		s := ataDrive("C1")
		for i := 0; i < 50; i++ {
			h.Add(&s, t0.Add(time.Duration(i)*time.Hour))
		}
		return h.encode()
	}()
	flip := append([]byte(nil), good...)
	flip[len(flip)/2] ^= 0x40
	otherKey := func() []byte {
		h := &History{Key: "SOMEONE-ELSE"}
		s := ataDrive("C1")
		h.Add(&s, t0)
		return h.encode()
	}()
	cases := map[string]struct {
		data []byte
		want string
	}{
		"empty":     {nil, "too short"},
		"truncated": {good[:len(good)-9], "checksum mismatch"},
		"bit flip":  {flip, "checksum mismatch"},
		"not ours":  {[]byte("hello, this is not a history file at all"), "not a history file"},
		"version":   {append([]byte("DCPH\x09"), good[5:]...), "format version 9"},
		"other key": {otherKey, `holds the history of "SOMEONE-ELSE"`},
		"huge":      {make([]byte, maxDecodeBytes+10), "more than"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "C1.hist")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			st := &Store{dir: dir, log: nil}
			_, err := st.Load("C1")
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v; want one matching ErrCorrupt naming %s and saying %q", err, path, c.want)
			}
			p, err := New(defaultCfg(), dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := ataDrive("C1")
			r := p.Assess(t0.Add(100*time.Hour), one(s))
			if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "was unreadable") || !strings.Contains(r.Notes[0], "quarantine") {
				t.Errorf("notes %q", r.Notes)
			}
			if !r.Drives[0].HistorySince.Equal(t0.Add(100 * time.Hour)) {
				t.Errorf("history not restarted: since %s", r.Drives[0].HistorySince)
			}
			q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "C1.hist.*"))
			if len(q) != 1 {
				t.Fatalf("quarantine holds %v", q)
			}
			if moved, _ := os.ReadFile(q[0]); string(moved) != string(c.data) {
				t.Error("the quarantined file is not the original")
			}
			if _, err := (&Store{dir: dir}).Load("C1"); err != nil {
				t.Errorf("the new history is not readable: %v", err)
			}
		})
	}
}

// TestCorruptSlotMap: an unreadable slot map is quarantined, not fatal.
func TestCorruptSlotMap(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, slotsFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Assess(t0, []DriveInput{{Snapshot: ataDrive("Z1"), Enclosure: "e", Slot: "1"}})
	if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", slotsFile+".*")); len(q) != 1 {
		t.Errorf("quarantine holds %v", q)
	}
	if _, err := os.Stat(filepath.Join(dir, slotsFile)); err != nil {
		t.Errorf("no new slot map: %v", err)
	}
}

// TestHistoryBounded: a year of half-hourly readings, with a temperature
// that moves every reading and counters that grow, stays well under the
// cap; a drive whose every value jumps at random is thinned to fit it.
func TestHistoryBounded(t *testing.T) {
	year := 365 * 24 * time.Hour
	cfg := defaultCfg()
	rng := rand.New(rand.NewSource(1))
	h := &History{Key: "B1"}
	n := int(year / (30 * time.Minute))
	var now time.Time
	for i := 0; i < n; i++ {
		s := nvmeDrive("B1")
		s.TemperatureC = hal.F64(35 + float64(rng.Intn(40)))
		s.Counters.MediaErrors = hal.U64(uint64(i / 500))
		s.Counters.PercentageUsed = hal.U64(uint64(i / 2000))
		s.PowerOnHours = hal.U64(uint64(i / 2))
		now = t0.Add(time.Duration(i) * 30 * time.Minute)
		h.Add(&s, now)
		if i%48 == 0 {
			h.compact(now, time.Duration(cfg.HistoryDays)*24*time.Hour, 1)
		}
	}
	h.compact(now, time.Duration(cfg.HistoryDays)*24*time.Hour, 1)
	size := len(h.encode())
	t.Logf("a year of half-hourly readings: %d samples kept, %d bytes on disk", len(h.Samples), size)
	if size > 16<<10 {
		t.Errorf("a realistic year takes %d bytes, want well under %d", size, MaxHistoryBytes)
	}
	if len(h.Samples) > 600 {
		t.Errorf("%d samples kept", len(h.Samples))
	}

	// Worst case: every field jumps at random on every reading, for the
	// longest history the configuration allows (ten years).
	cfg.HistoryDays = 3650
	dir := t.TempDir()
	p, err := New(cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	wild := &History{Key: "WILD"}
	for i := 0; i < 10*n; i++ {
		var s hal.DriveSnapshot
		s.Serial = "WILD"
		r := func() *uint64 { return hal.U64(uint64(rng.Int63n(1 << 31))) }
		s.Counters = hal.Counters{ReallocatedSectors: r(), PendingSectors: r(), OfflineUncorrectable: r(), ReportedUncorrectable: r(),
			CommandTimeouts: r(), UDMACRCErrors: r(), SpinRetries: r(), EndToEndErrors: r(), CriticalWarning: r(), MediaErrors: r(),
			PercentageUsed: r(), AvailableSpare: r(), AvailableSpareThreshold: r(), GrownDefects: r(), NonMediumErrors: r(),
			UncorrectedErrors: r(), LinkErrors: r()}
		s.PowerOnHours = r()
		s.TemperatureC = hal.F64(float64(rng.Intn(200)))
		now = t0.Add(time.Duration(i) * 30 * time.Minute)
		wild.Add(&s, now)
		if i%48 == 0 {
			wild.compact(now, time.Duration(cfg.HistoryDays)*24*time.Hour, 1)
		}
	}
	wild.compact(now, time.Duration(cfg.HistoryDays)*24*time.Hour, 1)
	before := len(wild.encode())
	if before <= MaxHistoryBytes {
		t.Fatalf("the worst case takes only %d bytes: it does not test the cap", before)
	}
	ds := &driveState{h: wild}
	p.save(ds, now, "")
	info, err := os.Stat(filepath.Join(dir, "WILD.hist"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst case: %d bytes before the cap, %d on disk, %d samples kept", before, info.Size(), len(wild.Samples))
	if info.Size() > MaxHistoryBytes {
		t.Errorf("history file is %d bytes, over the %d cap", info.Size(), MaxHistoryBytes)
	}
	if len(wild.Samples) < 50 {
		t.Errorf("the cap left only %d samples", len(wild.Samples))
	}
}

// TestHistoryOldReadingsDropped: nothing older than history_days stays.
func TestHistoryOldReadingsDropped(t *testing.T) {
	cfg := defaultCfg()
	cfg.HistoryDays = 30
	cfg.GrowthWindow = 7 * 24 * time.Hour
	p, err := New(cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	feed(p, t0, 6*time.Hour, 4*60, func(int) []DriveInput { return one(ataDrive("O1")) })
	h := p.drives["O1"].h
	if age := t0.Add(6 * time.Hour * (4*60 - 1)).Sub(h.Samples[0].Time()); age > 30*24*time.Hour {
		t.Errorf("oldest sample is %s old", age)
	}
	if !h.Started.Equal(t0) {
		t.Errorf("history start forgotten: %s", h.Started)
	}
}

// TestCompactIdempotent: thinning twice changes nothing.
func TestCompactIdempotent(t *testing.T) {
	h := &History{Key: "I"}
	for i := 0; i < 5000; i++ {
		s := ataDrive("I")
		s.TemperatureC = hal.F64(float64(30 + i%17))
		h.Add(&s, t0.Add(time.Duration(i)*17*time.Minute))
	}
	now := t0.Add(5000 * 17 * time.Minute)
	h.compact(now, 365*24*time.Hour, 1)
	a := h.encode()
	h.compact(now, 365*24*time.Hour, 1)
	if string(a) != string(h.encode()) {
		t.Error("second compaction changed the history")
	}
}

// TestStoreFileNames: a serial cannot name a path outside the directory.
func TestStoreFileNames(t *testing.T) {
	for _, key := range []string{"../../etc/passwd", "a/b", ".hidden", "..", "x\x00y", strings.Repeat("long", 100)} {
		name := fileName(key)
		if strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") || len(name) > 130 {
			t.Errorf("fileName(%q) = %q", key, name)
		}
	}
	if fileName("ZA1B.2C3-x_y") != "ZA1B.2C3-x_y.hist" {
		t.Error(fileName("ZA1B.2C3-x_y"))
	}
	if fileName("a b") == fileName("a_b") {
		t.Error("escaping maps two keys to one file")
	}
}

// TestPruneAndLeftovers: a crash mid-write leaves a temporary file, which
// the next start removes; histories not written for history_days go too.
func TestPruneAndLeftovers(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".tmp-123")
	old := filepath.Join(dir, "GONE.hist")
	kept := filepath.Join(dir, "HERE.hist")
	for _, f := range []string{tmp, old, kept} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ancient := time.Now().Add(-400 * 24 * time.Hour)
	if err := os.Chtimes(old, ancient, ancient); err != nil {
		t.Fatal(err)
	}
	if _, err := New(defaultCfg(), dir, nil); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{tmp: false, old: false, kept: true} {
		_, err := os.Stat(f)
		if (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", f, err == nil, want)
		}
	}
}

// TestSaveFailureKeepsMemory: a read-only history directory loses nothing
// in memory and does not stop prediction.
func TestSaveFailureKeepsMemory(t *testing.T) {
	dir := t.TempDir()
	p, err := New(defaultCfg(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Assess(t0, one(ataDrive("RO")))
	// Replace the directory by a file: every write fails, as on a
	// read-only or vanished filesystem (and unlike permissions, this
	// stops root too, which CI runs as).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := ataDrive("RO")
	s.Counters.PendingSectors = hal.U64(5)
	r := p.Assess(t0.Add(time.Hour), one(s))
	hasReason(t, r.Drives[0].Risk, "pending sectors rose from 0 to 5 in 1 hour")
	if ds := p.drives["RO"]; ds.saveError == "" {
		t.Error("the failed save was not noted")
	}
	if err := p.Flush(); err == nil {
		t.Error("Flush to a missing directory reported no error")
	}
}
