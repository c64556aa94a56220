package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/event"
)

// logBuf collects log lines for tests that check a reason was logged.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func open(t testing.TB, dir string, lim Limits) (*Spool, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	s, err := Open(dir, lim, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, lb
}

var idSeq = event.NewIDGenerator(nil, nil)

func ev(sev event.Severity, msg string) *event.Event {
	return &event.Event{
		ID:       idSeq.New(),
		Type:     event.TypeAlert,
		Severity: sev,
		Created:  time.Now().UTC(),
		SystemID: "SYS-TEST",
		Payload:  map[string]any{"source": "sensor", "message": msg},
	}
}

func put(t testing.TB, s *Spool, e *event.Event) {
	t.Helper()
	if err := s.Put(e); err != nil {
		t.Fatal(err)
	}
}

func leaseAll(t testing.TB, s *Spool) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := s.Lease(ctx, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func ids(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestOrderSeverityThenAge(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{})
	var want []string
	a := ev(event.SeverityInfo, "a")
	b := ev(event.SeverityCritical, "b")
	c := ev(event.SeverityWarning, "c")
	d := ev(event.SeverityCritical, "d")
	e := ev(event.SeverityInfo, "e")
	for _, x := range []*event.Event{a, b, c, d, e} {
		put(t, s, x)
	}
	want = []string{b.ID, d.ID, c.ID, a.ID, e.ID}
	got := ids(leaseAll(t, s))
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("lease order\n got %v\nwant %v", got, want)
	}
	// Released events go back in their place.
	s.Release(d.ID, a.ID)
	got = ids(leaseAll(t, s))
	if strings.Join(got, ",") != d.ID+","+a.ID {
		t.Fatalf("after release got %v", got)
	}
}

func TestDurableAcrossReopenAndAck(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Limits{})
	var all []*event.Event
	for i := 0; i < 10; i++ {
		e := ev(event.Severity(1+i%5), fmt.Sprint("m", i))
		put(t, s, e)
		all = append(all, e)
	}
	s.Close()

	s2, _ := open(t, dir, Limits{})
	recs := leaseAll(t, s2)
	if len(recs) != 10 {
		t.Fatalf("after reopen: %d events, want 10", len(recs))
	}
	for _, r := range recs {
		var want []byte
		for _, e := range all {
			if e.ID == r.ID {
				want, _ = event.Marshal(e)
			}
		}
		if !bytes.Equal(r.Data, want) {
			t.Fatalf("event %s changed on disk", r.ID)
		}
	}
	if err := s2.Ack(ids(recs)[:6]...); err != nil {
		t.Fatal(err)
	}
	s2.Release(ids(recs)[6:]...)
	s2.Close()
	s3, _ := open(t, dir, Limits{})
	if n := s3.Len(); n != 4 {
		t.Fatalf("after ack of 6 and reopen: %d events, want 4", n)
	}
	if err := s3.Ack(ids(leaseAll(t, s3))...); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+fileSuffix))
	if len(files) != 0 {
		t.Fatalf("spool files left after every event was acknowledged: %v", files)
	}
}

func TestGroupCommitSharesSyncs(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{})
	var wg sync.WaitGroup
	const n = 400
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- s.Put(ev(event.SeverityNotice, fmt.Sprint(i)))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Put != n || st.Backlog != n {
		t.Fatalf("stats %+v, want %d events", st, n)
	}
	if st.Commits >= n {
		t.Fatalf("%d commits for %d concurrent puts: no group commit", st.Commits, n)
	}
	t.Logf("%d puts in %d commits", st.Put, st.Commits)
}

func TestPutIsIdempotentAndFillsEnvelope(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{})
	s.SetSystemID("SYS-FILL")
	e := &event.Event{Type: event.TypeAlert, Severity: event.SeverityWarning, Payload: map[string]any{"message": "x"}}
	put(t, s, e)
	if e.ID == "" || e.SystemID != "SYS-FILL" || e.Created.IsZero() {
		t.Fatalf("envelope not filled: %+v", e)
	}
	put(t, s, e)
	if s.Len() != 1 {
		t.Fatalf("same event twice gave %d events", s.Len())
	}
}

func TestPutRefusesUndeclaredField(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{})
	e := ev(event.SeverityError, "x")
	e.Payload["customer_name"] = "ACME"
	err := s.Put(e)
	if !errors.Is(err, event.ErrUndeclaredField) || !strings.Contains(err.Error(), "customer_name") {
		t.Fatalf("got %v, want a refusal naming customer_name", err)
	}
	if s.Len() != 0 {
		t.Fatal("refused event was spooled")
	}
}

