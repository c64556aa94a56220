package event

import (
	"sort"
)

// Kind is the kind of value a payload field holds.
type Kind string

const (
	KindString Kind = "string"
	KindInt    Kind = "integer"
	KindFloat  Kind = "number" // an integer is accepted too
	KindBool   Kind = "boolean"
	KindTime   Kind = "time"   // RFC 3339 text or a time.Time
	KindBytes  Kind = "bytes"  // raw bytes (file chunks)
	KindObject Kind = "object" // a map whose keys are Fields
	KindList   Kind = "list"   // a list whose elements are Elem
)

// Field is one reportable payload field.
type Field struct {
	Name        string  `json:"name"`
	Kind        Kind    `json:"kind"`
	Description string  `json:"description"`
	Fields      []Field `json:"fields,omitempty"` // for KindObject, and for a list of objects
	Elem        Kind    `json:"elem,omitempty"`   // for KindList: the kind of each element
	// MaxLen bounds a string's or bytes' length, or a list's elements;
	// 0 means the defaults (1 KiB for text, 1000 elements for lists).
	MaxLen int `json:"max_len,omitempty"`
}

// TypeSpec declares one event type and every field its payload may carry.
type TypeSpec struct {
	Type        Type    `json:"type"`
	Description string  `json:"description"`
	Fields      []Field `json:"fields"`
}

// Envelope lists the fields every event carries besides its payload.
// SystemID is the only fact about the customer that leaves the device.
var Envelope = []Field{
	{Name: "id", Kind: KindString, Description: "unique, time-ordered event id (26 characters, Crockford base32; the first 48 bits are the creation time in milliseconds)"},
	{Name: "type", Kind: KindString, Description: "one of the event types below"},
	{Name: "severity", Kind: KindInt, Description: "1 info, 2 notice, 3 warning, 4 error, 5 critical"},
	{Name: "created", Kind: KindTime, Description: "when the device made the event"},
	{Name: "system_id", Kind: KindString, Description: "the device's system ID: the only fact about the customer that leaves the device"},
}

const (
	defaultMaxText = 1 << 10
	defaultMaxList = 1000
)

// Reusable field groups.
var (
	sensorFields = []Field{
		{Name: "chip", Kind: KindString, Description: "hardware monitor chip name (hwmon name)"},
		{Name: "device_path", Kind: KindString, Description: "sysfs device path that tells chips of the same name apart"},
		{Name: "kind", Kind: KindString, Description: "temp, fan, in (voltage), curr, power"},
		{Name: "index", Kind: KindInt, Description: "channel number on the chip"},
		{Name: "label", Kind: KindString, Description: "channel label given by the chip or board"},
		{Name: "value", Kind: KindFloat, Description: "reading in SI units (°C, RPM, V, A, W)"},
		{Name: "min", Kind: KindFloat, Description: "chip's lower limit"},
		{Name: "max", Kind: KindFloat, Description: "chip's upper limit"},
		{Name: "crit", Kind: KindFloat, Description: "chip's critical limit"},
		{Name: "alarm", Kind: KindBool, Description: "chip's alarm flag"},
		{Name: "unreadable", Kind: KindString, Description: "why the value could not be read"},
	}
	counterFields = []Field{
		{Name: "reallocated_sectors", Kind: KindInt, Description: "ATA 5"},
		{Name: "pending_sectors", Kind: KindInt, Description: "ATA 197"},
		{Name: "offline_uncorrectable", Kind: KindInt, Description: "ATA 198"},
		{Name: "reported_uncorrectable", Kind: KindInt, Description: "ATA 187"},
		{Name: "command_timeouts", Kind: KindInt, Description: "ATA 188"},
		{Name: "udma_crc_errors", Kind: KindInt, Description: "ATA 199, interface CRC errors"},
		{Name: "spin_retries", Kind: KindInt, Description: "ATA 10"},
		{Name: "end_to_end_errors", Kind: KindInt, Description: "ATA 184"},
		{Name: "critical_warning", Kind: KindInt, Description: "NVMe critical warning bits"},
		{Name: "media_errors", Kind: KindInt, Description: "NVMe media and data integrity errors"},
		{Name: "percentage_used", Kind: KindInt, Description: "NVMe endurance used, percent"},
		{Name: "available_spare", Kind: KindInt, Description: "NVMe available spare, percent"},
		{Name: "available_spare_threshold", Kind: KindInt, Description: "NVMe spare threshold, percent"},
		{Name: "grown_defects", Kind: KindInt, Description: "SCSI grown defect list length"},
		{Name: "non_medium_errors", Kind: KindInt, Description: "SCSI non-medium errors"},
		{Name: "uncorrected_errors", Kind: KindInt, Description: "SCSI uncorrected read/write/verify errors"},
		{Name: "link_errors", Kind: KindInt, Description: "SAS phy errors summed (invalid DWORD, loss of sync, phy resets)"},
	}
	driveFields = []Field{
		{Name: "serial", Kind: KindString, Description: "drive serial number (a hardware fact, not a customer fact)"},
		{Name: "model", Kind: KindString, Description: "drive model"},
		{Name: "firmware", Kind: KindString, Description: "drive firmware revision"},
		{Name: "wwn", Kind: KindString, Description: "drive world wide name"},
		{Name: "protocol", Kind: KindString, Description: "ATA, SCSI or NVMe"},
		{Name: "slot", Kind: KindString, Description: "enclosure slot the drive sits in"},
		{Name: "capacity_bytes", Kind: KindInt, Description: "drive capacity"},
		{Name: "rotation_rpm", Kind: KindInt, Description: "spindle speed, 0 for solid state"},
		{Name: "smart_passed", Kind: KindBool, Description: "the drive's own overall health verdict"},
		{Name: "power_on_hours", Kind: KindInt, Description: "hours powered on"},
		{Name: "temperature_c", Kind: KindFloat, Description: "drive temperature"},
		{Name: "counters", Kind: KindObject, Description: "failure-predicting counters the drive reports", Fields: counterFields},
		{Name: "risk", Kind: KindString, Description: "predicted risk: ok, watch, warn, fail"},
		{Name: "previous_risk", Kind: KindString, Description: "risk before this change"},
		{Name: "reasons", Kind: KindList, Elem: KindString, Description: "why the risk is what it is, in plain words"},
	}
	slotFields = []Field{
		{Name: "enclosure", Kind: KindString, Description: "enclosure id"},
		{Name: "slot", Kind: KindString, Description: "slot name"},
		{Name: "status", Kind: KindString, Description: "slot status as the enclosure reports it"},
		{Name: "fault", Kind: KindBool, Description: "fault indicator"},
		{Name: "device", Kind: KindString, Description: "block device name in the slot (sda)"},
	}
)

