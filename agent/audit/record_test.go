package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// withHash makes a line from a JSON body by appending its hash member.
func withHash(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(append(append([]byte{}, body[:len(body)-1]...), hashKey+hex.EncodeToString(sum[:])...), `"}`...)
}

func sampleRecord() Record {
	return Record{Seq: 7, Time: time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC), Kind: KindSessionEnd, Actor: "alice <a&b>",
		Fields: map[string]string{"session": "s-1", "reason": "idle timeout", "note": "line\nbreak \"quoted\" ü"}, Anchor: 43, Prev: strings.Repeat("ab", 32)}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	line, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(line, '\n') >= 0 {
		t.Fatalf("a record line must not hold a newline: %s", line)
	}
	got, err := DecodeRecord(line)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, line)
	}
	if got.Hash != r.Hash || got.Seq != r.Seq || !got.Time.Equal(r.Time) || got.Fields["note"] != r.Fields["note"] || got.Actor != r.Actor || got.Anchor != 43 {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
	if !strings.HasSuffix(string(line), `,"hash":"`+r.Hash+`"}`) {
		t.Fatalf("hash is not the last member: %s", line)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	r := sampleRecord()
	good, _ := r.encode()
	edit := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	cases := []struct {
		name string
		line []byte
		want string
		hash bool
	}{
		{"edited value", edit(`idle timeout`, `idle timeouT`), "does not match its hash", true},
		{"edited seq", edit(`"seq":7`, `"seq":8`), "does not match its hash", true},
		{"no hash", edit(`,"hash":"`, `,"hash" :"`), "not an audit record", false},
		{"upper hex", bytes.ToUpper(good), "not an audit record", false},
		{"unknown member", edit(`"seq":7,`, `"seq":7,"x":1,`), "canonical form", false},
		{"reordered", edit(`"seq":7,"time"`, `"time"`), "", false},
		{"empty", []byte{}, "not an audit record", false},
		{"not json", []byte(`{` + strings.Repeat("x", 80) + `,"hash":"` + strings.Repeat("0", 64) + `"}`), "malformed JSON", false},
		{"too long", append(bytes.Repeat([]byte{' '}, maxLineBytes), good...), "longer than", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeRecord(c.line)
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a RecordError", err)
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, want it to say %q", err, c.want)
			}
			if re.HashMismatch != c.hash {
				t.Fatalf("HashMismatch = %v, want %v", re.HashMismatch, c.hash)
			}
		})
	}
}

// A record whose JSON is valid and whose hash is right, but which is not
// what the agent would have written, is refused: the values a reader sees
// must be the bytes that were hashed.
func TestDecodeRecordRefusesNonCanonical(t *testing.T) {
	bodies := map[string]string{
		"duplicate key": `{"seq":7,"seq":8,"time":"2025-03-01T12:00:00Z","kind":"x","prev":"` + zeroHash + `"}`,
		"reordered":     `{"time":"2025-03-01T12:00:00Z","seq":7,"kind":"x","prev":"` + zeroHash + `"}`,
		"escaped":       `{"seq":7,"time":"2025-03-01T12:00:00Z","kind":"\u0078","prev":"` + zeroHash + `"}`,
		"spaces":        `{"seq":7, "time":"2025-03-01T12:00:00Z","kind":"x","prev":"` + zeroHash + `"}`,
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeRecord(withHash([]byte(b)))
			if err == nil || !strings.Contains(err.Error(), "canonical") {
				t.Fatalf("got %v, want a canonical-form error", err)
			}
		})
	}
	// The same record written canonically passes.
	if _, err := DecodeRecord(withHash([]byte(`{"seq":7,"time":"2025-03-01T12:00:00Z","kind":"x","prev":"` + zeroHash + `"}`))); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeRecordChecksValues(t *testing.T) {
	cases := map[string]string{
		"seq 0":    `{"seq":0,"time":"2025-03-01T12:00:00Z","kind":"x","prev":"` + zeroHash + `"}`,
		"no time":  `{"seq":1,"time":"0001-01-01T00:00:00Z","kind":"x","prev":"` + zeroHash + `"}`,
		"bad kind": `{"seq":1,"time":"2025-03-01T12:00:00Z","kind":"X Y","prev":"` + zeroHash + `"}`,
		"bad prev": `{"seq":1,"time":"2025-03-01T12:00:00Z","kind":"x","prev":"00"}`,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeRecord(withHash([]byte(b))); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestEntryLimits(t *testing.T) {
	long := strings.Repeat("é", 2000)
	fields := map[string]string{"v": long}
	for i := 0; i < 40; i++ {
		fields[strings.Repeat("k", i+1)] = "x"
	}
	e, err := Entry{Kind: "x", Actor: long, Fields: fields}.normalise()
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Actor) > maxActorLen || len(e.Fields["v"]) > maxFieldVal || len(e.Fields) > maxFields {
		t.Fatalf("limits not applied: actor %d, v %d, fields %d", len(e.Actor), len(e.Fields["v"]), len(e.Fields))
	}
	if e.Fields["fields_cut"] == "" {
		t.Fatal("cut fields are not counted")
	}
	if _, err := (Entry{Kind: "Bad Kind"}).normalise(); err == nil {
		t.Fatal("bad kind accepted")
	}
	if _, err := (Entry{Kind: strings.Repeat("a", 33)}).normalise(); err == nil {
		t.Fatal("kind longer than a syslog MSGID accepted")
	}
}
