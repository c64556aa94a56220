package spool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/event"
)

// These tests make real filesystem conditions: a tiny tmpfs that fills
// up, and a read-only bind mount. They need root, which CI has.

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s (these tests need root: CI runs them as root)", name, strings.Join(args, " "), err, out)
	}
}

func tinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", mnt)
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

func TestFullDiskDropsLowSeverityThenFailsClearly(t *testing.T) {
	mnt := tinyTmpfs(t, "64k")
	dir := filepath.Join(mnt, "spool")
	s, lb := open(t, dir, Limits{MaxBytes: 100 << 20})
	msg := strings.Repeat("m", 900)
	for i := 0; i < 4; i++ {
		put(t, s, ev(event.SeverityInfo, msg))
	}
	var kept []*event.Event
	var err error
	for i := 0; i < 200; i++ {
		e := ev(event.SeverityError, msg)
		if err = s.Put(e); err != nil {
			break
		}
		kept = append(kept, e)
	}
	if err == nil {
		t.Fatal("a 64 KiB filesystem never filled up")
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("got %v, want ErrNoSpace", err)
	}
	var de *DiskError
	if !errors.As(err, &de) || !strings.Contains(de.Diagnosis, "is full") || !strings.Contains(de.Diagnosis, "kept") {
		t.Fatalf("error without a diagnosis: %v", err)
	}
	st := s.Stats()
	if st.Dropped[event.SeverityInfo] != 4 {
		t.Fatalf("the 4 info events should have made room first; stats %+v", st)
	}
	if st.Dropped[event.SeverityError] != 0 || st.Backlog != len(kept) {
		t.Fatalf("lost an error event: backlog %d, kept %d, stats %+v", st.Backlog, len(kept), st)
	}
	if !strings.Contains(st.LastError, "is full") {
		t.Fatalf("stats do not report the disk error: %q", st.LastError)
	}
	// A low-severity event gets the same clear error; nothing is dropped for it.
	if err := s.Put(ev(event.SeverityInfo, "x")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("info on a disk full of errors: %v", err)
	}
	if !strings.Contains(lb.String(), "cannot store event") {
		t.Fatalf("no log line for the disk error:\n%s", lb.String())
	}
	left, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if len(left) != 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
	// Every event that was accepted is intact after a restart.
	s.Close()
	s2, _ := open(t, dir, Limits{MaxBytes: 100 << 20})
	recs := leaseAll(t, s2)
	if len(recs) != len(kept) {
		t.Fatalf("after restart %d events, want %d", len(recs), len(kept))
	}
	for _, r := range recs {
		if _, err := event.Unmarshal(r.Data); err != nil {
			t.Fatalf("event %s damaged: %v", r.ID, err)
		}
	}
	if s2.Stats().Quarantined != 0 {
		t.Fatal("a full disk left a damaged file")
	}
	// Room again: sending frees space and new events fit.
	if err := s2.Ack(ids(recs)...); err != nil {
		t.Fatal(err)
	}
	put(t, s2, ev(event.SeverityInfo, msg))
}

func TestReadOnlySpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, _ := open(t, dir, Limits{})
	var before []string
	for i := 0; i < 3; i++ {
		e := ev(event.SeverityWarning, fmt.Sprint(i))
		put(t, s, e)
		before = append(before, e.ID)
	}
	s.Close()
	// A corrupt file too: it cannot be moved to quarantine on a read-only
	// filesystem, and must not stop the others.
	os.WriteFile(filepath.Join(dir, idSeq.New()+fileSuffix), []byte("DCSPOOL1junk"), 0o600)

	mustRun(t, "mount", "--bind", dir, dir)
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	mustRun(t, "mount", "-o", "remount,bind,ro", dir)

	s2, lb := open(t, dir, Limits{})
	err := s2.Put(ev(event.SeverityCritical, "new"))
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Put on a read-only spool: %v", err)
	}
	var de *DiskError
	if !errors.As(err, &de) || !strings.Contains(de.Diagnosis, "read-only") || !strings.Contains(de.Diagnosis, "remount") {
		t.Fatalf("no diagnosis: %v", err)
	}
	if !strings.Contains(lb.String(), "damaged file left in place") {
		t.Fatalf("the unmovable damaged file was not reported:\n%s", lb.String())
	}
	// What was spooled before is still sent.
	recs := leaseAll(t, s2)
	if strings.Join(ids(recs), ",") != strings.Join(before, ",") {
		t.Fatalf("leased %v, want %v", ids(recs), before)
	}
	// Acknowledging cannot remove the files, but the events are not sent
	// twice by this process.
	if err := s2.Ack(ids(recs)...); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Ack on read-only: %v", err)
	}
	if s2.Len() != 0 {
		t.Fatalf("acknowledged events still queued: %d", s2.Len())
	}
	if st := s2.Stats(); !strings.Contains(st.LastError, "read-only") {
		t.Fatalf("stats: %+v", st)
	}
	s2.Close()
	// Back to read-write: nothing was lost, the acknowledged events come
	// back (the backend ignores repeats), and Put works again.
	mustRun(t, "umount", dir)
	s3, _ := open(t, dir, Limits{})
	if s3.Len() != 3 {
		t.Fatalf("after remount: %d events, want 3", s3.Len())
	}
	put(t, s3, ev(event.SeverityCritical, "again"))
}
