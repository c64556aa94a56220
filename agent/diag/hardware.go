package diag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/enclosure"
	"github.com/dcagent/dcagent/hal/hwmon"
	"github.com/dcagent/dcagent/hal/smartctl"
)

// SensorReader reads the hwmon sensors (hwmon.Reader does).
type SensorReader interface {
	Read(ctx context.Context) (*hwmon.Reading, error)
}

// EnclosureReader reads the SES enclosures (enclosure.Reader does).
type EnclosureReader interface {
	Read(ctx context.Context) ([]enclosure.Enclosure, error)
}

// DriveReader lists and reads drives (smartctl.Runner does).
type DriveReader interface {
	Drives(ctx context.Context, configured []string) ([]smartctl.DriveSpec, error)
	Read(ctx context.Context, d smartctl.DriveSpec) (*hal.DriveSnapshot, error)
}

var (
	_ SensorReader    = (*hwmon.Reader)(nil)
	_ EnclosureReader = (*enclosure.Reader)(nil)
	_ DriveReader     = (*smartctl.Runner)(nil)
)

// Hardware holds what the hardware checks read. A nil reader skips its
// check.
type Hardware struct {
	Sensors    SensorReader
	Enclosures EnclosureReader
	Drives     DriveReader
	// DriveList is the configured [hal] drives (device[:type]); empty
	// means whatever smartctl --scan finds.
	DriveList []string
	// IgnoreSensors are "chip/sensor" patterns (path.Match syntax) of
	// sensors to leave out: "nct6779/in1", "nct6779/*", "pmbus/vin" (a
	// label works as the sensor's name too).
	IgnoreSensors []string
}

// HardwareFromConfig builds the hardware sources of a configuration's
// [hal] section: hwmon and enclosures under sysfs_root, drives through the
// configured smartctl.
func HardwareFromConfig(h config.HAL, logger *slog.Logger) Hardware {
	return Hardware{
		Sensors:       &hwmon.Reader{Root: h.SysfsRoot, Logger: logger},
		Enclosures:    &enclosure.Reader{Root: h.SysfsRoot},
		Drives:        &smartctl.Runner{Program: h.Smartctl, Timeout: h.SmartctlTimeout, Logger: logger},
		DriveList:     h.Drives,
		IgnoreSensors: h.IgnoreSensors,
	}
}

// Checks returns the hardware checks: "sensors", "enclosures", "drives".
func (h Hardware) Checks() []Check {
	var out []Check
	if h.Sensors != nil {
		out = append(out, Check{Name: "sensors", Run: h.checkSensors})
	}
	if h.Enclosures != nil {
		out = append(out, Check{Name: "enclosures", Run: h.checkEnclosures})
	}
	if h.Drives != nil {
		out = append(out, Check{Name: "drives", Run: h.checkDrives})
	}
	return out
}

func (h Hardware) checkSensors(ctx context.Context) []Finding {
	rd, err := h.Sensors.Read(ctx)
	if err != nil {
		if errors.Is(err, hwmon.ErrNoHwmon) {
			return []Finding{{Status: Warn, Message: "no hardware sensors found: " + err.Error(),
				Action: "Load the sensor drivers for this board (coretemp, the Super-I/O chip's driver such as nct6775, pmbus for the power supplies; lm-sensors' sensors-detect names them), or set [hal] sysfs_root to where the tree is."}}
		}
		return []Finding{{Status: Fail, Message: err.Error(), Action: "Run dcagent diag as root, and check [hal] sysfs_root."}}
	}
	var out []Finding
	total, chips, ignored := 0, 0, 0
	for i := range rd.Chips {
		c := &rd.Chips[i]
		if c.Err != nil {
			out = append(out, Finding{Status: Warn, Subject: fmt.Sprintf("%s (%s)", c.Name, c.DevicePath),
				Message: "the chip could not be read: " + c.Problem,
				Action:  "If it stays so, look at the kernel log (dmesg) for the chip's driver; the device may have been removed."})
			continue
		}
		if len(c.Sensors) > 0 {
			chips++
		}
		for j := range c.Sensors {
			s := &c.Sensors[j]
			if s.Ignored(h.IgnoreSensors) {
				ignored++
				continue
			}
			total++
			if f, bad := judgeSensor(s); bad {
				out = append(out, f)
			}
		}
	}
	if len(out) == 0 {
		msg := fmt.Sprintf("%d sensors on %d chips read; all within their limits, no alarms", total, chips)
		if ignored > 0 {
			msg += fmt.Sprintf(" (%d ignored by [hal] ignore_sensors)", ignored)
		}
		if total == 0 {
			return []Finding{{Status: Warn, Message: "the hwmon chips expose no temperature, fan, voltage, current or power sensors",
				Action: "Load the drivers for this board's sensor chips, or check [hal] sysfs_root."}}
		}
		out = append(out, Finding{Status: OK, Message: msg})
	}
	return out
}

