package audit

import (
	"bytes"
	"testing"
)

func seedLines(f *testing.F) [][]byte {
	dir := f.TempDir()
	l, err := Open(Options{Dir: dir, Counter: &memCounter{v: 9}, Now: fixedClock()})
	if err != nil {
		f.Fatal(err)
	}
	fill(f, l, 6)
	l.Append(Entry{Kind: KindSessionEnd, Actor: "zoë <x>", Fields: map[string]string{"odd": "tab\t\"q\" ] \u2028"}})
	l.Close()
	return readLines(f, l.Path())
}

// FuzzDecodeRecord: the decoder never panics, and whatever it accepts is
// exactly what the encoder writes for the values it returns.
func FuzzDecodeRecord(f *testing.F) {
	for _, line := range seedLines(f) {
		f.Add(line[:len(line)-1])
	}
	f.Add([]byte(`{"seq":1,"hash":"` + zeroHash + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := DecodeRecord(line)
		if err != nil {
			return
		}
		again, err := rec.encode()
		if err != nil {
			t.Fatalf("accepted a record it cannot encode: %v", err)
		}
		if !bytes.Equal(again, line) {
			t.Fatalf("accepted a line that is not what the encoder writes:\n in: %s\nout: %s", line, again)
		}
	})
}

// FuzzVerify: verification of arbitrary bytes never panics and never calls
// a log good unless every line is a record.
func FuzzVerify(f *testing.F) {
	lines := seedLines(f)
	f.Add(join(lines...))
	f.Add(join(lines[1:]...))
	f.Add(join(lines[0], lines[2]))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), VerifyOptions{})
		if err != nil {
			return
		}
		if rep.Records != bytes.Count(data, []byte("\n")) {
			t.Fatalf("verified %d records in %d lines", rep.Records, bytes.Count(data, []byte("\n")))
		}
	})
}

// FuzzParseSyslogLine: the syslog copy's parser never panics and accepts
// only lines whose structured data matches the record they carry.
func FuzzParseSyslogLine(f *testing.F) {
	for _, line := range seedLines(f) {
		rec, _ := DecodeRecord(line[:len(line)-1])
		framed := frameSyslog("SYS-1", "0123456789abcdef0123456789abcdef", rec, line[:len(line)-1])
		f.Add(framed[bytes.IndexByte(framed, ' ')+1:])
	}
	f.Add([]byte(`<109>1 2025-03-01T12:00:00Z h dcagent 1 x [dcagent@32473 log="a" seq="1" hash="b"] {}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		id, rec, ok, err := ParseSyslogLine(line)
		if !ok || err != nil {
			return
		}
		if id == "" || rec.Seq == 0 || len(rec.Hash) != hashHexLen {
			t.Fatalf("accepted %q as log %q record %+v", line, id, rec)
		}
	})
}
