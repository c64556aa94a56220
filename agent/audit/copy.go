package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
)

// ParseSyslogLine reads one message of the syslog stream as a server wrote
// it (rsyslog's RFC 5424 file format, or the message as sent) and returns
// the log id from its structured data and the record it carries, checked
// against its own hash and against the structured data. ok is false for a
// line that is not from the audit stream at all.
func ParseSyslogLine(line []byte) (logID string, rec Record, ok bool, err error) {
	i := bytes.Index(line, []byte("["+syslogSDID+" "))
	if i < 0 {
		return "", rec, false, nil
	}
	rest := line[i+len(syslogSDID)+2:]
	params := map[string]string{}
	for {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) > 0 && rest[0] == ']' {
			rest = rest[1:]
			break
		}
		eq := bytes.IndexByte(rest, '=')
		if eq <= 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
			return "", rec, true, errors.New("malformed structured data")
		}
		name := string(rest[:eq])
		end := bytes.IndexByte(rest[eq+2:], '"')
		if end < 0 {
			return "", rec, true, errors.New("unterminated structured data value")
		}
		if _, dup := params[name]; dup {
			return "", rec, true, fmt.Errorf("structured data parameter %q repeated", name)
		}
		params[name] = string(rest[eq+2 : eq+2+end])
		rest = rest[eq+2+end+1:]
	}
	if len(rest) < 1 || rest[0] != ' ' {
		return "", rec, true, errors.New("no message after the structured data")
	}
	rec, err = DecodeRecord(bytes.TrimRight(rest[1:], "\r\n"))
	if err != nil {
		return "", rec, true, err
	}
	logID = params["log"]
	if params["seq"] != strconv.FormatUint(rec.Seq, 10) || params["hash"] != rec.Hash || logID == "" {
		return "", rec, true, errors.New("structured data does not match the record it carries")
	}
	return logID, rec, true, nil
}

// CopyReport is what comparing the local log with the syslog server's copy
// found.
type CopyReport struct {
	LogID string
	// Local is the number of records in the local log; Received the
	// distinct records of the same log in the copy; Repeats the records
	// the copy holds more than once (sent again after a reconnect).
	Local, Received, Repeats int
	// LastReceived is the highest sequence number in the copy.
	LastReceived uint64
	// OtherLogs counts the records of earlier logs in the copy, by log id.
	OtherLogs map[string]int
	// Skipped counts lines that are not from the audit stream.
	Skipped int
	Problem *TamperError
}

// CompareWithCopy checks the local log at localPath against a copy that
// the syslog server wrote: every record the server received must be in the
// local log unchanged, the local log must not end before the last record
// the server received, and every earlier log the copy holds must be named
// as its predecessor by a later log (a log that is simply gone was
// removed). The local chain itself is Verify's job.
func CompareWithCopy(localPath string, copy io.Reader) (*CopyReport, error) {
	rep := &CopyReport{OtherLogs: map[string]int{}}
	fail := func(line int, seq uint64, format string, args ...any) (*CopyReport, error) {
		rep.Problem = &TamperError{File: localPath, Line: line, Seq: seq, Reason: fmt.Sprintf(format, args...)}
		return rep, rep.Problem
	}
	f, err := os.Open(localPath)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	local := map[uint64]string{}
	predecessor := map[string]string{} // log id -> the log it names as previous
	var lastLocal uint64
	err = Scan(f, func(line int, rec Record, err error) error {
		if err != nil {
			return &TamperError{File: localPath, Line: line, Reason: err.Error()}
		}
		if line == 1 {
			rep.LogID = rec.Fields["log_id"]
			predecessor[rep.LogID] = rec.Fields["previous_log_id"]
		}
		local[rec.Seq] = rec.Hash
		lastLocal = rec.Seq
		rep.Local++
		return nil
	})
	var te *TamperError
	if errors.As(err, &te) {
		rep.Problem = te
		return rep, te
	}
	if err != nil {
		return nil, err
	}

	seen := map[uint64]string{}
	sc := bufio.NewScanner(copy)
	sc.Buffer(make([]byte, 0, 64<<10), syslogMaxMsg+1024)
	for n := 1; sc.Scan(); n++ {
		logID, rec, ok, err := ParseSyslogLine(sc.Bytes())
		if !ok {
			rep.Skipped++
			continue
		}
		if err != nil {
			return fail(0, 0, "the syslog copy's line %d is damaged: %v", n, err)
		}
		if rec.Seq == 1 {
			predecessor[logID] = rec.Fields["previous_log_id"]
		}
		if logID != rep.LogID {
			rep.OtherLogs[logID]++
			continue
		}
		if h, dup := seen[rec.Seq]; dup {
			if h != rec.Hash {
				return fail(0, rec.Seq, "the syslog copy holds two different records %d", rec.Seq)
			}
			rep.Repeats++
			continue
		}
		seen[rec.Seq] = rec.Hash
		rep.Received++
		rep.LastReceived = max(rep.LastReceived, rec.Seq)
		h, have := local[rec.Seq]
		switch {
		case rec.Seq > lastLocal:
			return fail(0, rec.Seq, "the syslog server received record %d but the local log ends at record %d: the log was cut short", rec.Seq, lastLocal)
		case !have:
			return fail(0, rec.Seq, "the syslog server received record %d, which the local log lacks", rec.Seq)
		case h != rec.Hash:
			return fail(int(rec.Seq), rec.Seq, "differs from the copy the syslog server received (hash %.12s…, server %.12s…): changed after it was sent", h, rec.Hash)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: read syslog copy: %w", err)
	}
	named := map[string]bool{}
	for _, prev := range predecessor {
		named[prev] = true
	}
	ids := make([]string, 0, len(rep.OtherLogs))
	for id := range rep.OtherLogs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !named[id] {
			return fail(0, 0, "the syslog server holds %d record(s) of log %s, which no later log names as its predecessor: that log was removed", rep.OtherLogs[id], id)
		}
	}
	return rep, nil
}
