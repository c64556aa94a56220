package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dcagent/dcagent/agent/event"
)

// A spool file holds one or more events: one when callers come one at a
// time, several when they come together and share one commit.
//
//	file   = magic record+
//	magic  = "DCSPOOL1"
//	record = length:u32 severity:u8 idlen:u8 id body crc:u32
//
// length is the body's length; body is the event's deterministic CBOR
// encoding, exactly the bytes that are uploaded; crc is CRC-32C over
// everything in the record before it. Integers are big-endian. Severity
// and id sit in the record header so that opening the spool needs no
// decoding of bodies.
const fileMagic = "DCSPOOL1"

const recordOverhead = 4 + 1 + 1 + event.IDLen + 4

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// rawRecord is one record as it sits in a file.
type rawRecord struct {
	id   string
	sev  event.Severity
	off  int64 // offset of body in the file
	body []byte
}

// appendRecord appends the encoding of one record to buf.
func appendRecord(buf []byte, id string, sev event.Severity, body []byte) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(body)))
	buf = append(buf, byte(sev), byte(len(id)))
	buf = append(buf, id...)
	buf = append(buf, body...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], crcTable))
}

var errNoRecords = errors.New("no records after the header")

// decodeFile parses a whole spool file. On damage it returns the records
// that were intact before the damage together with an error saying what
// and where, so that the caller can quarantine the file and still send
// what is good.
func decodeFile(data []byte) ([]rawRecord, error) {
	if len(data) < len(fileMagic) || string(data[:len(fileMagic)]) != fileMagic {
		return nil, fmt.Errorf("not a spool file: bad magic (first bytes %q)", head(data, 8))
	}
	var recs []rawRecord
	off := len(fileMagic)
	for off < len(data) {
		r, n, err := decodeRecord(data[off:], int64(off))
		if err != nil {
			return recs, fmt.Errorf("record %d at offset %d: %w", len(recs), off, err)
		}
		recs = append(recs, r)
		off += n
	}
	if len(recs) == 0 {
		return nil, errNoRecords
	}
	return recs, nil
}

func decodeRecord(b []byte, base int64) (rawRecord, int, error) {
	const fixed = 4 + 1 + 1
	if len(b) < fixed {
		return rawRecord{}, 0, fmt.Errorf("torn: %d bytes left, a record header needs %d", len(b), fixed)
	}
	length := int(binary.BigEndian.Uint32(b))
	sev := event.Severity(b[4])
	idLen := int(b[5])
	if length > event.MaxEncodedSize {
		return rawRecord{}, 0, fmt.Errorf("length %d exceeds the %d-byte limit", length, event.MaxEncodedSize)
	}
	if idLen != event.IDLen {
		return rawRecord{}, 0, fmt.Errorf("id length %d, want %d", idLen, event.IDLen)
	}
	total := fixed + idLen + length + 4
	if len(b) < total {
		return rawRecord{}, 0, fmt.Errorf("torn: record needs %d bytes, %d left", total, len(b))
	}
	want := binary.BigEndian.Uint32(b[total-4:])
	if got := crc32.Checksum(b[:total-4], crcTable); got != want {
		return rawRecord{}, 0, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	if sev < event.SeverityInfo || sev > event.SeverityCritical {
		return rawRecord{}, 0, fmt.Errorf("severity %d out of range", sev)
	}
	id := string(b[fixed : fixed+idLen])
	if _, err := event.ParseID(id); err != nil {
		return rawRecord{}, 0, err
	}
	if length == 0 {
		return rawRecord{}, 0, errors.New("empty event body")
	}
	bodyOff := fixed + idLen
	return rawRecord{id: id, sev: sev, off: base + int64(bodyOff), body: b[bodyOff : bodyOff+length]}, total, nil
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
