package smartctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// jnum is a JSON number kept as its literal, so that no value is lost to
// float64 and a value of the wrong type in one field (a string, an object)
// does not stop the rest of the report from being read. smartctl prints
// some 128-bit NVMe counters as integers wider than 64 bits.
type jnum struct{ lit string }

func (n *jnum) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		// Some versions quote numbers; take the string when it is one.
		s, err := strconv.Unquote(string(b))
		if err == nil && looksNumeric(strings.TrimSpace(s)) {
			n.lit = strings.TrimSpace(s)
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		n.lit = string(b)
	}
	return nil // null, booleans, objects: absent
}

func looksNumeric(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil || errors.Is(err, strconv.ErrRange)
}

func (n jnum) present() bool { return n.lit != "" }

// uint64 reads a count. A negative value is not a count; a value wider
// than 64 bits is kept as the largest uint64, since "more than 18 quintillion"
// is closer to the truth than leaving it out. Problems go to notes.
func (n jnum) uint64(field string, notes *[]string) (uint64, bool) {
	if n.lit == "" {
		return 0, false
	}
	if v, err := strconv.ParseUint(n.lit, 10, 64); err == nil {
		return v, true
	} else if errors.Is(err, strconv.ErrRange) {
		*notes = append(*notes, fmt.Sprintf("%s: %s does not fit in 64 bits; kept as %d", field, n.lit, uint64(math.MaxUint64)))
		return math.MaxUint64, true
	}
	f, err := strconv.ParseFloat(n.lit, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		*notes = append(*notes, fmt.Sprintf("%s: %q is not a number; left out", field, n.lit))
	case f < 0:
		*notes = append(*notes, fmt.Sprintf("%s: negative value %s is not a count; left out", field, n.lit))
	case f >= math.MaxUint64:
		*notes = append(*notes, fmt.Sprintf("%s: %s does not fit in 64 bits; kept as %d", field, n.lit, uint64(math.MaxUint64)))
		return math.MaxUint64, true
	case f == math.Trunc(f):
		return uint64(f), true
	default:
		*notes = append(*notes, fmt.Sprintf("%s: %s is not a whole number; left out", field, n.lit))
	}
	return 0, false
}

