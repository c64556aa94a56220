package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/event"
)

// The spool's directory comes from b.TempDir, so $TMPDIR chooses the
// filesystem being measured.

func benchEvent(i int) *event.Event {
	return &event.Event{
		ID: idSeq.New(), Type: event.TypeAlert, Severity: event.Severity(1 + i%5),
		Created: time.Now().UTC(), SystemID: "SYS-BENCH",
		Payload: map[string]any{"source": "sensor", "condition": "over_temperature", "state": "raised",
			"message": "CPU1 temperature 91.0 °C is above its limit of 90.0 °C", "value": 91.0, "threshold": 90.0, "unit": "°C"},
	}
}

// BenchmarkPutOneByOne: one caller, each Put durable before the next.
func BenchmarkPutOneByOne(b *testing.B) {
	s, _ := open(b, b.TempDir(), Limits{MaxEvents: 1 << 30, MaxBytes: 1 << 40})
	evs := make([]*event.Event, b.N)
	for i := range evs {
		evs[i] = benchEvent(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Put(evs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPutConcurrent: 64 callers per CPU at once; group commit shares
// one data sync and one directory sync among them.
func BenchmarkPutConcurrent(b *testing.B) {
	s, _ := open(b, b.TempDir(), Limits{MaxEvents: 1 << 30, MaxBytes: 1 << 40})
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := s.Put(benchEvent(i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	st := s.Stats()
	b.ReportMetric(float64(st.Put)/float64(st.Commits), "events/commit")
}

// BenchmarkFloorFilePerEvent is the same disk work as one durable Put with
// bare system calls (create, write, fdatasync, rename, fsync of the
// directory) and nothing else: the ceiling that the file-per-commit
// protocol allows on this filesystem, to read BenchmarkPutOneByOne against.
func BenchmarkFloorFilePerEvent(b *testing.B) {
	dir := b.TempDir()
	body := make([]byte, 330)
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tmp := filepath.Join(dir, fmt.Sprintf(".tmp-%d", i))
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		f.Write(body)
		syscall.Fdatasync(int(f.Fd()))
		f.Close()
		os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("%d.spl", i)))
		d.Sync()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