// judgeSensor decides whether a sensor needs attention and says why.
func judgeSensor(s *hwmon.Sensor) (Finding, bool) {
	f := Finding{Subject: s.Describe()}
	unit := hwmon.Unit(s.Kind)
	v := func(x float64) string { return fmt.Sprintf("%g %s", round(x), unit) }
	has := func(name string) bool {
		for _, a := range s.Alarms {
			if a == name {
				return true
			}
		}
		return false
	}
	ignoreHint := fmt.Sprintf(" If this input is not connected on this board, leave it out with [hal] ignore_sensors = %s/%s.", s.Chip, s.Name())

	if s.Kind == hwmon.KindIntrusion {
		if !s.Alarm {
			return f, false
		}
		f.Status = Warn
		f.Message = "the chassis intrusion switch has tripped: the case was opened"
		f.Action = fmt.Sprintf("If nobody was meant to open the case, find out who did. The alarm stays set until cleared: as root, write 0 to %s_alarm.", s.Name())
		return f, true
	}
	if s.Unreadable != "" {
		f.Status = Warn
		f.Message = "cannot be read: " + s.Unreadable
		f.Action = "If it stays unreadable, look at the kernel log (dmesg) for the chip's driver; a sensor that never reads may need the board serviced." + ignoreHint
		return f, true
	}
	val := *s.Value
	switch s.Kind {
	case hal.SensorFan:
		if val == 0 && (s.Alarm || s.Min != nil) {
			f.Status, f.Message = Fail, "the fan has stopped (0 RPM)"
			f.Action = "Replace the fan or reseat its cable now; the parts it cools will overheat."
			if s.Chip == "pmbus" {
				f.Action = "This is a power supply's own fan: check the supply's input feed (a supply without input stops its fan), and replace the power supply if it has input."
			}
			return f, true
		}
		if s.Alarm || (s.Min != nil && val < *s.Min) {
			f.Status = Fail
			f.Message = fmt.Sprintf("the fan turns at %s", v(val))
			if s.Min != nil {
				f.Message += fmt.Sprintf(", below its minimum %s", v(*s.Min))
			}
			f.Action = "The fan is failing or blocked; clean or replace it."
			return f, true
		}
	case hal.SensorTemp:
		switch {
		case s.Crit != nil && val >= *s.Crit, has("crit_alarm"), has("emergency_alarm"), s.Emergency != nil && val >= *s.Emergency:
			f.Status = Fail
			f.Message = fmt.Sprintf("at %s", v(val))
			if s.Crit != nil {
				f.Message += fmt.Sprintf(", at or above its critical limit %s", v(*s.Crit))
			} else {
				f.Message += ", critical alarm set"
			}
			f.Action = "Check the cooling now (fans, airflow, filters, room temperature); the hardware may shut itself down."
			return f, true
		case s.Alarm, s.Max != nil && val >= *s.Max:
			f.Status = Warn
			f.Message = fmt.Sprintf("at %s", v(val))
			if s.Max != nil {
				f.Message += fmt.Sprintf(", above its high limit %s", v(*s.Max))
			}
			if s.Alarm {
				f.Message += " (alarm: " + strings.Join(s.Alarms, ", ") + ")"
			}
			f.Action = "Check the fans and the airflow; it is running hotter than it should."
			return f, true
		case s.LCrit != nil && val <= *s.LCrit, s.Min != nil && val < *s.Min:
			f.Status = Warn
			f.Message = fmt.Sprintf("at %s, below its low limit", v(val))
			f.Action = "Check that the room and the intake air are not too cold (condensation)."
			return f, true
		}
	default: // voltages, currents, power
		what := "The power supply or the board's voltage regulator may be failing; check the supplies and their feeds."
		if s.Chip == "pmbus" {
			what = "This power supply reports a fault: check its input feed and cable, and replace it if the reading stays out of range."
		}
		switch {
		case s.Crit != nil && val >= *s.Crit, s.LCrit != nil && val <= *s.LCrit, has("crit_alarm"), has("lcrit_alarm"):
			f.Status = Fail
			f.Message = fmt.Sprintf("reads %s, beyond its critical limit", v(val))
			if s.Alarm {
				f.Message += " (alarm: " + strings.Join(s.Alarms, ", ") + ")"
			}
			f.Action = what
			return f, true
		case s.Alarm:
			f.Status = Fail
			f.Message = fmt.Sprintf("reads %s with its alarm set (%s)%s", v(val), strings.Join(s.Alarms, ", "), limitText(s, v))
			f.Action = what + ignoreHint
			return f, true
		case s.Max != nil && val > *s.Max, s.Min != nil && val < *s.Min:
			f.Status = Warn
			f.Message = fmt.Sprintf("reads %s%s", v(val), limitText(s, v))
			f.Action = what
			return f, true
		}
	}
	if len(s.Problems) > 0 {
		f.Status = Warn
		f.Message = fmt.Sprintf("reads %s, but some of its limits or alarm flags cannot be read: %s", v(val), strings.Join(s.Problems, "; "))
		f.Action = "Its alarms cannot be trusted until these read; look at the kernel log (dmesg) for the chip's driver."
		return f, true
	}
	return f, false
}

