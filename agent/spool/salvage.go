package spool

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/dcagent/dcagent/agent/event"
)

// Salvage: what can be saved from a damaged spool file.
//
// One file may hold hundreds of events from one group commit, so one bad
// byte must not cost the events after it. The format has no sync marker,
// but every record carries its length and a CRC-32C over itself, which is
// enough to find the next record again:
//
//  1. Skip by length. When the damaged record's header is plausible (a
//     length within the event limit, the right id length, the record
//     fits in the file) and the bytes right after it are a record whose
//     framing checks out, or the record ends the file, the damage is in
//     that record only: exactly one event is lost, usually with its id
//     and severity still legible in its header.
//  2. Scan. Otherwise (the length field itself is damaged, or the file is
//     torn) the salvage looks at every later offset for a record whose
//     framing checks out: the CRC matches (1 in 2^32 by chance), the
//     severity is in range, the id is a valid id, AND its body decodes as
//     an event carrying that same id and severity. A random false frame
//     passing all of that is out of reach; the only way to plant one is an
//     event body that embeds a complete frame of another event, which is
//     why a frame found by scanning must also decode as a whole event.
//     How many events the skipped stretch held is not known (at least
//     one), and the report says so.
//
// Every byte after the magic ends up either in a recovered record or in a
// damaged stretch, so the report accounts for the whole file.

// damagedSpan is a stretch of a spool file that did not decode.
type damagedSpan struct {
	start, end int64  // byte range [start, end) in the file
	index      int    // position of the (first) lost record among the file's records
	reason     string // what was wrong at start
	// exact is true when the stretch was skipped by its own length: it is
	// exactly one record. Otherwise it held at least one record.
	exact bool
	id    string         // the lost event's id when its header is legible, else ""
	sev   event.Severity // its severity when legible, else 0
}

// salvaged is the outcome of reading a damaged file.
type salvaged struct {
	recs   []rawRecord
	damage []damagedSpan
}

// lost returns the number of events known to be lost (a lower bound when
// some stretch was found by scanning) and whether the number is exact.
func (sv salvaged) lost() (n int, exact bool) {
	exact = true
	for _, d := range sv.damage {
		n++
		if !d.exact {
			exact = false
		}
	}
	return n, exact
}

// lostText says how many events were lost, in words.
func (sv salvaged) lostText() string {
	n, exact := sv.lost()
	if exact {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("at least %d", n)
}

// where lists the damaged stretches, separated by sep.
func (sv salvaged) where(sep string) string {
	parts := make([]string, len(sv.damage))
	for i, d := range sv.damage {
		parts[i] = d.String()
	}
	return strings.Join(parts, sep)
}

func (d damagedSpan) String() string {
	s := fmt.Sprintf("bytes %d-%d (record %d): %s; ", d.start, d.end, d.index, d.reason)
	if d.exact {
		s += "1 event lost"
	} else {
		s += "at least 1 event lost (the length field or the file is damaged; skipped to the next intact record)"
	}
	if d.id != "" {
		s += ", id " + d.id
	}
	if d.sev != 0 {
		s += fmt.Sprintf(", severity %d", d.sev)
	}
	return s
}

// salvageFile reads every intact record of a damaged spool file, skipping
// damaged ones as described above. It never fails: a file without the
// magic is one damaged stretch.
func salvageFile(data []byte) salvaged {
	var sv salvaged
	if len(data) < len(fileMagic) || string(data[:len(fileMagic)]) != fileMagic {
		sv.damage = append(sv.damage, damagedSpan{start: 0, end: int64(len(data)),
			reason: fmt.Sprintf("not a spool file: bad magic (first bytes %q)", head(data, 8))})
		return sv
	}
	off := len(fileMagic)
	for off < len(data) {
		r, n, err := decodeRecord(data[off:], int64(off))
		if err == nil {
			sv.recs = append(sv.recs, r)
			off += n
			continue
		}
		d := damagedSpan{start: int64(off), index: len(sv.recs) + len(sv.damage), reason: err.Error()}
		d.id, d.sev = legibleHeader(data[off:])
		if n := plausibleFrameLen(data[off:]); n > 0 && (off+n == len(data) || frameAt(data, off+n)) {
			d.end, d.exact = int64(off+n), true
			sv.damage = append(sv.damage, d)
			off += n
			continue
		}
		next := len(data)
		for p := off + 1; p < len(data); p++ {
			if frameAt(data, p) && wholeEventAt(data, p) {
				next = p
				break
			}
		}
		d.end = int64(next)
		sv.damage = append(sv.damage, d)
		off = next
	}
	return sv
}

// plausibleFrameLen returns the length of the record starting at b as its
// header gives it, or 0 when the header is not plausible or the record
// would not fit in b.
func plausibleFrameLen(b []byte) int {
	const fixed = 4 + 1 + 1
	if len(b) < fixed {
		return 0
	}
	length := int(binary.BigEndian.Uint32(b))
	if length == 0 || length > event.MaxEncodedSize || int(b[5]) != event.IDLen {
		return 0
	}
	total := fixed + event.IDLen + length + 4
	if total > len(b) {
		return 0
	}
	return total
}

// frameAt reports whether a record whose framing checks out starts at off.
func frameAt(data []byte, off int) bool {
	if plausibleFrameLen(data[off:]) == 0 {
		return false // cheap filter before the CRC
	}
	_, _, err := decodeRecord(data[off:], int64(off))
	return err == nil
}

// wholeEventAt reports whether the record at off (whose framing checks
// out) holds an event whose own id and severity match its header.
func wholeEventAt(data []byte, off int) bool {
	r, _, err := decodeRecord(data[off:], int64(off))
	if err != nil {
		return false
	}
	e, err := event.Unmarshal(r.body)
	return err == nil && e.ID == r.id && e.Severity == r.sev
}

// legibleHeader returns the id and severity in a damaged record's header
// when they look right (they are hints for the report, not trusted).
func legibleHeader(b []byte) (string, event.Severity) {
	const fixed = 4 + 1 + 1
	if len(b) < fixed+event.IDLen || int(b[5]) != event.IDLen {
		return "", 0
	}
	id := string(b[fixed : fixed+event.IDLen])
	if _, err := event.ParseID(id); err != nil {
		return "", 0
	}
	sev := event.Severity(b[4])
	if sev < event.SeverityInfo || sev > event.SeverityCritical {
		sev = 0
	}
	return id, sev
}
