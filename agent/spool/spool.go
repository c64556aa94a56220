// Package spool is the agent's durable on-disk queue of events waiting to
// go home. It keeps the promise that an event the device raised reaches
// the backend even through power loss, reboots and long outages:
//
//   - Put returns only once the event is on disk for good: it is written to
//     a temporary file, synced, renamed into place, and the directory is
//     synced. A crash at any point leaves the whole event or nothing.
//     Callers that arrive together share one commit (group commit): their
//     events go into one file with one data sync and one directory sync.
//   - An event leaves the spool only when the uploader acknowledges it
//     (Ack), after the backend has stored it.
//   - Lease hands events out highest severity first, then oldest first.
//   - The spool is bounded by count and bytes. When full it drops the
//     oldest events of the lowest severity first, never one of severity
//     error or above, and counts what it dropped. ENOSPC and a read-only
//     filesystem give a DiskError with a diagnosis; nothing already
//     spooled is lost.
//   - A torn or corrupt file found when opening (or when reading it later)
//     is moved to the quarantine folder with a .reason file and a log
//     line; intact events in it are spooled again, and the rest of the
//     spool is not held up.
//
// The directory holds *.spl files (format.go), .tmp-* files being written,
// and quarantine/.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/agent/event"
)

// Limits bound the spool. Zero means the default.
type Limits struct {
	MaxBytes  int64 // bytes of spool files; default 64 MiB
	MaxEvents int   // events; default 20000 (about 170 bytes of memory each)
}

const (
	defaultMaxBytes  = 64 << 20
	defaultMaxEvents = 20000
	// A commit takes at most this many events or bytes, so that one huge
	// burst does not make the first caller wait for all of it.
	maxBatchEvents = 512
	maxBatchBytes  = 4 << 20
	quarantineDir  = "quarantine"
	fileSuffix     = ".spl"
	tmpPrefix      = ".tmp-"
)

type state uint8

const (
	queued state = iota
	leased
	gone
)

type record struct {
	id    string
	sev   event.Severity
	size  int64 // body length
	off   int64 // body offset in its file
	file  *file
	state state
}

type file struct {
	name string
	size int64
	live int // records not yet acknowledged, dropped or quarantined
	recs []*record
}

// Record is one leased event.
type Record struct {
	ID       string
	Severity event.Severity
	// Data is the event's encoding (event.Marshal), the exact bytes to
	// upload.
	Data []byte
}

// Stats is the spool's state for `dcagent status` and `dcagent diag`.
type Stats struct {
	Backlog      int                    `json:"backlog"`       // events waiting, leased ones included
	BacklogBytes int64                  `json:"backlog_bytes"` // bytes of spool files
	Leased       int                    `json:"leased"`        // handed to the uploader, not yet acknowledged
	BySeverity   map[event.Severity]int `json:"by_severity"`
	// Dropped counts events dropped to make room, by severity; Refused
	// counts new events turned away because nothing below them could go.
	Dropped     map[event.Severity]int64 `json:"dropped"`
	Refused     int64                    `json:"refused"`
	Quarantined int64                    `json:"quarantined"` // files moved to quarantine/
	Acked       int64                    `json:"acked"`
	Put         int64                    `json:"put"`
	Commits     int64                    `json:"commits"` // file commits (Put / Commits = events per sync)
	OverLimit   bool                     `json:"over_limit"`
	// LastError is the last disk error with its diagnosis, "" when none.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitempty"`
}