func limitText(s *hwmon.Sensor, v func(float64) string) string {
	switch {
	case s.Min != nil && s.Max != nil:
		return fmt.Sprintf(", outside its limits %s to %s", v(*s.Min), v(*s.Max))
	case s.Max != nil:
		return fmt.Sprintf(", limit %s", v(*s.Max))
	case s.Min != nil:
		return fmt.Sprintf(", minimum %s", v(*s.Min))
	}
	return ""
}

func round(x float64) float64 {
	if x >= 100 || x <= -100 {
		return float64(int64(x*10+sign(x)*0.5)) / 10
	}
	return float64(int64(x*1000+sign(x)*0.5)) / 1000
}

func sign(x float64) float64 {
	if x < 0 {
		return -1
	}
	return 1
}

func (h Hardware) checkEnclosures(ctx context.Context) []Finding {
	encs, err := h.Enclosures.Read(ctx)
	if err != nil {
		if errors.Is(err, enclosure.ErrNoEnclosures) {
			return []Finding{{Status: OK, Message: "no SES enclosure (backplane) found, so drives are not tied to slots (" + err.Error() + ")"}}
		}
		return []Finding{{Status: Warn, Message: err.Error(), Action: "Run dcagent diag as root, and check [hal] sysfs_root."}}
	}
	var out []Finding
	for i := range encs {
		e := &encs[i]
		if e.Err != nil {
			out = append(out, Finding{Status: Warn, Subject: e.Describe(), Message: strings.Join(e.Problems, "; "),
				Action: "The enclosure may have gone away; check its cabling and the kernel log (dmesg)."})
			continue
		}
		bad := false
		for _, p := range e.Problems {
			bad = true
			out = append(out, Finding{Status: Warn, Subject: e.Describe(), Message: p,
				Action: "Look at the kernel log (dmesg) for the ses driver; update the enclosure's firmware if this persists."})
		}
		drives := 0
		for j := range e.Slots {
			s := &e.Slots[j]
			if s.Device != "" {
				drives++
			}
			if f, ok := judgeSlot(e, s); ok {
				out = append(out, f)
				if f.Status != OK {
					bad = true
				}
			}
		}
		if !bad {
			out = append(out, Finding{Status: OK, Subject: e.Describe(),
				Message: fmt.Sprintf("%d slots, %d drives, no faults", len(e.Slots), drives)})
		}
	}
	if len(out) == 0 {
		out = append(out, Finding{Status: OK, Message: "no SES enclosure (backplane) found"})
	}
	return out
}