// int64 reads a signed value (normalised attribute values, versions).
func (n jnum) int64() (int64, bool) {
	if n.lit == "" {
		return 0, false
	}
	if v, err := strconv.ParseInt(n.lit, 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(n.lit, 64)
	if err != nil || f != math.Trunc(f) || f > math.MaxInt64 || f < math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

// float reads a temperature or another measured value.
func (n jnum) float() (float64, bool) {
	if n.lit == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(n.lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// jsonReport holds the parts of `smartctl --json` output this package
// reads. Keys renamed between smartctl releases are all listed; the parser
// takes whichever the report has.
type jsonReport struct {
	FormatVersion []jnum `json:"json_format_version"`
	Smartctl      *struct {
		Version    []jnum   `json:"version"`
		Argv       []string `json:"argv"`
		ExitStatus jnum     `json:"exit_status"`
		Messages   []struct {
			String   string `json:"string"`
			Severity string `json:"severity"`
		} `json:"messages"`
	} `json:"smartctl"`
	LocalTime *struct {
		TimeT jnum `json:"time_t"`
	} `json:"local_time"`
	Device *struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Protocol string `json:"protocol"`
	} `json:"device"`
	Devices []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"devices"`

	// Identity. SCSI: smartctl 7.0-7.2 print vendor/product/model_name/
	// revision, 7.3-7.4 scsi_vendor/scsi_product/scsi_model_name/
	// scsi_revision, 7.5 both model_name and scsi_model_name.
	ModelName       string `json:"model_name"`
	ModelFamily     string `json:"model_family"`
	SCSIModelName   string `json:"scsi_model_name"`
	Vendor          string `json:"vendor"`
	Product         string `json:"product"`
	SCSIVendor      string `json:"scsi_vendor"`
	SCSIProduct     string `json:"scsi_product"`
	SerialNumber    string `json:"serial_number"`
	FirmwareVersion string `json:"firmware_version"`
	Revision        string `json:"revision"`
	SCSIRevision    string `json:"scsi_revision"`
	WWN             *struct {
		NAA jnum `json:"naa"`
		OUI jnum `json:"oui"`
		ID  jnum `json:"id"`
	} `json:"wwn"`
	LogicalUnitID string `json:"logical_unit_id"`
	UserCapacity  *struct {
		Bytes jnum `json:"bytes"`
	} `json:"user_capacity"`
	NVMeTotalCapacity jnum `json:"nvme_total_capacity"`
	NVMeNamespaces    []struct {
		Size struct {
			Bytes jnum `json:"bytes"`
		} `json:"size"`
		EUI64 *struct {
			OUI   jnum `json:"oui"`
			ExtID jnum `json:"ext_id"`
		} `json:"eui64"`
	} `json:"nvme_namespaces"`
	RotationRate jnum `json:"rotation_rate"`

	SmartStatus *struct {
		Passed *bool `json:"passed"`
	} `json:"smart_status"`
	PowerOnTime *struct {
		Hours jnum `json:"hours"`
	} `json:"power_on_time"`
	Temperature *struct {
		Current          jnum `json:"current"`
		DriveTrip        jnum `json:"drive_trip"`
		OpLimitMax       jnum `json:"op_limit_max"`
		LimitMax         jnum `json:"limit_max"`
		CriticalLimitMax jnum `json:"critical_limit_max"`
	} `json:"temperature"`

	ATAAttributes *struct {
		Table []struct {
			ID         jnum   `json:"id"`
			Name       string `json:"name"`
			Value      jnum   `json:"value"`
			Worst      jnum   `json:"worst"`
			Thresh     jnum   `json:"thresh"`
			WhenFailed string `json:"when_failed"`
			Raw        struct {
				Value  jnum   `json:"value"`
				String string `json:"string"`
			} `json:"raw"`
		} `json:"table"`
	} `json:"ata_smart_attributes"`
	ATADeviceStatistics *struct {
		Pages []struct {
			Table []struct {
				Name  string `json:"name"`
				Value jnum   `json:"value"`
			} `json:"table"`
		} `json:"pages"`
	} `json:"ata_device_statistics"`
	EnduranceUsed *struct {
		CurrentPercent jnum `json:"current_percent"`
	} `json:"endurance_used"`

	NVMeHealth *struct {
		CriticalWarning         jnum `json:"critical_warning"`
		Temperature             jnum `json:"temperature"`
		AvailableSpare          jnum `json:"available_spare"`
		AvailableSpareThreshold jnum `json:"available_spare_threshold"`
		PercentageUsed          jnum `json:"percentage_used"`
		MediaErrors             jnum `json:"media_errors"`
		PowerOnHours            jnum `json:"power_on_hours"`
	} `json:"nvme_smart_health_information_log"`
	NVMeTempThreshold *struct {
		Warning  jnum `json:"warning"`
		Critical jnum `json:"critical"`
	} `json:"nvme_composite_temperature_threshold"`

	SCSIGrownDefects    jnum `json:"scsi_grown_defect_list"`
	SCSIErrorCounterLog map[string]struct {
		TotalUncorrected jnum `json:"total_uncorrected_errors"`
	} `json:"scsi_error_counter_log"`
	// scsi_environmental_reports (smartctl 7.3+, with -x or -l envrep)
	// holds temperature_N and humidity_N; the SCSI temperature is there,
	// and not in "temperature", when the drive has that log page.
	SCSIEnvironmental map[string]struct {
		Current jnum `json:"current"`
	} `json:"scsi_environmental_reports"`
	SCSIPercentUsed jnum `json:"scsi_percentage_used_endurance_indicator"`
}

// hasDeviceData reports whether the report says anything about a drive
// beyond smartctl's own header.
func (r *jsonReport) hasDeviceData() bool {
	return r.ModelName != "" || r.SCSIModelName != "" || r.Product != "" || r.SCSIProduct != "" ||
		r.SerialNumber != "" || r.FirmwareVersion != "" || r.UserCapacity != nil ||
		r.SmartStatus != nil || r.PowerOnTime != nil || r.Temperature != nil ||
		r.ATAAttributes != nil || r.NVMeHealth != nil || r.SCSIGrownDefects.present() ||
		r.SCSIErrorCounterLog != nil || r.SCSIEnvironmental != nil
}

// parseJSON reads smartctl JSON. start is where the JSON object begins in
// data; text before it (a warning printed to the same stream) is kept as
// messages.
func parseJSON(data []byte, start int) (*hal.DriveSnapshot, error) {
	var r jsonReport
	dec := json.NewDecoder(bytes.NewReader(data[start:]))
	err := dec.Decode(&r)
	var notes []string
	if err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			// syn.Offset counts the bytes read, the bad one included.
			off := max(start+int(syn.Offset)-1, start)
			line, col := lineCol(data, off)
			return nil, fmt.Errorf("%w at byte offset %d (line %d, column %d): %s", ErrMalformedJSON, off, line, col, syn.Error())
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: the JSON object ends early, after %d bytes (a truncated capture?)", ErrMalformedJSON, len(data))
		case errors.As(err, &typ) && typ.Field == "":
			return nil, fmt.Errorf("%w: the JSON value is %s, not the object smartctl prints", ErrNotSmartctl, typ.Value)
		case errors.As(err, &typ):
			// One field had an unexpected type; the rest was read.
			notes = append(notes, fmt.Sprintf("field %s holds %s where %s was expected; left out", typ.Field, typ.Value, typ.Type))
		default:
			return nil, fmt.Errorf("%w: %v", ErrMalformedJSON, err)
		}
	}
	if rest := bytes.TrimSpace(data[start+int(dec.InputOffset()):]); len(rest) > 0 {
		notes = append(notes, fmt.Sprintf("%d bytes after the JSON object ignored", len(rest)))
	}

	if len(r.FormatVersion) == 0 {
		return nil, fmt.Errorf("%w: a JSON object without json_format_version; smartctl 7.0 and later always print it", ErrNotSmartctl)
	}
	major, _ := r.FormatVersion[0].int64()
	minor := int64(0)
	if len(r.FormatVersion) > 1 {
		minor, _ = r.FormatVersion[1].int64()
	}
	if major != 1 {
		return nil, fmt.Errorf("%w: json_format_version %d.%d; this parser reads major version 1 (smartctl 7.0 to 7.5)", ErrUnsupportedFormat, major, minor)
	}

	s := &hal.DriveSnapshot{}
	var messages []string
	if start > 0 {
		messages = append(messages, strayLines(data[:start])...)
	}
	var exit *ExitStatus
	if r.Smartctl != nil {
		s.SmartctlVersion = joinVersion(r.Smartctl.Version)
		if v, ok := r.Smartctl.ExitStatus.int64(); ok {
			if v >= 0 && v <= 255 {
				s.ExitStatus = ptrInt(int(v))
				e := ExitStatus(v)
				exit = &e
			} else {
				notes = append(notes, fmt.Sprintf("smartctl.exit_status %d is not a process exit status; left out", v))
			}
		}
		for _, m := range r.Smartctl.Messages {
			if t := strings.TrimSpace(m.String); t != "" {
				messages = append(messages, t)
			}
		}
	}

	if (r.Devices != nil || r.isScan()) && r.Device == nil && !r.hasDeviceData() {
		scan := &ScanOutputError{}
		for _, d := range r.Devices {
			scan.Devices = append(scan.Devices, DriveSpec{Device: d.Name, Type: d.Type})
		}
		return nil, scan
	}
	if !r.hasDeviceData() {
		return nil, &NoDataError{ExitStatus: exit, Messages: messages}
	}

	if r.LocalTime != nil {
		if t, ok := r.LocalTime.TimeT.int64(); ok && t > 0 {
			s.Time = time.Unix(t, 0).UTC()
		}
	}
	s.Protocol = r.protocol()
	r.identity(s)
	r.health(s, data[start:], &notes)

	for _, n := range notes {
		messages = append(messages, "dcagent: "+n)
	}
	s.Messages = messages
	return s, nil
}

// isScan reports whether smartctl was run with --scan: with no drive
// found, its output has no "devices" key at all.
func (r *jsonReport) isScan() bool {
	if r.Smartctl == nil {
		return false
	}
	for _, a := range r.Smartctl.Argv {
		if a == "--scan" || a == "--scan-open" {
			return true
		}
	}
	return false
}

func (r *jsonReport) protocol() hal.Protocol {
	if r.Device != nil {
		switch strings.ToUpper(r.Device.Protocol) {
		case "ATA":
			return hal.ProtocolATA
		case "SCSI":
			return hal.ProtocolSCSI
		case "NVME":
			return hal.ProtocolNVMe
		}
	}
	switch {
	case r.NVMeHealth != nil || r.NVMeNamespaces != nil:
		return hal.ProtocolNVMe
	case r.ATAAttributes != nil:
		return hal.ProtocolATA
	case r.SCSIVendor != "" || r.SCSIGrownDefects.present() || r.SCSIErrorCounterLog != nil:
		return hal.ProtocolSCSI
	}
	return ""
}

func (r *jsonReport) identity(s *hal.DriveSnapshot) {
	s.Model = cleanID(firstNonEmpty(r.ModelName, r.SCSIModelName, joinVendorProduct(r.SCSIVendor, r.SCSIProduct), joinVendorProduct(r.Vendor, r.Product)))
	s.Serial = cleanID(r.SerialNumber)
	s.Firmware = cleanID(firstNonEmpty(r.FirmwareVersion, r.SCSIRevision, r.Revision))

	var discard []string
	switch {
	case r.WWN != nil:
		naa, ok1 := r.WWN.NAA.uint64("wwn.naa", &discard)
		oui, ok2 := r.WWN.OUI.uint64("wwn.oui", &discard)
		id, ok3 := r.WWN.ID.uint64("wwn.id", &discard)
		if ok1 && ok2 && ok3 {
			// The form smartctl's text prints, "5 000cca 2600004d2", without
			// spaces; all zeros (a blanked capture) is no WWN.
			s.WWN = normaliseHexID(fmt.Sprintf("%x%06x%09x", naa, oui, id))
		}
	case r.LogicalUnitID != "":
		s.WWN = normaliseHexID(r.LogicalUnitID)
	case len(r.NVMeNamespaces) > 0 && r.NVMeNamespaces[0].EUI64 != nil:
		e := r.NVMeNamespaces[0].EUI64
		oui, ok1 := e.OUI.uint64("eui64.oui", &discard)
		ext, ok2 := e.ExtID.uint64("eui64.ext_id", &discard)
		if ok1 && ok2 {
			s.WWN = fmt.Sprintf("eui.%06x%010x", oui, ext)
		}
	}

	if r.UserCapacity != nil {
		if v, ok := r.UserCapacity.Bytes.uint64("user_capacity.bytes", &discard); ok && v > 0 {
			s.CapacityBytes = ptrU64(v)
		}
	}
	if s.CapacityBytes == nil {
		if v, ok := r.NVMeTotalCapacity.uint64("nvme_total_capacity", &discard); ok && v > 0 {
			s.CapacityBytes = ptrU64(v)
		} else if len(r.NVMeNamespaces) == 1 {
			if v, ok := r.NVMeNamespaces[0].Size.Bytes.uint64("nvme_namespaces.size", &discard); ok && v > 0 {
				s.CapacityBytes = ptrU64(v)
			}
		}
	}
	if v, ok := r.RotationRate.int64(); ok && v >= 0 && v < 1<<20 {
		s.RotationRPM = ptrInt(int(v))
	}
}

func (r *jsonReport) health(s *hal.DriveSnapshot, raw []byte, notes *[]string) {
	if r.SmartStatus != nil && r.SmartStatus.Passed != nil {
		s.SmartPassed = ptrBool(*r.SmartStatus.Passed)
	}
	if r.PowerOnTime != nil {
		if v, ok := r.PowerOnTime.Hours.uint64("power_on_time.hours", notes); ok {
			s.PowerOnHours = ptrU64(v)
		}
	}
	c := &s.Counters
	if t := r.Temperature; t != nil {
		// A 0 is no reading: smartctl 7.2 prints SCT status's 0 even when
		// attribute 194 has the real value (Crucial BX200), and RAID virtual
		// drives answer 0. The attribute table is consulted below when this
		// is left unset.
		if v, ok := t.Current.float(); ok && v != 0 {
			s.TemperatureC = ptrF64(v)
		}
		switch s.Protocol {
		case hal.ProtocolSCSI:
			if v, ok := t.DriveTrip.float(); ok && v > 0 {
				s.TempCritC = ptrF64(v)
			}
		case hal.ProtocolNVMe:
			if v, ok := t.OpLimitMax.float(); ok && v > 0 {
				s.TempWarnC = ptrF64(v)
			}
			if v, ok := t.CriticalLimitMax.float(); ok && v > 0 {
				s.TempCritC = ptrF64(v)
			}
		default:
			// ATA: SCT status and device statistics give the recommended
			// operating maximum and the absolute limit.
			if v, ok := t.OpLimitMax.float(); ok && v > 0 {
				s.TempWarnC = ptrF64(v)
			}
			if v, ok := t.LimitMax.float(); ok && v > 0 {
				s.TempCritC = ptrF64(v)
			}
		}
	}
	if th := r.NVMeTempThreshold; th != nil {
		if v, ok := th.Warning.float(); ok && v > 0 {
			s.TempWarnC = ptrF64(v)
		}
		if v, ok := th.Critical.float(); ok && v > 0 {
			s.TempCritC = ptrF64(v)
		}
	}

	if h := r.NVMeHealth; h != nil {
		u := func(n jnum, field string, dst **uint64) {
			if v, ok := n.uint64("nvme_smart_health_information_log."+field, notes); ok {
				*dst = ptrU64(v)
			}
		}
		u(h.CriticalWarning, "critical_warning", &c.CriticalWarning)
		u(h.MediaErrors, "media_errors", &c.MediaErrors)
		u(h.PercentageUsed, "percentage_used", &c.PercentageUsed)
		u(h.AvailableSpare, "available_spare", &c.AvailableSpare)
		u(h.AvailableSpareThreshold, "available_spare_threshold", &c.AvailableSpareThreshold)
		if s.PowerOnHours == nil {
			u(h.PowerOnHours, "power_on_hours", &s.PowerOnHours)
		}
		if s.TemperatureC == nil {
			if v, ok := h.Temperature.float(); ok && v != 0 {
				s.TemperatureC = ptrF64(v)
			}
		}
	}

	if r.SCSIGrownDefects.present() {
		if v, ok := r.SCSIGrownDefects.uint64("scsi_grown_defect_list", notes); ok {
			c.GrownDefects = ptrU64(v)
		}
	}
	if r.SCSIErrorCounterLog != nil {
		var sum uint64
		seen := false
		for _, dir := range []string{"read", "write", "verify"} {
			e, ok := r.SCSIErrorCounterLog[dir]
			if !ok {
				continue
			}
			if v, ok := e.TotalUncorrected.uint64("scsi_error_counter_log."+dir+".total_uncorrected_errors", notes); ok {
				sum = addSat(sum, v)
				seen = true
			}
		}
		if seen {
			c.UncorrectedErrors = ptrU64(sum)
		}
	}
	if s.TemperatureC == nil && r.SCSIEnvironmental != nil {
		keys := make([]string, 0, len(r.SCSIEnvironmental))
		for k := range r.SCSIEnvironmental {
			if strings.HasPrefix(k, "temperature_") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if v, ok := r.SCSIEnvironmental[k].Current.float(); ok && v != 0 {
				s.TemperatureC = ptrF64(v)
				break
			}
		}
	}
	if v, ok := r.SCSIPercentUsed.uint64("scsi_percentage_used_endurance_indicator", notes); ok {
		c.PercentageUsed = ptrU64(v)
	}
	if c.PercentageUsed == nil && r.EnduranceUsed != nil {
		if v, ok := r.EnduranceUsed.CurrentPercent.uint64("endurance_used.current_percent", notes); ok {
			c.PercentageUsed = ptrU64(v)
		}
	}
	if c.PercentageUsed == nil && r.ATADeviceStatistics != nil {
		for _, p := range r.ATADeviceStatistics.Pages {
			for _, e := range p.Table {
				if strings.EqualFold(e.Name, "Percentage Used Endurance Indicator") {
					if v, ok := e.Value.uint64("ata_device_statistics", notes); ok {
						setU64Once(&c.PercentageUsed, v)
					}
				}
			}
		}
	}

	if bytes.Contains(raw, []byte(`"scsi_sas_port_`)) {
		if v, ok := sasLinkErrors(raw, notes); ok {
			c.LinkErrors = ptrU64(v)
		}
	}

	if r.ATAAttributes != nil {
		attrs := make([]ataAttr, 0, len(r.ATAAttributes.Table))
		for _, a := range r.ATAAttributes.Table {
			id, ok := a.ID.int64()
			if !ok || id < 1 || id > 255 {
				continue
			}
			at := ataAttr{ID: int(id), Name: a.Name, Value: -1, Worst: -1, Thresh: -1,
				WhenFailed: normWhenFailed(a.WhenFailed), RawString: a.Raw.String}
			if v, ok := a.Value.int64(); ok {
				at.Value = int(v)
			}
			if v, ok := a.Worst.int64(); ok {
				at.Worst = int(v)
			}
			if v, ok := a.Thresh.int64(); ok {
				at.Thresh = int(v)
			}
			at.RawValue, at.HasValue = a.Raw.Value.uint64(fmt.Sprintf("attribute %d raw.value", id), notes)
			attrs = append(attrs, at)
		}
		applyATAAttributes(s, attrs, notes)
	}
}

// sasLinkErrors sums the link error counters of every phy of every SAS
// port (`smartctl -x` or `-l sasphy`): invalid DWORDs, loss of DWORD
// synchronisation and phy reset problems. The port objects have numbered
// keys (scsi_sas_port_1, phy_0), and smartctl writes the counters' keys as
// their text labels ("Invalid DWORD count"), so keys are compared folded.
func sasLinkErrors(raw []byte, notes *[]string) (uint64, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return 0, false
	}
	var sum uint64
	seen := false
	for k, port := range top {
		if !strings.HasPrefix(k, "scsi_sas_port_") {
			continue
		}
		var phys map[string]json.RawMessage
		if json.Unmarshal(port, &phys) != nil {
			continue
		}
		for pk, phy := range phys {
			if !strings.HasPrefix(pk, "phy_") {
				continue
			}
			var fields map[string]jnum
			if json.Unmarshal(phy, &fields) != nil {
				continue
			}
			for fk, n := range fields {
				key := strings.ReplaceAll(strings.ToLower(fk), " ", "_")
				if strings.HasPrefix(key, "invalid_dword") || strings.HasPrefix(key, "loss_of_dword_sync") || strings.HasPrefix(key, "phy_reset_problem") {
					if v, ok := n.uint64(k+"."+pk+"."+fk, notes); ok {
						sum = addSat(sum, v)
						seen = true
					}
				}
			}
		}
	}
	return sum, seen
}

// addSat adds without wrapping around.
func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func joinVersion(v []jnum) string {
	parts := make([]string, 0, len(v))
	for _, n := range v {
		if x, ok := n.int64(); ok {
			parts = append(parts, strconv.FormatInt(x, 10))
		}
	}
	return strings.Join(parts, ".")
}

func joinVendorProduct(vendor, product string) string {
	vendor, product = strings.TrimSpace(vendor), strings.TrimSpace(product)
	if vendor == "" || product == "" {
		return vendor + product
	}
	return vendor + " " + product
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

// normaliseHexID turns "0x5000cca29063dc00" into "5000cca29063dc00" and
// drops values that are not hexadecimal or all zeros (elided or blanked in
// shared captures).
func normaliseHexID(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0x")
	if strings.Trim(s, "0") == "" {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return ""
		}
	}
	return s
}

// lineCol gives the 1-based line and column of the byte at offset off.
func lineCol(data []byte, off int) (line, col int) {
	if off > len(data) {
		off = len(data)
	}
	if off < 0 {
		off = 0
	}
	line = 1 + bytes.Count(data[:off], []byte{'\n'})
	col = off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// strayLines returns the non-empty lines of text printed before a JSON
// object, at most a few, each cut to a readable length.
func strayLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if len(out) == 8 {
			out = append(out, "dcagent: more text before the JSON object left out")
			break
		}
		if len(l) > 200 {
			l = l[:200] + "…"
		}
		out = append(out, l)
	}
	return out
}
