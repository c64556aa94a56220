package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what one record may hold. Values past them are cut (and marked),
// never refused: an audit record must not be lost because a requester's
// name was long.
const (
	maxKindLen   = 32 // also the RFC 5424 MSGID limit
	maxActorLen  = 256
	maxFields    = 32
	maxFieldKey  = 64
	maxFieldVal  = 1024
	maxLineBytes = 64 << 10 // a line longer than this is malformed
	hashHexLen   = sha256.Size * 2
)

// zeroHash is the Prev of a log's first record.
var zeroHash = strings.Repeat("0", hashHexLen)

// hashSuffix is how every line ends: `,"hash":"<64 hex>"}`.
const hashKey = `,"hash":"`

var hashSuffixLen = len(hashKey) + hashHexLen + len(`"}`)

// Record is one audit record. On disk it is one line of JSON whose members
// come in this order, with "hash" last:
//
//	{"seq":7,"time":"...","kind":"remote.session.end","actor":"alice",
//	 "fields":{"bytes_in":"120"},"anchor":42,"prev":"<hex>","hash":"<hex>"}
//
// Hash is the SHA-256 of the line with its `,"hash":"…"` member removed
// (that is, of the JSON encoding of every other member), so the hash covers
// Prev and with it the whole chain before the record.
type Record struct {
	// Seq counts records from 1 in this log; it never skips.
	Seq uint64 `json:"seq"`
	// Time is when the record was written, UTC.
	Time time.Time `json:"time"`
	// Kind says what happened, e.g. remote.session.start (see kinds.go).
	Kind string `json:"kind"`
	// Actor is who caused it: a requester at the backend, a local user
	// (uid:NAME), or "agent" for the daemon itself.
	Actor string `json:"actor,omitempty"`
	// Fields are the details, all strings.
	Fields map[string]string `json:"fields,omitempty"`
	// Anchor is the TPM NV counter value this record brought the counter
	// to; 0 when the log is not anchored in a TPM.
	Anchor uint64 `json:"anchor,omitempty"`
	// Prev is the Hash of the record before (64 zeros for the first).
	Prev string `json:"prev"`
	// Hash is this record's hash, hex.
	Hash string `json:"hash"`
}

// body is a Record without its hash: the bytes that are hashed.
type body struct {
	Seq    uint64            `json:"seq"`
	Time   time.Time         `json:"time"`
	Kind   string            `json:"kind"`
	Actor  string            `json:"actor,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
	Anchor uint64            `json:"anchor,omitempty"`
	Prev   string            `json:"prev"`
}

// Entry is what a caller asks to record; the log adds sequence, time,
// anchor and chain.
type Entry struct {
	Kind   string
	Actor  string
	Fields map[string]string
}

// encode returns the record's line (without the newline) and its hash. It
// fills r.Hash.
func (r *Record) encode() ([]byte, error) {
	b, err := json.Marshal(body{Seq: r.Seq, Time: r.Time, Kind: r.Kind, Actor: r.Actor, Fields: r.Fields, Anchor: r.Anchor, Prev: r.Prev})
	if err != nil {
		return nil, fmt.Errorf("audit: encode record %d: %w", r.Seq, err)
	}
	sum := sha256.Sum256(b)
	r.Hash = hex.EncodeToString(sum[:])
	line := make([]byte, 0, len(b)+hashSuffixLen)
	line = append(line, b[:len(b)-1]...)
	line = append(line, hashKey...)
	line = append(line, r.Hash...)
	line = append(line, `"}`...)
	return line, nil
}

// DecodeRecord parses one line of an audit log (without its newline) and
// checks that the record is well formed, in canonical form and matches its
// own hash. The error is an *RecordError saying what is wrong.
func DecodeRecord(line []byte) (Record, error) {
	var r Record
	if len(line) > maxLineBytes {
		return r, &RecordError{Reason: fmt.Sprintf("record is %d bytes, longer than the %d allowed", len(line), maxLineBytes)}
	}
	n := len(line)
	if n < hashSuffixLen+2 || line[0] != '{' || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.Equal(line[n-hashSuffixLen:n-hashSuffixLen+len(hashKey)], []byte(hashKey)) {
		return r, &RecordError{Reason: `not an audit record: it must be a JSON object ending in "hash":"<64 hex digits>"`}
	}
	stored := string(line[n-2-hashHexLen : n-2])
	if !isLowerHex(stored) {
		return r, &RecordError{Reason: "its hash is not 64 lowercase hex digits"}
	}
	b := make([]byte, 0, n-hashSuffixLen+1)
	b = append(b, line[:n-hashSuffixLen]...)
	b = append(b, '}')

	// Unknown members are not refused here: the canonical-form check
	// below refuses them (they do not survive re-encoding).
	var bd body
	if err := json.Unmarshal(b, &bd); err != nil {
		return r, &RecordError{Reason: "malformed JSON: " + err.Error()}
	}
	r = Record{Seq: bd.Seq, Time: bd.Time, Kind: bd.Kind, Actor: bd.Actor, Fields: bd.Fields, Anchor: bd.Anchor, Prev: bd.Prev, Hash: stored}
	if err := r.check(); err != nil {
		return r, err
	}
	// The line must be exactly what the agent writes for these values, so
	// that what a reader sees (the decoded values) is what was hashed: no
	// duplicate keys, no reordered members, no alternative escapes.
	canon, err := json.Marshal(bd)
	if err != nil || !bytes.Equal(canon, b) {
		return r, &RecordError{Reason: "not in canonical form (members reordered, repeated or re-escaped)"}
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != stored {
		return r, &RecordError{Reason: "its content does not match its hash (the record was edited)", HashMismatch: true}
	}
	return r, nil
}

// check validates the values of a decoded record.
func (r *Record) check() error {
	switch {
	case r.Seq == 0:
		return &RecordError{Reason: "seq is 0 (records count from 1)"}
	case r.Time.IsZero():
		return &RecordError{Reason: "time is missing"}
	case !validKind(r.Kind):
		return &RecordError{Reason: fmt.Sprintf("kind %q is not 1-%d of a-z 0-9 . _ -", r.Kind, maxKindLen)}
	case len(r.Actor) > maxActorLen:
		return &RecordError{Reason: "actor is too long"}
	case len(r.Fields) > maxFields:
		return &RecordError{Reason: "too many fields"}
	case !isLowerHex(r.Prev) || len(r.Prev) != hashHexLen:
		return &RecordError{Reason: "prev is not 64 lowercase hex digits"}
	}
	return nil
}

func validKind(k string) bool {
	if k == "" || len(k) > maxKindLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	if len(s) != hashHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// clip cuts s to at most n bytes on a rune boundary and marks the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…(cut)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// normalise makes an Entry fit the limits and the kind alphabet.
func (e Entry) normalise() (Entry, error) {
	if !validKind(e.Kind) {
		return e, fmt.Errorf("audit: kind %q is not 1-%d of a-z 0-9 . _ -", e.Kind, maxKindLen)
	}
	out := Entry{Kind: e.Kind, Actor: clip(strings.ToValidUTF8(e.Actor, "?"), maxActorLen)}
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out.Fields = make(map[string]string, len(keys))
		for i, k := range keys {
			if i == maxFields-1 && len(keys) > maxFields {
				out.Fields["fields_cut"] = fmt.Sprint(len(keys) - i)
				break
			}
			out.Fields[clip(strings.ToValidUTF8(k, "?"), maxFieldKey)] = clip(strings.ToValidUTF8(e.Fields[k], "?"), maxFieldVal)
		}
	}
	return out, nil
}
