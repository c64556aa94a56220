package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tamper tests take a real 1,000-record log written by Append (with
// its head file and a counter standing in for the TPM) and apply every
// single-record edit, deletion, swap, insertion and truncation to it.
//
// Verification is a left fold over the lines (see verifier), so for a
// change at record i the test verifies the untouched first i lines once,
// keeps a copy of the verifier's state there, and runs only the changed
// remainder from that copy: the same code and the same result as reading
// the whole file, at a thousandth of the cost. TestTamperWholeFile reads
// whole files for a sample of positions to show the two agree.

const tamperN = 1000

type tamperFixture struct {
	dir    string
	lines  [][]byte // the log's lines, genesis first
	opts   VerifyOptions
	states []verifier // states[i]: after verifying lines[:i]
}

var (
	fixtureOnce sync.Once
	fixture     *tamperFixture
	fixtureErr  string
)

func getFixture(t *testing.T) *tamperFixture {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "audit-tamper-")
		if err != nil {
			fixtureErr = err.Error()
			return
		}
		c := &memCounter{v: 5000}
		l, err := Open(Options{Dir: dir, Counter: c, Now: fixedClock()})
		if err != nil {
			fixtureErr = err.Error()
			return
		}
		fill(t, l, tamperN-1) // with the genesis record: 1,000 records
		l.Close()
		f := &tamperFixture{dir: dir, lines: readLines(t, filepath.Join(dir, LogName))}
		h, _ := ReadHead(filepath.Join(dir, HeadName))
		cv, _ := c.Read()
		f.opts = VerifyOptions{File: LogName, Head: h, Counter: cv, HaveCounter: true}
		v := verifier{opts: f.opts, rep: Report{File: LogName}}
		f.states = append(f.states, v)
		for _, line := range f.lines {
			if !v.line(line) {
				fixtureErr = "the untouched log does not verify: " + v.rep.Problem.Error()
				return
			}
			f.states = append(f.states, v)
		}
		fixture = f
	})
	if fixtureErr != "" {
		t.Fatal(fixtureErr)
	}
	if len(fixture.lines) != tamperN {
		t.Fatalf("fixture has %d lines", len(fixture.lines))
	}
	return fixture
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// verifyFrom runs verification of lines[:i] ++ rest, resuming at i.
func (f *tamperFixture) verifyFrom(i int, rest []byte) *TamperError {
	v := f.states[i]
	for len(rest) > 0 {
		n := bytes.IndexByte(rest, '\n')
		if n < 0 {
			v.finish(len(rest))
			return v.rep.Problem
		}
		if !v.line(rest[:n+1]) {
			return v.rep.Problem
		}
		rest = rest[n+1:]
	}
	v.finish(0)
	return v.rep.Problem
}

func join(lines ...[]byte) []byte { return bytes.Join(lines, nil) }

// rehashed returns line with its own hash recomputed after an edit: what
// an attacker who knows the format would write.
func rehashed(t *testing.T, line []byte) []byte {
	t.Helper()
	n := len(line) - 1 - hashSuffixLen
	body := append(append([]byte{}, line[:n]...), '}')
	return append(withHash(body), '\n')
}

// editValue changes the value of field "n" (or the log id) in a line,
// keeping the JSON valid.
func editValue(t *testing.T, line []byte) []byte {
	t.Helper()
	for _, key := range []string{`"n":"`, `"log_id":"`} {
		if i := bytes.Index(line, []byte(key)); i >= 0 {
			out := append([]byte{}, line...)
			p := i + len(key)
			if out[p] == '9' {
				out[p] = '8'
			} else {
				out[p] = '9'
			}
			return out
		}
	}
	t.Fatalf("no field to edit in %s", line)
	return nil
}

func expect(t *testing.T, what string, got *TamperError, line int, says string) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: not detected", what)
	}
	if got.Line != line || !strings.Contains(got.Reason, says) {
		t.Fatalf("%s: got %v, want line %d saying %q", what, got, line, says)
	}
}

func TestTamperEveryEdit(t *testing.T) {
	f := getFixture(t)
	for i := 0; i < tamperN; i++ {
		rest := join(f.lines[i+1:]...)
		// A plain edit: the record no longer matches its own hash.
		got := f.verifyFrom(i, join(editValue(t, f.lines[i]), rest))
		expect(t, fmt.Sprintf("edit of record %d", i+1), got, i+1, "does not match its hash")

		// An edit with the record's own hash recomputed: the next record
		// no longer chains to it; the last is caught by the head file.
		got = f.verifyFrom(i, join(rehashed(t, editValue(t, f.lines[i])), rest))
		if i < tamperN-1 {
			expect(t, fmt.Sprintf("rehashed edit of record %d", i+1), got, i+2, "does not chain")
		} else {
			expect(t, "rehashed edit of the last record", got, i+1, "head file")
		}
	}
}

func TestTamperEveryDeletion(t *testing.T) {
	f := getFixture(t)
	for i := 0; i < tamperN; i++ {
		got := f.verifyFrom(i, join(f.lines[i+1:]...))
		switch {
		case i == 0:
			expect(t, "deletion of the first record", got, 1, "starts at record 2")
		case i == tamperN-1:
			expect(t, "deletion of the last record", got, 0, "cut short")
		default:
			expect(t, fmt.Sprintf("deletion of record %d", i+1), got, i+1, fmt.Sprintf("record %d was removed or moved", i+1))
		}
	}
}

