package audit

import (
	"errors"
	"fmt"
)

// RecordError says what is wrong with one record taken on its own.
type RecordError struct {
	Reason string
	// HashMismatch is true when the record parses but its content does
	// not match its hash: someone edited it.
	HashMismatch bool
}

func (e *RecordError) Error() string { return e.Reason }

// TamperError is the first problem verification found. Line counts lines
// of the file from 1; Seq is the record's own sequence number when it could
// be read (0 otherwise).
type TamperError struct {
	File   string
	Line   int
	Seq    uint64
	Reason string
}

func (e *TamperError) Error() string {
	switch {
	case e.Line > 0 && e.Seq > 0:
		return fmt.Sprintf("audit: %s: line %d (record %d): %s", e.File, e.Line, e.Seq, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("audit: %s: line %d: %s", e.File, e.Line, e.Reason)
	default:
		return fmt.Sprintf("audit: %s: %s", e.File, e.Reason)
	}
}

var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("audit: log is closed")
	// ErrCounterMoved means the TPM counter did not hold the value the
	// log expected: something else increments it, or the log's files were
	// replaced with those of another device.
	ErrCounterMoved = errors.New("audit: the TPM counter moved outside this log")
)