func TestCorruptFileIsQuarantinedAndRestStillSent(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Limits{})
	var good []string
	for i := 0; i < 3; i++ {
		e := ev(event.SeverityWarning, fmt.Sprint(i))
		put(t, s, e)
		good = append(good, e.ID)
	}
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+fileSuffix))
	// Flip a byte in the body of one file: checksum mismatch.
	victim := files[1]
	data, _ := os.ReadFile(victim)
	data[len(data)-10] ^= 0xff
	os.WriteFile(victim, data, 0o600)
	// And a file that is not a spool file at all.
	os.WriteFile(filepath.Join(dir, "01J0000000000000000000000Z"+fileSuffix), []byte("garbage"), 0o600)

	s2, lb := open(t, dir, Limits{})
	if n := s2.Len(); n != 2 {
		t.Fatalf("backlog %d after quarantine, want 2", n)
	}
	if st := s2.Stats(); st.Quarantined != 2 {
		t.Fatalf("quarantined %d, want 2", st.Quarantined)
	}
	q, _ := filepath.Glob(filepath.Join(dir, quarantineDir, "*.reason"))
	if len(q) != 2 {
		t.Fatalf("reason files: %v", q)
	}
	reason, _ := os.ReadFile(filepath.Join(dir, quarantineDir, filepath.Base(victim)+".reason"))
	if !strings.Contains(string(reason), "checksum mismatch") {
		t.Fatalf("reason file says %q", reason)
	}
	if !strings.Contains(lb.String(), "quarantined damaged file") || !strings.Contains(lb.String(), "checksum mismatch") {
		t.Fatalf("no log line with the reason:\n%s", lb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, quarantineDir, filepath.Base(victim))); err != nil {
		t.Fatalf("damaged file not kept in quarantine: %v", err)
	}
}

func TestDamagedMultiEventFileSalvagesIntactEvents(t *testing.T) {
	dir := t.TempDir()
	// Build a three-event file by hand, then cut the last record short.
	var reqs []*putReq
	for i := 0; i < 3; i++ {
		e := ev(event.SeverityNotice, fmt.Sprint(i))
		b, _ := event.Marshal(e)
		reqs = append(reqs, &putReq{id: e.ID, sev: e.Severity, body: b})
	}
	buf := []byte(fileMagic)
	for _, r := range reqs {
		buf = appendRecord(buf, r.id, r.sev, r.body)
	}
	name := idSeq.New() + fileSuffix
	os.WriteFile(filepath.Join(dir, name), buf[:len(buf)-7], 0o600)
	s, _ := open(t, dir, Limits{})
	got := ids(leaseAll(t, s))
	if strings.Join(got, ",") != reqs[0].id+","+reqs[1].id {
		t.Fatalf("salvaged %v, want the first two", got)
	}
	if _, err := os.Stat(filepath.Join(dir, quarantineDir, name)); err != nil {
		t.Fatalf("torn file not in quarantine: %v", err)
	}
}

