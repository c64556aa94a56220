package audit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAppendDurable: one record written and fsynced per operation,
// the way the daemon appends (records/s is the figure to quote).
func BenchmarkAppendDurable(b *testing.B) {
	l := openLog(b, b.TempDir(), nil)
	defer l.Close()
	e := Entry{Kind: KindSessionEnd, Actor: "engineer-0001", Fields: map[string]string{"session": "s-0001", "bytes_to_device": "12345", "bytes_from_device": "67890", "reason": "idle timeout"}}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := l.Append(e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkAppendDurableAnchored adds a counter increment per record (an
// in-memory counter: the TPM's own increment costs 0.3-4 ms, see
// REAL-PARTS.md and BenchmarkTPMCounterIncrement in tpm_test.go).
func BenchmarkAppendDurableAnchored(b *testing.B) {
	l := openLog(b, b.TempDir(), &memCounter{})
	defer l.Close()
	e := Entry{Kind: KindDecision, Fields: map[string]string{"action": "remote:ssh", "effect": "allow"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify100k verifies a 100,000-record log per operation.
func BenchmarkVerify100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), LogName)
	writeSyntheticLog(b, path, 100_000)
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		rep, err := VerifyFile(path, VerifyOptions{})
		if err != nil || rep.Records != 100_000 {
			b.Fatal(err, rep.Records)
		}
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/verify")
}

func BenchmarkDecodeRecord(b *testing.B) {
	r := sampleRecord()
	line, _ := r.encode()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(line); err != nil {
			b.Fatal(err)
		}
	}
}

// writeSyntheticLog writes n chained records straight to a file (without a
// sync per record, so the benchmark's setup stays short).
func writeSyntheticLog(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	clock := fixedClock()
	prev := zeroHash
	for i := 1; i <= n; i++ {
		r := Record{Seq: uint64(i), Time: clock(), Kind: KindDecision, Actor: "engineer", Prev: prev,
			Fields: map[string]string{"n": fmt.Sprint(i), "action": "remote:ssh", "effect": "ask"}}
		if i == 1 {
			r.Kind, r.Fields = KindStart, map[string]string{"log_id": "0123456789abcdef0123456789abcdef", "anchor": "none"}
		}
		line, err := r.encode()
		if err != nil {
			b.Fatal(err)
		}
		w.Write(line)
		w.WriteByte('\n')
		prev = r.Hash
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}
