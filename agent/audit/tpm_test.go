package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tpm"
	"github.com/dcagent/dcagent/internal/realparts"
)

const testCounterIndex = 0x01800020

func tpmCounter(t testing.TB, sw *realparts.SWTPM) (Counter, func()) {
	t.Helper()
	s, err := tpm.OpenStore(context.Background(), sw.URI("device"), keystore.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Counter(testCounterIndex)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return c, func() { s.Close() }
}

// The log anchored in a real TPM (swtpm): a log cut short is caught even
// with its head file rewritten to match, the anchor survives a restart of
// the TPM, and a counter that moved on is caught.
func TestTPMAnchor(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	c, closeTPM := tpmCounter(t, sw)
	dir := t.TempDir()
	l := openLog(t, dir, c)
	fill(t, l, 30)
	rep, err := l.Verify()
	if err != nil || !rep.CounterChecked || !rep.Anchored {
		t.Fatalf("%v %+v", err, rep)
	}
	if v, _ := c.Read(); v != l.Last().Anchor {
		t.Fatalf("counter %d, last record's anchor %d", v, l.Last().Anchor)
	}
	l.Close()
	closeTPM()

	// The TPM restarts (a power cycle); the anchor holds.
	if err := sw.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, closeTPM = tpmCounter(t, sw)
	defer closeTPM()
	l = openLog(t, dir, c)
	if l.Recovered() != nil || l.Last().Seq != 31 {
		t.Fatalf("after TPM restart: %v, last %d", l.Recovered(), l.Last().Seq)
	}
	l.Close()

	// Cut the last five records and rewrite the head file to match.
	lines := readLines(t, filepath.Join(dir, LogName))
	cut := lines[:len(lines)-5]
	os.WriteFile(filepath.Join(dir, LogName), join(cut...), 0o600)
	last, _ := DecodeRecord(cut[len(cut)-1][:len(cut[len(cut)-1])-1])
	os.WriteFile(filepath.Join(dir, HeadName), headLine(Head{Seq: last.Seq, Hash: last.Hash, Anchor: last.Anchor}), 0o600)
	v, _ := c.Read()
	_, err = VerifyFile(filepath.Join(dir, LogName), VerifyOptions{Counter: v, HaveCounter: true})
	if err == nil || !strings.Contains(err.Error(), "TPM counter counted 5 more record(s)") {
		t.Fatalf("cut log with a rewritten head: %v", err)
	}
	// Open sets it aside and starts a new anchored log.
	l = openLog(t, dir, c)
	defer l.Close()
	if p := l.Recovered(); p == nil || !strings.Contains(p.Reason, "cut short") {
		t.Fatalf("recovered %v", p)
	}
	if rep, err := l.Verify(); err != nil || !rep.CounterChecked {
		t.Fatalf("new log: %v %+v", err, rep)
	}
}

// BenchmarkAppendDurableTPM: a record synced and the swtpm counter
// incremented per operation.
func BenchmarkAppendDurableTPM(b *testing.B) {
	sw := realparts.SWTPMForTest(b)
	c, closeTPM := tpmCounter(b, sw)
	defer closeTPM()
	l := openLog(b, b.TempDir(), c)
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(Entry{Kind: KindDecision, Fields: map[string]string{"action": "remote:ssh"}}); err != nil {
			b.Fatal(err)
		}
	}
}
