package audit

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Counter is a monotonic counter that an attacker with the log's files
// cannot roll back: the TPM's NV counter. Increment returns the value after
// the increment; Read the value now.
type Counter interface {
	Increment() (uint64, error)
	Read() (uint64, error)
}

// File names in the audit directory.
const (
	LogName  = "audit.log"
	HeadName = "audit.head"
	tornName = "audit.log.torn"
)

// Options configure Open.
type Options struct {
	// Dir is the audit directory (created 0700 if missing), normally
	// <state_dir>/audit.
	Dir string
	// Counter anchors the log's length in a TPM NV counter; nil when the
	// device has no TPM. The counter must belong to this log alone.
	Counter Counter
	// Logger gets the log's own messages; nil discards them.
	Logger *slog.Logger
	// Now returns the time records carry; nil means time.Now.
	Now func() time.Time
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	dir     string
	path    string
	counter Counter
	logger  *slog.Logger
	now     func() time.Time

	mu            sync.Mutex
	f             *os.File
	head          *os.File
	size          int64
	last          Record
	logID         string
	anchoring     bool
	counterBehind uint64
	closed        bool
	recovered     *TamperError
	subs          map[chan struct{}]struct{}
}

// Open opens the log in opts.Dir, creating it if needed, and verifies what
// is there against its anchors. A log that fails verification is not
// appended to: it is renamed audit.log.broken-<time> and kept as evidence,
// and a new log starts whose first record names it and its problem
// (Recovered returns the problem). An incomplete last line left by a power
// loss is moved to audit.log.torn and noted in a repair record.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("audit: no directory given")
	}
	l := &Log{
		dir:     opts.Dir,
		path:    filepath.Join(opts.Dir, LogName),
		counter: opts.Counter,
		logger:  opts.Logger,
		now:     opts.Now,
		subs:    map[chan struct{}]struct{}{},
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create %s: %w", l.dir, err)
	}
	if err := l.openFiles(); err != nil {
		return nil, err
	}
	if err := l.recover(); err != nil {
		l.f.Close()
		l.head.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) openFiles() error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: open log: %w", err)
	}
	h, err := os.OpenFile(filepath.Join(l.dir, HeadName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: open head file: %w", err)
	}
	l.f, l.head = f, h
	return nil
}

// recover verifies the existing log and brings the files and the counter
// into the state Append expects.
func (l *Log) recover() error {
	vopts := VerifyOptions{File: l.path}
	var problem *TamperError
	head, err := ReadHead(filepath.Join(l.dir, HeadName))
	var te *TamperError
	switch {
	case errors.As(err, &te):
		problem = te
	case err != nil:
		return err
	default:
		vopts.Head = head
	}
	if l.counter != nil {
		c, err := l.counter.Read()
		if err != nil {
			return fmt.Errorf("audit: read the TPM counter: %w", err)
		}
		vopts.Counter, vopts.HaveCounter = c, true
	}
	// Verified even when the head file is damaged: a log set aside must
	// be named (its id and last good record) by the log that replaces it,
	// so that the syslog copy's records of it stay accounted for.
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	rep, err := Verify(l.f, vopts)
	if err != nil && !errors.As(err, &te) {
		return err
	}
	if problem == nil {
		problem = rep.Problem
	}
	if problem != nil {
		return l.quarantine(problem, rep)
	}

	repairs := map[string]string{}
	if rep.TornTail > 0 {
		if err := l.saveTorn(rep.GoodSize, rep.TornTail); err != nil {
			return err
		}
		repairs["torn_bytes"] = strconv.Itoa(rep.TornTail)
		l.logger.Warn("audit: incomplete last record removed (power loss while writing)", "bytes", rep.TornTail, "kept_in", tornName)
	}
	l.size = rep.GoodSize
	if rep.Records == 0 {
		return l.genesis(nil)
	}
	l.last, l.logID = rep.Last, rep.LogID
	l.anchoring = rep.Last.Anchor != 0

	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.counter != nil && !l.anchoring:
		if err := l.restartAnchorLocked(map[string]string{"anchor": "tpm-nv-counter"}); err != nil {
			return err
		}
	case l.counter == nil && l.anchoring:
		l.logger.Warn("audit: this log was anchored in a TPM counter but no counter is configured now; anchoring stops")
		l.anchoring = false
		if _, err := l.appendLocked(Entry{Kind: KindAnchor, Actor: "agent", Fields: map[string]string{"anchor": "none"}}); err != nil {
			return err
		}
	case rep.CounterBehind > 0:
		l.counterBehind = rep.CounterBehind
		if err := l.catchUpLocked(); err != nil {
			return err
		}
		repairs["counter_caught_up"] = strconv.FormatUint(rep.CounterBehind, 10)
	}
	if len(repairs) > 0 {
		if _, err := l.appendLocked(Entry{Kind: KindRepair, Actor: "agent", Fields: repairs}); err != nil {
			return err
		}
	}
	return nil
}

