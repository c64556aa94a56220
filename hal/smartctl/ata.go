package smartctl

import (
	"fmt"
	"strings"

	"github.com/dcagent/dcagent/hal"
)

// ataAttr is one row of the ATA SMART attribute table, read from JSON or
// text. Normalised values are -1 when the report leaves them out ("---").
type ataAttr struct {
	ID         int
	Name       string
	Value      int
	Worst      int
	Thresh     int
	WhenFailed string // "now", "past" or ""
	RawString  string // smartctl's rendering of the raw field, per its drive database
	RawValue   uint64 // the 48-bit raw field as a number
	HasValue   bool   // RawValue is known (JSON always; text when RawString is a plain integer)
}

// ATA attribute IDs this package reads.
const (
	attrRawReadErrorRate  = 1
	attrReallocated       = 5
	attrSeekErrorRate     = 7
	attrPowerOnHours      = 9
	attrSpinRetry         = 10
	attrEndToEnd          = 184
	attrReportedUncorrect = 187
	attrCommandTimeout    = 188
	attrIDAirflowTemp     = 190
	attrIDTemperature     = 194
	attrHardwareECC       = 195
	attrPending           = 197
	attrOfflineUncorrect  = 198
	attrUDMACRC           = 199
)

// attrCount returns the count an attribute's raw field holds.
//
// smartctl renders the 48-bit raw field according to its drive database:
// as one number ("1040"), as a number followed by vendor detail in
// parentheses ("5670 (1 343)"), or as several 16-bit words, most
// significant first ("0 0 5", Seagate's attribute 188, whose low word is
// the count). The leading number is the count in the first two forms; in
// the word form it is the low word. A negative rendering is not a count.
func attrCount(a ataAttr) (uint64, bool) {
	return attrCountFor(a, "")
}

// attrCountFor is attrCount knowing the drive model: Seagate packs three
// 16-bit counters into attribute 188 (Command_Timeout) even where smartctl's
// drive database does not split them, and the count is the low word; a
// raw of 131074 (0x0000_0002_0002) is 2 timeouts, not 131074.
func attrCountFor(a ataAttr, model string) (uint64, bool) {
	s := strings.TrimSpace(a.RawString)
	if a.ID == attrCommandTimeout && isSeagate(model) && (s == "" || isAllDigits(s)) {
		raw, ok := a.RawValue, a.HasValue
		if !ok {
			raw, ok = leadingUint(s)
		}
		return raw & 0xFFFF, ok
	}
	if s == "" {
		return a.RawValue, a.HasValue
	}
	if isWordList(s) {
		if a.HasValue {
			return a.RawValue & 0xFFFF, true
		}
		f := strings.Fields(s)
		return leadingUint(f[len(f)-1])
	}
	return leadingUint(s)
}

// isWordList reports whether s is smartctl's raw16/raw8 rendering: two or
// more plain numbers separated by spaces, with nothing else.
func isWordList(s string) bool {
	f := strings.Fields(s)
	if len(f) < 2 {
		return false
	}
	for _, w := range f {
		if !isAllDigits(w) {
			return false
		}
	}
	return true
}

// attrTemperature returns the temperature in °C an attribute (194, 190)
// holds. The current temperature is the leading number of smartctl's
// rendering ("36 (Min/Max 20/45)"); when that is not a temperature (a raw
// rendered as one 48-bit number, 0x002D00140024 = 193274839076) it is the
// low byte of the raw field, where the drive keeps it, with the lifetime
// minimum and maximum in the higher bytes.
func attrTemperature(a ataAttr) (int64, bool) {
	if t, ok := leadingInt(a.RawString); ok && plausibleTemp(t) {
		return t, true
	}
	raw, ok := a.RawValue, a.HasValue
	if !ok {
		raw, ok = leadingUint(a.RawString)
	}
	if !ok {
		return 0, false
	}
	t := int64(raw & 0xFF)
	return t, plausibleTemp(t)
}

// isSeagate reports whether the model is a Seagate ATA drive, whose
// attributes 1, 7 and 195 pack two numbers into the raw field.
func isSeagate(model string) bool {
	m := strings.ToUpper(model)
	if strings.HasPrefix(m, "SEAGATE") {
		return true
	}
	return len(m) > 2 && strings.HasPrefix(m, "ST") && m[2] >= '0' && m[2] <= '9'
}

