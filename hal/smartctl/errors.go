package smartctl

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Test with errors.Is; the errors returned carry more
// detail (the file, the offset, smartctl's own messages).
var (
	// ErrEmpty: the input has no bytes, or only white space.
	ErrEmpty = errors.New("empty input: no smartctl output in it")
	// ErrMalformedJSON: the input looks like JSON but does not parse.
	ErrMalformedJSON = errors.New("malformed JSON")
	// ErrUnsupportedFormat: smartctl JSON whose json_format_version this
	// parser does not read (it reads major version 1, smartctl 7.0 and later).
	ErrUnsupportedFormat = errors.New("unsupported smartctl JSON format")
	// ErrNotSmartctl: the input is neither smartctl JSON nor smartctl text.
	ErrNotSmartctl = errors.New("not smartctl output")
	// ErrNoDeviceData: smartctl ran but printed nothing about a drive,
	// only its own messages (for example "Permission denied"). The error
	// is a *NoDataError holding those messages and the exit status.
	ErrNoDeviceData = errors.New("smartctl reported no device data")
	// ErrScanOutput: the input is the output of `smartctl --scan`, a list of
	// devices, not a report on one drive. The error is a *ScanOutputError.
	ErrScanOutput = errors.New("this is smartctl --scan output, not a device report")
)

// ParseError names the input that could not be read (a file path or a
// device) and says what is wrong with it.
type ParseError struct {
	Source string
	Err    error
}

func (e *ParseError) Error() string {
	if e.Source == "" {
		return e.Err.Error()
	}
	return e.Source + ": " + e.Err.Error()
}

func (e *ParseError) Unwrap() error { return e.Err }

// NoDataError is returned when smartctl's output holds no device data.
// It keeps what smartctl said instead.
type NoDataError struct {
	// ExitStatus is smartctl's exit status, when known.
	ExitStatus *ExitStatus
	// Messages are smartctl's own messages, verbatim. Error repeats at
	// most a few of them, each clipped and with control characters made
	// visible.
	Messages []string
}

func (e *NoDataError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNoDeviceData.Error())
	if e.ExitStatus != nil {
		fmt.Fprintf(&b, " (exit status %d", *e.ExitStatus)
		if d := e.ExitStatus.Descriptions(); len(d) > 0 {
			b.WriteString(": " + strings.Join(d, "; "))
		}
		b.WriteString(")")
	}
	if len(e.Messages) > 0 {
		b.WriteString(": ")
		b.WriteString(joinMessages(e.Messages))
	} else {
		b.WriteString(": smartctl printed no message either")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNoDeviceData) true.
func (e *NoDataError) Is(target error) bool { return target == ErrNoDeviceData }

// ScanOutputError is returned when the input is `smartctl --scan` output.
type ScanOutputError struct {
	Devices []DriveSpec
}

func (e *ScanOutputError) Error() string {
	// The list is cut short: the error reaches logs, and a hostile input
	// can name thousands of devices.
	const maxShown, maxName = 32, 120
	shown := e.Devices
	if len(shown) > maxShown {
		shown = shown[:maxShown]
	}
	names := make([]string, 0, len(shown)+1)
	for _, d := range shown {
		names = append(names, Printable(d.String(), maxName))
	}
	if n := len(e.Devices) - len(shown); n > 0 {
		names = append(names, fmt.Sprintf("and %d more", n))
	}
	list := "no devices"
	if len(e.Devices) > 0 {
		list = fmt.Sprintf("%d device(s): %s", len(e.Devices), strings.Join(names, ", "))
	}
	return fmt.Sprintf("%s; it lists %s; save `smartctl --json -a DEVICE` for one of them instead", ErrScanOutput, list)
}

// Is makes errors.Is(err, ErrScanOutput) true.
func (e *ScanOutputError) Is(target error) bool { return target == ErrScanOutput }
