package monitor

import (
	"strings"
	"unicode/utf8"

	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
)

// Payload fields follow the reportable-items registry (agent/event): every
// key used here must be declared there for the event type, or the spool
// refuses the event.

// maxText keeps text fields within the registry's default bound.
const maxText = 1000

func text(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "?")
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func putText(m map[string]any, k, v string) {
	if v = text(v); v != "" {
		m[k] = v
	}
}

func texts(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, text(s))
	}
	return out
}

// sensorObject is a sensor as the registry's sensor object.
func sensorObject(s *hal.Sensor) map[string]any {
	o := map[string]any{"kind": string(s.Kind), "index": int64(s.Index)}
	putText(o, "chip", s.Chip)
	putText(o, "device_path", s.DevicePath)
	putText(o, "label", s.Label)
	for k, p := range map[string]*float64{"value": s.Value, "min": s.Min, "max": s.Max, "crit": s.Crit} {
		if p != nil && finite(*p) {
			o[k] = *p
		}
	}
	if s.Alarm {
		o["alarm"] = true
	}
	putText(o, "unreadable", s.Unreadable)
	return o
}

// counterObject lists the counters a drive reports.
func counterObject(c *hal.Counters) map[string]any {
	o := map[string]any{}
	for k, p := range map[string]*uint64{
		"reallocated_sectors": c.ReallocatedSectors, "pending_sectors": c.PendingSectors,
		"offline_uncorrectable": c.OfflineUncorrectable, "reported_uncorrectable": c.ReportedUncorrectable,
		"command_timeouts": c.CommandTimeouts, "udma_crc_errors": c.UDMACRCErrors,
		"spin_retries": c.SpinRetries, "end_to_end_errors": c.EndToEndErrors,
		"critical_warning": c.CriticalWarning, "media_errors": c.MediaErrors,
		"percentage_used": c.PercentageUsed, "available_spare": c.AvailableSpare,
		"available_spare_threshold": c.AvailableSpareThreshold, "grown_defects": c.GrownDefects,
		"non_medium_errors": c.NonMediumErrors, "uncorrected_errors": c.UncorrectedErrors,
		"link_errors": c.LinkErrors,
	} {
		if p != nil {
			o[k] = *p
		}
	}
	return o
}

// driveObject is a drive as the registry's drive object, with its risk.
func driveObject(s *hal.DriveSnapshot, r *predict.DriveResult) map[string]any {
	o := map[string]any{}
	putText(o, "serial", s.Serial)
	putText(o, "model", s.Model)
	putText(o, "firmware", s.Firmware)
	putText(o, "wwn", s.WWN)
	putText(o, "protocol", string(s.Protocol))
	if r != nil {
		putText(o, "slot", r.Slot)
	}
	if s.CapacityBytes != nil {
		o["capacity_bytes"] = *s.CapacityBytes
	}
	if s.RotationRPM != nil {
		o["rotation_rpm"] = int64(*s.RotationRPM)
	}
	if s.SmartPassed != nil {
		o["smart_passed"] = *s.SmartPassed
	}
	if s.PowerOnHours != nil {
		o["power_on_hours"] = *s.PowerOnHours
	}
	if s.TemperatureC != nil && finite(*s.TemperatureC) {
		o["temperature_c"] = *s.TemperatureC
	}
	if c := counterObject(&s.Counters); len(c) > 0 {
		o["counters"] = c
	}
	if r != nil {
		o["risk"] = r.Risk.Level.String()
		o["reasons"] = texts(r.Risk.Reasons)
	}
	return o
}

// slotObject is an enclosure slot as the registry's slot object.
func slotObject(s *hal.Slot) map[string]any {
	o := map[string]any{}
	putText(o, "enclosure", s.Enclosure)
	putText(o, "slot", s.Slot)
	putText(o, "status", s.Status)
	putText(o, "device", s.Device)
	if s.Fault {
		o["fault"] = true
	}
	return o
}

func finite(f float64) bool { return f == f && f-f == 0 }