// DroppedTotal sums Dropped and Refused.
func (s Stats) DroppedTotal() int64 {
	n := s.Refused
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// Spool is the durable event queue. It implements event.Sink.
type Spool struct {
	dir    string
	limits Limits
	log    *slog.Logger

	mu       sync.Mutex
	byID     map[string]*record
	queues   [event.SeverityCritical + 1]queue
	files    map[string]*file
	bytes    int64
	count    int
	leased   int
	changed  chan struct{} // closed and replaced whenever events arrive or return
	closed   bool
	systemID string
	st       Stats
	// stuck holds files whose removal failed (read-only filesystem): their
	// events are acknowledged and are not handed out again.
	stuck map[string]bool

	reqs    chan *putReq
	closing chan struct{}
	done    chan struct{}
}

var _ event.Sink = (*Spool)(nil)

type putReq struct {
	id   string
	sev  event.Severity
	body []byte
	done chan error
}

// Open opens (creating if needed) the spool in dir. It checks every file,
// quarantines damaged ones and finishes commits a crash interrupted.
// logger may be nil.
func Open(dir string, limits Limits, logger *slog.Logger) (*Spool, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = defaultMaxBytes
	}
	if limits.MaxEvents <= 0 {
		limits.MaxEvents = defaultMaxEvents
	}
	s := &Spool{
		dir:     dir,
		limits:  limits,
		log:     logger.With("part", "spool"),
		byID:    map[string]*record{},
		files:   map[string]*file{},
		changed: make(chan struct{}),
		stuck:   map[string]bool{},
		reqs:    make(chan *putReq, maxBatchEvents),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		st:      Stats{Dropped: map[event.Severity]int64{}},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, s.classify("create spool directory", dir, err)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	go s.committer()
	return s, nil
}

// SetSystemID sets the system ID that Put writes into events that do not
// carry one.
func (s *Spool) SetSystemID(id string) {
	s.mu.Lock()
	s.systemID = id
	s.mu.Unlock()
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// load reads the directory at Open.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", s.dir, err)
	}
	var names []string
	recovered := 0
	for _, de := range entries {
		name := de.Name()
		switch {
		case de.IsDir():
		case strings.HasPrefix(name, tmpPrefix):
			if final, ok := s.recoverTemp(name); ok {
				names = append(names, final)
				recovered++
			}
		case strings.HasSuffix(name, fileSuffix):
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		s.loadFile(name)
	}
	if recovered > 0 {
		_ = s.syncDir()
	}
	if s.count > 0 || s.st.Quarantined > 0 || recovered > 0 {
		s.log.Info("spool: opened", "dir", s.dir, "backlog", s.count, "bytes", s.bytes,
			"quarantined", s.st.Quarantined, "recovered_commits", recovered)
	}
	return nil
}

// recoverTemp looks at a temporary file left by a crash. A complete one
// holds events whose Put had not returned yet: they are still worth
// sending, so it is synced and renamed into place. A torn one is
// quarantined.
func (s *Spool) recoverTemp(name string) (string, bool) {
	path := filepath.Join(s.dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		s.log.Warn("spool: cannot read unfinished commit", "file", name, "err", err)
		return "", false
	}
	if _, derr := decodeFile(data); derr != nil {
		s.quarantine(name, fmt.Sprintf("unfinished commit (the agent stopped while writing it): %v", derr), salvageFile(data))
		return "", false
	}
	final := strings.TrimPrefix(name, tmpPrefix)
	if !strings.HasSuffix(final, fileSuffix) {
		final += fileSuffix
	}
	if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
		_ = f.Sync()
		f.Close()
	}
	if err := os.Rename(path, filepath.Join(s.dir, final)); err != nil {
		s.log.Warn("spool: cannot finish unfinished commit", "file", name, "err", err)
		return "", false
	}
	return final, true
}

// loadFile registers the records of one spool file, or quarantines it.
func (s *Spool) loadFile(name string) {
	path := filepath.Join(s.dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		s.log.Warn("spool: cannot read file", "file", name, "err", err)
		return
	}
	recs, derr := decodeFile(data)
	if derr != nil {
		s.quarantine(name, derr.Error(), salvageFile(data))
		return
	}
	f := &file{name: name, size: int64(len(data))}
	for _, rr := range recs {
		r := &record{id: rr.id, sev: rr.sev, size: int64(len(rr.body)), off: rr.off, file: f}
		f.recs = append(f.recs, r)
		if _, dup := s.byID[rr.id]; dup {
			// The same event committed twice (a caller retried after a
			// crash): keep the first copy only.
			r.state = gone
			continue
		}
		f.live++
		s.byID[r.id] = r
		s.queues[r.sev].push(r)
		s.count++
	}
	if f.live == 0 {
		_ = os.Remove(path)
		return
	}
	s.files[name] = f
	s.bytes += f.size
}

