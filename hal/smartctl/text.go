package smartctl

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dcagent/dcagent/hal"
)

// The text parser reads what `smartctl -a`, `-x`, `--all`, `-A`, `-H` and
// their combinations print, from smartmontools 5.x to 7.x, for ATA, SCSI
// and NVMe drives, and fragments of it: files that begin with the command
// line before smartctl's banner, outputs with no banner at all (Proxmox's
// `-H -A -f brief`), attribute lines whose column alignment was lost, CRLF
// line ends, Latin-1 bytes and thousands separators of any locale.
//
// It works line by line. Most lines are "Key: value" pairs whose keys have
// been stable across smartmontools releases; a few sections are tables
// (the ATA attribute table, the SCSI error counter log) that are read from
// their header to the first line that is not one of their rows. Which
// protocol the drive speaks is decided at the end, from the lines seen.

type textTable int

const (
	tableNone textTable = iota
	tableAttributes
	tableErrorCounters
)

type textParser struct {
	s        hal.DriveSnapshot
	messages []string
	notes    []string

	// What the lines have shown so far.
	recognised   bool // some line is smartctl's
	ataHints     int
	scsiHints    int
	nvmeHints    int
	scanDevices  []DriveSpec
	otherLines   int // non-empty lines that are not --scan lines
	table        textTable
	tableHeader  int  // heading lines seen in the current table
	afterFailed  bool // the line before was "...test result: FAILED!"
	attrs        []ataAttr
	attrSeen     map[int]bool
	vendor       string
	product      string
	model        string
	userCapacity *uint64
	nvmeTotal    *uint64
	nvmeNS1      *uint64

	// Temperatures by where they came from; which one wins depends on the
	// protocol, decided at the end.
	sctTemp, nvmeTemp, scsiTemp, envTemp *float64
	scsiTrip                             *float64

	// SCSI power-on time: the background scan log is exact to the minute,
	// Seagate's factory log is a fallback.
	scsiPOH, factoryPOH *uint64

	uncorrected     uint64
	uncorrectedSeen bool
	linkErrors      uint64
	linkSeen        bool
}

// parseText reads smartctl's text output.
func parseText(data []byte) (*hal.DriveSnapshot, error) {
	if !utf8.Valid(data) {
		// Windows builds of smartctl write the console code page; Latin-1
		// covers the no-break space they use as thousands separator.
		data = latin1ToUTF8(data)
	}
	p := &textParser{attrSeen: map[int]bool{}}
	text := string(data)
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		p.line(strings.TrimRight(line, " \t\r"))
	}
	return p.finish()
}

func latin1ToUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/8)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out
}

