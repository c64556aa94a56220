package eventstore

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/klauspost/compress/zstd"
)

// BenchmarkDrainBacklog measures how fast a 10,000-event backlog leaves
// the spool for the backend over loopback mutual TLS (real spool files,
// real TLS, real event store with its syncs), and the bytes on the wire
// per event against the event's own size.
func BenchmarkDrainBacklog(b *testing.B) {
	for _, batch := range []int{1, 64, 256, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchDrain(b, 10000, batch) })
	}
}

func benchDrain(b *testing.B, n, batch int) {
	b.ReportAllocs()
	var total time.Duration
	var wire, raw int64
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		be := startBackend(b, b.TempDir())
		sp, err := spool.Open(b.TempDir(), spool.Limits{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		sp.SetSystemID("SYS-BENCH")
		var wg sync.WaitGroup
		sizes := make(chan int, n)
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < n; i += 32 {
					e := alert(event.Severity(1+i%5), i)
					if err := sp.Put(e); err != nil {
						b.Error(err)
						return
					}
					enc, _ := event.Marshal(e)
					sizes <- len(enc)
				}
			}(w)
		}
		wg.Wait()
		close(sizes)
		for s := range sizes {
			raw += int64(s)
		}
		up, err := connecthome.NewWithOptions(connecthome.Options{
			BackendURL: "https://" + be.addr(), BatchEvents: batch, BatchBytes: 8 << 20,
		}, sp, deviceTLS(b, be.ca, "SYS-BENCH"), nil)
		if err != nil {
			b.Fatal(err)
		}
		before := be.read.Load()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		go func() { up.Run(ctx); close(done) }()
		for be.store.Count() < n || sp.Len() > 0 {
			time.Sleep(200 * time.Microsecond)
		}
		total += time.Since(start)
		b.StopTimer()
		wire += be.read.Load() - before
		cancel()
		<-done
		sp.Close()
	}
	events := float64(n * b.N)
	b.ReportMetric(events/total.Seconds(), "events/s")
	b.ReportMetric(float64(wire)/events, "wire-B/event")
	b.ReportMetric(float64(raw)/events, "raw-B/event")
}

// BenchmarkCompression compares the codecs on a batch of 256 typical
// alerts: bytes per event after compression, and the time it takes.
func BenchmarkCompression(b *testing.B) {
	var events [][]byte
	var raw int
	for i := 0; i < 256; i++ {
		e := alert(event.Severity(1+i%5), i)
		e.SystemID = "SYS-BENCH"
		enc, _ := event.Marshal(e)
		events = append(events, enc)
		raw += len(enc)
	}
	body, _ := wire.EncodeBatch(events)
	single := events[0]
	codecs := []struct {
		name string
		fn   func([]byte) []byte
	}{
		{"gzip-default", func(p []byte) []byte { return gz(p, gzip.DefaultCompression) }},
		{"gzip-speed", func(p []byte) []byte { return gz(p, gzip.BestSpeed) }},
		{"zstd-default", zst(zstd.SpeedDefault)},
		{"zstd-fastest", zst(zstd.SpeedFastest)},
	}
	for _, c := range codecs {
		b.Run(c.name+"/batch256", func(b *testing.B) {
			b.ReportAllocs()
			var out []byte
			for i := 0; i < b.N; i++ {
				out = c.fn(body)
			}
			b.ReportMetric(float64(len(out))/256, "B/event")
			b.ReportMetric(float64(raw)/256, "raw-B/event")
		})
		b.Run(c.name+"/single", func(b *testing.B) {
			b.ReportAllocs()
			var out []byte
			for i := 0; i < b.N; i++ {
				out = c.fn(single)
			}
			b.ReportMetric(float64(len(out)), "B/event")
			b.ReportMetric(float64(len(single)), "raw-B/event")
		})
	}
}

func gz(p []byte, level int) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, level)
	w.Write(p)
	w.Close()
	return buf.Bytes()
}

func zst(level zstd.EncoderLevel) func([]byte) []byte {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	return func(p []byte) []byte { return enc.EncodeAll(p, nil) }
}