// quarantine moves a damaged file aside with the reason next to it, and
// spools again every intact event in it (salvage.go: those after the
// damage too). The .reason file and the log line say how many events were
// recovered, how many were lost and where. The caller holds s.mu (or is
// Open, before anything else runs).
func (s *Spool) quarantine(name, reason string, sv salvaged) {
	qdir := filepath.Join(s.dir, quarantineDir)
	src := filepath.Join(s.dir, name)
	dst := filepath.Join(qdir, strings.TrimPrefix(name, tmpPrefix))
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		s.log.Error("spool: cannot create quarantine folder; damaged file left in place and skipped", "file", name, "reason", reason, "err", err)
		return
	}
	// Spool the intact events again first (the usual durable path), then
	// move the damaged file: a crash in between leaves the damaged file in
	// place to be looked at again, and the copies are recognised by id.
	saved := s.respool(name, sv.recs)
	if err := os.Rename(src, dst); err != nil {
		s.log.Error("spool: cannot quarantine damaged file; it is left in place and skipped", "file", name, "reason", reason, "err", err)
		return
	}
	where := " none found"
	if len(sv.damage) > 0 {
		where = "\n  " + sv.where("\n  ")
	}
	note := fmt.Sprintf("file: %s\nquarantined: %s\nreason: %s\n"+
		"intact events recovered: %d, spooled again: %d\nevents lost: %s\ndamage:%s\n",
		name, time.Now().UTC().Format(time.RFC3339), reason, len(sv.recs), saved, sv.lostText(), where)
	_ = os.WriteFile(dst+".reason", []byte(note), 0o600)
	_ = s.syncDir()
	s.st.Quarantined++
	s.log.Warn("spool: quarantined damaged file", "file", name, "to", dst, "reason", reason,
		"recovered", len(sv.recs), "spooled_again", saved, "lost", sv.lostText(), "damage", sv.where("; "))
}

// respool writes intact events from a damaged file into a fresh file and
// returns how many are spooled (already spooled ones count).
func (s *Spool) respool(name string, salvage []rawRecord) int {
	var fresh []rawRecord
	have := 0
	for _, rr := range salvage {
		if _, dup := s.byID[rr.id]; dup {
			have++
		} else {
			fresh = append(fresh, rr)
		}
	}
	if len(fresh) == 0 {
		return have
	}
	reqs := make([]*putReq, len(fresh))
	for i, rr := range fresh {
		reqs[i] = &putReq{id: rr.id, sev: rr.sev, body: append([]byte(nil), rr.body...)}
	}
	f, err := s.writeFile(reqs)
	if err != nil {
		s.log.Error("spool: cannot spool intact events of damaged file again; they stay in quarantine with it", "file", name, "err", err)
		return have
	}
	s.addFileLocked(f, reqs)
	s.st.Commits-- // not a Put
	s.st.Put -= int64(len(reqs))
	return have + len(reqs)
}

// Put spools e durably. It fills in a missing id, creation time and system
// ID (from SetSystemID), validates the event against the reportable-items
// registry, and returns once the event is on disk for good. Putting an
// event whose id is already spooled is a no-op.
func (s *Spool) Put(e *event.Event) error {
	if e == nil {
		return errors.New("spool: nil event")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if e.SystemID == "" {
		e.SystemID = s.systemID
	}
	s.mu.Unlock()
	if e.ID == "" {
		e.ID = event.NewID()
	}
	if e.Created.IsZero() {
		e.Created = time.Now().UTC()
	}
	body, err := event.Marshal(e)
	if err != nil {
		return fmt.Errorf("spool: refused event: %w", err)
	}
	req := &putReq{id: e.ID, sev: e.Severity, body: body, done: make(chan error, 1)}
	select {
	case s.reqs <- req:
	case <-s.closing:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-s.done:
		// The committer has stopped; it may have answered just before.
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// committer is the one goroutine that writes spool files. Whatever Puts
// queued while it was busy go into the next file together: that is the
// group commit.
func (s *Spool) committer() {
	defer close(s.done)
	for {
		var first *putReq
		select {
		case first = <-s.reqs:
		case <-s.closing:
			// Finish what was already handed over, then stop.
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*putReq{r})
				default:
					return
				}
			}
		}
		batch := []*putReq{first}
		size := len(first.body)
	more:
		for len(batch) < maxBatchEvents && size < maxBatchBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += len(r.body)
			default:
				break more
			}
		}
		s.commit(batch)
	}
}