// quarantine sets a log that failed verification aside and starts anew.
func (l *Log) quarantine(problem *TamperError, rep *Report) error {
	name := LogName + ".broken-" + l.now().UTC().Format("20060102T150405.000000000Z")
	l.logger.Error("audit: the log failed verification; it is kept aside and a new log starts", "problem", problem.Error(), "kept_as", name)
	l.f.Close()
	l.head.Close()
	if err := os.Rename(l.path, filepath.Join(l.dir, name)); err != nil {
		return fmt.Errorf("audit: set the broken log aside: %w", err)
	}
	if err := os.Remove(filepath.Join(l.dir, HeadName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: %w", err)
	}
	if err := l.openFiles(); err != nil {
		return err
	}
	l.recovered = problem
	l.size = 0
	fields := map[string]string{"previous_file": name, "previous_problem": problem.Error()}
	if rep != nil && rep.LogID != "" {
		fields["previous_log_id"] = rep.LogID
		fields["previous_last_seq"] = strconv.FormatUint(rep.Last.Seq, 10)
	}
	return l.genesis(fields)
}

// saveTorn moves the bytes after good to audit.log.torn and cuts the log.
func (l *Log) saveTorn(good int64, n int) error {
	buf := make([]byte, n)
	if _, err := l.f.ReadAt(buf, good); err != nil && err != io.EOF {
		return fmt.Errorf("audit: read torn tail: %w", err)
	}
	t, err := os.OpenFile(filepath.Join(l.dir, tornName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: keep torn tail: %w", err)
	}
	_, werr := t.Write(append(buf, '\n'))
	if err := errors.Join(werr, t.Sync(), t.Close()); err != nil {
		return fmt.Errorf("audit: keep torn tail: %w", err)
	}
	if err := l.f.Truncate(good); err != nil {
		return fmt.Errorf("audit: cut torn tail: %w", err)
	}
	return l.f.Sync()
}

// genesis writes the first record of a new log.
func (l *Log) genesis(extra map[string]string) error {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logID = hex.EncodeToString(id)
	l.last = Record{}
	fields := map[string]string{"log_id": l.logID, "anchor": "none"}
	for k, v := range extra {
		fields[k] = v
	}
	e := Entry{Kind: KindStart, Actor: "agent", Fields: fields}
	if l.counter != nil {
		fields["anchor"] = "tpm-nv-counter"
		return l.startAnchoredLocked(e)
	}
	_, err := l.appendLocked(e)
	return err
}

// restartAnchorLocked appends a KindAnchor record that (re)starts
// anchoring at the counter's current value.
func (l *Log) restartAnchorLocked(fields map[string]string) error {
	return l.startAnchoredLocked(Entry{Kind: KindAnchor, Actor: "agent", Fields: fields})
}

// startAnchoredLocked writes e as the first record of an anchored run: the
// counter is advanced once to learn (and claim) its value, the record
// carries the next value, and the usual increment follows the write.
func (l *Log) startAnchoredLocked(e Entry) error {
	base, err := l.counter.Increment()
	if err != nil {
		return fmt.Errorf("audit: increment the TPM counter: %w", err)
	}
	l.anchoring = true
	l.counterBehind = 0
	l.last.Anchor = base // the record gets base+1
	e.Fields["counter_base"] = strconv.FormatUint(base, 10)
	_, err = l.appendLocked(e)
	return err
}

// catchUpLocked advances the counter to the last record's value after
// increments were missed.
func (l *Log) catchUpLocked() error {
	for l.counterBehind > 0 {
		v, err := l.counter.Increment()
		if err != nil {
			return fmt.Errorf("audit: increment the TPM counter: %w", err)
		}
		l.counterBehind--
		if v+l.counterBehind != l.last.Anchor {
			return fmt.Errorf("%w: at %d, expected %d", ErrCounterMoved, v, l.last.Anchor-l.counterBehind)
		}
	}
	return nil
}

// Append writes one record durably (fsync) and, when anchored, advances
// the TPM counter. It returns the record as written. When the record is
// written but the counter could not be advanced, the record stands, the
// error says so, and the next Append or Open catches the counter up.
func (l *Log) Append(e Entry) (Record, error) {
	e, err := e.normalise()
	if err != nil {
		return Record{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Record{}, ErrClosed
	}
	if l.counterBehind > 0 {
		if err := l.catchUpLocked(); err != nil {
			l.logger.Warn("audit: TPM counter still behind", "behind", l.counterBehind, "err", err)
		}
	}
	return l.appendLocked(e)
}

func (l *Log) appendLocked(e Entry) (Record, error) {
	e, err := e.normalise()
	if err != nil {
		return Record{}, err
	}
	r := Record{Seq: l.last.Seq + 1, Time: l.now().UTC().Round(0), Kind: e.Kind, Actor: e.Actor, Fields: e.Fields, Prev: l.last.Hash}
	if r.Prev == "" {
		r.Prev = zeroHash
	}
	if l.anchoring {
		r.Anchor = l.last.Anchor + 1
	}
	line, err := r.encode()
	if err != nil {
		return Record{}, err
	}
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		l.undoLocked()
		return Record{}, fmt.Errorf("audit: write record %d: %w", r.Seq, err)
	}
	if err := l.f.Sync(); err != nil {
		l.undoLocked()
		return Record{}, fmt.Errorf("audit: sync record %d: %w", r.Seq, err)
	}
	l.size += int64(len(line))
	l.last = r
	var cerr error
	if l.anchoring {
		cerr = l.advanceCounterLocked(r)
	}
	if err := l.writeHeadLocked(); err != nil {
		l.logger.Warn("audit: head file not updated", "err", err)
	}
	for ch := range l.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return r, cerr
}

// advanceCounterLocked increments the counter after r was written.
func (l *Log) advanceCounterLocked(r Record) error {
	v, err := l.counter.Increment()
	if err != nil {
		l.counterBehind++
		l.logger.Warn("audit: record written but the TPM counter could not be advanced; will catch up", "seq", r.Seq, "err", err)
		return fmt.Errorf("audit: record %d written, TPM counter not advanced: %w", r.Seq, err)
	}
	if v == r.Anchor {
		return nil
	}
	// Something else moved the counter: restart anchoring from where it
	// is, so that verification goes on working, and say so in the log.
	l.logger.Error("audit: the TPM counter moved outside this log", "expected", r.Anchor, "found", v)
	if err := l.restartAnchorLocked(map[string]string{"anchor": "tpm-nv-counter", "reason": "counter_moved", "expected": strconv.FormatUint(r.Anchor, 10), "found": strconv.FormatUint(v, 10)}); err != nil {
		return err
	}
	return fmt.Errorf("%w: expected %d, found %d", ErrCounterMoved, r.Anchor, v)
}

// undoLocked cuts a partly written record off, so the next one chains to
// the last good record.
func (l *Log) undoLocked() {
	if err := l.f.Truncate(l.size); err != nil {
		l.logger.Error("audit: could not cut a failed write; the log will be repaired at next start", "err", err)
	}
}

// headLine is the head file's fixed-width content.
func headLine(h Head) []byte {
	return []byte(fmt.Sprintf("%020d %s %020d\n", h.Seq, h.Hash, h.Anchor))
}

// The head file is rewritten in place with one write of a fixed length
// (well inside one page), so it never holds half of two heads. It is not
// synced: after a power loss it may lag the log by a record, which
// verification accepts, but it can never be ahead of the log, because the
// log is synced before the head is written.
func (l *Log) writeHeadLocked() error {
	_, err := l.head.WriteAt(headLine(Head{Seq: l.last.Seq, Hash: l.last.Hash, Anchor: l.last.Anchor}), 0)
	return err
}

// ReadHead reads a head file. A missing or empty file gives nil; a damaged
// one a *TamperError.
func ReadHead(path string) (*Head, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(b) == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read head file: %w", err)
	}
	bad := &TamperError{File: path, Reason: "the head file is damaged (it should hold: seq hash anchor)"}
	f := strings.Fields(string(b))
	if len(f) != 3 || len(b) != len(headLine(Head{Hash: zeroHash})) || !isLowerHex(f[1]) {
		return nil, bad
	}
	seq, err1 := strconv.ParseUint(f[0], 10, 64)
	anchor, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, bad
	}
	return &Head{Seq: seq, Hash: f[1], Anchor: anchor}, nil
}