func judgeSlot(e *enclosure.Enclosure, s *enclosure.Slot) (Finding, bool) {
	f := Finding{Subject: e.Describe() + " " + s.Describe()}
	var why []string
	status := OK
	action := ""
	if s.Fault {
		status = Fail
		why = append(why, "fault indicator is on")
		action = "The enclosure marks this slot faulty: replace the drive in it (check the drive's own findings), or reseat it if the drive reads healthy."
	}
	switch s.Status {
	case "critical", "unrecoverable":
		status = Fail
		why = append(why, "status "+s.Status)
		if action == "" {
			action = "The enclosure reports this slot " + s.Status + ": replace the drive or check the slot's connector."
		}
	case "non-critical":
		status = Worse(status, Warn)
		why = append(why, "status non-critical")
		if action == "" {
			action = "The enclosure reports a non-critical condition on this slot; check the drive's own findings."
		}
	case "unknown", "unavailable":
		if s.Device != "" {
			status = Worse(status, Warn)
			why = append(why, "the enclosure cannot tell the slot's state (status "+s.Status+")")
			if action == "" {
				action = "Check the enclosure's firmware and its connection to the controller."
			}
		}
	}
	for _, p := range s.Problems {
		status = Worse(status, Warn)
		why = append(why, p)
		if action == "" {
			action = "Look at the kernel log (dmesg) for the ses driver."
		}
	}
	if s.Locate {
		why = append(why, "locate indicator is on (someone asked to find this slot)")
		if action == "" {
			action = "Turn it off when the work on the slot is done (write 0 to its locate file)."
		}
	}
	if len(why) == 0 {
		return f, false
	}
	f.Status, f.Message, f.Action = status, strings.Join(why, "; "), action
	return f, true
}

func (h Hardware) checkDrives(ctx context.Context) []Finding {
	specs, err := h.Drives.Drives(ctx, h.DriveList)
	if err != nil {
		return []Finding{{Status: Fail, Message: "cannot list the drives: " + err.Error(), Action: driveListAction(err)}}
	}
	if len(specs) == 0 {
		return []Finding{{Status: Warn, Message: "smartctl --scan found no drives",
			Action: "List the drives in [hal] drives with their -d types, e.g. drives = /dev/sda:sat /dev/bus/0:megaraid,14."}}
	}
	// Tie drives to enclosure slots when there is a backplane.
	var slots map[string]*enclosure.Slot
	if h.Enclosures != nil {
		if encs, err := h.Enclosures.Read(ctx); err == nil {
			slots = enclosure.BySlotDevice(encs)
		}
	}
	var out []Finding
	// Drives with interface errors, by enclosure: several behind one
	// backplane point at the backplane or its cable.
	linkTrouble := map[string][]string{}
	for _, spec := range specs {
		if ctx.Err() != nil {
			out = append(out, Finding{Status: Fail, Subject: spec.String(), Message: "not read: the check ran out of time",
				Action: "Run the check again; a drive that hangs smartctl is itself a finding."})
			continue
		}
		snap, err := h.Drives.Read(ctx, spec)
		subject := driveSubject(spec, snap, slots)
		if err != nil {
			out = append(out, Finding{Status: Fail, Subject: subject, Message: "cannot be read: " + err.Error(), Action: driveReadAction(err)})
			continue
		}
		out = append(out, judgeDrive(subject, snap))
		if sl := slots[strings.TrimPrefix(spec.Device, "/dev/")]; sl != nil && hasLinkErrors(snap) {
			linkTrouble[sl.Enclosure] = append(linkTrouble[sl.Enclosure], fmt.Sprintf("%s in %q", sl.Device, sl.Slot.Slot))
		}
	}
	for enc, drives := range linkTrouble {
		if len(drives) < 2 {
			continue
		}
		out = append(out, Finding{Status: Warn, Subject: "enclosure " + enc,
			Message: fmt.Sprintf("%d drives behind this backplane report interface errors (%s): the backplane, its cable or its expander is more likely at fault than each drive", len(drives), strings.Join(drives, ", ")),
			Action:  "Check and reseat the backplane's cable to the controller, then the backplane itself, before replacing drives; the agent's prediction watches whether the errors keep rising together."})
	}
	return out
}

