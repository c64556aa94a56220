// Package hal holds the normalised view of a device's hardware that every
// other part of the agent works with: drive snapshots, sensor readings and
// enclosure slots. The backends that fill these types live in the
// sub-packages (hwmon, smartctl, enclosure) and each has a simulated twin in
// hal/sim, so tests and the simulator exercise the same code paths as a
// device does.
//
// A value a drive or sensor does not report is absent (a nil pointer), never
// zero: "0 reallocated sectors" and "the drive does not say" are different
// facts to a person deciding whether to ship a part.
package hal

import "time"

// Protocol is the drive's command set as smartctl reports it.
type Protocol string

const (
	ProtocolATA  Protocol = "ATA"
	ProtocolSCSI Protocol = "SCSI"
	ProtocolNVMe Protocol = "NVMe"
)

// DriveSnapshot is one reading of one drive, normalised across protocols
// and smartctl versions. JSON keys are a contract for scripts
// (`dcagent drive inspect --json`).
type DriveSnapshot struct {
	// Source says where the snapshot came from: a device path or a file.
	Source   string   `json:"source,omitempty"`
	Protocol Protocol `json:"protocol,omitempty"`
	Model    string   `json:"model,omitempty"`
	Serial   string   `json:"serial,omitempty"`
	Firmware string   `json:"firmware,omitempty"`
	// WWN, when reported, identifies the drive across slots and hosts.
	WWN           string  `json:"wwn,omitempty"`
	CapacityBytes *uint64 `json:"capacity_bytes,omitempty"`
	// RotationRPM is 0 for solid state when the drive says so; absent when unknown.
	RotationRPM  *int     `json:"rotation_rpm,omitempty"`
	SmartPassed  *bool    `json:"smart_passed,omitempty"`
	PowerOnHours *uint64  `json:"power_on_hours,omitempty"`
	TemperatureC *float64 `json:"temperature_c,omitempty"`
	// Temperature limits the drive itself reports (NVMe warning/critical
	// composite thresholds, SCSI trip, ATA attribute 194's limits).
	TempWarnC *float64 `json:"temperature_warn_c,omitempty"`
	TempCritC *float64 `json:"temperature_crit_c,omitempty"`

	Counters Counters `json:"counters"`

	// Attributes lists ATA attributes whose normalised value is at or below
	// threshold now (FailingNow) or was in the past (FailedPast).
	FailingAttributes []AttributeFailure `json:"failing_attributes,omitempty"`

	// ExitStatus is smartctl's exit status bitmask, kept as is; see
	// smartctl.ExitStatus for its meaning. Absent when read from text.
	ExitStatus *int `json:"smartctl_exit_status,omitempty"`
	// SmartctlVersion is e.g. "7.3".
	SmartctlVersion string `json:"smartctl_version,omitempty"`
	// Messages holds smartctl's own warnings and errors, verbatim.
	Messages []string `json:"messages,omitempty"`
	// Time is when the snapshot was taken (from the capture when it says).
	Time time.Time `json:"time,omitzero"`
}

// Counters are the failure-predicting counters. Each is absent when the
// drive does not report it.
type Counters struct {
	// ATA attributes 5, 197, 198, 187, 188, 199, 10, 184.
	ReallocatedSectors    *uint64 `json:"reallocated_sectors,omitempty"`
	PendingSectors        *uint64 `json:"pending_sectors,omitempty"`
	OfflineUncorrectable  *uint64 `json:"offline_uncorrectable,omitempty"`
	ReportedUncorrectable *uint64 `json:"reported_uncorrectable,omitempty"`
	CommandTimeouts       *uint64 `json:"command_timeouts,omitempty"`
	UDMACRCErrors         *uint64 `json:"udma_crc_errors,omitempty"`
	SpinRetries           *uint64 `json:"spin_retries,omitempty"`
	EndToEndErrors        *uint64 `json:"end_to_end_errors,omitempty"`
	// NVMe health log.
	CriticalWarning         *uint64 `json:"critical_warning,omitempty"`
	MediaErrors             *uint64 `json:"media_errors,omitempty"`
	PercentageUsed          *uint64 `json:"percentage_used,omitempty"`
	AvailableSpare          *uint64 `json:"available_spare,omitempty"`
	AvailableSpareThreshold *uint64 `json:"available_spare_threshold,omitempty"`
	// SCSI / SAS.
	GrownDefects      *uint64 `json:"grown_defects,omitempty"`
	NonMediumErrors   *uint64 `json:"non_medium_errors,omitempty"`
	UncorrectedErrors *uint64 `json:"uncorrected_errors,omitempty"`
	// SAS link health summed over the drive's phys (invalid DWORDs, loss of
	// DWORD sync, phy resets), when the sasphy log was read.
	LinkErrors *uint64 `json:"link_errors,omitempty"`
}

// AttributeFailure is an ATA attribute at or below its threshold.
type AttributeFailure struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	When   string `json:"when"` // "now" or "past"
	Value  int    `json:"value"`
	Thresh int    `json:"thresh"`
	Raw    uint64 `json:"raw"`
}

// SensorKind is the hwmon sensor class.
type SensorKind string

const (
	SensorTemp    SensorKind = "temp"
	SensorFan     SensorKind = "fan"
	SensorVoltage SensorKind = "in"
	SensorCurrent SensorKind = "curr"
	SensorPower   SensorKind = "power"
)

// Sensor is one hwmon channel read at one moment, in SI units (°C, RPM, V,
// A, W). Limits are nil when the chip does not expose them.
type Sensor struct {
	Chip       string     `json:"chip"`        // hwmon "name"
	DevicePath string     `json:"device_path"` // tells chips with the same name apart
	Kind       SensorKind `json:"kind"`
	Index      int        `json:"index"`
	Label      string     `json:"label,omitempty"`
	Value      *float64   `json:"value,omitempty"`
	Min        *float64   `json:"min,omitempty"`
	Max        *float64   `json:"max,omitempty"`
	Crit       *float64   `json:"crit,omitempty"`
	Alarm      bool       `json:"alarm,omitempty"`
	// Unreadable is the reason the value could not be read ("" when it was).
	Unreadable string `json:"unreadable,omitempty"`
}

// Slot is one enclosure (backplane) slot.
type Slot struct {
	Enclosure string `json:"enclosure"` // enclosure id, e.g. "0:0:1:0"
	Slot      string `json:"slot"`      // slot name as the enclosure gives it
	Status    string `json:"status,omitempty"`
	Fault     bool   `json:"fault,omitempty"`
	Locate    bool   `json:"locate,omitempty"`
	Active    bool   `json:"active,omitempty"`
	// Device is the block device in the slot ("sda"), "" when empty.
	Device string `json:"device,omitempty"`
}

// U64 returns a pointer to v, for building snapshots.
func U64(v uint64) *uint64 { return &v }

// F64 returns a pointer to v.
func F64(v float64) *float64 { return &v }