func (p *textParser) line(line string) {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" {
		// Tables end at the first line that is not theirs, not at a blank
		// line: some saved reports are double-spaced.
		return
	}
	if d, ok := scanLine(trimmed); ok {
		p.scanDevices = append(p.scanDevices, d)
		return
	}
	p.otherLines++

	switch p.table {
	case tableAttributes:
		if strings.HasPrefix(trimmed, "|") {
			p.table = tableNone // the flag legend under the brief table
			return
		}
		if a, ok := parseAttrLine(trimmed); ok {
			p.recognised = true
			p.ataHints++
			if !p.attrSeen[a.ID] {
				p.attrSeen[a.ID] = true
				p.attrs = append(p.attrs, a)
			}
			return
		}
		p.table = tableNone
	case tableErrorCounters:
		f := strings.Fields(trimmed)
		switch f[0] {
		case "read:", "write:", "verify:":
			// The last column is "Total uncorrected errors", whatever the
			// alignment (smartctl 6.3 printed it with single spaces).
			if len(f) >= 3 {
				if v, ok := groupedUint(f[len(f)-1]); ok {
					p.uncorrected = addSat(p.uncorrected, v)
					p.uncorrectedSeen = true
				}
			}
			return
		}
		if p.tableHeader < 3 {
			p.tableHeader++ // the column headings
			return
		}
		p.table = tableNone
	}

	wasFailed := p.afterFailed
	p.afterFailed = false

	switch {
	case strings.HasPrefix(trimmed, "smartctl ") || strings.Contains(trimmed, "smartctl "):
		if p.banner(trimmed) {
			return
		}
	case strings.HasPrefix(trimmed, "Copyright (C)"):
		p.recognised = true
		return
	case strings.HasPrefix(trimmed, "=== START OF"):
		p.recognised = true
		return
	case strings.HasPrefix(trimmed, "ID#") && strings.Contains(trimmed, "ATTRIBUTE_NAME"):
		p.recognised = true
		p.ataHints++
		p.table = tableAttributes
		return
	case strings.HasPrefix(trimmed, "Error counter log:"):
		p.recognised = true
		p.scsiHints++
		p.table = tableErrorCounters
		p.tableHeader = 0
		return
	case strings.HasPrefix(trimmed, "Accumulated power on time, hours:minutes"):
		// "Accumulated power on time, hours:minutes 22332:41 [1339961 minutes]"
		p.recognised = true
		p.scsiHints++
		rest := strings.TrimSpace(strings.TrimPrefix(trimmed, "Accumulated power on time, hours:minutes"))
		if v, ok := leadingUint(rest); ok && p.scsiPOH == nil {
			p.scsiPOH = ptrU64(v)
		}
		return
	case strings.HasPrefix(trimmed, "Background scan results log"), strings.HasPrefix(trimmed, "Protocol Specific port log page for SAS"):
		p.recognised = true
		p.scsiHints++
		return
	case strings.HasPrefix(trimmed, "SMART/Health Information (NVMe Log"):
		p.recognised = true
		p.nvmeHints++
		return
	case strings.HasPrefix(trimmed, "0x") && strings.Contains(trimmed, "Percentage Used Endurance Indicator"):
		// ATA device statistics: "0x07  0x008  1   0  N--  Percentage Used Endurance Indicator"
		if f := strings.Fields(trimmed); len(f) > 4 {
			if v, ok := leadingUint(f[3]); ok {
				setU64Once(&p.s.Counters.PercentageUsed, v)
			}
		}
		return
	case wasFailed && strings.HasPrefix(trimmed, "- "):
		// NVMe lists why it failed under the verdict.
		p.messages = append(p.messages, trimmed)
		p.afterFailed = true
		return
	}

	if isMessageLine(trimmed) {
		p.recognised = true
		p.messages = append(p.messages, trimmed)
		// Some message lines are also "Key: value" pairs; go on.
	}
	if key, val, ok := strings.Cut(trimmed, " = "); ok {
		p.equalsPair(strings.TrimSpace(key), strings.TrimSpace(val))
		return
	}
	if key, val, ok := strings.Cut(trimmed, ":"); ok {
		p.colonPair(strings.Join(strings.Fields(key), " "), strings.TrimSpace(val))
	}
}

// banner reads smartctl's first line ("smartctl 7.3 2022-02-28 r5338
// [x86_64-linux-...]") or a command line echoed before it ("smartctl -x
// /dev/sdag", "# smartctl -a ...", "$ /cygdrive/c/.../smartctl -A /dev/sda").
func (p *textParser) banner(line string) bool {
	f := strings.Fields(line)
	if len(f) >= 3 && f[0] == "smartctl" && (isVersion(f[1])) && len(f[2]) == 10 && f[2][4] == '-' {
		p.recognised = true
		p.s.SmartctlVersion = f[1]
		return true
	}
	for i, w := range f {
		if (w == "smartctl" || strings.HasSuffix(w, "/smartctl") || strings.HasSuffix(w, "smartctl.exe")) && i+1 < len(f) && strings.HasPrefix(f[i+1], "-") {
			// Only at the start of the line or after a shell prompt: a
			// message that mentions "smartctl -s on" is not a command line.
			before := strings.Join(f[:i], " ")
			if before == "" || strings.HasSuffix(before, "#") || strings.HasSuffix(before, "$") ||
				strings.HasSuffix(before, ">") || strings.HasSuffix(before, "sudo") {
				p.recognised = true
				return true
			}
		}
	}
	return false
}

func isVersion(s string) bool {
	s = strings.TrimPrefix(s, "pre-")
	return len(s) >= 3 && s[0] >= '0' && s[0] <= '9' && strings.Contains(s, ".")
}

// isMessageLine reports lines that are smartctl's warnings and errors.
func isMessageLine(l string) bool {
	for _, p := range []string{
		"Warning:", "Warning!", "WARNING:", "Smartctl open device", "Smartctl:", "=======>",
		"Drive failure expected", "SMART support is: Unavailable", "SMART Status not supported",
		"SMART Status command failed", "Device does not support", "No SMART",
	} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	key, _, ok := strings.Cut(l, ":")
	return ok && strings.HasSuffix(key, " failed")
}

// scanLine recognises a line of `smartctl --scan` output:
// "/dev/sda -d scsi # /dev/sda, SCSI device".
func scanLine(l string) (DriveSpec, bool) {
	f := strings.Fields(l)
	if len(f) >= 4 && f[1] == "-d" && f[3] == "#" {
		return DriveSpec{Device: f[0], Type: f[2]}, true
	}
	return DriveSpec{}, false
}

