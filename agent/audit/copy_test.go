package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syslogCopyOf is what a syslog server that received every record of the
// logs at paths wrote (RFC 5424 lines, as rsyslog stores them).
func syslogCopyOf(t *testing.T, paths ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range paths {
		lines := readLines(t, p)
		id := lines0ID(t, lines)
		for _, line := range lines {
			rec, err := DecodeRecord(line[:len(line)-1])
			if err != nil {
				t.Fatal(err)
			}
			framed := frameSyslog("SYS-1", id, rec, line[:len(line)-1])
			b.Write(framed[bytes.IndexByte(framed, ' ')+1:])
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func brokenFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, LogName+".broken-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A record the server already has is edited; the daemon restarts and sets
// the log aside; the attacker deletes the set-aside file and the next
// restart forgets it happened. The copy still holds the old log's records,
// and nothing on the device accounts for them.
func TestCopyCatchesEditThenEvidenceRemoved(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, LogName)
	l := openLog(t, dir, nil)
	l.Append(Entry{Kind: KindSessionStart, Actor: "eng@vendor", Fields: map[string]string{"session": "S1", "service": "ssh"}})
	l.Append(Entry{Kind: KindSessionEnd, Actor: "eng@vendor", Fields: map[string]string{"session": "S1", "bytes_from_device": "999999999"}})
	oldID := l.LogID()
	l.Close()
	oldCopy := syslogCopyOf(t, logPath)

	data, _ := os.ReadFile(logPath)
	os.WriteFile(logPath, bytes.Replace(data, []byte("999999999"), []byte("000000012"), 1), 0o600)
	l = openLog(t, dir, nil) // sets the edited log aside
	if l.Recovered() == nil {
		t.Fatal("the edited log was not set aside")
	}
	l.Append(Entry{Kind: KindSessionStart, Actor: "eng@vendor", Fields: map[string]string{"session": "S2"}})
	newID := l.LogID()
	l.Close()
	serverCopy := append(append([]byte{}, oldCopy...), syslogCopyOf(t, logPath)...)

	// With the evidence there, the edit shows against the copy.
	broken := brokenFiles(t, dir)
	if len(broken) != 1 {
		t.Fatalf("broken files: %v", broken)
	}
	_, err := CompareWithCopy(logPath, bytes.NewReader(serverCopy))
	if err == nil || !strings.Contains(err.Error(), "1 record(s) of earlier log "+oldID+" that differ from the device's copy (first: record 3; compared with "+filepath.Base(broken[0])+")") {
		t.Fatalf("with the evidence file: %v", err)
	}

	// The evidence goes, and a restart forgets.
	os.Remove(broken[0])
	l = openLog(t, dir, nil)
	if l.Recovered() != nil || l.LogID() != newID {
		t.Fatalf("the restart did not keep the log: %v %s", l.Recovered(), l.LogID())
	}
	l.Close()
	rep, err := CompareWithCopy(logPath, bytes.NewReader(serverCopy))
	if err == nil || !strings.Contains(err.Error(), "the syslog server holds 3 record(s) of earlier log "+oldID+" that the device no longer has (first: record 1; no file in "+dir+" holds that log)") {
		t.Fatalf("evidence removed: %v", err)
	}
	if rep.Received != 2 || rep.OtherLogs[oldID] != 3 {
		t.Fatalf("report %+v", rep)
	}
	// The log itself verifies, and says that it replaced the old one.
	vrep, err := VerifyFile(logPath, VerifyOptions{Head: headOf(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if p := vrep.Previous; p == nil || p.LogID != oldID || p.File != filepath.Base(broken[0]) || p.LastSeq != "2" || !strings.Contains(p.Problem, "record 3") {
		t.Fatalf("previous log: %+v", vrep.Previous)
	}
	if p, err := ReadPrevious(logPath); err != nil || p == nil || *p != *vrep.Previous {
		t.Fatalf("ReadPrevious: %+v %v", p, err)
	}
}

// A log set aside for a reason that left its records intact (here a
// damaged head file) is evidence that accounts for all of them.
func TestCopyAcceptsIntactEvidence(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, LogName)
	l := openLog(t, dir, nil)
	fill(t, l, 4)
	oldID := l.LogID()
	l.Close()
	serverCopy := syslogCopyOf(t, logPath)
	os.WriteFile(filepath.Join(dir, HeadName), []byte("garbage\n"), 0o600)
	l = openLog(t, dir, nil)
	if l.Recovered() == nil {
		t.Fatal("the log was not set aside")
	}
	l.Close()
	serverCopy = append(serverCopy, syslogCopyOf(t, logPath)...)
	rep, err := CompareWithCopy(logPath, bytes.NewReader(serverCopy))
	if err != nil {
		t.Fatal(err)
	}
	broken := brokenFiles(t, dir)
	if rep.OtherLogs[oldID] != 5 || len(rep.Evidence[oldID]) != 1 || rep.Evidence[oldID][0] != filepath.Base(broken[0]) || rep.Received != 1 {
		t.Fatalf("report %+v", rep)
	}
	if vrep, err := VerifyFile(logPath, VerifyOptions{}); err != nil || vrep.Previous == nil || vrep.Previous.LogID != oldID {
		t.Fatalf("verify: %v %+v", err, vrep)
	}
	// A fresh log names no predecessor.
	if p, err := ReadPrevious(brokenFiles(t, dir)[0]); err != nil || p != nil {
		t.Fatalf("first log's predecessor: %+v %v", p, err)
	}
}

// A forged one-record log that claims the real log as its predecessor
// (with a matching head file) does not hide the real log's records.
func TestCopyCatchesForgedSuccessor(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, LogName)
	l := openLog(t, dir, nil)
	l.Append(Entry{Kind: KindSessionStart, Actor: "eng@vendor", Fields: map[string]string{"session": "S1"}})
	oldID := l.LogID()
	last := l.Last()
	l.Close()
	serverCopy := syslogCopyOf(t, logPath)

	forged := Record{Seq: 1, Time: last.Time, Kind: KindStart, Actor: "agent",
		Fields: map[string]string{"log_id": "00112233445566778899aabbccddeeff", "anchor": "none", "previous_log_id": oldID, "previous_file": LogName + ".broken-x", "previous_problem": "power loss"},
		Prev:   zeroHash}
	line, err := forged.encode()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(logPath, append(line, '\n'), 0o600)
	os.WriteFile(filepath.Join(dir, HeadName), headLine(Head{Seq: 1, Hash: forged.Hash}), 0o600)

	// On its own the forged log verifies (SHA-256 needs no key) ...
	if _, err := VerifyFile(logPath, VerifyOptions{Head: headOf(t, dir)}); err != nil {
		t.Fatalf("the forged log should verify on its own: %v", err)
	}
	// ... but the server's copy of the real log is not accounted for.
	_, err = CompareWithCopy(logPath, bytes.NewReader(serverCopy))
	if err == nil || !strings.Contains(err.Error(), "the syslog server holds 2 record(s) of earlier log "+oldID+" that the device no longer has") {
		t.Fatalf("forged successor: %v", err)
	}
	// A file planted under the claimed name, holding something else,
	// does not account for them either.
	os.WriteFile(filepath.Join(dir, LogName+".broken-x"), []byte("not a log\n"), 0o600)
	_, err = CompareWithCopy(logPath, bytes.NewReader(serverCopy))
	if err == nil || !strings.Contains(err.Error(), "2 record(s) of earlier log "+oldID+" that the device no longer has (first: record 1; compared with "+LogName+".broken-x)") {
		t.Fatalf("planted file: %v", err)
	}
}