func hasLinkErrors(s *hal.DriveSnapshot) bool {
	return (s.Counters.UDMACRCErrors != nil && *s.Counters.UDMACRCErrors > 0) || (s.Counters.LinkErrors != nil && *s.Counters.LinkErrors > 0)
}

func driveListAction(err error) string {
	if strings.Contains(err.Error(), "not found") {
		return "Install smartmontools, or set [hal] smartctl to the smartctl program's path."
	}
	return "Run dcagent diag as root; check [hal] smartctl and [hal] drives."
}

func driveReadAction(err error) string {
	switch {
	case strings.Contains(err.Error(), "not found"):
		return "Install smartmontools, or set [hal] smartctl to the smartctl program's path."
	case strings.Contains(err.Error(), "no answer within"):
		return "A drive that hangs smartctl is often failing: check the kernel log (dmesg) for resets on it, and plan to replace it."
	}
	return "Check that the drive is still present (lsblk) and that its -d type in [hal] drives is right; run smartctl -a on it to see more."
}

func driveSubject(spec smartctl.DriveSpec, s *hal.DriveSnapshot, slots map[string]*enclosure.Slot) string {
	subject := spec.Device
	var parts []string
	if s != nil {
		if s.Model != "" {
			parts = append(parts, s.Model)
		}
		if s.Serial != "" {
			parts = append(parts, "serial "+s.Serial)
		}
	}
	if sl := slots[strings.TrimPrefix(spec.Device, "/dev/")]; sl != nil {
		parts = append(parts, fmt.Sprintf("enclosure %s slot %q", sl.Enclosure, sl.Slot.Slot))
	}
	if len(parts) > 0 {
		subject += " (" + strings.Join(parts, ", ") + ")"
	}
	return subject
}

// issue is one reason a drive needs attention.
type issue struct {
	status Status
	text   string
	action string
}

// Actions, from the most to the least urgent.
const (
	actReplace = "Replace the drive soon: make sure its data is redundant or backed up, then order a replacement for this model."
	actWatch   = "Keep an eye on it: if the count grows, plan a replacement; the agent's prediction follows its trend."
	actCable   = "Interface errors point at the link, not the media: reseat the drive and check its cable or backplane slot. If several drives behind one backplane show them, suspect the backplane."
	actCool    = "Check the drive's cooling (fans, airflow, blanks in empty slots)."
)

