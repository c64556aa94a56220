package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/smartctl"
)

func init() {
	register(command{name: "drive", summary: "read saved smartctl output: drive inspect [--json] FILE...", run: runDrive})
}

const driveUsage = `usage: dcagent drive inspect [--json] FILE...

Reads saved smartctl output, JSON (smartctl --json, 7.0 and later) or text
(smartctl -a/-x/-A/-H, smartmontools 5.x to 7.x), and prints what each file
says about its drive in plain words.

With --json it prints one JSON array holding one object per file that could
be read, in the order given. Each object has the keys of the normalised
drive snapshot (protocol, model, serial, firmware, capacity_bytes,
smart_passed, power_on_hours, temperature_c, counters{...}, ...) plus
"file"; a key is absent when the drive does not report that value.

A file that cannot be read is named on stderr with what is wrong; the other
files are still printed. The exit status is 1 if any file failed.
`

func runDrive(env *cmdEnv, args []string) int {
	if len(args) == 0 || args[0] != "inspect" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(env.stdout, driveUsage)
			return 0
		}
		fmt.Fprint(env.stderr, driveUsage)
		return 2
	}
	fs := env.newFlags("drive inspect")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per file")
	fs.Usage = func() { fmt.Fprint(env.stderr, driveUsage) }
	files, st, ok := parseInterleaved(fs, args[1:])
	if !ok {
		return st
	}
	if len(files) == 0 {
		fmt.Fprintln(env.stderr, "dcagent drive inspect: no FILE given")
		fmt.Fprint(env.stderr, driveUsage)
		return 2
	}

	status := 0
	reports := make([]driveReport, 0, len(files))
	// Captures of one drive (same serial or WWN) are its history, in the
	// order given: each file's risk weighs the captures of that drive that
	// came before it.
	history := map[string][]hal.DriveSnapshot{}
	for _, f := range files {
		s, err := smartctl.ParseFile(f)
		if err != nil {
			// The error already names the file.
			fail(env, "drive inspect", err)
			status = 1
			continue
		}
		series := []hal.DriveSnapshot{*s}
		if key := predict.DriveKey(s); key != "" {
			history[key] = append(history[key], *s)
			series = history[key]
		}
		reports = append(reports, inspectReport(f, s, predict.AssessSeries(series)))
	}
	if *asJSON {
		if err := writeDriveJSON(env.stdout, reports); err != nil {
			return fail(env, "drive inspect", err)
		}
		return status
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		writeDriveText(env.stdout, r)
	}
	return status
}

// parseInterleaved parses flags that may come before, between or after the
// file names ("inspect a.json --json b.txt"); everything after "--" is a
// file name.
func parseInterleaved(fs *flag.FlagSet, args []string) (files []string, status int, ok bool) {
	for {
		if ok, st := parseFlags(fs, args); !ok {
			return nil, st, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return files, 0, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(files, rest...), 0, true
		}
		files = append(files, rest[0])
		args = rest[1:]
	}
}

// driveReport is what `drive inspect` shows for one file: the snapshot and
// any extra sections, rendered after it in both forms.
type driveReport struct {
	File     string
	Snapshot *hal.DriveSnapshot
	Extra    []reportSection
}

// reportSection is an extra part of a drive report (for example the risk
// level and reasons from agent/predict): in plain words a heading and its
// lines, in JSON one more key of the file's object.
type reportSection struct {
	Key   string // JSON key; must not be a snapshot key
	Title string
	Lines []string
	Value any
}

// inspectReport builds the report for one parsed file. Sections that other
// parts of the agent contribute (the drive's risk) are appended here.
func inspectReport(file string, s *hal.DriveSnapshot, risk predict.Risk) driveReport {
	title := "Risk: " + risk.Level.String()
	switch {
	case len(risk.Reasons) == 0:
		title += " (nothing in this drive's report points at a failure)"
	case risk.Level >= predict.LevelWarn && s.SmartPassed != nil && *s.SmartPassed:
		title += " (although the drive's own SMART verdict is PASSED: its counters say otherwise)"
	}
	lines := append([]string(nil), risk.Reasons...)
	switch risk.Level {
	case predict.LevelFail:
		lines = append(lines, "What to do: replace the drive; send this report with the case.")
	case predict.LevelWarn:
		lines = append(lines, "What to do: plan a replacement and check that its data is protected; inspect it again to see whether the counts grow.")
	}
	return driveReport{File: file, Snapshot: s, Extra: []reportSection{{
		Key:   "risk",
		Title: title,
		Lines: lines,
		Value: risk,
	}}}
}

