// Package smartctl reads drive health from smartmontools' smartctl and
// turns it into a hal.DriveSnapshot: one normalised view of an ATA/SATA,
// SCSI/SAS or NVMe drive, whichever smartctl version printed it.
//
// It reads both forms smartctl prints:
//
//   - JSON (`smartctl --json`, smartctl 7.0 to 7.5, json_format_version
//     1.x), with the keys that were renamed between releases (the SCSI
//     identity: vendor/product/revision in 7.0-7.2, scsi_vendor/
//     scsi_product/scsi_revision from 7.3) and values that moved (a SAS
//     drive's temperature is in "temperature" or, with -x on 7.3 and later,
//     in "scsi_environmental_reports"). Text printed before the JSON object
//     (a warning on the same stream) is kept as a message.
//   - Text (`smartctl -a`, `-x`, `-A`, `-H`, ...) from smartmontools 5.x,
//     6.x and 7.x, whole reports and fragments; see text.go.
//
// Parse and ParseFile tell the two apart by themselves. Runner runs smartctl
// on a device (with a timeout) and parses what it printed.
//
// Conventions:
//
//   - A value the drive does not report is absent (nil), never zero.
//     A temperature of exactly 0 °C is taken as "no reading": it is what
//     drives without a sensor, RAID virtual drives and some SCT status
//     tables print, and smartctl itself ignores it in attributes.
//   - smartctl's exit status is a bitmask (see ExitStatus) and is kept in
//     the snapshot as is; a non-zero status does not mean "no data".
//   - Output with no device data (smartctl could not open the device, or
//     printed only its own errors) is an error: a *NoDataError, for which
//     errors.Is(err, ErrNoDeviceData) holds, carrying smartctl's messages
//     and exit status. `smartctl --scan` output is a *ScanOutputError.
//   - smartctl's own messages go to DriveSnapshot.Messages verbatim; notes
//     from this parser (a value left out and why) follow them, prefixed
//     with "dcagent: ".
//   - ATA counters are read from the raw field as smartctl renders it for
//     that drive (see attrCount); Seagate's packed error-rate attributes 1,
//     7 and 195 are never read as counts (see SeagateErrorRate).
package smartctl

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/dcagent/dcagent/hal"
)

// MaxInputBytes bounds what Parse and ParseFile read. The largest smartctl
// report (`-x` with full logs) is well under a megabyte.
const MaxInputBytes = 16 << 20

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Parse reads one smartctl output, JSON or text, and returns the drive
// snapshot it describes. Errors wrap the sentinels of this package.
func Parse(data []byte) (*hal.DriveSnapshot, error) {
	if len(data) > MaxInputBytes {
		return nil, fmt.Errorf("%w: %d bytes is more than any smartctl report (limit %d)", ErrNotSmartctl, len(data), MaxInputBytes)
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	if len(bytes.TrimSpace(data)) == 0 {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w (0 bytes)", ErrEmpty)
		}
		return nil, fmt.Errorf("%w (%d bytes of white space)", ErrEmpty, len(data))
	}
	if start, ok := jsonStart(data); ok {
		return parseJSON(data, start)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, fmt.Errorf("%w: binary data (a NUL byte at offset %d)", ErrNotSmartctl, i)
	}
	return parseText(data)
}

// ParseFile reads a saved smartctl output. Errors are *ParseError naming
// the file. The snapshot's Source is path.
//
// Only a regular file (or a symbolic link to one) is read: a FIFO with no
// writer, a terminal or a device such as /dev/zero would block or never
// end. The file is opened without blocking and checked again once open, so
// that it cannot be swapped for one of those in between. At most
// MaxInputBytes are read.
func ParseFile(path string) (*hal.DriveSnapshot, error) {
	fail := func(err error) (*hal.DriveSnapshot, error) {
		return nil, &ParseError{Source: path, Err: err}
	}
	if fi, err := os.Stat(path); err != nil {
		return fail(err)
	} else if err := regularFile(fi); err != nil {
		return fail(err)
	}
	f, err := openNonBlocking(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := regularFile(fi); err != nil {
		return fail(err)
	}
	if fi.Size() > MaxInputBytes {
		return fail(fmt.Errorf("%w: %d bytes is more than any smartctl report (limit %d)", ErrNotSmartctl, fi.Size(), MaxInputBytes))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxInputBytes+1))
	if err != nil {
		return fail(err)
	}
	if len(data) > MaxInputBytes {
		// It grew while being read.
		return fail(fmt.Errorf("%w: more than %d bytes, more than any smartctl report", ErrNotSmartctl, MaxInputBytes))
	}
	s, err := Parse(data)
	if err != nil {
		return fail(err)
	}
	s.Source = path
	return s, nil
}

// regularFile says what a file is when it is not a regular file.
func regularFile(fi os.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() {
		return nil
	}
	kind := "not a regular file"
	switch {
	case m.IsDir():
		kind = "a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	case m&os.ModeCharDevice != 0:
		kind = "a character device"
	case m&os.ModeDevice != 0:
		kind = "a block device"
	}
	return fmt.Errorf("%s, not a regular file; save smartctl's output to a file and give that", kind)
}

// jsonStart finds where a JSON object begins: at the start of the input, or
// at the start of a later line when smartctl (or a shell) printed text
// before it. Text output never has a line starting with "{".
func jsonStart(data []byte) (int, bool) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || looksLikeJSONArray(trimmed)) {
		return len(data) - len(trimmed), true
	}
	// The object starts at the first line opening with "{" that comes
	// before smartctl's "json_format_version" key. Looking for the key
	// once, from the end, keeps this linear in the input: searching after
	// every such line would be quadratic on a hostile file.
	last := bytes.LastIndex(data, []byte(`"json_format_version"`))
	if last < 0 {
		return 0, false
	}
	i := bytes.Index(data[:last], []byte("\n{"))
	if i < 0 {
		return 0, false
	}
	return i + 1, true
}

// looksLikeJSONArray tells a JSON array (not smartctl's, but the JSON
// parser says so better) from a shell prompt such as "[root@host ~]# ".
func looksLikeJSONArray(b []byte) bool {
	if b[0] != '[' {
		return false
	}
	rest := bytes.TrimLeft(b[1:], " \t\r\n")
	if len(rest) == 0 {
		return false
	}
	c := rest[0]
	return c == '{' || c == '[' || c == ']' || c == '"' || c == '-' || (c >= '0' && c <= '9')
}