// judgeDrive reads one snapshot against the drive's own limits and the
// counters that predict failure.
func judgeDrive(subject string, s *hal.DriveSnapshot) Finding {
	var issues []issue
	add := func(st Status, action, format string, args ...any) {
		issues = append(issues, issue{st, fmt.Sprintf(format, args...), action})
	}
	if s.SmartPassed != nil && !*s.SmartPassed {
		add(Fail, actReplace, "the drive's own SMART verdict is FAILED")
	}
	for _, a := range s.FailingAttributes {
		if a.When == "now" {
			add(Fail, actReplace, "attribute %d %s is at or below its threshold now (value %d, threshold %d)", a.ID, a.Name, a.Value, a.Thresh)
		} else {
			add(Warn, actWatch, "attribute %d %s fell to its threshold in the past (threshold %d)", a.ID, a.Name, a.Thresh)
		}
	}
	if es, ok := smartctl.SnapshotExitStatus(s.ExitStatus); ok {
		if es.Has(smartctl.ExitSMARTCommand) {
			add(Warn, "Run smartctl -a on the drive to see which command failed; a drive that stops answering SMART commands is often failing.", "a SMART command to the drive failed (smartctl exit bit 2)")
		}
		if es.Has(smartctl.ExitErrorLog) {
			add(Warn, actWatch, "the drive's error log records errors")
		}
		if es.Has(smartctl.ExitSelfTestLog) {
			add(Warn, actReplace, "the drive's self-test log records a failed self-test")
		}
	}
	c := s.Counters
	count := func(p *uint64, st Status, action, what string) {
		if p != nil && *p > 0 {
			add(st, action, "%d %s", *p, what)
		}
	}
	count(c.ReallocatedSectors, Warn, actWatch, "reallocated sectors")
	count(c.PendingSectors, Warn, actReplace, "sectors pending reallocation (unreadable)")
	count(c.OfflineUncorrectable, Warn, actReplace, "offline uncorrectable sectors")
	count(c.ReportedUncorrectable, Warn, actWatch, "uncorrectable errors reported to the host")
	count(c.UDMACRCErrors, Warn, actCable, "interface CRC errors (ATA 199)")
	count(c.LinkErrors, Warn, actCable, "SAS link errors (invalid DWORDs, lost sync, phy resets)")
	count(c.MediaErrors, Warn, actWatch, "NVMe media errors")
	count(c.GrownDefects, Warn, actWatch, "grown defects")
	count(c.UncorrectedErrors, Warn, actReplace, "uncorrected read/write/verify errors")
	if c.CriticalWarning != nil && *c.CriticalWarning != 0 {
		add(Fail, actReplace, "NVMe critical warning 0x%02x (%s)", *c.CriticalWarning, nvmeWarning(*c.CriticalWarning))
	}
	if c.AvailableSpare != nil && c.AvailableSpareThreshold != nil && *c.AvailableSpare < *c.AvailableSpareThreshold {
		add(Fail, actReplace, "available spare %d%% is below its threshold %d%%", *c.AvailableSpare, *c.AvailableSpareThreshold)
	}
	if c.PercentageUsed != nil && *c.PercentageUsed >= 100 {
		add(Warn, actReplace, "it has used %d%% of its rated endurance", *c.PercentageUsed)
	}
	if s.TemperatureC != nil {
		switch {
		case s.TempCritC != nil && *s.TemperatureC >= *s.TempCritC:
			add(Fail, actCool, "at %g °C, at or above its critical temperature %g °C", *s.TemperatureC, *s.TempCritC)
		case s.TempWarnC != nil && *s.TemperatureC >= *s.TempWarnC:
			add(Warn, actCool, "at %g °C, above its warning temperature %g °C", *s.TemperatureC, *s.TempWarnC)
		}
	}
	if len(issues) == 0 {
		msg := "healthy"
		if s.SmartPassed != nil {
			msg += ": SMART verdict PASSED"
		}
		if s.PowerOnHours != nil {
			msg += fmt.Sprintf(", %d power-on hours", *s.PowerOnHours)
		}
		if s.TemperatureC != nil {
			msg += fmt.Sprintf(", %g °C", *s.TemperatureC)
		}
		return Finding{Status: OK, Subject: subject, Message: msg}
	}
	f := Finding{Status: OK, Subject: subject}
	var texts, actions []string
	for _, is := range issues {
		f.Status = Worse(f.Status, is.status)
		texts = append(texts, is.text)
	}
	// What to do about the worst of it; milder advice would only blur it.
	seen := map[string]bool{}
	for _, is := range issues {
		if is.status == f.Status && !seen[is.action] {
			seen[is.action] = true
			actions = append(actions, is.action)
		}
	}
	f.Message = strings.Join(texts, "; ")
	f.Action = strings.Join(actions, " ")
	return f
}

func nvmeWarning(w uint64) string {
	names := []string{"spare below threshold", "temperature out of range", "reliability degraded", "media read-only", "volatile memory backup failed", "persistent memory read-only"}
	var out []string
	for i, n := range names {
		if w&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "reserved bits"
	}
	return strings.Join(out, ", ")
}
