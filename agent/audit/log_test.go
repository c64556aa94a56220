package audit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestAppendReopenVerify(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	id := l.LogID()
	fill(t, l, 20)
	if got := l.Last().Seq; got != 21 {
		t.Fatalf("last seq = %d, want 21 (genesis + 20)", got)
	}
	rep, err := l.Verify()
	if err != nil || rep.Records != 21 {
		t.Fatalf("live verify: %v %+v", err, rep)
	}
	l.Close()
	if _, err := l.Append(Entry{Kind: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	l = openLog(t, dir, nil)
	defer l.Close()
	if l.LogID() != id || l.Last().Seq != 21 || l.Recovered() != nil {
		t.Fatalf("reopen: id %s/%s last %d recovered %v", l.LogID(), id, l.Last().Seq, l.Recovered())
	}
	r, err := l.Append(Entry{Kind: KindLocalRequest, Actor: "uid:0", Fields: map[string]string{"method": "status"}})
	if err != nil || r.Seq != 22 {
		t.Fatalf("append after reopen: %v %+v", err, r)
	}
	h := headOf(t, dir)
	if h.Seq != 22 || h.Hash != r.Hash {
		t.Fatalf("head %+v does not name record 22", h)
	}
	rep, err = VerifyFile(l.Path(), VerifyOptions{Head: h})
	if err != nil || rep.First.Kind != KindStart || rep.LogID != id {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	fi, _ := os.Stat(l.Path())
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	c := &memCounter{}
	l := openLog(t, dir, c)
	defer l.Close()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := l.Append(Entry{Kind: KindDecision, Fields: map[string]string{"g": fmt.Sprint(g)}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	rep, err := l.Verify()
	if err != nil || rep.Records != 41 || !rep.CounterChecked {
		t.Fatalf("%v %+v", err, rep)
	}
}

func TestOpenSetsBrokenLogAside(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	id := l.LogID()
	fill(t, l, 10)
	l.Close()
	lines := readLines(t, filepath.Join(dir, LogName))
	lines[5] = editValue(t, lines[5])
	if err := os.WriteFile(filepath.Join(dir, LogName), join(lines...), 0o600); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, nil)
	defer l.Close()
	p := l.Recovered()
	if p == nil || p.Line != 6 || !strings.Contains(p.Reason, "does not match its hash") {
		t.Fatalf("recovered = %v", p)
	}
	rep, err := l.Verify()
	if err != nil || rep.Records != 1 {
		t.Fatalf("new log: %v %+v", err, rep)
	}
	g := rep.First
	if g.Fields["previous_log_id"] != id || !strings.Contains(g.Fields["previous_problem"], "line 6") || g.Fields["previous_file"] == "" {
		t.Fatalf("genesis does not name the broken log: %+v", g.Fields)
	}
	if _, err := os.Stat(filepath.Join(dir, g.Fields["previous_file"])); err != nil {
		t.Fatalf("broken log not kept: %v", err)
	}
}

func TestOpenDamagedHeadFile(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	fill(t, l, 3)
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, HeadName), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	defer l.Close()
	if p := l.Recovered(); p == nil || !strings.Contains(p.Reason, "head file is damaged") {
		t.Fatalf("recovered = %v", p)
	}
}

// A power loss in the middle of a write leaves an incomplete line; Open
// keeps those bytes aside, notes the repair in the log, and goes on.
func TestOpenRepairsTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	fill(t, l, 5)
	l.Close()
	f, err := os.OpenFile(filepath.Join(dir, LogName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := `{"seq":7,"time":"2025-03-01T12:00:00Z","kind":"remo`
	f.WriteString(torn)
	f.Close()

	l = openLog(t, dir, nil)
	defer l.Close()
	if l.Recovered() != nil {
		t.Fatalf("a torn tail is not tampering: %v", l.Recovered())
	}
	last := l.Last()
	if last.Kind != KindRepair || last.Seq != 7 || last.Fields["torn_bytes"] != fmt.Sprint(len(torn)) {
		t.Fatalf("repair record = %+v", last)
	}
	kept, _ := os.ReadFile(filepath.Join(dir, tornName))
	if !strings.Contains(string(kept), torn) {
		t.Fatalf("torn bytes not kept: %q", kept)
	}
	if rep, err := l.Verify(); err != nil || rep.TornTail != 0 {
		t.Fatalf("%v %+v", err, rep)
	}
}

// The TPM counter fails after a record is written: the record stands, the
// error says so, and the next append catches the counter up.
func TestCounterFailureCatchesUp(t *testing.T) {
	dir := t.TempDir()
	c := &memCounter{v: 100}
	l := openLog(t, dir, c)
	fill(t, l, 3)
	c.failInc = 1
	r, err := l.Append(Entry{Kind: KindDecision})
	if err == nil || !errors.Is(err, errCounterDown) || r.Seq != 5 {
		t.Fatalf("append with the counter down: %+v %v", r, err)
	}
	rep, err := l.Verify()
	if err != nil || rep.CounterBehind != 1 {
		t.Fatalf("behind: %v %+v", err, rep)
	}
	if _, err := l.Append(Entry{Kind: KindDecision}); err != nil {
		t.Fatal(err)
	}
	rep, err = l.Verify()
	if err != nil || rep.CounterBehind != 0 || !rep.CounterChecked {
		t.Fatalf("caught up: %v %+v", err, rep)
	}
	l.Close()
}

// The agent stops between writing a record and advancing the counter: at
// the next start the counter is caught up and the repair recorded.
func TestOpenFinishesInterruptedIncrement(t *testing.T) {
	dir := t.TempDir()
	c := &memCounter{v: 7}
	l := openLog(t, dir, c)
	fill(t, l, 3)
	c.failInc = 1
	l.Append(Entry{Kind: KindDecision})
	l.Close()

	l = openLog(t, dir, c)
	defer l.Close()
	last := l.Last()
	if last.Kind != KindRepair || last.Fields["counter_caught_up"] != "1" {
		t.Fatalf("last = %+v", last)
	}
	if v, _ := c.Read(); v != last.Anchor {
		t.Fatalf("counter %d, last anchor %d", v, last.Anchor)
	}
}

// Something else increments the counter: anchoring restarts at its value
// and the log says so.
func TestCounterMovedElsewhere(t *testing.T) {
	dir := t.TempDir()
	c := &memCounter{}
	l := openLog(t, dir, c)
	defer l.Close()
	fill(t, l, 2)
	c.Increment()
	c.Increment()
	_, err := l.Append(Entry{Kind: KindDecision})
	if !errors.Is(err, ErrCounterMoved) {
		t.Fatalf("got %v, want ErrCounterMoved", err)
	}
	last := l.Last()
	if last.Kind != KindAnchor || last.Fields["reason"] != "counter_moved" {
		t.Fatalf("last = %+v", last)
	}
	if rep, err := l.Verify(); err != nil {
		t.Fatalf("%v %+v", err, rep)
	}
}

// A log begun without a TPM starts anchoring when one is configured, and
// stops (saying so) when it goes away.
func TestAnchoringStartsAndStops(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	fill(t, l, 2)
	l.Close()

	c := &memCounter{v: 40}
	l = openLog(t, dir, c)
	if !l.Anchored() || l.Last().Kind != KindAnchor {
		t.Fatalf("anchoring did not start: %+v", l.Last())
	}
	fill(t, l, 2)
	if rep, err := l.Verify(); err != nil || !rep.CounterChecked {
		t.Fatalf("%v %+v", err, rep)
	}
	l.Close()

	l = openLog(t, dir, nil)
	defer l.Close()
	if l.Anchored() || l.Last().Kind != KindAnchor || l.Last().Fields["anchor"] != "none" {
		t.Fatalf("anchoring did not stop: %+v", l.Last())
	}
	if rep, err := l.Verify(); err != nil {
		t.Fatalf("%v %+v", err, rep)
	}
}

func TestOpenNeedsCounter(t *testing.T) {
	c := &failingReadCounter{}
	if _, err := Open(Options{Dir: t.TempDir(), Counter: c}); err == nil || !strings.Contains(err.Error(), "TPM counter") {
		t.Fatalf("got %v", err)
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("no directory accepted")
	}
}

type failingReadCounter struct{}

func (failingReadCounter) Increment() (uint64, error) { return 0, errCounterDown }
func (failingReadCounter) Read() (uint64, error)      { return 0, errCounterDown }

// A full disk: the append fails with the reason, leaves no partial record,
// and appends work again once there is room. The disk is a small tmpfs
// mounted by the test (tests run as root).
func TestAppendDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "dcagent-audit-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	l := openLog(t, dir, nil)
	defer l.Close()
	var appendErr error
	for i := 0; i < 1000 && appendErr == nil; i++ {
		_, appendErr = l.Append(Entry{Kind: KindDecision, Fields: map[string]string{"pad": strings.Repeat("x", 900)}})
	}
	if !errors.Is(appendErr, syscall.ENOSPC) {
		t.Fatalf("got %v, want no space left on device", appendErr)
	}
	if !strings.Contains(appendErr.Error(), "write record") {
		t.Fatalf("error does not say what failed: %v", appendErr)
	}
	last := l.Last().Seq
	rep, err := l.Verify()
	if err != nil || rep.TornTail != 0 || rep.Last.Seq != last {
		t.Fatalf("after a failed append: %v %+v", err, rep)
	}
	// Room comes back (the tmpfs grows).
	if out, err := exec.Command("mount", "-o", "remount,size=1m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	r, err := l.Append(Entry{Kind: KindDecision})
	if err != nil || r.Seq != last+1 {
		t.Fatalf("append after room came back: %v %+v", err, r)
	}
	if _, err := l.Verify(); err != nil {
		t.Fatal(err)
	}
}