// commit makes room, writes one file for the batch and registers it.
func (s *Spool) commit(batch []*putReq) {
	s.mu.Lock()
	var accept []*putReq
	seen := map[string]bool{}
	var victims []*record
	var freed, acceptBytes int64
	// Admit the most important first, so that an error in this batch is
	// never crowded out by an info event in the same batch.
	order := append([]*putReq(nil), batch...)
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].sev != order[j].sev {
			return order[i].sev > order[j].sev
		}
		return order[i].id < order[j].id
	})
	for _, r := range order {
		if _, dup := s.byID[r.id]; dup || seen[r.id] {
			r.done <- nil // already spooled: idempotent
			continue
		}
		need := int64(len(r.body) + recordOverhead)
		ok := s.makeRoomLocked(r.sev, need, len(accept), acceptBytes, &freed, &victims)
		if !ok {
			s.st.Refused++
			s.log.Warn("spool: full, refused a new event ranking below everything spooled", "id", r.id, "severity", r.sev)
			r.done <- fmt.Errorf("%w: %d events, %d bytes (limits %d, %d); event %s (severity %d) ranks below everything that could be dropped",
				ErrFull, s.count, s.bytes, s.limits.MaxEvents, s.limits.MaxBytes, r.id, r.sev)
			continue
		}
		seen[r.id] = true
		accept = append(accept, r)
		acceptBytes += need
	}
	s.dropRecordsLocked(victims)
	s.mu.Unlock()
	if len(accept) == 0 {
		return
	}

	f, err := s.writeFile(accept)
	if err != nil && errors.Is(err, ErrNoSpace) {
		// The filesystem is full before our bounds are: make room the same
		// way, dropping the oldest low-severity events, and try once more.
		if s.freeForNoSpace(accept) {
			f, err = s.writeFile(accept)
		}
	}
	if err != nil {
		s.noteError(err)
		for _, r := range accept {
			r.done <- err
		}
		return
	}
	s.mu.Lock()
	s.addFileLocked(f, accept)
	s.mu.Unlock()
	for _, r := range accept {
		r.done <- nil
	}
}

func sumSize(rs []*putReq) int64 {
	var n int64
	for _, r := range rs {
		n += int64(len(r.body) + recordOverhead)
	}
	return n
}

// makeRoomLocked decides whether an event of severity sev and need bytes
// fits, choosing victims (lowest severity, oldest first, below error,
// never above the new event's own severity). pendingN and pendingBytes
// are what this commit already accepted; freed and victims accumulate
// over the commit.
func (s *Spool) makeRoomLocked(sev event.Severity, need int64, pendingN int, pendingBytes int64, freed *int64, victims *[]*record) bool {
	for s.count+pendingN+1 > s.limits.MaxEvents || s.bytes-*freed+pendingBytes+need > s.limits.MaxBytes {
		v := s.victimLocked(sev)
		if v == nil {
			if sev >= event.SeverityError {
				// Never lose an alert of severity error or above: go over
				// the bound rather than refuse it.
				if !s.st.OverLimit {
					s.log.Warn("spool: over its bound to keep an event of severity error or above", "severity", sev)
				}
				s.st.OverLimit = true
				return true
			}
			return false
		}
		s.takeLocked(v)
		*freed += v.size + recordOverhead
		*victims = append(*victims, v)
	}
	return true
}

// victimLocked returns the next event to drop for one of severity sev, or
// nil. Only queued events below error, at or below sev, qualify.
func (s *Spool) victimLocked(sev event.Severity) *record {
	for lv := event.SeverityInfo; lv < event.SeverityError && lv <= sev; lv++ {
		if r := s.queues[lv].peek(); r != nil {
			return r
		}
	}
	return nil
}

// takeLocked takes a queued record out of the counts and its queue; its
// file is dealt with by dropRecordsLocked.
func (s *Spool) takeLocked(r *record) {
	s.queues[r.sev].remove(r)
	r.state = gone
	delete(s.byID, r.id)
	s.count--
	r.file.live--
	s.st.Dropped[r.sev]++
}