func TestTamperEverySwap(t *testing.T) {
	f := getFixture(t)
	for i := 0; i+1 < tamperN; i++ {
		got := f.verifyFrom(i, join(f.lines[i+1], f.lines[i], join(f.lines[i+2:]...)))
		if i == 0 {
			expect(t, "swap of records 1 and 2", got, 1, "starts at record 2")
			continue
		}
		expect(t, fmt.Sprintf("swap of records %d and %d", i+1, i+2), got, i+1, "removed or moved")
	}
}

func TestTamperEveryInsertion(t *testing.T) {
	f := getFixture(t)
	for i := 0; i <= tamperN; i++ {
		rest := join(f.lines[i:]...)
		// A copy of another record (the one before, or the first).
		src := f.lines[0]
		if i > 0 {
			src = f.lines[i-1]
		}
		got := f.verifyFrom(i, join(src, rest))
		if i == 0 {
			expect(t, "insertion before record 1", got, 2, "follows record 1")
		} else {
			expect(t, fmt.Sprintf("insertion of a copy before record %d", i+1), got, i+1, fmt.Sprintf("follows record %d", i))
		}
		if i == 0 || i == tamperN {
			continue
		}
		// A forged record that chains correctly to the one before it:
		// the original that follows it then repeats its sequence number.
		forged := forge(t, f.lines[i-1])
		got = f.verifyFrom(i, join(forged, rest))
		if i == tamperN-1 {
			// The forged record takes the last record's number, which
			// the head file knows.
			expect(t, "forged record before the last", got, i+1, "head file")
			continue
		}
		expect(t, fmt.Sprintf("forged record before record %d", i+1), got, i+2, fmt.Sprintf("record %d follows record %d", i+1, i+1))
	}
}

// forge writes a record that follows prev correctly (sequence, chain,
// anchor), as an attacker who knows the format would.
func forge(t *testing.T, prevLine []byte) []byte {
	t.Helper()
	prev, err := DecodeRecord(prevLine[:len(prevLine)-1])
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Seq: prev.Seq + 1, Time: prev.Time, Kind: KindDecision, Actor: "mallory", Prev: prev.Hash}
	if prev.Anchor != 0 {
		r.Anchor = prev.Anchor + 1
	}
	line, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(line, '\n')
}

func TestTamperEveryTruncation(t *testing.T) {
	f := getFixture(t)
	for i := 0; i < tamperN; i++ {
		// Cut at a record boundary: i records left.
		got := f.verifyFrom(i, nil)
		expect(t, fmt.Sprintf("log cut to %d records", i), got, 0, "cut short")
		// Cut inside record i+1: looks like a torn write, and is still
		// caught because the anchors know record i+1 was written.
		got = f.verifyFrom(i, f.lines[i][:len(f.lines[i])/2])
		expect(t, fmt.Sprintf("log cut inside record %d", i+1), got, 0, "cut short")
	}
}

// Each anchor alone catches a log cut short: the head file without a TPM,
// the TPM counter when the attacker also deleted or rewrote the head file.
func TestTamperTruncationEachAnchorAlone(t *testing.T) {
	f := getFixture(t)
	cut := join(f.lines[:700]...)

	headOnly := f.opts
	headOnly.HaveCounter = false
	_, err := Verify(bytes.NewReader(cut), headOnly)
	if err == nil || !strings.Contains(err.Error(), "head file says record 1000") {
		t.Fatalf("head file alone: %v", err)
	}

	counterOnly := f.opts
	counterOnly.Head = nil
	_, err = Verify(bytes.NewReader(cut), counterOnly)
	if err == nil || !strings.Contains(err.Error(), "TPM counter counted 300 more") {
		t.Fatalf("counter alone: %v", err)
	}

	// An attacker who rewrote the head file to match the cut log is
	// still caught by the counter.
	last, _ := DecodeRecord(f.lines[699][:len(f.lines[699])-1])
	forgedHead := f.opts
	forgedHead.Head = &Head{Seq: last.Seq, Hash: last.Hash, Anchor: last.Anchor}
	_, err = Verify(bytes.NewReader(cut), forgedHead)
	if err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("forged head: %v", err)
	}
}

// The resumed verification gives the same answer as reading the whole
// file from its start, for every kind of change at a sample of positions.
func TestTamperWholeFile(t *testing.T) {
	f := getFixture(t)
	for _, i := range []int{0, 1, 2, 499, 500, 997, 998} {
		variants := map[string][]byte{
			"edit":     join(join(f.lines[:i]...), editValue(t, f.lines[i]), join(f.lines[i+1:]...)),
			"delete":   join(join(f.lines[:i]...), join(f.lines[i+1:]...)),
			"swap":     join(join(f.lines[:i]...), f.lines[i+1], f.lines[i], join(f.lines[i+2:]...)),
			"insert":   join(join(f.lines[:i]...), f.lines[0], join(f.lines[i:]...)),
			"truncate": join(f.lines[:i]...),
		}
		for name, data := range variants {
			whole, err := Verify(bytes.NewReader(data), f.opts)
			if err == nil {
				t.Fatalf("%s at %d: not detected reading the whole file", name, i)
			}
			var resumed *TamperError
			switch name {
			case "truncate":
				resumed = f.verifyFrom(i, nil)
			default:
				resumed = f.verifyFrom(i, data[len(join(f.lines[:i]...)):])
			}
			if resumed == nil || *resumed != *whole.Problem {
				t.Fatalf("%s at %d: whole file says %v, resumed says %v", name, i, whole.Problem, resumed)
			}
		}
	}
	// And the untouched file verifies whole.
	rep, err := VerifyFile(filepath.Join(f.dir, LogName), f.opts)
	if err != nil || rep.Records != tamperN || !rep.CounterChecked {
		t.Fatalf("untouched log: %v %+v", err, rep)
	}
}