// registry is the reportable-items list: every event type and every field
// its payload may carry. Changing it changes what leaves customers'
// devices; `dcagent reportable-items` prints it for them to review.
var registry = []TypeSpec{
	{
		Type:        TypeAlert,
		Description: "a monitored state changed: a sensor crossed a limit, a drive's predicted risk rose, a backplane or cable looks faulty, the agent itself is in trouble",
		Fields: []Field{
			{Name: "source", Kind: KindString, Description: "what raised it: sensor, drive, backplane, enclosure, certificate, spool, agent"},
			{Name: "condition", Kind: KindString, Description: "machine name of the condition, e.g. over_temperature, fan_stopped, drive_risk, link_errors"},
			{Name: "state", Kind: KindString, Description: "raised or cleared"},
			{Name: "message", Kind: KindString, Description: "the condition in plain words"},
			{Name: "value", Kind: KindFloat, Description: "the reading that crossed the limit"},
			{Name: "threshold", Kind: KindFloat, Description: "the limit it crossed"},
			{Name: "unit", Kind: KindString, Description: "unit of value and threshold"},
			{Name: "suppressed", Kind: KindInt, Description: "how many repeats of this alert the rate limit held back"},
			{Name: "sensor", Kind: KindObject, Description: "the sensor concerned", Fields: sensorFields},
			{Name: "drive", Kind: KindObject, Description: "the drive concerned", Fields: driveFields},
			{Name: "suspect", Kind: KindString, Description: "the part to replace: drive, backplane or cable"},
			{Name: "enclosure", Kind: KindString, Description: "enclosure id of the backplane concerned"},
			{Name: "drives", Kind: KindList, Elem: KindObject, Fields: driveFields, Description: "drives involved in a backplane or cable finding"},
			{Name: "slot", Kind: KindObject, Description: "the enclosure slot concerned", Fields: slotFields},
			{Name: "reasons", Kind: KindList, Elem: KindString, Description: "why, in plain words"},
		},
	},
	{
		Type:        TypeHealthReport,
		Description: "the full state of the hardware and the agent, every 24 hours and on request",
		Fields: []Field{
			{Name: "agent_version", Kind: KindString, Description: "dcagent version"},
			{Name: "uptime_seconds", Kind: KindInt, Description: "seconds since the agent started"},
			{Name: "device_type", Kind: KindString, Description: "device type from configuration (server, storage, ...)"},
			{Name: "model", Kind: KindString, Description: "vendor model name of the device"},
			{Name: "serial", Kind: KindString, Description: "vendor serial number of the device"},
			{Name: "sensors", Kind: KindList, Elem: KindObject, Fields: sensorFields, Description: "every sensor reading"},
			{Name: "drives", Kind: KindList, Elem: KindObject, Fields: driveFields, Description: "every drive with its counters and risk"},
			{Name: "slots", Kind: KindList, Elem: KindObject, Fields: slotFields, Description: "every enclosure slot"},
			{Name: "spool", Kind: KindObject, Description: "the agent's event spool: counts only, since the agent started", Fields: []Field{
				{Name: "backlog", Kind: KindInt, Description: "events waiting to be sent, those being sent included"},
				{Name: "backlog_bytes", Kind: KindInt, Description: "bytes the spool's files take on the device's disk"},
				{Name: "dropped", Kind: KindInt, Description: "low-severity events dropped to make room for more important ones, all severities summed"},
				{Name: "quarantined", Kind: KindInt, Description: "damaged spool files set aside"},
				{Name: "refused", Kind: KindInt, Description: "new events the spool turned away because it was full of more important ones"},
			}},
			{Name: "certificate_expires", Kind: KindTime, Description: "when the device certificate expires"},
		},
	},
	{
		Type:        TypeConfiguration,
		Description: "the agent's own settings that matter to support: intervals and enabled features, never addresses, names or labels of the customer",
		Fields: []Field{
			{Name: "agent_version", Kind: KindString, Description: "dcagent version"},
			{Name: "features", Kind: KindList, Elem: KindString, Description: "enabled features (heartbeat, remote_access, smtp_failover, ...)"},
			{Name: "heartbeat_interval_seconds", Kind: KindInt, Description: "heartbeat interval"},
			{Name: "health_report_interval_seconds", Kind: KindInt, Description: "full health report interval"},
			{Name: "changed_keys", Kind: KindList, Elem: KindString, Description: "names (section.key) of settings that changed, without their values"},
		},
	},
	{
		Type:        TypeLicensing,
		Description: "use of licensed features, counted on the device",
		Fields: []Field{
			{Name: "feature", Kind: KindString, Description: "licensed feature name"},
			{Name: "licensed", Kind: KindInt, Description: "units licensed"},
			{Name: "used", Kind: KindInt, Description: "units in use"},
			{Name: "unit", Kind: KindString, Description: "what a unit is (drives, TB, ports)"},
			{Name: "period_start", Kind: KindTime, Description: "start of the counting period"},
			{Name: "period_end", Kind: KindTime, Description: "end of the counting period"},
		},
	},
	{
		Type:        TypeCommandResult,
		Description: "the outcome of work the backend asked for: a diagnostic script, a configuration change, a remote session",
		Fields: []Field{
			{Name: "work_id", Kind: KindString, Description: "id of the work item"},
			{Name: "kind", Kind: KindString, Description: "kind of work item"},
			{Name: "ok", Kind: KindBool, Description: "whether it succeeded"},
			{Name: "detail", Kind: KindString, Description: "result or refusal in plain words"},
			{Name: "exit_code", Kind: KindInt, Description: "a script's exit status"},
			{Name: "output", Kind: KindString, MaxLen: 256 << 10, Description: "a vendor-signed diagnostic script's output, truncated at 256 KiB"},
			{Name: "duration_ms", Kind: KindInt, Description: "how long it ran"},
			{Name: "session_id", Kind: KindString, Description: "remote session id"},
			{Name: "service_request", Kind: KindString, Description: "the vendor's service-request number"},
		},
	},
	{
		Type:        TypeFileChunk,
		Description: "a piece of a file the backend asked for, from a path the customer's policy allows",
		Fields: []Field{
			{Name: "transfer_id", Kind: KindString, Description: "id of the file transfer"},
			{Name: "path", Kind: KindString, Description: "the allowed path on the device"},
			{Name: "index", Kind: KindInt, Description: "chunk number, from 0"},
			{Name: "total", Kind: KindInt, Description: "number of chunks"},
			{Name: "size", Kind: KindInt, Description: "whole file size in bytes"},
			{Name: "sha256", Kind: KindString, Description: "hex SHA-256 of this chunk"},
			{Name: "file_sha256", Kind: KindString, Description: "hex SHA-256 of the whole file (in the last chunk)"},
			{Name: "data", Kind: KindBytes, MaxLen: 256 << 10, Description: "the chunk's bytes, at most 256 KiB"},
		},
	},
}

var registryByType = func() map[Type]*TypeSpec {
	m := make(map[Type]*TypeSpec, len(registry))
	for i := range registry {
		m[registry[i].Type] = &registry[i]
	}
	return m
}()

// Registry returns the reportable-items list, sorted by type. The slice is
// a copy; the Fields inside are shared and must not be changed.
func Registry() []TypeSpec {
	out := append([]TypeSpec(nil), registry...)
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// Spec returns the declaration of one type.
func Spec(t Type) (TypeSpec, bool) {
	s, ok := registryByType[t]
	if !ok {
		return TypeSpec{}, false
	}
	return *s, true
}
