package spool

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	// ErrClosed is returned by Put and Lease after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrFull means the spool is at its configured bound and the new event
	// ranks below everything that could be dropped for it; it was counted
	// as dropped.
	ErrFull = errors.New("spool: full")
	// ErrNoSpace means the filesystem holding the spool is full (ENOSPC or
	// EDQUOT) and no low-severity event could make room.
	ErrNoSpace = errors.New("spool: no space left on the filesystem")
	// ErrReadOnly means the spool's filesystem is read-only (EROFS).
	ErrReadOnly = errors.New("spool: filesystem is read-only")
)

// DiskError is a failed write with a diagnosis in plain words: what
// happened, what was kept, and what to do.
type DiskError struct {
	Op        string // what the spool was doing
	Path      string
	Err       error // the system error
	Kind      error // ErrNoSpace, ErrReadOnly, or nil
	Diagnosis string
}

func (e *DiskError) Error() string {
	s := fmt.Sprintf("spool: %s %s: %v", e.Op, e.Path, e.Err)
	if e.Diagnosis != "" {
		s += ": " + e.Diagnosis
	}
	return s
}

func (e *DiskError) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Err}
}

// classify wraps a write error with its diagnosis.
func (s *Spool) classify(op, path string, err error) error {
	de := &DiskError{Op: op, Path: path, Err: err}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		de.Kind = ErrNoSpace
		de.Diagnosis = fmt.Sprintf("the filesystem holding %s is full (%s free); events already spooled are kept; "+
			"free space on that filesystem or lower [spool] max_bytes", s.dir, freeSpace(s.dir))
	case errors.Is(err, syscall.EROFS):
		de.Kind = ErrReadOnly
		de.Diagnosis = fmt.Sprintf("the filesystem holding %s is mounted read-only; events already spooled are kept and still sent, "+
			"but new ones cannot be stored: remount it read-write (mount -o remount,rw) or point [device] state_dir at a writable one", s.dir)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		de.Diagnosis = fmt.Sprintf("the agent may not write in %s: check its owner and mode", s.dir)
	}
	return de
}

func freeSpace(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%d bytes", uint64(st.Bavail)*uint64(st.Bsize))
}
