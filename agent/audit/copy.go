package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
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
	// OtherLogs counts the distinct records of other (earlier) logs in
	// the copy, by log id.
	OtherLogs map[string]int
	// Evidence names, by log id, the files in the audit directory that
	// hold another log's records (audit.log.broken-*, archived logs), and
	// against which the copy's records of that log were checked.
	Evidence map[string][]string
	// Skipped counts lines that are not from the audit stream.
	Skipped int
	Problem *TamperError
}

// CompareWithCopy checks the local log at localPath against a copy that
// the syslog server wrote. Every record the server holds must be accounted
// for on the device, unchanged:
//
//   - a record of the current log must be in the local log, and the local
//     log must not end before the last record the server received;
//   - a record of any other log must be in a file of the audit directory
//     that holds that log (the audit.log.broken-* file a restart set it
//     aside in, or an archived log). A log the device no longer has is
//     reported with the number of its records the server holds: the
//     local log's own claims (which log it replaced) cannot vouch for
//     records nobody can compare any more, because whoever can write the
//     files can write those claims too;
//   - every other log must be named as its predecessor by a later log.
//
// The local chain itself is Verify's job.
func CompareWithCopy(localPath string, copy io.Reader) (*CopyReport, error) {
	rep := &CopyReport{OtherLogs: map[string]int{}, Evidence: map[string][]string{}}
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
	namedFile := map[string]string{}   // file name -> the log id a start record says it holds
	noteStart := func(logID string, rec Record) {
		predecessor[logID] = rec.Fields["previous_log_id"]
		if file, prev := rec.Fields["previous_file"], rec.Fields["previous_log_id"]; file != "" && prev != "" {
			namedFile[filepath.Base(file)] = prev
		}
	}
	var lastLocal uint64
	err = Scan(f, func(line int, rec Record, err error) error {
		if err != nil {
			return &TamperError{File: localPath, Line: line, Reason: err.Error()}
		}
		if line == 1 {
			rep.LogID = rec.Fields["log_id"]
			noteStart(rep.LogID, rec)
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
	others := map[string]map[uint64]string{} // log id -> seq -> hash the server holds
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
			noteStart(logID, rec)
		}
		if logID != rep.LogID {
			recs := others[logID]
			if recs == nil {
				recs = map[uint64]string{}
				others[logID] = recs
			}
			if h, dup := recs[rec.Seq]; dup {
				if h != rec.Hash {
					return fail(0, rec.Seq, "the syslog copy holds two different records %d of log %s", rec.Seq, logID)
				}
				rep.Repeats++
				continue
			}
			recs[rec.Seq] = rec.Hash
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
	if len(others) == 0 {
		return rep, nil
	}

	evidence, files, err := readEvidence(filepath.Dir(localPath), rep.LogID, namedFile)
	if err != nil {
		return nil, err
	}
	rep.Evidence = files
	named := map[string]bool{}
	for _, prev := range predecessor {
		named[prev] = true
	}
	ids := make([]string, 0, len(others))
	for id := range others {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		held := evidence[id]
		var missing, changed int
		var firstMissing, firstChanged uint64
		for seq, h := range others[id] {
			switch have := held[seq]; {
			case len(have) == 0:
				missing++
				if firstMissing == 0 || seq < firstMissing {
					firstMissing = seq
				}
			case !slices.Contains(have, h):
				changed++
				if firstChanged == 0 || seq < firstChanged {
					firstChanged = seq
				}
			}
		}
		where := "no file in " + filepath.Dir(localPath) + " holds that log"
		if len(files[id]) > 0 {
			where = "compared with " + strings.Join(files[id], ", ")
		}
		switch {
		case changed > 0:
			return fail(0, firstChanged, "the syslog server holds %d record(s) of earlier log %s that differ from the device's copy (first: record %d; %s): changed after they were sent", changed, id, firstChanged, where)
		case missing > 0:
			return fail(0, firstMissing, "the syslog server holds %d record(s) of earlier log %s that the device no longer has (first: record %d; %s): the log or its evidence file was removed or cut", missing, id, firstMissing, where)
		case !named[id]:
			return fail(0, 0, "the syslog server holds %d record(s) of log %s, which no later log names as its predecessor: that log was removed", rep.OtherLogs[id], id)
		}
	}
	return rep, nil
}

// readEvidence reads the records of every earlier log kept in dir: the
// files named audit.log.<something> other than the current log and its
// torn tail. A file belongs to the log its first record names, or, when
// that record cannot be read, to the log a start record says was kept in
// it (namedFile). It returns log id -> seq -> the hashes the files hold for
// that record (two files of one log may both hold it), and log id -> file
// names.
func readEvidence(dir, current string, namedFile map[string]string) (map[string]map[uint64][]string, map[string][]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	held := map[string]map[uint64][]string{}
	files := map[string][]string{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, LogName+".") || name == tornName || !e.Type().IsRegular() {
			continue
		}
		recs, firstID, err := readEvidenceFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		id := firstID
		if id == "" {
			id = namedFile[name]
		}
		if id == "" || id == current {
			continue
		}
		if held[id] == nil {
			held[id] = map[uint64][]string{}
		}
		for seq, h := range recs {
			held[id][seq] = append(held[id][seq], h)
		}
		files[id] = append(files[id], name)
	}
	return held, files, nil
}

// editedHash stands for a record whose content no longer matches the hash
// it carries: it matches no hash the server holds.
const editedHash = "edited"

// readEvidenceFile reads one kept log without blocking on anything that is
// not a regular file, and returns its records by sequence number (a record
// edited in place as editedHash; lines that cannot be read at all count as
// gone) and the log id its first record carries ("" when unreadable).
func readEvidenceFile(path string) (map[uint64]string, string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, "", nil
	}
	recs := map[uint64]string{}
	firstID := ""
	err = Scan(f, func(line int, rec Record, err error) error {
		var re *RecordError
		switch {
		case err == nil:
		case errors.As(err, &re) && re.HashMismatch && rec.Seq > 0:
			rec.Hash = editedHash
		default:
			return nil
		}
		if line == 1 && rec.Kind == KindStart && rec.Hash != editedHash {
			firstID = rec.Fields["log_id"]
		}
		if _, dup := recs[rec.Seq]; !dup {
			recs[rec.Seq] = rec.Hash
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("audit: read %s: %w", path, err)
	}
	return recs, firstID, nil
}
