package smartctl

import (
	"strconv"
	"strings"
)

// ExitStatus is smartctl's exit status. It is a bitmask, not an error code:
// several bits can be set at once, and bits 2 to 7 come with a full report
// of the drive. Only bits 0 and 1 mean that smartctl never reached the
// device. See smartctl(8), section RETURN VALUES.
type ExitStatus uint8

// The bits of ExitStatus, lowest first.
const (
	// ExitCommandLine: the command line did not parse (bit 0).
	ExitCommandLine ExitStatus = 1 << iota
	// ExitDeviceOpen: the device could not be opened, or the device did not
	// answer to IDENTIFY, or smartctl is in low-power mode (bit 1).
	ExitDeviceOpen
	// ExitSMARTCommand: a SMART or other ATA command to the disk failed, or
	// a checksum of a SMART data structure was wrong (bit 2).
	ExitSMARTCommand
	// ExitDiskFailing: the SMART status says "DISK FAILING" (bit 3).
	ExitDiskFailing
	// ExitPrefailNow: a prefail attribute is at or below its threshold now (bit 4).
	ExitPrefailNow
	// ExitThresholdPast: an attribute was at or below its threshold at some
	// time in the past, though it is not now (bit 5).
	ExitThresholdPast
	// ExitErrorLog: the drive's error log has records of errors (bit 6).
	ExitErrorLog
	// ExitSelfTestLog: the drive's self-test log has records of errors (bit 7).
	ExitSelfTestLog
)

// exitBitWords says what each bit means, in plain words, lowest bit first.
var exitBitWords = [8]string{
	"smartctl did not understand its command line",
	"the device could not be opened (missing, wrong -d type, no permission, or asleep)",
	"a SMART or other command to the drive failed, or a SMART data checksum was wrong",
	"the drive's SMART status says it is failing",
	"a pre-failure attribute is at or below its threshold now",
	"an attribute was at or below its threshold in the past",
	"the drive's error log records errors",
	"the drive's self-test log records failed self-tests",
}

// Has reports whether every bit of bits is set.
func (e ExitStatus) Has(bits ExitStatus) bool { return e&bits == bits }

// CommandLineError reports bit 0: smartctl did not understand its arguments.
func (e ExitStatus) CommandLineError() bool { return e.Has(ExitCommandLine) }

// DeviceOpenFailed reports bit 1: smartctl could not open the device.
func (e ExitStatus) DeviceOpenFailed() bool { return e.Has(ExitDeviceOpen) }

// SMARTCommandFailed reports bit 2: a command to the drive failed or a
// checksum was wrong. The rest of the report is usually still valid.
func (e ExitStatus) SMARTCommandFailed() bool { return e.Has(ExitSMARTCommand) }

// DiskFailing reports bit 3: the drive's own SMART verdict is "failing".
func (e ExitStatus) DiskFailing() bool { return e.Has(ExitDiskFailing) }

// PrefailAttributesNow reports bit 4: a prefail attribute is at or below
// its threshold now.
func (e ExitStatus) PrefailAttributesNow() bool { return e.Has(ExitPrefailNow) }

// AttributesFailedInPast reports bit 5: an attribute was at or below its
// threshold in the past.
func (e ExitStatus) AttributesFailedInPast() bool { return e.Has(ExitThresholdPast) }

// ErrorLogHasErrors reports bit 6.
func (e ExitStatus) ErrorLogHasErrors() bool { return e.Has(ExitErrorLog) }

// SelfTestLogHasErrors reports bit 7.
func (e ExitStatus) SelfTestLogHasErrors() bool { return e.Has(ExitSelfTestLog) }

// RunFailed reports whether smartctl did not get to the drive at all
// (bit 0 or 1). Only then may a report lack device data.
func (e ExitStatus) RunFailed() bool { return e&(ExitCommandLine|ExitDeviceOpen) != 0 }

// DiskProblem reports whether any of bits 3 to 7, the drive's own
// conditions, is set.
func (e ExitStatus) DiskProblem() bool {
	return e&(ExitDiskFailing|ExitPrefailNow|ExitThresholdPast|ExitErrorLog|ExitSelfTestLog) != 0
}

// Descriptions lists the meaning of each set bit in plain words, lowest bit
// first; it is empty for 0.
func (e ExitStatus) Descriptions() []string {
	var out []string
	for bit := range 8 {
		if e&(1<<bit) != 0 {
			out = append(out, exitBitWords[bit])
		}
	}
	return out
}

// String gives the number and its meaning, e.g.
// "192 (the drive's error log records errors; the drive's self-test log records failed self-tests)".
func (e ExitStatus) String() string {
	if e == 0 {
		return "0 (no problem found)"
	}
	return strconv.Itoa(int(e)) + " (" + strings.Join(e.Descriptions(), "; ") + ")"
}

// SnapshotExitStatus returns the exit status kept in a snapshot, and false
// when the snapshot has none (it was read from text output).
func SnapshotExitStatus(code *int) (ExitStatus, bool) {
	if code == nil || *code < 0 || *code > 255 {
		return 0, false
	}
	return ExitStatus(*code), true
}
