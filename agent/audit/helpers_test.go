package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// memCounter is an in-memory monotonic counter standing in for the TPM in
// unit tests (the TPM itself is tested in tpm_test.go against swtpm).
type memCounter struct {
	mu      sync.Mutex
	v       uint64
	failInc int // the next failInc increments fail
}

var errCounterDown = errors.New("counter unavailable")

func (c *memCounter) Increment() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failInc > 0 {
		c.failInc--
		return 0, errCounterDown
	}
	c.v++
	return c.v, nil
}

func (c *memCounter) Read() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, nil
}

// fixedClock returns times a millisecond apart.
func fixedClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func openLog(t testing.TB, dir string, c Counter) *Log {
	t.Helper()
	opts := Options{Dir: dir, Now: fixedClock()}
	if c != nil {
		opts.Counter = c
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fill appends n records of a realistic mix.
func fill(t testing.TB, l *Log, n int) {
	t.Helper()
	kinds := []string{KindSessionStart, KindDecision, KindSessionEnd, KindLocalRequest, KindFileFetch}
	for i := 0; i < n; i++ {
		_, err := l.Append(Entry{Kind: kinds[i%len(kinds)], Actor: fmt.Sprintf("engineer-%04d", i), Fields: map[string]string{"n": fmt.Sprint(i), "service": "ssh", "service_request": "SR-1234"}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func headOf(t testing.TB, dir string) *Head {
	t.Helper()
	h, err := ReadHead(filepath.Join(dir, HeadName))
	if err != nil || h == nil {
		t.Fatalf("head: %v %v", h, err)
	}
	return h
}