// snapshotJSON is the JSON form of one report: "file", then the snapshot's
// own keys. Time is re-declared so that a capture without a time (text
// output) has no "time" key instead of year 1.
type snapshotJSON struct {
	File string `json:"file"`
	*hal.DriveSnapshot
	Time *time.Time `json:"time,omitempty"`
}

// driveJSON returns one report as a JSON object.
func driveJSON(r driveReport) ([]byte, error) {
	v := snapshotJSON{File: r.File, DriveSnapshot: r.Snapshot}
	if !r.Snapshot.Time.IsZero() {
		t := r.Snapshot.Time
		v.Time = &t
	}
	obj, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(r.Extra) == 0 {
		return obj, nil
	}
	// Append each extra section as a key of the same object.
	out := append([]byte{}, obj[:len(obj)-1]...)
	for _, sec := range r.Extra {
		key, _ := json.Marshal(sec.Key)
		val, err := json.Marshal(sec.Value)
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", sec.Key, err)
		}
		out = append(out, ',')
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, val...)
	}
	return append(out, '}'), nil
}

// writeDriveJSON prints the reports as one indented JSON array.
func writeDriveJSON(w io.Writer, reports []driveReport) error {
	items := make([]json.RawMessage, 0, len(reports))
	for _, r := range reports {
		b, err := driveJSON(r)
		if err != nil {
			return fmt.Errorf("%s: %w", r.File, err)
		}
		items = append(items, b)
	}
	out, err := json.MarshalIndent(items, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

// writeDriveText prints one report in plain words for a field engineer.
func writeDriveText(w io.Writer, r driveReport) {
	s := r.Snapshot
	line := func(label, value string) { fmt.Fprintf(w, "  %-20s %s\n", label, value) }
	fmt.Fprintf(w, "%s\n", smartctl.Printable(r.File, 0))

	line("Drive", orUnknown(s.Model))
	line("Serial number", orUnknown(s.Serial))
	line("Firmware", orUnknown(s.Firmware))
	line("Interface", protocolWords(s.Protocol))
	if s.WWN != "" {
		line("WWN", shown(s.WWN))
	}
	if s.CapacityBytes != nil {
		v := fmt.Sprintf("%s (%s bytes)", humanBytes(*s.CapacityBytes), groupDigits(*s.CapacityBytes))
		if *s.CapacityBytes > maxPlausibleCapacity {
			v += " " + implausible("no drive is that large")
		}
		line("Capacity", v)
	} else {
		line("Capacity", "not reported")
	}
	switch {
	case s.RotationRPM == nil && s.Protocol == hal.ProtocolNVMe:
		line("Kind", "solid state (NVMe)")
	case s.RotationRPM == nil:
		line("Kind", "not reported")
	case *s.RotationRPM == 0:
		line("Kind", "solid state")
	default:
		line("Kind", fmt.Sprintf("hard disk, %d rpm", *s.RotationRPM))
	}
	switch {
	case s.SmartPassed == nil:
		line("SMART verdict", "not reported")
	case *s.SmartPassed:
		line("SMART verdict", "PASSED (the drive's own overall assessment)")
	default:
		line("SMART verdict", "FAILED: the drive itself predicts its failure; back up its data and replace it")
	}
	if s.PowerOnHours != nil {
		v := fmt.Sprintf("%s hours (%.1f years)", groupDigits(*s.PowerOnHours), float64(*s.PowerOnHours)/(24*365.25))
		if *s.PowerOnHours > maxPlausiblePowerOnHours {
			v += " " + implausible("no drive has run that long")
		}
		line("Power-on time", v)
	} else {
		line("Power-on time", "not reported")
	}
	line("Temperature", temperatureWords(s))
	if !s.Time.IsZero() || s.SmartctlVersion != "" {
		v := "smartctl " + orUnknown(s.SmartctlVersion)
		if !s.Time.IsZero() {
			v = s.Time.UTC().Format("2006-01-02 15:04:05 UTC") + " by " + v
		}
		line("Captured", v)
	}
	if es, ok := smartctl.SnapshotExitStatus(s.ExitStatus); ok {
		line("smartctl exit", es.String())
	}

	fmt.Fprintln(w, "  Counters (\"not reported\": the drive does not give this value)")
	for _, c := range counterRows(s) {
		fmt.Fprintf(w, "    %-44s %s\n", c.label, c.value)
	}

	if len(s.FailingAttributes) > 0 {
		fmt.Fprintln(w, "  Attributes at or below their threshold")
		for _, a := range s.FailingAttributes {
			when := "FAILING NOW"
			if a.When == "past" {
				when = "failed in the past"
			}
			fmt.Fprintf(w, "    %d %s: %s (value %d, threshold %d, raw %d)\n", a.ID, shown(a.Name), when, a.Value, a.Thresh, a.Raw)
		}
	}
	if len(s.Messages) > 0 {
		fmt.Fprintln(w, "  Messages")
		for _, m := range s.Messages {
			fmt.Fprintf(w, "    %s\n", shown(m))
		}
	}
	for _, sec := range r.Extra {
		fmt.Fprintf(w, "  %s\n", shown(sec.Title))
		for _, l := range sec.Lines {
			fmt.Fprintf(w, "    %s\n", shown(l))
		}
	}
}

type counterRow struct{ label, value string }

// counterRows lists the counters that matter for the drive's protocol,
// each with its value or "not reported", then any other counter present.
func counterRows(s *hal.DriveSnapshot) []counterRow {
	c := &s.Counters
	type def struct {
		label string
		v     *uint64
		proto hal.Protocol
		fmt   func(uint64) string
	}
	pct := func(v uint64) string { return strconv.FormatUint(v, 10) + " %" }
	// Endurance used may pass 100 %; a spare is a share of 100 %.
	pctOf100 := func(v uint64) string {
		if v > 100 {
			return pct(v) + " " + implausible("a share cannot pass 100 %")
		}
		return pct(v)
	}
	defs := []def{
		{"Reallocated sectors (ATA 5)", c.ReallocatedSectors, hal.ProtocolATA, nil},
		{"Pending sectors (ATA 197)", c.PendingSectors, hal.ProtocolATA, nil},
		{"Offline uncorrectable (ATA 198)", c.OfflineUncorrectable, hal.ProtocolATA, nil},
		{"Reported uncorrectable (ATA 187)", c.ReportedUncorrectable, hal.ProtocolATA, nil},
		{"Command timeouts (ATA 188)", c.CommandTimeouts, hal.ProtocolATA, nil},
		{"Interface CRC errors (ATA 199)", c.UDMACRCErrors, hal.ProtocolATA, nil},
		{"Spin retries (ATA 10)", c.SpinRetries, hal.ProtocolATA, nil},
		{"End-to-end errors (ATA 184)", c.EndToEndErrors, hal.ProtocolATA, nil},
		{"Critical warning (NVMe)", c.CriticalWarning, hal.ProtocolNVMe, criticalWarningWords},
		{"Media and data integrity errors (NVMe)", c.MediaErrors, hal.ProtocolNVMe, nil},
		{"Available spare (NVMe)", c.AvailableSpare, hal.ProtocolNVMe, pctOf100},
		{"Available spare threshold (NVMe)", c.AvailableSpareThreshold, hal.ProtocolNVMe, pctOf100},
		{"Endurance used", c.PercentageUsed, hal.ProtocolNVMe, pct},
		{"Grown defects (SCSI)", c.GrownDefects, hal.ProtocolSCSI, nil},
		{"Non-medium errors (SCSI)", c.NonMediumErrors, hal.ProtocolSCSI, nil},
		{"Uncorrected read/write/verify errors (SCSI)", c.UncorrectedErrors, hal.ProtocolSCSI, nil},
		{"SAS link errors (all phys)", c.LinkErrors, "", nil},
	}
	var rows []counterRow
	for _, d := range defs {
		switch {
		case d.v != nil:
			val := groupDigits(*d.v)
			if d.fmt != nil {
				val = d.fmt(*d.v)
			}
			rows = append(rows, counterRow{d.label, val})
		case d.proto != "" && d.proto == s.Protocol:
			rows = append(rows, counterRow{d.label, "not reported"})
		}
	}
	if len(rows) == 0 {
		rows = append(rows, counterRow{"(none)", "this output has no failure counters"})
	}
	return rows
}

// criticalWarningWords spells out the NVMe critical warning bits.
func criticalWarningWords(v uint64) string {
	if v == 0 {
		return "0x00 (none)"
	}
	words := []string{
		"available spare below threshold",
		"temperature outside its limits",
		"reliability degraded by media or internal errors",
		"media placed in read-only mode",
		"volatile memory backup failed",
		"persistent memory region read-only",
	}
	var set []string
	for bit, w := range words {
		if v&(1<<bit) != 0 {
			set = append(set, w)
		}
	}
	if v>>len(words) != 0 {
		set = append(set, "reserved bits set")
	}
	return fmt.Sprintf("0x%02x (%s)", v, strings.Join(set, "; "))
}

func temperatureWords(s *hal.DriveSnapshot) string {
	if s.TemperatureC == nil {
		return "not reported"
	}
	out := fmt.Sprintf("%g °C", *s.TemperatureC)
	if t := *s.TemperatureC; t < minPlausibleTempC || t > maxPlausibleTempC {
		out += " " + implausible(fmt.Sprintf("no drive runs below %g °C or above %g °C; the sensor or the report is wrong", float64(minPlausibleTempC), float64(maxPlausibleTempC)))
	}
	var lim []string
	if s.TempWarnC != nil {
		lim = append(lim, fmt.Sprintf("warning at %g °C", *s.TempWarnC))
	}
	if s.TempCritC != nil {
		lim = append(lim, fmt.Sprintf("critical at %g °C", *s.TempCritC))
	}
	if len(lim) > 0 {
		out += " (drive's limits: " + strings.Join(lim, ", ") + ")"
	}
	return out
}

func protocolWords(p hal.Protocol) string {
	switch p {
	case hal.ProtocolATA:
		return "ATA / SATA"
	case hal.ProtocolSCSI:
		return "SCSI / SAS"
	case hal.ProtocolNVMe:
		return "NVMe"
	}
	return "not reported"
}

func orUnknown(s string) string {
	if s == "" {
		return "not reported"
	}
	return shown(s)
}

// maxShownBytes bounds one value or message line in the plain-words
// output: a model name is under 50 bytes, a message under 100; a 10 MB one
// is a broken or hostile file and is cut, with a marker.
const maxShownBytes = 200

// shown makes a string from a capture fit for a terminal: control
// characters made visible, and clipped to maxShownBytes with a marker.
func shown(s string) string { return smartctl.Printable(s, maxShownBytes) }

// Bounds beyond which a value cannot be a real drive's: the report is
// printed as it is, with a plain warning next to the value.
const (
	minPlausibleTempC        = -60
	maxPlausibleTempC        = 200
	maxPlausiblePowerOnHours = 1_000_000             // 114 years
	maxPlausibleCapacity     = 1_000_000_000_000_000 // 1 PB
)

func implausible(why string) string { return "(IMPLAUSIBLE: " + why + ")" }

// humanBytes gives a size in the decimal units drive vendors and smartctl
// use: 6001175126016 is "6.00 TB".
func humanBytes(b uint64) string {
	units := []string{"bytes", "kB", "MB", "GB", "TB", "PB", "EB"}
	f := float64(b)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d bytes", b)
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}

// groupDigits writes 1040 as "1,040".
func groupDigits(v uint64) string {
	s := strconv.FormatUint(v, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead > 0 {
		b.WriteString(s[:lead])
	}
	for i := lead; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