// parseAttrLine reads one row of the attribute table, long form
// ("  5 Reallocated_Sector_Ct   0x0033   100   100   005    Pre-fail  Always       -       0")
// or brief form ("  5 Reallocated_Sector_Ct   PO--CK   100   100   010    -    0").
func parseAttrLine(l string) (ataAttr, bool) {
	f := strings.Fields(l)
	if len(f) < 8 {
		return ataAttr{}, false
	}
	id, err := strconv.Atoi(f[0])
	if err != nil || id < 1 || id > 255 {
		return ataAttr{}, false
	}
	a := ataAttr{ID: id, Name: f[1]}
	var when string
	var raw []string
	if strings.HasPrefix(f[2], "0x") && len(f) >= 10 {
		when, raw = f[8], f[9:]
	} else {
		when, raw = f[6], f[7:]
	}
	a.Value, a.Worst, a.Thresh = normValue(f[3]), normValue(f[4]), normValue(f[5])
	a.WhenFailed = normWhenFailed(when)
	a.RawString = strings.Join(raw, " ")
	if isAllDigits(a.RawString) {
		a.RawValue, a.HasValue = leadingUint(a.RawString)
	}
	return a, true
}

func normValue(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > 255 {
		return -1
	}
	return v
}

// equalsPair reads "Key = value" lines (SCSI logs).
func (p *textParser) equalsPair(key, val string) {
	switch key {
	case "Current temperature":
		// Environmental reports, smartctl 7.3+ with -x.
		p.recognised = true
		p.scsiHints++
		if t, ok := leadingInt(val); ok {
			p.envTemp = ptrF64(float64(t))
		}
	case "number of hours powered up":
		// Seagate/Hitachi factory log: "22332,68" or "7127.12" hours.
		p.recognised = true
		p.scsiHints++
		if v, ok := leadingUint(val); ok && p.factoryPOH == nil {
			p.factoryPOH = ptrU64(v)
		}
	case "Invalid DWORD count", "Loss of DWORD synchronization", "Loss of DWORD synchronization count",
		"Phy reset problem", "Phy reset problem count":
		p.recognised = true
		p.scsiHints++
		if v, ok := groupedUint(val); ok {
			p.linkErrors = addSat(p.linkErrors, v)
			p.linkSeen = true
		}
	}
}