func TestTornTempFileQuarantinedCompleteTempRecovered(t *testing.T) {
	dir := t.TempDir()
	e1, e2 := ev(event.SeverityError, "torn"), ev(event.SeverityError, "whole")
	b1, _ := event.Marshal(e1)
	b2, _ := event.Marshal(e2)
	torn := appendRecord([]byte(fileMagic), e1.ID, e1.Severity, b1)
	os.WriteFile(filepath.Join(dir, tmpPrefix+"01J0000000000000000000000A"+fileSuffix), torn[:len(torn)/2], 0o600)
	whole := appendRecord([]byte(fileMagic), e2.ID, e2.Severity, b2)
	os.WriteFile(filepath.Join(dir, tmpPrefix+"01J0000000000000000000000B"+fileSuffix), whole, 0o600)
	// A temp file cut inside the magic.
	os.WriteFile(filepath.Join(dir, tmpPrefix+"01J0000000000000000000000C"+fileSuffix), []byte("DCSP"), 0o600)

	s, lb := open(t, dir, Limits{})
	got := ids(leaseAll(t, s))
	if len(got) != 1 || got[0] != e2.ID {
		t.Fatalf("got %v, want only the complete commit %s", got, e2.ID)
	}
	if st := s.Stats(); st.Quarantined != 2 {
		t.Fatalf("quarantined %d, want 2 torn temp files", st.Quarantined)
	}
	if !strings.Contains(lb.String(), "unfinished commit") {
		t.Fatalf("no logged reason:\n%s", lb.String())
	}
	left, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestFullDropsOldestLowSeverityNeverErrors(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{MaxEvents: 5})
	info1, info2 := ev(event.SeverityInfo, "i1"), ev(event.SeverityInfo, "i2")
	warn1 := ev(event.SeverityWarning, "w1")
	err1, crit1 := ev(event.SeverityError, "e1"), ev(event.SeverityCritical, "c1")
	for _, e := range []*event.Event{info1, warn1, info2, err1, crit1} {
		put(t, s, e)
	}
	// Full. A new warning pushes out the oldest info.
	warn2 := ev(event.SeverityWarning, "w2")
	put(t, s, warn2)
	// A new info ranks with info2: info2 (older) goes.
	info3 := ev(event.SeverityInfo, "i3")
	put(t, s, info3)
	// A new error pushes out info3, then warnings oldest first.
	err2, err3, err4 := ev(event.SeverityError, "e2"), ev(event.SeverityError, "e3"), ev(event.SeverityError, "e4")
	put(t, s, err2)
	put(t, s, err3)
	put(t, s, err4)
	// Now only errors and criticals are left: a new info is refused, and a
	// new critical is kept over the bound.
	if err := s.Put(ev(event.SeverityInfo, "late")); !errors.Is(err, ErrFull) {
		t.Fatalf("info into a spool of errors: got %v, want ErrFull", err)
	}
	crit2 := ev(event.SeverityCritical, "c2")
	put(t, s, crit2)

	got := ids(leaseAll(t, s))
	want := []string{crit1.ID, crit2.ID, err1.ID, err2.ID, err3.ID, err4.ID}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("left in spool\n got %v\nwant %v", got, want)
	}
	st := s.Stats()
	if st.Dropped[event.SeverityInfo] != 3 || st.Dropped[event.SeverityWarning] != 2 || st.Refused != 1 || !st.OverLimit {
		t.Fatalf("stats %+v", st)
	}
	if st.Dropped[event.SeverityError] != 0 || st.Dropped[event.SeverityCritical] != 0 {
		t.Fatal("dropped an error or critical event")
	}
}

func TestFullByBytesShrinksSharedFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Limits{MaxBytes: 64 << 10})
	// Concurrent puts so that several events share files.
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sev := event.SeverityInfo
			if i%10 == 0 {
				sev = event.SeverityError
			}
			err := s.Put(ev(sev, strings.Repeat("x", 500)))
			if err != nil && (sev >= event.SeverityError || !errors.Is(err, ErrFull)) {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	st := s.Stats()
	if st.BacklogBytes > 64<<10 {
		t.Fatalf("spool holds %d bytes, bound is %d", st.BacklogBytes, 64<<10)
	}
	if st.BySeverity[event.SeverityError] != 20 {
		t.Fatalf("errors kept: %d, want all 20 (%+v)", st.BySeverity[event.SeverityError], st)
	}
	var onDisk int64
	files, _ := filepath.Glob(filepath.Join(dir, "*"+fileSuffix))
	for _, f := range files {
		fi, _ := os.Stat(f)
		onDisk += fi.Size()
	}
	if onDisk != st.BacklogBytes {
		t.Fatalf("files on disk hold %d bytes, stats say %d", onDisk, st.BacklogBytes)
	}
	s.Close()
	s2, _ := open(t, dir, Limits{MaxBytes: 64 << 10})
	if s2.Len() != st.Backlog {
		t.Fatalf("reopen: %d events, before %d (dropped events came back?)", s2.Len(), st.Backlog)
	}
}

