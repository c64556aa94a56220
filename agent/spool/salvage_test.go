package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dcagent/dcagent/agent/event"
)

// groupFile builds the bytes of a group-commit spool file of n critical
// events and returns them with the ids and the offset of every record.
func groupFile(t testing.TB, n int) ([]byte, []string, []int) {
	t.Helper()
	buf := []byte(fileMagic)
	var ids []string
	var offs []int
	for i := 0; i < n; i++ {
		e := ev(event.SeverityCritical, fmt.Sprintf("critical alert %d", i))
		body, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, len(buf))
		buf = appendRecord(buf, e.ID, e.Severity, body)
		ids = append(ids, e.ID)
	}
	return buf, ids, offs
}

// The damage cases the salvage must survive, on a file of five records.
// want lists the records that must come back; lost is the reason file's
// count of lost events.
func TestSalvageResynchronisesAfterDamage(t *testing.T) {
	bodyByte := func(rec int) func([]byte, []int) {
		return func(b []byte, offs []int) { b[offs[rec]+6+event.IDLen+3] ^= 0x01 }
	}
	crcByte := func(rec int) func([]byte, []int) {
		return func(b []byte, offs []int) {
			end := len(b)
			if rec+1 < len(offs) {
				end = offs[rec+1]
			}
			b[end-1] ^= 0x80
		}
	}
	lengthTo := func(rec int, v func(old uint32) uint32) func([]byte, []int) {
		return func(b []byte, offs []int) {
			old := binary.BigEndian.Uint32(b[offs[rec]:])
			binary.BigEndian.PutUint32(b[offs[rec]:], v(old))
		}
	}
	huge := func(uint32) uint32 { return 0xfffffff0 }
	plusOne := func(old uint32) uint32 { return old + 1 }
	minus9 := func(old uint32) uint32 { return old - 9 }
	cases := []struct {
		name   string
		damage func(b []byte, offs []int)
		want   []int
		lost   string
		exact  bool
	}{
		{"first record body", bodyByte(0), []int{1, 2, 3, 4}, "events lost: 1\n", true},
		{"middle record body", bodyByte(2), []int{0, 1, 3, 4}, "events lost: 1\n", true},
		{"last record body", bodyByte(4), []int{0, 1, 2, 3}, "events lost: 1\n", true},
		{"middle record crc", crcByte(2), []int{0, 1, 3, 4}, "events lost: 1\n", true},
		{"first and fourth record bodies", func(b []byte, offs []int) { bodyByte(0)(b, offs); bodyByte(3)(b, offs) },
			[]int{1, 2, 4}, "events lost: 2\n", true},
		{"first length implausible", lengthTo(0, huge), []int{1, 2, 3, 4}, "events lost: at least 1\n", false},
		{"middle length implausible", lengthTo(2, huge), []int{0, 1, 3, 4}, "events lost: at least 1\n", false},
		{"middle length one too long", lengthTo(2, plusOne), []int{0, 1, 3, 4}, "events lost: at least 1\n", false},
		{"middle length short", lengthTo(2, minus9), []int{0, 1, 3, 4}, "events lost: at least 1\n", false},
		{"last length implausible", lengthTo(4, huge), []int{0, 1, 2, 3}, "events lost: at least 1\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			buf, ids, offs := groupFile(t, 5)
			c.damage(buf, offs)
			name := idSeq.New() + fileSuffix
			if err := os.WriteFile(filepath.Join(dir, name), buf, 0o600); err != nil {
				t.Fatal(err)
			}
			s, lb := open(t, dir, Limits{})
			var want []string
			for _, i := range c.want {
				want = append(want, ids[i])
			}
			got := ids2sorted(leaseAll(t, s))
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("spooled again %v, want %v", got, want)
			}
			if st := s.Stats(); st.Quarantined != 1 || st.Backlog != len(want) {
				t.Fatalf("quarantined %d backlog %d, want 1 and %d", st.Quarantined, st.Backlog, len(want))
			}
			if _, err := os.Stat(filepath.Join(dir, quarantineDir, name)); err != nil {
				t.Fatalf("damaged file not kept as evidence: %v", err)
			}
			reason, err := os.ReadFile(filepath.Join(dir, quarantineDir, name+".reason"))
			if err != nil {
				t.Fatal(err)
			}
			rec := fmt.Sprintf("intact events recovered: %d, spooled again: %d\n", len(want), len(want))
			if !strings.Contains(string(reason), rec) || !strings.Contains(string(reason), c.lost) {
				t.Fatalf("reason file does not say %q and %q:\n%s", rec, c.lost, reason)
			}
			// Where: every lost record is named by its byte range.
			for _, i := range []int{0, 1, 2, 3, 4} {
				if slices.Contains(c.want, i) {
					continue
				}
				where := fmt.Sprintf("bytes %d-", offs[i])
				if !strings.Contains(string(reason), where) {
					t.Fatalf("reason file does not place the damage at %q:\n%s", where, reason)
				}
				if c.exact && !strings.Contains(string(reason), "id "+ids[i]) {
					t.Fatalf("reason file does not name the lost event %s:\n%s", ids[i], reason)
				}
			}
			logs := lb.String()
			if !strings.Contains(logs, fmt.Sprintf("recovered=%d", len(want))) || !strings.Contains(logs, "lost=") ||
				!strings.Contains(logs, fmt.Sprintf("bytes %d-", offs[slices.IndexFunc([]int{0, 1, 2, 3, 4}, func(i int) bool { return !slices.Contains(c.want, i) })])) {
				t.Fatalf("log line does not say what was recovered and lost where:\n%s", logs)
			}
		})
	}
	t.Run("torn tail", func(t *testing.T) {
		dir := t.TempDir()
		buf, ids, offs := groupFile(t, 5)
		name := idSeq.New() + fileSuffix
		os.WriteFile(filepath.Join(dir, name), buf[:offs[2]+20], 0o600)
		s, _ := open(t, dir, Limits{})
		got := ids2sorted(leaseAll(t, s))
		want := []string{ids[0], ids[1]}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("spooled again %v, want %v", got, want)
		}
		reason, _ := os.ReadFile(filepath.Join(dir, quarantineDir, name+".reason"))
		if !strings.Contains(string(reason), fmt.Sprintf("bytes %d-%d", offs[2], offs[2]+20)) ||
			!strings.Contains(string(reason), "events lost: at least 1\n") {
			t.Fatalf("reason file:\n%s", reason)
		}
	})
}