// colonPair reads "Key: value" lines. Runs of spaces inside the key are
// already folded to one.
func (p *textParser) colonPair(key, val string) {
	s := &p.s
	c := &s.Counters
	known := true
	switch key {
	// Identity.
	case "Device Model":
		p.ataHints++
		p.model = val
	case "Model Number":
		p.nvmeHints++
		p.model = val
	case "Vendor":
		p.scsiHints++
		p.vendor = val
	case "Product":
		p.scsiHints++
		p.product = val
	case "Device":
		// smartmontools 5.x SCSI: "Device: SEAGATE  ST3300657SS      Version: 0006"
		ident, rev, ok := strings.Cut(val, "Version:")
		if !ok {
			known = false
			break
		}
		p.scsiHints++
		f := strings.Fields(ident)
		if len(f) > 0 {
			p.vendor, p.product = f[0], strings.Join(f[1:], " ")
		}
		if s.Firmware == "" {
			s.Firmware = cleanID(rev)
		}
	case "Serial Number", "Serial number":
		if s.Serial == "" {
			s.Serial = cleanID(val)
		}
	case "Firmware Version":
		if s.Firmware == "" {
			s.Firmware = cleanID(val)
		}
	case "Revision":
		p.scsiHints++
		if s.Firmware == "" {
			s.Firmware = cleanID(val)
		}
	case "LU WWN Device Id":
		// "5 0014ee 2b2f0a3c6"; elided in some captures ("5 0014ee ...").
		p.ataHints++
		if s.WWN == "" {
			s.WWN = normaliseHexID(strings.ReplaceAll(val, " ", ""))
		}
	case "Logical Unit id":
		p.scsiHints++
		if s.WWN == "" {
			s.WWN = normaliseHexID(val)
		}
	case "Namespace 1 IEEE EUI-64", "IEEE EUI-64":
		p.nvmeHints++
		if s.WWN == "" {
			if id := normaliseHexID(strings.ReplaceAll(val, " ", "")); id != "" {
				s.WWN = "eui." + id
			}
		}
	case "User Capacity":
		if v, ok := p.capacity(key, val); ok && p.userCapacity == nil {
			p.userCapacity = ptrU64(v)
		}
	case "Total NVM Capacity":
		p.nvmeHints++
		if v, ok := p.capacity(key, val); ok && p.nvmeTotal == nil {
			p.nvmeTotal = ptrU64(v)
		}
	case "Namespace 1 Size/Capacity":
		p.nvmeHints++
		if v, ok := p.capacity(key, val); ok && p.nvmeNS1 == nil {
			p.nvmeNS1 = ptrU64(v)
		}
	case "Rotation Rate":
		if strings.HasPrefix(val, "Solid State") {
			s.RotationRPM = ptrInt(0)
		} else if v, ok := groupedUint(val); ok && v < 1<<20 {
			s.RotationRPM = ptrInt(int(v))
		}
	case "ATA Version is", "SATA Version is", "ATA Standard is", "SMART Attributes Data Structure revision number", "Model Family":
		p.ataHints++
	case "Transport protocol", "Elements in grown defect list", "Non-medium error count", "Percentage used endurance indicator",
		"Current Drive Temperature", "Drive Trip Temperature", "SMART Health Status", "Compliance", "Device type":
		p.scsiHints++
		p.scsiPair(key, val)
	case "NVMe Version", "PCI Vendor/Subsystem ID", "PCI Vendor ID":
		p.nvmeHints++

	// Verdict.
	case "SMART overall-health self-assessment test result":
		switch {
		case strings.HasPrefix(val, "PASSED"):
			s.SmartPassed = ptrBool(true)
		case strings.HasPrefix(val, "FAILED"):
			s.SmartPassed = ptrBool(false)
			p.afterFailed = true
		}

	// NVMe health log.
	case "Critical Warning":
		p.nvmeHints++
		if v, ok := hexOrUint(val); ok {
			c.CriticalWarning = ptrU64(v)
		}
	case "Temperature":
		if t, ok := leadingInt(val); ok && t != 0 {
			p.nvmeTemp = ptrF64(float64(t))
		}
	case "Available Spare":
		p.nvmeHints++
		p.percent(val, &c.AvailableSpare)
	case "Available Spare Threshold":
		p.nvmeHints++
		p.percent(val, &c.AvailableSpareThreshold)
	case "Percentage Used":
		p.nvmeHints++
		p.percent(val, &c.PercentageUsed)
	case "Media and Data Integrity Errors":
		p.nvmeHints++
		if v, ok := groupedUint(val); ok {
			c.MediaErrors = ptrU64(v)
		}
	case "Power On Hours":
		if v, ok := groupedUint(val); ok {
			setU64Once(&s.PowerOnHours, v)
		}
	case "Warning Comp. Temp. Threshold":
		if t, ok := leadingInt(val); ok && t > 0 {
			s.TempWarnC = ptrF64(float64(t))
		}
	case "Critical Comp. Temp. Threshold":
		if t, ok := leadingInt(val); ok && t > 0 {
			s.TempCritC = ptrF64(float64(t))
		}

	// ATA SCT status (-x).
	case "Current Temperature":
		if t, ok := leadingInt(val); ok && plausibleTemp(t) {
			p.sctTemp = ptrF64(float64(t))
		}
	case "Min/Max recommended Temperature":
		if hi, ok := afterSlash(val); ok && hi > 0 {
			s.TempWarnC = ptrF64(float64(hi))
		}
	case "Min/Max Temperature Limit":
		if hi, ok := afterSlash(val); ok && hi > 0 {
			s.TempCritC = ptrF64(float64(hi))
		}
	default:
		known = false
	}
	if known {
		p.recognised = true
	}
}

// scsiPair reads the SCSI "Key: value" lines.
func (p *textParser) scsiPair(key, val string) {
	s := &p.s
	c := &s.Counters
	switch key {
	case "SMART Health Status":
		// "OK", or the informational exception smartctl decoded, e.g.
		// "FAILURE PREDICTION THRESHOLD EXCEEDED [asc=5d, ascq=10]".
		s.SmartPassed = ptrBool(val == "OK")
	case "Elements in grown defect list":
		if v, ok := groupedUint(val); ok {
			c.GrownDefects = ptrU64(v)
		}
	case "Non-medium error count":
		if v, ok := groupedUint(val); ok {
			c.NonMediumErrors = ptrU64(v)
		}
	case "Percentage used endurance indicator":
		p.percent(val, &c.PercentageUsed)
	case "Current Drive Temperature":
		if t, ok := leadingInt(val); ok {
			p.scsiTemp = ptrF64(float64(t))
		}
	case "Drive Trip Temperature":
		if t, ok := leadingInt(val); ok && t > 0 {
			p.scsiTrip = ptrF64(float64(t))
		}
	}
}