func TestLeaseWaitsAndHonoursContext(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lease(ctx, 10, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty lease: %v", err)
	}
	got := make(chan []Record, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r, _ := s.Lease(ctx, 10, 0)
		got <- r
	}()
	e := ev(event.SeverityNotice, "wake")
	put(t, s, e)
	select {
	case r := <-got:
		if len(r) != 1 || r[0].ID != e.ID {
			t.Fatalf("woken lease got %v", ids(r))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Lease did not wake on Put")
	}
}

func TestLeaseBoundsBytes(t *testing.T) {
	s, _ := open(t, t.TempDir(), Limits{})
	for i := 0; i < 10; i++ {
		put(t, s, ev(event.SeverityNotice, strings.Repeat("y", 400)))
	}
	recs, err := s.Lease(context.Background(), 100, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 1 || len(recs) > 3 {
		t.Fatalf("lease of ~1000 bytes gave %d events", len(recs))
	}
}

func TestDamageAfterOpenQuarantinesOnRead(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Limits{})
	a, b := ev(event.SeverityWarning, "a"), ev(event.SeverityWarning, "b")
	put(t, s, a)
	put(t, s, b)
	// Damage a's file behind the spool's back.
	files, _ := filepath.Glob(filepath.Join(dir, "*"+fileSuffix))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if bytes.Contains(data, []byte(a.ID)) {
			data[len(data)-1] ^= 1
			os.WriteFile(f, data, 0o600)
		}
	}
	got := ids(leaseAll(t, s))
	if len(got) != 1 || got[0] != b.ID {
		t.Fatalf("lease after damage: %v, want only %s", got, b.ID)
	}
	if st := s.Stats(); st.Quarantined != 1 || st.Backlog != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejectQuarantinesWithReason(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Limits{})
	e := ev(event.SeverityError, "r")
	put(t, s, e)
	leaseAll(t, s)
	if err := s.Reject(e.ID, "system_id does not match the device certificate"); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatal("rejected event still spooled")
	}
	note, err := os.ReadFile(filepath.Join(dir, quarantineDir, e.ID+".rejected.reason"))
	if err != nil || !strings.Contains(string(note), "does not match") {
		t.Fatalf("reason: %q, %v", note, err)
	}
	body, _ := os.ReadFile(filepath.Join(dir, quarantineDir, e.ID+".rejected"))
	want, _ := event.Marshal(e)
	if !bytes.Equal(body, want) {
		t.Fatal("rejected event's bytes not kept")
	}
}

func TestCloseAnswersWaiters(t *testing.T) {
	s, err := Open(t.TempDir(), Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Lease(context.Background(), 1, 0)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Lease after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lease still waiting after Close")
	}
	if err := s.Put(ev(event.SeverityError, "late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
}

func FuzzSpoolDecode(f *testing.F) {
	e := ev(event.SeverityError, "seed")
	b, _ := event.Marshal(e)
	one := appendRecord([]byte(fileMagic), e.ID, e.Severity, b)
	f.Add(one)
	two := appendRecord(append([]byte(nil), one...), idSeq.New(), event.SeverityInfo, []byte{0xa0})
	f.Add(two)
	f.Add(one[:len(one)-3])
	f.Add([]byte(fileMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := decodeFile(data)
		if err == nil && len(recs) == 0 {
			t.Fatal("no error and no records")
		}
		// Whatever decodes must re-encode to the same bytes (prefix).
		out := []byte(fileMagic)
		for _, r := range recs {
			if r.off < 0 || r.off+int64(len(r.body)) > int64(len(data)) {
				t.Fatalf("record offset %d outside the file", r.off)
			}
			if !bytes.Equal(data[r.off:r.off+int64(len(r.body))], r.body) {
				t.Fatal("offset does not point at the body")
			}
			out = appendRecord(out, r.id, r.sev, r.body)
		}
		if len(recs) > 0 && !bytes.Equal(out, data[:len(out)]) {
			t.Fatal("decoded records do not re-encode to the input")
		}
		if err == nil && len(out) != len(data) {
			t.Fatal("decoded without error but did not consume the file")
		}
	})
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Limits{})
	for i := 0; i < 3; i++ {
		put(t, s, ev(event.SeverityWarning, fmt.Sprint(i)))
	}
	s.Close()
	r, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 3 || r.Files != 3 || !r.Writable || r.Problem != "" || r.Damaged != 0 {
		t.Fatalf("report %+v", r)
	}
	os.WriteFile(filepath.Join(dir, idSeq.New()+fileSuffix), []byte("junk"), 0o600)
	r, _ = Inspect(dir)
	if r.Damaged != 1 || !strings.Contains(r.Problem, "damaged") {
		t.Fatalf("report %+v", r)
	}
	r, _ = Inspect(filepath.Join(dir, "nope"))
	if !strings.Contains(r.Problem, "does not exist") {
		t.Fatalf("report %+v", r)
	}
}

func TestPutRacingCloseNeverHangs(t *testing.T) {
	for round := 0; round < 20; round++ {
		s, err := Open(t.TempDir(), Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				err := s.Put(ev(event.SeverityNotice, fmt.Sprint(i)))
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
			}(i)
		}
		s.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("a Put racing Close never returned")
		}
	}
}