// dropRecordsLocked removes the files that held dropped records, or
// rewrites them without those records so the space really comes back.
// Drops are rare (the spool is full), so the rewrite holds the lock.
func (s *Spool) dropRecordsLocked(victims []*record) {
	if len(victims) == 0 {
		return
	}
	s.log.Warn("spool: full, dropped oldest low-severity events", "dropped", len(victims))
	files := map[*file]bool{}
	for _, v := range victims {
		files[v.file] = true
	}
	for f := range files {
		s.shrinkFileLocked(f)
	}
	_ = s.syncDir()
}

// shrinkFileLocked rewrites f without its gone records, or removes it when
// none is left. A file with a leased record is left as it is: its space
// comes back when the upload finishes.
func (s *Spool) shrinkFileLocked(f *file) {
	if f.live <= 0 {
		_ = s.removeFileLocked(f)
		return
	}
	var keep []*record
	for _, r := range f.recs {
		if r.state == leased {
			return
		}
		if r.state == queued {
			keep = append(keep, r)
		}
	}
	data, err := os.ReadFile(filepath.Join(s.dir, f.name))
	if err != nil {
		return
	}
	reqs := make([]*putReq, 0, len(keep))
	for _, r := range keep {
		if r.off+r.size > int64(len(data)) {
			return
		}
		reqs = append(reqs, &putReq{id: r.id, sev: r.sev, body: data[r.off : r.off+r.size]})
	}
	nf, err := s.writeFile(reqs)
	if err != nil {
		// The old file stays; its dropped events would come back after a
		// restart, which costs bytes but loses nothing.
		s.log.Warn("spool: cannot rewrite file after dropping events", "file", f.name, "err", err)
		return
	}
	offs := nfOffsets(reqs)
	for i, r := range keep {
		r.file = nf
		r.off = offs[i]
	}
	nf.recs = keep
	nf.live = len(keep)
	s.files[nf.name] = nf
	s.bytes += nf.size
	_ = s.removeFileLocked(f)
}

func nfOffsets(reqs []*putReq) []int64 {
	offs := make([]int64, len(reqs))
	off := int64(len(fileMagic))
	for i, r := range reqs {
		offs[i] = off + 4 + 1 + 1 + int64(len(r.id))
		off += int64(len(r.body) + recordOverhead)
	}
	return offs
}

// freeForNoSpace drops low-severity events to make room after ENOSPC. It
// reports whether it freed anything.
func (s *Spool) freeForNoSpace(batch []*putReq) bool {
	maxSev := event.SeverityInfo
	var need int64
	for _, r := range batch {
		if r.sev > maxSev {
			maxSev = r.sev
		}
		need += int64(len(r.body) + recordOverhead)
	}
	need += int64(len(fileMagic)) + 4096 // a block for the new file
	s.mu.Lock()
	defer s.mu.Unlock()
	var victims []*record
	var freed int64
	for freed < need {
		v := s.victimLocked(maxSev)
		if v == nil {
			break
		}
		s.takeLocked(v)
		victims = append(victims, v)
		freed += v.size + recordOverhead
	}
	s.dropRecordsLocked(victims)
	return len(victims) > 0
}

// writeFile writes one spool file for reqs: temporary file, data sync,
// rename, directory sync.
func (s *Spool) writeFile(reqs []*putReq) (*file, error) {
	name := event.NewID() + fileSuffix
	tmp := filepath.Join(s.dir, tmpPrefix+name)
	buf := make([]byte, 0, len(fileMagic)+int(sumSize(reqs)))
	buf = append(buf, fileMagic...)
	for _, r := range reqs {
		buf = appendRecord(buf, r.id, r.sev, r.body)
	}
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, s.classify("create", tmp, err)
	}
	_, err = fh.Write(buf)
	if err == nil {
		err = syscall.Fdatasync(int(fh.Fd()))
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return nil, s.classify("write", tmp, err)
	}
	final := filepath.Join(s.dir, name)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return nil, s.classify("rename", final, err)
	}
	if err := s.syncDir(); err != nil {
		// The rename may not be durable; the file is in place, so keep it
		// but report: the caller will retry, which is harmless.
		return nil, s.classify("sync directory", s.dir, err)
	}
	f := &file{name: name, size: int64(len(buf))}
	return f, nil
}

