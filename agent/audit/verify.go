package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// Head is the chain head as the head file (or another anchor) remembers
// it: the last record written.
type Head struct {
	Seq    uint64
	Hash   string
	Anchor uint64
}

// VerifyOptions are the anchors a log is checked against, beyond its own
// chain.
type VerifyOptions struct {
	// File names the log in messages.
	File string
	// Head, when not nil, is the last record the head file says was
	// written: the log must contain exactly that record.
	Head *Head
	// Counter is the TPM NV counter's value now; used when HaveCounter.
	Counter     uint64
	HaveCounter bool
}

// Report is what verification found.
type Report struct {
	File    string
	Records int
	// LogID is the random id the log's first record carries.
	LogID string
	// First and Last are the first and the last good records.
	First, Last Record
	// GoodSize is the byte length of the log up to the end of the last
	// good record.
	GoodSize int64
	// TornTail is the length of an incomplete last line: a write that a
	// power loss cut. It is not counted as tampering because no caller was
	// ever told the record was written; anchors still catch a log cut
	// short inside a record that was.
	TornTail int
	// Anchored says the log carries TPM counter values.
	Anchored bool
	// CounterChecked says the TPM counter was compared with the log.
	CounterChecked bool
	// CounterBehind is how many increments the TPM counter is short of
	// the last record: the agent stopped between writing a record and
	// advancing the counter, or the TPM failed while records were written.
	// It is not tampering (a shorter log is what the counter guards
	// against); Open catches the counter up and records that it did.
	CounterBehind uint64
	// Previous is what the first record says about a log this one
	// replaced (nil when it started afresh): the daemon set that log aside
	// because it failed verification. It stays true of the log for its
	// whole life, unlike Log.Recovered, which only the daemon that did it
	// remembers.
	Previous *PreviousLog
	// Problem is the first thing wrong, nil when the log verifies.
	Problem *TamperError
}

// PreviousLog is what a log's first record says about the log it replaced.
type PreviousLog struct {
	// LogID is the replaced log's id; LastSeq its last good record.
	LogID   string `json:"log_id,omitempty"`
	LastSeq string `json:"last_seq,omitempty"`
	// File is the name, in the audit directory, the replaced log was kept
	// under (audit.log.broken-<time>).
	File string `json:"file,omitempty"`
	// Problem is why it failed verification.
	Problem string `json:"problem,omitempty"`
}

// previousOf reads a first record's account of the log it replaced.
func previousOf(first Record) *PreviousLog {
	if first.Kind != KindStart {
		return nil
	}
	p := &PreviousLog{LogID: first.Fields["previous_log_id"], LastSeq: first.Fields["previous_last_seq"], File: first.Fields["previous_file"], Problem: first.Fields["previous_problem"]}
	if *p == (PreviousLog{}) {
		return nil
	}
	return p
}

// ReadPrevious reads the first record of the log at path and returns what
// it says about a log it replaced (nil when none). It checks nothing else:
// that is Verify's job.
func ReadPrevious(path string) (*PreviousLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	var prev *PreviousLog
	errFirst := errors.New("first record read")
	err = Scan(f, func(_ int, rec Record, rerr error) error {
		if rerr == nil {
			prev = previousOf(rec)
		}
		return errFirst
	})
	if err != nil && err != errFirst {
		return nil, fmt.Errorf("audit: read %s: %w", path, err)
	}
	return prev, nil
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return r.Problem == nil }

// VerifyFile checks the log at path; see Verify.
func VerifyFile(path string, opts VerifyOptions) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if opts.File == "" {
		opts.File = path
	}
	return Verify(f, opts)
}

// Verify reads a log and checks every record, the chain between them and
// the anchors in opts. It stops at the first problem, which it reports in
// Report.Problem and returns as a *TamperError; any other error is a
// failure to read.
func Verify(r io.Reader, opts VerifyOptions) (*Report, error) {
	v := verifier{opts: opts, rep: Report{File: opts.File}}
	br := bufio.NewReaderSize(r, maxLineBytes+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			v.fail(v.lineNo+1, 0, "line is longer than %d bytes: not an audit record", maxLineBytes)
			return v.result()
		}
		if err == io.EOF {
			v.finish(len(line))
			return v.result()
		}
		if err != nil {
			return &v.rep, fmt.Errorf("audit: read %s: %w", opts.File, err)
		}
		if !v.line(line) {
			return v.result()
		}
	}
}

// verifier is verification as a left fold over the lines of a log: its
// state after a line depends only on the state before and the line, so a
// copy of it taken after a prefix can go on with any continuation.
type verifier struct {
	opts     VerifyOptions
	rep      Report
	prev     Record
	lineNo   int
	headSeen bool
}

func (v *verifier) result() (*Report, error) {
	if v.rep.Problem != nil {
		return &v.rep, v.rep.Problem
	}
	return &v.rep, nil
}

func (v *verifier) fail(line int, seq uint64, format string, args ...any) {
	v.rep.Problem = &TamperError{File: v.opts.File, Line: line, Seq: seq, Reason: fmt.Sprintf(format, args...)}
}