// SeagateErrorRate splits the raw field of a Seagate error-rate attribute
// (1 Raw_Read_Error_Rate, 7 Seek_Error_Rate, 195 Hardware_ECC_Recovered):
// the upper 16 of the 48 bits count errors, the lower 32 count the
// operations they happened in. Reading the whole raw value as a count is
// the classic mistake: a healthy drive shows hundreds of millions.
func SeagateErrorRate(raw uint64) (errs, operations uint64) {
	return (raw >> 32) & 0xFFFF, raw & 0xFFFFFFFF
}

// attrRawForReport is the raw number to show for an attribute: the count
// for counters, the error count for Seagate's packed error rates, and the
// temperature for temperature attributes.
func attrRawForReport(a ataAttr, model string) uint64 {
	switch a.ID {
	case attrRawReadErrorRate, attrSeekErrorRate, attrHardwareECC:
		if isSeagate(model) {
			raw, ok := a.RawValue, a.HasValue
			if !ok {
				raw, ok = leadingUint(a.RawString)
			}
			if ok {
				errs, _ := SeagateErrorRate(raw)
				return errs
			}
		}
	case attrIDTemperature, attrIDAirflowTemp:
		if t, ok := attrTemperature(a); ok {
			return uint64(t)
		}
	}
	v, _ := attrCountFor(a, model)
	return v
}

// powerOnHoursFromAttr reads attribute 9, whose unit depends on the drive
// and is named in the attribute name smartctl chose.
func powerOnHoursFromAttr(a ataAttr) (uint64, bool) {
	v, ok := leadingUint(a.RawString)
	if !ok {
		v, ok = a.RawValue, a.HasValue
	}
	if !ok {
		return 0, false
	}
	name := strings.ToLower(a.Name)
	switch {
	case strings.Contains(name, "half_min"):
		return v / 120, true
	case strings.Contains(name, "minutes"):
		return v / 60, true
	case strings.Contains(name, "seconds"):
		return v / 3600, true
	}
	return v, true
}

// applyATAAttributes fills the counters, failing attributes and, where the
// report gave them no other way, temperature and power-on hours.
func applyATAAttributes(s *hal.DriveSnapshot, attrs []ataAttr, notes *[]string) {
	c := &s.Counters
	for _, a := range attrs {
		var dst **uint64
		switch a.ID {
		case attrReallocated:
			dst = &c.ReallocatedSectors
		case attrPending:
			dst = &c.PendingSectors
		case attrOfflineUncorrect:
			dst = &c.OfflineUncorrectable
		case attrReportedUncorrect:
			dst = &c.ReportedUncorrectable
		case attrCommandTimeout:
			dst = &c.CommandTimeouts
		case attrUDMACRC:
			dst = &c.UDMACRCErrors
		case attrSpinRetry:
			dst = &c.SpinRetries
		case attrEndToEnd:
			dst = &c.EndToEndErrors
		case attrPowerOnHours:
			if v, ok := powerOnHoursFromAttr(a); ok {
				setU64Once(&s.PowerOnHours, v)
			}
		}
		if dst != nil && *dst == nil {
			if v, ok := attrCountFor(a, s.Model); ok {
				*dst = ptrU64(v)
			} else {
				*notes = append(*notes, fmt.Sprintf("attribute %d %s: raw value %q is not a count; left out", a.ID, a.Name, a.RawString))
			}
		}
		if a.WhenFailed == "now" || a.WhenFailed == "past" {
			s.FailingAttributes = append(s.FailingAttributes, hal.AttributeFailure{
				ID: a.ID, Name: a.Name, When: a.WhenFailed,
				Value: a.Value, Thresh: a.Thresh, Raw: attrRawForReport(a, s.Model),
			})
		}
	}
	if s.TemperatureC == nil {
		// smartctl's own order: 194 first, then 190.
		for _, id := range []int{attrIDTemperature, attrIDAirflowTemp} {
			for _, a := range attrs {
				if a.ID != id {
					continue
				}
				if t, ok := attrTemperature(a); ok {
					setF64Once(&s.TemperatureC, float64(t))
				}
			}
		}
	}
}

// normWhenFailed maps the WHEN_FAILED renderings of JSON ("now", "past"),
// the long text table ("FAILING_NOW", "In_the_past") and the brief table
// ("NOW", "Past") to "now", "past" or "".
func normWhenFailed(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "now", "failing_now":
		return "now"
	case "past", "in_the_past":
		return "past"
	}
	return ""
}