// addFileLocked registers a freshly written file and wakes Lease.
func (s *Spool) addFileLocked(f *file, reqs []*putReq) {
	offs := nfOffsets(reqs)
	for i, q := range reqs {
		r := &record{id: q.id, sev: q.sev, size: int64(len(q.body)), off: offs[i], file: f}
		f.recs = append(f.recs, r)
		if _, dup := s.byID[r.id]; dup {
			r.state = gone
			continue
		}
		f.live++
		s.byID[r.id] = r
		s.queues[r.sev].push(r)
		s.count++
	}
	s.files[f.name] = f
	s.bytes += f.size
	s.st.Put += int64(len(reqs))
	s.st.Commits++
	s.wakeLocked()
}

func (s *Spool) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Spool) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Spool) noteError(err error) {
	s.mu.Lock()
	s.st.LastError = err.Error()
	s.st.LastErrorTime = time.Now()
	s.mu.Unlock()
	s.log.Error("spool: cannot store event", "err", err)
}

// Lease hands out up to max events (and about maxBytes of them, at least
// one), highest severity first, then oldest first. It waits until there is
// at least one or ctx ends. Leased events are not handed out again until
// Release; Ack removes them.
func (s *Spool) Lease(ctx context.Context, max int, maxBytes int64) ([]Record, error) {
	if max <= 0 {
		max = 1
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		var picked []leasedRec
		var size int64
	levels:
		for sev := event.SeverityCritical; sev >= event.SeverityInfo; sev-- {
			for len(picked) < max {
				r := s.queues[sev].peek()
				if r == nil {
					break
				}
				if len(picked) > 0 && maxBytes > 0 && size+r.size > maxBytes {
					break levels
				}
				s.queues[sev].pop()
				r.state = leased
				picked = append(picked, leasedRec{r: r, f: r.file, off: r.off, size: r.size})
				size += r.size
			}
			if len(picked) >= max {
				break
			}
		}
		s.leased += len(picked)
		wait := s.changed
		s.mu.Unlock()
		if len(picked) > 0 {
			if out := s.read(picked); len(out) > 0 {
				return out, nil
			}
			continue // everything picked was damaged and quarantined
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

type leasedRec struct {
	r    *record
	f    *file
	off  int64
	size int64
}

// read loads the bodies of leased records, one read per file. A file that
// has become unreadable or damaged since it was opened is quarantined and
// its records are left out (its intact events are spooled again).
func (s *Spool) read(picked []leasedRec) []Record {
	out := make([]Record, 0, len(picked))
	byFile := map[*file][]leasedRec{}
	var order []*file
	for _, p := range picked {
		if _, ok := byFile[p.f]; !ok {
			order = append(order, p.f)
		}
		byFile[p.f] = append(byFile[p.f], p)
	}
	for _, f := range order {
		data, err := os.ReadFile(filepath.Join(s.dir, f.name))
		bad := ""
		if err != nil {
			bad = "cannot read: " + err.Error()
		}
		var recs []Record
		for _, p := range byFile[f] {
			if bad != "" {
				break
			}
			start := p.off - int64(6+event.IDLen)
			if start < int64(len(fileMagic)) || p.off+p.size+4 > int64(len(data)) {
				bad = "file shorter than when it was opened"
				break
			}
			rr, _, derr := decodeRecord(data[start:], start)
			if derr != nil {
				bad = derr.Error()
				break
			}
			if rr.id != p.r.id {
				bad = fmt.Sprintf("record at offset %d holds %s, expected %s", start, rr.id, p.r.id)
				break
			}
			recs = append(recs, Record{ID: p.r.id, Severity: p.r.sev, Data: rr.body})
		}
		if bad != "" {
			s.damagedAfterOpen(f, bad, data)
			continue
		}
		out = append(out, recs...)
	}
	return out
}

// damagedAfterOpen quarantines a file found damaged while reading it, and
// re-spools its intact events.
func (s *Spool) damagedAfterOpen(f *file, reason string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[f.name]; !ok {
		return // already dealt with
	}
	for _, r := range f.recs {
		if r.state == gone {
			continue
		}
		if r.state == leased {
			s.leased--
		} else {
			s.queues[r.sev].remove(r)
		}
		r.state = gone
		delete(s.byID, r.id)
		s.count--
	}
	f.live = 0
	delete(s.files, f.name)
	s.bytes -= f.size
	s.quarantine(f.name, reason, salvageFile(data))
	s.wakeLocked()
}

// Ack removes acknowledged events. A file leaves the disk when all its
// events are gone; one directory sync covers the whole call.
func (s *Spool) Ack(ids ...string) error {
	s.mu.Lock()
	var dead []*file
	for _, id := range ids {
		r, ok := s.byID[id]
		if !ok || r.state == gone {
			continue
		}
		if r.state == leased {
			s.leased--
		} else {
			s.queues[r.sev].remove(r)
		}
		r.state = gone
		delete(s.byID, id)
		s.count--
		s.st.Acked++
		r.file.live--
		if r.file.live == 0 {
			dead = append(dead, r.file)
		}
	}
	var firstErr error
	for _, f := range dead {
		if err := s.removeFileLocked(f); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	s.mu.Unlock()
	if len(dead) > 0 {
		_ = s.syncDir()
	}
	return firstErr
}

func (s *Spool) removeFileLocked(f *file) error {
	if _, ok := s.files[f.name]; ok {
		delete(s.files, f.name)
		s.bytes -= f.size
	}
	err := os.Remove(filepath.Join(s.dir, f.name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if !s.stuck[f.name] {
			s.stuck[f.name] = true
			de := s.classify("remove sent file", filepath.Join(s.dir, f.name), err)
			s.st.LastError = de.Error()
			s.st.LastErrorTime = time.Now()
			s.log.Error("spool: cannot remove a sent file; its events will be sent again after a restart (the backend ignores repeats)", "err", de)
			return de
		}
		return nil
	}
	return nil
}

// Release returns leased events to the queue, in their place.
func (s *Spool) Release(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		r, ok := s.byID[id]
		if !ok || r.state != leased {
			continue
		}
		r.state = queued
		s.leased--
		s.queues[r.sev].push(r)
		n++
	}
	if n > 0 {
		s.wakeLocked()
	}
}

// Reject moves one event the backend refused for good (it will never
// accept it) to the quarantine folder with the backend's reason, so that it
// neither blocks the spool nor disappears unseen.
func (s *Spool) Reject(id, reason string) error {
	s.mu.Lock()
	r, ok := s.byID[id]
	if !ok || r.state == gone {
		s.mu.Unlock()
		return nil
	}
	f, off, size := r.file, r.off, r.size
	s.mu.Unlock()
	data, err := os.ReadFile(filepath.Join(s.dir, f.name))
	if err != nil {
		return fmt.Errorf("spool: reject %s: %w", id, err)
	}
	qdir := filepath.Join(s.dir, quarantineDir)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return s.classify("create quarantine folder", qdir, err)
	}
	base := filepath.Join(qdir, id+".rejected")
	if off+size <= int64(len(data)) {
		body := data[off : off+size]
		if err := os.WriteFile(base, body, 0o600); err != nil {
			return s.classify("write rejected event", base, err)
		}
	}
	note := fmt.Sprintf("event: %s\nrejected: %s\nreason: %s\n", id, time.Now().UTC().Format(time.RFC3339), reason)
	if err := os.WriteFile(base+".reason", []byte(note), 0o600); err != nil {
		return s.classify("write rejection reason", base+".reason", err)
	}
	s.log.Warn("spool: backend refused event for good; moved to quarantine", "id", id, "reason", reason)
	s.mu.Lock()
	s.st.Quarantined++
	s.mu.Unlock()
	return s.Ack(id)
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Backlog = s.count
	st.BacklogBytes = s.bytes
	st.Leased = s.leased
	st.BySeverity = map[event.Severity]int{}
	for sev := event.SeverityInfo; sev <= event.SeverityCritical; sev++ {
		if n := s.queues[sev].len(); n > 0 {
			st.BySeverity[sev] = n
		}
	}
	st.Dropped = map[event.Severity]int64{}
	for k, v := range s.st.Dropped {
		st.Dropped[k] = v
	}
	return st
}

// Len returns the number of events in the spool, leased ones included.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Close stops accepting events, finishes the commits already handed over,
// and wakes a waiting Lease. The files stay for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.wakeLocked()
	s.mu.Unlock()
	<-s.done
	// Answer Puts that raced with Close.
	for {
		select {
		case r := <-s.reqs:
			r.done <- ErrClosed
		default:
			return nil
		}
	}
}