// line checks one complete line (with its newline) and reports whether
// verification may go on.
func (v *verifier) line(line []byte) bool {
	v.lineNo++
	text := line[:len(line)-1]
	if len(text) == 0 {
		v.fail(v.lineNo, 0, "empty line")
		return false
	}
	rec, err := DecodeRecord(text)
	if err != nil {
		v.fail(v.lineNo, rec.Seq, "%v", err)
		return false
	}
	if reason := chainProblem(v.prev, rec, v.lineNo == 1); reason != "" {
		v.fail(v.lineNo, rec.Seq, "%s", reason)
		return false
	}
	if v.lineNo == 1 {
		v.rep.First = rec
		v.rep.LogID = rec.Fields["log_id"]
		v.rep.Previous = previousOf(rec)
	}
	if h := v.opts.Head; h != nil && rec.Seq == h.Seq {
		v.headSeen = true
		if rec.Hash != h.Hash {
			v.fail(v.lineNo, rec.Seq, "differs from the record the head file says was written (hash %.12s…, head %.12s…): the record was replaced", rec.Hash, h.Hash)
			return false
		}
	}
	if rec.Anchor != 0 {
		v.rep.Anchored = true
	}
	v.prev = rec
	v.rep.Records++
	v.rep.Last = rec
	v.rep.GoodSize += int64(len(line))
	return true
}

// finish checks the end of the log against the anchors: was it cut short?
// torn is the length of an incomplete last line.
func (v *verifier) finish(torn int) {
	v.rep.TornTail = torn
	prev := v.prev
	if h := v.opts.Head; h != nil && h.Seq > 0 && !v.headSeen {
		if v.rep.Records == 0 {
			v.fail(0, 0, "the log is empty but the head file says record %d was written: the log was cut short or replaced", h.Seq)
		} else {
			v.fail(0, 0, "the log ends at record %d but the head file says record %d was written: the log was cut short", prev.Seq, h.Seq)
		}
		return
	}
	if v.opts.HaveCounter && prev.Anchor != 0 {
		v.rep.CounterChecked = true
		c, last := v.opts.Counter, prev.Anchor
		switch {
		case c < last:
			v.rep.CounterBehind = last - c
		case c > last:
			v.fail(0, 0, "the log ends at record %d but the TPM counter counted %d more record(s) after it: the log was cut short", prev.Seq, c-last)
		}
	}
}

// chainProblem says what is wrong with rec following prev, or "".
func chainProblem(prev, rec Record, first bool) string {
	if first {
		switch {
		case rec.Seq != 1:
			return fmt.Sprintf("the log starts at record %d, not 1: records 1 to %d are missing (the log was cut at its start)", rec.Seq, rec.Seq-1)
		case rec.Prev != zeroHash:
			return "the first record does not start a chain (its prev is not zero): records before it are missing"
		case rec.Kind != KindStart:
			return fmt.Sprintf("the first record is %q, not %q", rec.Kind, KindStart)
		}
		return ""
	}
	switch {
	case rec.Seq <= prev.Seq:
		return fmt.Sprintf("record %d follows record %d: records were reordered, repeated or inserted here", rec.Seq, prev.Seq)
	case rec.Seq > prev.Seq+1:
		if rec.Seq == prev.Seq+2 {
			return fmt.Sprintf("expected record %d here, found record %d: record %d was removed or moved", prev.Seq+1, rec.Seq, prev.Seq+1)
		}
		return fmt.Sprintf("expected record %d here, found record %d: records %d to %d were removed or moved", prev.Seq+1, rec.Seq, prev.Seq+1, rec.Seq-1)
	case rec.Prev != prev.Hash:
		return fmt.Sprintf("does not chain to the record before it (its prev is %.12s…, record %d hashes to %.12s…): a record was inserted, replaced or rewritten here", rec.Prev, prev.Seq, prev.Hash)
	}
	// Anchor values: consecutive once anchoring started; anchoring may
	// start, stop or restart only at a record that says so.
	switch {
	case rec.Kind == KindAnchor:
	case prev.Anchor != 0 && rec.Anchor == prev.Anchor+1:
	case prev.Anchor != 0 && rec.Anchor == 0:
		return fmt.Sprintf("TPM counter anchoring stops here without a %s record", KindAnchor)
	case prev.Anchor != 0:
		return fmt.Sprintf("its TPM counter value %d does not follow %d of the record before", rec.Anchor, prev.Anchor)
	case rec.Anchor != 0:
		return fmt.Sprintf("TPM counter anchoring starts here without a %s record", KindAnchor)
	}
	return ""
}

// Scan calls fn for each line of a log in order, with its decoded record
// or the reason it cannot be read (err is then a *RecordError). It does not
// check the chain: that is Verify's job. fn's error stops the scan.
func Scan(r io.Reader, fn func(line int, rec Record, err error) error) error {
	br := bufio.NewReaderSize(r, maxLineBytes+1)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fn(n, Record{}, &RecordError{Reason: "line too long"})
		}
		if err == io.EOF {
			if len(line) > 0 {
				return fn(n, Record{}, &RecordError{Reason: "incomplete last line"})
			}
			return nil
		}
		if err != nil {
			return err
		}
		rec, derr := DecodeRecord(line[:len(line)-1])
		if err := fn(n, rec, derr); err != nil {
			return err
		}
	}
}
