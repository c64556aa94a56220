package sim

import (
	"io"
	"testing"
)

// BenchmarkAdvance is one step of a default simulation (5 drives, 7 hwmon
// chips, a 12-slot enclosure): render every drive before and after, write
// the changed sysfs files, save the state.
func BenchmarkAdvance(b *testing.B) {
	h, err := Create(Options{Root: b.TempDir(), Captures: captures(b), Degrade: "1", Backplane: []int{0, 3}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Advance(1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStandinReport is the stand-in answering `smartctl --json=c -a`
// for a degrading drive, in process (the script adds a process start).
func BenchmarkStandinReport(b *testing.B) {
	h, err := Create(Options{Root: b.TempDir(), Captures: captures(b), Degrade: "1"})
	if err != nil {
		b.Fatal(err)
	}
	h.Advance(5)
	args := []string{"--state", h.StateDir(), "--json=c", "-a", "/dev/sdb"}
	b.ReportAllocs()
	for b.Loop() {
		if code := RunSmartctl(args, io.Discard, io.Discard); code&3 != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}