func ids2sorted(recs []Record) []string {
	out := ids(recs)
	slices.Sort(out)
	return out
}

// A frame planted inside an event's body (a message that happens to hold
// the bytes of another record) must not be recovered as an event of its
// own when the scan passes over it: only whole events are.
func TestSalvageScanIgnoresFrameThatIsNotAWholeEvent(t *testing.T) {
	// Framing fine, not an event; an event message must be UTF-8, so pick
	// an id that makes the CRC valid UTF-8 too.
	var planted []byte
	for planted == nil || !utf8.Valid(planted) {
		planted = appendRecord(nil, idSeq.New(), event.SeverityCritical, []byte("ok"))
	}
	buf := []byte(fileMagic)
	e1 := ev(event.SeverityWarning, "carrier "+string(planted))
	b1, err := event.Marshal(e1)
	if err != nil {
		t.Fatal(err)
	}
	buf = appendRecord(buf, e1.ID, e1.Severity, b1)
	e2 := ev(event.SeverityWarning, "after")
	b2, _ := event.Marshal(e2)
	second := len(buf)
	buf = appendRecord(buf, e2.ID, e2.Severity, b2)
	binary.BigEndian.PutUint32(buf[len(fileMagic):], 0xfffffff0) // the carrier's length is damaged: scan
	if !bytes.Contains(buf, planted) {
		t.Fatal("test setup: planted frame not in the file")
	}
	sv := salvageFile(buf)
	if len(sv.recs) != 1 || sv.recs[0].id != e2.ID {
		t.Fatalf("recovered %d records (%v), want only %s", len(sv.recs), sv.recs, e2.ID)
	}
	if len(sv.damage) != 1 || sv.damage[0].end != int64(second) {
		t.Fatalf("damage %+v, want one stretch ending at %d", sv.damage, second)
	}
}

// Inspect counts what the next start will recover from a damaged file.
func TestInspectCountsRecoverableEvents(t *testing.T) {
	dir := t.TempDir()
	buf, _, offs := groupFile(t, 5)
	buf[offs[1]+6+event.IDLen+3] ^= 1
	os.WriteFile(filepath.Join(dir, idSeq.New()+fileSuffix), buf, 0o600)
	r, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Damaged != 1 || r.Events != 4 {
		t.Fatalf("inspect: damaged %d events %d, want 1 and 4", r.Damaged, r.Events)
	}
}

// The salvage reads damaged files, so it is a parser of untrusted bytes:
// it must never panic, and it must account for every byte after the magic
// as either a recovered record (that re-encodes to exactly its bytes) or
// a damaged stretch, in order, without overlap.
func FuzzSpoolSalvage(f *testing.F) {
	buf, _, offs := groupFile(f, 4)
	f.Add(buf)
	d := append([]byte(nil), buf...)
	d[offs[1]+40] ^= 1
	f.Add(d)
	d = append([]byte(nil), buf...)
	binary.BigEndian.PutUint32(d[offs[2]:], 0xffffffff)
	f.Add(d)
	f.Add(buf[:offs[3]+11])
	f.Add([]byte("garbage"))
	f.Add([]byte(fileMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		sv := salvageFile(data)
		type span struct{ start, end int64 }
		var spans []span
		for _, r := range sv.recs {
			start := r.off - int64(6+event.IDLen)
			end := r.off + int64(len(r.body)) + 4
			if start < int64(len(fileMagic)) || end > int64(len(data)) {
				t.Fatalf("record %s at %d-%d outside the file (%d bytes)", r.id, start, end, len(data))
			}
			if !bytes.Equal(appendRecord(nil, r.id, r.sev, r.body), data[start:end]) {
				t.Fatalf("record %s does not re-encode to its bytes", r.id)
			}
			spans = append(spans, span{start, end})
		}
		for _, d := range sv.damage {
			if d.start >= d.end && len(data) > 0 {
				t.Fatalf("empty damaged stretch %+v", d)
			}
			spans = append(spans, span{d.start, d.end})
		}
		slices.SortFunc(spans, func(a, b span) int { return int(a.start - b.start) })
		pos := int64(len(fileMagic))
		if len(data) < len(fileMagic) || string(data[:len(fileMagic)]) != fileMagic {
			pos = 0
		}
		if len(data) == len(fileMagic) && pos != 0 {
			if len(spans) != 0 {
				t.Fatalf("spans in an empty file: %+v", spans)
			}
			return
		}
		for _, s := range spans {
			if s.start != pos {
				t.Fatalf("stretch starts at %d, want %d (gap or overlap); spans %+v", s.start, pos, spans)
			}
			pos = s.end
		}
		if pos != int64(len(data)) {
			t.Fatalf("accounted up to %d of %d bytes", pos, len(data))
		}
		if _, err := decodeFile(data); err == nil && len(sv.damage) != 0 {
			t.Fatal("damage reported in a file that decodes cleanly")
		}
	})
}