// Subscribe returns a channel that receives a signal after records are
// appended (signals coalesce), and a function that stops them.
func (l *Log) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

// Path is the log file's path.
func (l *Log) Path() string { return l.path }

// Dir is the audit directory.
func (l *Log) Dir() string { return l.dir }

// Last returns the last record written.
func (l *Log) Last() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// LogID is the random id of this log (from its first record).
func (l *Log) LogID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logID
}

// Anchored reports whether records are anchored in the TPM counter.
func (l *Log) Anchored() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.anchoring
}

// Recovered returns the problem that made Open set a broken log aside, or
// nil.
func (l *Log) Recovered() *TamperError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recovered
}

// Verify checks the live log against its head and, when anchored, the TPM
// counter. Appends wait only while the snapshot is taken.
func (l *Log) Verify() (*Report, error) {
	l.mu.Lock()
	size := l.size
	opts := VerifyOptions{File: l.path, Head: &Head{Seq: l.last.Seq, Hash: l.last.Hash, Anchor: l.last.Anchor}}
	if l.counter != nil {
		c, err := l.counter.Read()
		if err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("audit: read the TPM counter: %w", err)
		}
		opts.Counter, opts.HaveCounter = c, true
	}
	l.mu.Unlock()
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	return Verify(io.LimitReader(f, size), opts)
}

// Close stops appends and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(l.f.Close(), l.head.Close())
}
