package predict

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// benchFleet is 60 drives behind five enclosures (a mix of SATA, SAS and
// NVMe), each with a year of half-hourly readings already in its history.
func benchFleet(b *testing.B, dir string) (*Predictor, []DriveInput, time.Time) {
	b.Helper()
	p, err := New(defaultCfg(), dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	year := 365 * 24 * time.Hour
	step := 30 * time.Minute
	n := int(year / step)
	start := t0
	inputs := make([]DriveInput, 60)
	for d := range inputs {
		var s hal.DriveSnapshot
		serial := fmt.Sprintf("BENCH%04d", d)
		switch d % 3 {
		case 0:
			s = ataDrive(serial)
		case 1:
			s = nvmeDrive(serial)
		default:
			s = hal.DriveSnapshot{Protocol: hal.ProtocolSCSI, Model: "TEST SAS 8TB", Serial: serial, SmartPassed: ptrBool(true),
				PowerOnHours: hal.U64(20000), TemperatureC: hal.F64(38), TempCritC: hal.F64(68),
				Counters: hal.Counters{GrownDefects: hal.U64(0), UncorrectedErrors: hal.U64(0), NonMediumErrors: hal.U64(0), LinkErrors: hal.U64(0)}}
		}
		h := &History{Key: serial, Identity: Identity{Serial: serial, Model: s.Model}}
		var grown uint64
		for i := 0; i < n; i++ {
			at := start.Add(time.Duration(i) * step)
			s.TemperatureC = hal.F64(30 + float64(rng.Intn(15)))
			s.PowerOnHours = hal.U64(uint64(20000 + i/2))
			if rng.Intn(2000) == 0 { // a counter moves now and then
				grown++
				if s.Counters.ReallocatedSectors != nil {
					s.Counters.ReallocatedSectors = hal.U64(grown)
				} else if s.Counters.MediaErrors != nil {
					s.Counters.MediaErrors = hal.U64(grown)
				} else {
					s.Counters.GrownDefects = hal.U64(grown)
				}
			}
			h.Add(&s, at)
			if i%48 == 47 {
				h.compact(at, year, 1)
			}
		}
		p.drives[serial] = &driveState{h: h}
		inputs[d] = DriveInput{Snapshot: s, Enclosure: fmt.Sprintf("0:0:%d:0", d/12), Slot: fmt.Sprint(d % 12)}
	}
	return p, inputs, start.Add(year)
}

// BenchmarkPredictionPass is one prediction pass over 60 drives with a
// year of history each: add the new readings, judge every drive,
// correlate interface errors per enclosure. Histories in memory only.
func BenchmarkPredictionPass(b *testing.B) {
	p, inputs, now := benchFleet(b, "")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(30 * time.Minute)
		res := p.Assess(now, inputs)
		if len(res.Drives) != 60 {
			b.Fatal("lost drives")
		}
	}
}

// BenchmarkPredictionPassOnDisk is the same pass with histories on disk:
// a history is written when it changed or history_flush (6 h) passed, so
// about one pass in twelve writes every file (temporary file, fsync,
// rename, directory fsync). It also reports the size of a year's history
// on disk per drive.
func BenchmarkPredictionPassOnDisk(b *testing.B) {
	dir := b.TempDir()
	p, inputs, now := benchFleet(b, dir)
	p.Assess(now, inputs) // the first pass writes every history
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(30 * time.Minute)
		p.Assess(now, inputs)
	}
	b.StopTimer()
	if err := p.Flush(); err != nil {
		b.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+historyExt))
	var total, largest int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		total += st.Size()
		largest = max(largest, st.Size())
	}
	if len(files) != 60 {
		b.Fatalf("%d history files", len(files))
	}
	b.ReportMetric(float64(total)/float64(len(files)), "history-bytes/drive")
	b.ReportMetric(float64(largest), "largest-history-bytes")
}

// BenchmarkAssessSeries is `dcagent drive inspect` on three captures.
func BenchmarkAssessSeries(b *testing.B) {
	snaps := make([]hal.DriveSnapshot, 3)
	for i := range snaps {
		snaps[i] = ataDrive("S")
		snaps[i].Time = t0.Add(time.Duration(i) * 6 * time.Hour)
		snaps[i].Counters.PendingSectors = hal.U64(uint64(8 * i))
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		AssessSeries(snaps)
	}
}

// BenchmarkHistoryDecode reads a year's history file.
func BenchmarkHistoryDecode(b *testing.B) {
	p, _, _ := benchFleet(b, "")
	data := p.drives["BENCH0000"].h.encode()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeHistory(data); err != nil {
			b.Fatal(err)
		}
	}
}