func (p *textParser) percent(val string, dst **uint64) {
	if v, ok := groupedUint(strings.TrimSuffix(val, "%")); ok {
		*dst = ptrU64(v)
	}
}

// capacity reads "4,000,787,030,016 bytes [4.00 TB]" and checks the byte
// count against the rounded size in brackets: a capture that lost digits
// ("120 bytes [120 GB]") must not report a 120-byte drive.
func (p *textParser) capacity(key, val string) (uint64, bool) {
	v, ok := groupedUint(val)
	if !ok || v == 0 {
		return 0, false
	}
	if approx, ok := bracketSize(val); ok && float64(v) < approx/2 {
		p.notes = append(p.notes, fmt.Sprintf("%s %q: the byte count disagrees with the size in brackets; left out", key, val))
		return 0, false
	}
	return v, true
}

// bracketSize reads the "[4.00 TB]" or "[4,00 TB]" part of a capacity line
// in bytes (smartctl uses powers of 1000).
func bracketSize(val string) (float64, bool) {
	_, rest, ok := strings.Cut(val, "[")
	if !ok {
		return 0, false
	}
	inner, _, _ := strings.Cut(rest, "]")
	f := strings.Fields(inner)
	if len(f) != 2 {
		return 0, false
	}
	n, err := strconv.ParseFloat(strings.ReplaceAll(f[0], ",", "."), 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]float64{"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15}[f[1]]
	if mult == 0 {
		return 0, false
	}
	return n * mult, true
}

// afterSlash reads the second number of "0/60 Celsius" or "-40/70 Celsius".
func afterSlash(val string) (int64, bool) {
	_, hi, ok := strings.Cut(val, "/")
	if !ok {
		return 0, false
	}
	return leadingInt(hi)
}

func (p *textParser) finish() (*hal.DriveSnapshot, error) {
	if len(p.scanDevices) > 0 && p.otherLines == 0 {
		return nil, &ScanOutputError{Devices: p.scanDevices}
	}
	s := &p.s
	switch {
	case p.nvmeHints > 0:
		s.Protocol = hal.ProtocolNVMe
	case p.ataHints > 0:
		s.Protocol = hal.ProtocolATA
	case p.scsiHints > 0:
		s.Protocol = hal.ProtocolSCSI
	}

	s.Model = cleanID(p.model)
	if s.Model == "" {
		s.Model = cleanID(joinVendorProduct(p.vendor, p.product))
	}
	switch {
	case p.userCapacity != nil:
		s.CapacityBytes = p.userCapacity
	case p.nvmeTotal != nil:
		s.CapacityBytes = p.nvmeTotal
	case p.nvmeNS1 != nil:
		s.CapacityBytes = p.nvmeNS1
	}

	switch s.Protocol {
	case hal.ProtocolNVMe:
		s.TemperatureC = p.nvmeTemp
	case hal.ProtocolSCSI:
		// A 0 is no reading (RAID virtual drives print "0 C" for both).
		if p.scsiTemp != nil && *p.scsiTemp != 0 {
			s.TemperatureC = p.scsiTemp
		} else if p.envTemp != nil && *p.envTemp != 0 {
			s.TemperatureC = p.envTemp
		}
		s.TempCritC = p.scsiTrip
		if p.scsiPOH != nil {
			s.PowerOnHours = p.scsiPOH
		} else if p.factoryPOH != nil {
			s.PowerOnHours = p.factoryPOH
		}
		if p.uncorrectedSeen {
			s.Counters.UncorrectedErrors = ptrU64(p.uncorrected)
		}
		if p.linkSeen {
			s.Counters.LinkErrors = ptrU64(p.linkErrors)
		}
	case hal.ProtocolATA:
		s.TemperatureC = p.sctTemp
		applyATAAttributes(s, p.attrs, &p.notes)
	}

	for _, n := range p.notes {
		p.messages = append(p.messages, "dcagent: "+n)
	}
	s.Messages = p.messages
	if !snapshotHasData(s) {
		if !p.recognised {
			return nil, fmt.Errorf("%w: no smartctl banner, section or field this parser knows in %d line(s) of text", ErrNotSmartctl, p.otherLines)
		}
		return nil, &NoDataError{Messages: p.messages}
	}
	return s, nil
}

// snapshotHasData reports whether a snapshot says anything about a drive.
func snapshotHasData(s *hal.DriveSnapshot) bool {
	c := s.Counters
	return s.Model != "" || s.Serial != "" || s.Firmware != "" || s.CapacityBytes != nil ||
		s.SmartPassed != nil || s.PowerOnHours != nil || s.TemperatureC != nil ||
		len(s.FailingAttributes) > 0 || c != (hal.Counters{})
}
