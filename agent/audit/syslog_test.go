package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/internal/testpki"
)

func startStream(t *testing.T, l *Log, opts SyslogOptions) *Syslog {
	t.Helper()
	opts.RetryMin, opts.RetryMax = 50*time.Millisecond, 200*time.Millisecond
	if opts.Hostname == "" {
		opts.Hostname = "SYS-0001"
	}
	s, err := NewSyslog(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Close() })
	return s
}

func waitSent(t *testing.T, s *Syslog, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Status().Sent < seq {
		if time.Now().After(deadline) {
			t.Fatalf("syslog stream stuck: %+v, want sent %d", s.Status(), seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// compareCopy checks the local log against what rsyslog wrote.
func compareCopy(t *testing.T, l *Log, r *realparts.Rsyslog) *CopyReport {
	t.Helper()
	data, err := os.ReadFile(r.OutFile)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := CompareWithCopy(l.Path(), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("compare with rsyslog's copy: %v", err)
	}
	return rep
}

func TestSyslogPlainTCP(t *testing.T) {
	r := realparts.StartRsyslog(t, nil)
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	fill(t, l, 4) // written before the stream starts: sent from the log
	s := startStream(t, l, SyslogOptions{Addr: r.TCPAddr})
	l.Append(Entry{Kind: KindSessionEnd, Actor: "zoë", Fields: map[string]string{"reason": "idle timeout", "odd": "tab\there \"q\" ]"}})
	waitSent(t, s, 6)
	lines := r.WaitLines(6, 10*time.Second)

	// The fields of RFC 5424 as rsyslog saw them.
	first := lines[0]
	for _, want := range []string{"<109>1 ", " SYS-0001 dcagent ", " audit.start [dcagent@32473 log=\"" + l.LogID() + "\" seq=\"1\" hash=\""} {
		if !strings.Contains(first, want) {
			t.Fatalf("rsyslog line lacks %q:\n%s", want, first)
		}
	}
	rep := compareCopy(t, l, r)
	if rep.Received != 6 || rep.LastReceived != 6 || rep.Problem != nil {
		t.Fatalf("copy: %+v", rep)
	}
	if st := s.Status(); !st.Connected || st.Pending != 0 {
		t.Fatalf("status %+v", st)
	}
}

// The server goes away: records wait in the log and arrive, in order and
// complete, when it returns.
func TestSyslogServerAwayAndBack(t *testing.T) {
	r := realparts.StartRsyslog(t, nil)
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	s := startStream(t, l, SyslogOptions{Addr: r.TCPAddr})
	fill(t, l, 3)
	waitSent(t, s, 4)

	r.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for s.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatal("the stream did not notice the server leaving")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fill(t, l, 25)
	if st := s.Status(); st.Pending < 25 || st.LastError == "" {
		t.Fatalf("while away: %+v", st)
	}
	r.Start()
	waitSent(t, s, 29)
	r.WaitLines(29, 10*time.Second)
	rep := compareCopy(t, l, r)
	if rep.Received != 29 || rep.Problem != nil {
		t.Fatalf("copy after the outage: %+v", rep)
	}
	assertInOrder(t, r)
}

// assertInOrder checks that the first occurrence of each record comes in
// sequence order.
func assertInOrder(t *testing.T, r *realparts.Rsyslog) {
	t.Helper()
	lines, _ := r.Lines()
	var last uint64
	for _, line := range lines {
		_, rec, ok, err := ParseSyslogLine([]byte(line))
		if !ok || err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if rec.Seq > last+1 {
			t.Fatalf("record %d arrived before record %d", rec.Seq, last+1)
		}
		last = max(last, rec.Seq)
	}
}

// A restarted agent resumes from its cursor instead of sending all again.
func TestSyslogResumesAfterRestart(t *testing.T) {
	r := realparts.StartRsyslog(t, nil)
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	s := startStream(t, l, SyslogOptions{Addr: r.TCPAddr})
	fill(t, l, 9)
	waitSent(t, s, 10)
	s.Close()
	l.Close()

	l = openLog(t, dir, nil)
	defer l.Close()
	fill(t, l, 5)
	s = startStream(t, l, SyslogOptions{Addr: r.TCPAddr})
	waitSent(t, s, 15)
	r.WaitLines(15, 10*time.Second)
	rep := compareCopy(t, l, r)
	if rep.Received != 15 || rep.Repeats != 0 {
		t.Fatalf("after restart: %+v", rep)
	}
}

func TestSyslogTLS(t *testing.T) {
	ca := testpki.NewCA(t, "customer syslog CA")
	r := realparts.StartRsyslog(t, realparts.TLSFiles(t, ca))
	dev := ca.Device(t, "SYS-0001")
	cfg, err := tlsconf.Client(ca.Pool, &dev, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	fill(t, l, 2)
	s := startStream(t, l, SyslogOptions{Addr: r.TLSAddr, TLS: cfg})
	waitSent(t, s, 3)
	r.WaitLines(3, 20*time.Second)
	if rep := compareCopy(t, l, r); rep.Received != 3 {
		t.Fatalf("%+v", rep)
	}
}

// A server whose certificate is not from the pinned CA gets nothing, and
// the status names it.
func TestSyslogTLSWrongCA(t *testing.T) {
	ca := testpki.NewCA(t, "customer syslog CA")
	r := realparts.StartRsyslog(t, realparts.TLSFiles(t, ca))
	other := testpki.NewCA(t, "some other CA")
	dev := ca.Device(t, "SYS-0001")
	cfg, _ := tlsconf.Client(other.Pool, &dev, "localhost")
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	s := startStream(t, l, SyslogOptions{Addr: r.TLSAddr, TLS: cfg})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.Status().LastError, "certificate") {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Status(); st.Sent != 0 || !strings.Contains(st.LastError, r.TLSAddr) {
		t.Fatalf("status %+v", st)
	}
	if lines, _ := r.Lines(); len(lines) != 0 {
		t.Fatalf("server got %d lines", len(lines))
	}
}

// The server refuses this device's certificate after the TLS 1.3
// handshake: nothing counts as sent, and the status says why.
func TestSyslogTLSClientCertRefused(t *testing.T) {
	ca := testpki.NewCA(t, "customer syslog CA")
	r := realparts.StartRsyslog(t, realparts.TLSFiles(t, ca))
	stranger := testpki.NewCA(t, "vendor CA the customer does not trust").Device(t, "SYS-0001")
	cfg, _ := tlsconf.Client(ca.Pool, &stranger, "localhost")
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	fill(t, l, 2)
	s := startStream(t, l, SyslogOptions{Addr: r.TLSAddr, TLS: cfg})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.Status().LastError, "refused the connection after the TLS handshake") {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Status(); st.Sent != 0 || st.Pending != 3 {
		t.Fatalf("status %+v: records counted as sent to a server that refused them", st)
	}
}

func TestNewSyslogRejectsBadAddress(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	for _, a := range []string{"", "no-port"} {
		if _, err := NewSyslog(l, SyslogOptions{Addr: a}); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}

// The copy at the server catches what the local anchors cannot: a record
// rewritten with the whole chain recomputed after it was sent, a log cut
// short with its head file rewritten, and a whole log removed.
func TestCompareWithCopyCatchesRewrites(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	fill(t, l, 9)
	l.Close()
	lines := readLines(t, filepath.Join(dir, LogName))
	var copyBuf bytes.Buffer
	for _, line := range lines {
		rec, _ := DecodeRecord(line[:len(line)-1])
		framed := frameSyslog("SYS-1", lines0ID(t, lines), rec, line[:len(line)-1])
		copyBuf.Write(framed[bytes.IndexByte(framed, ' ')+1:]) // without the octet count
		copyBuf.WriteByte('\n')
	}
	copyData := copyBuf.Bytes()
	check := func(name string, local [][]byte, want string) {
		t.Helper()
		p := filepath.Join(t.TempDir(), LogName)
		os.WriteFile(p, join(local...), 0o600)
		_, err := CompareWithCopy(p, bytes.NewReader(copyData))
		if want == "" {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %q", name, err, want)
		}
	}
	check("untouched", lines, "")

	// Rewrite record 4 and recompute every hash after it: the chain
	// verifies, the copy does not match.
	rewritten := rechain(t, lines, 3)
	if _, err := Verify(bytes.NewReader(join(rewritten...)), VerifyOptions{}); err != nil {
		t.Fatalf("the rewritten chain should verify on its own: %v", err)
	}
	check("rewritten chain", rewritten, "changed after it was sent")
	check("cut short", lines[:6], "local log ends at record 6")

	// A new log that does not name the old one as its predecessor.
	l2 := openLog(t, t.TempDir(), nil)
	l2.Close()
	check("old log removed", readLines(t, l2.Path()), "that the device no longer has")
}

func lines0ID(t *testing.T, lines [][]byte) string {
	rec, err := DecodeRecord(lines[0][:len(lines[0])-1])
	if err != nil {
		t.Fatal(err)
	}
	return rec.Fields["log_id"]
}

// rechain edits record i and recomputes it and every record after it.
func rechain(t *testing.T, lines [][]byte, i int) [][]byte {
	t.Helper()
	out := append([][]byte{}, lines[:i]...)
	prev, _ := DecodeRecord(lines[i-1][:len(lines[i-1])-1])
	for j := i; j < len(lines); j++ {
		rec, _ := DecodeRecord(lines[j][:len(lines[j])-1])
		rec.Prev = prev.Hash
		if j == i {
			rec.Actor = "someone-else"
		}
		line, err := rec.encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append(line, '\n'))
		prev = rec
	}
	return out
}

func TestNewSyslogFromConfig(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	if s, err := NewSyslogFromConfig(l, config.Audit{}, "SYS", nil, nil); s != nil || err != nil {
		t.Fatalf("no address: %v %v", s, err)
	}
	if _, err := NewSyslogFromConfig(l, config.Audit{SyslogAddr: "127.0.0.1:6514", SyslogTLS: true, SyslogCAFile: "/nonexistent.pem"}, "SYS", nil, nil); err == nil || !strings.Contains(err.Error(), "syslog_ca_file") {
		t.Fatalf("missing CA: %v", err)
	}
	ca := testpki.NewCA(t, "c")
	s, err := NewSyslogFromConfig(l, config.Audit{SyslogAddr: "127.0.0.1:6514", SyslogTLS: true, SyslogCAFile: ca.WriteCAFile(t, t.TempDir())}, "SYS", nil, nil)
	if err != nil || s.opts.TLS == nil || s.opts.TLS.ServerName != "127.0.0.1" {
		t.Fatalf("%v %+v", err, s)
	}
}
