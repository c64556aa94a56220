package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// stateFormat is the version of state.json; a simulator refuses a state
// written by a newer one.
const stateFormat = 1

// State is everything the simulator needs to render the tree and answer as
// smartctl at any step. It lives in <root>/state/state.json; every value
// the sim shows is a pure function of it, so a step replays identically.
type State struct {
	Format int `json:"format"`
	// Step is how many steps the hardware has been advanced.
	Step int `json:"step"`
	// Seed makes the small sensor jitter repeatable.
	Seed int64 `json:"seed"`
	// Start is the simulated time of step 0; StepDuration is the simulated
	// time one step stands for (drive reports carry Start+Step*StepDuration).
	Start        time.Time `json:"start"`
	StepDuration Duration  `json:"step_duration"`
	// Onset is the first step at which a degrading drive and a backplane
	// fault change anything; the steps before it are a healthy baseline.
	Onset int `json:"onset"`
	// MadeUp is true when no captures were found and the drives are the
	// simulator's own invention.
	MadeUp bool `json:"made_up"`
	// Captures is the folder the drive reports came from ("" when made up).
	Captures string `json:"captures,omitempty"`
	// SmartctlCommand is what the wrapper script runs (before its own
	// --state argument and smartctl's arguments).
	SmartctlCommand []string `json:"smartctl_command"`

	Board     Board         `json:"board"`
	Enclosure EnclosureSpec `json:"enclosure"`
	Drives    []Drive       `json:"drives"`
	Events    []Event       `json:"events,omitempty"`
}

// Board is the simulated main board's sensors.
type Board struct {
	CPUs  int `json:"cpus"`  // CPU packages, each a coretemp chip
	Cores int `json:"cores"` // cores per package
	Fans  int `json:"fans"`  // system fans on the Super-I/O chip
	PSUs  int `json:"psus"`  // PMBus power supplies
}

// EnclosureSpec is the simulated SES backplane.
type EnclosureSpec struct {
	// ID is the SES device's SCSI address, the enclosure's class name.
	ID        string `json:"id"`
	LogicalID string `json:"logical_id"`
	Slots     int    `json:"slots"`
}

// Role is what a drive does over time.
type Role string

const (
	RoleHealthy Role = "healthy"
	// RoleDegrading: media counters grow (ATA reallocated/pending sectors,
	// SAS grown defects, NVMe media errors and spare), or a series of
	// captures is replayed.
	RoleDegrading Role = "degrading"
	// RoleBackplane: interface errors grow (ATA 199 UDMA CRC, SAS invalid
	// DWORDs and loss of sync) while media counters stay flat.
	RoleBackplane Role = "backplane"
)

// Drive is one simulated drive.
type Drive struct {
	// Name is the kernel name ("sda", "nvme0") and Device its path.
	Name   string `json:"name"`
	Device string `json:"device"`
	// Type is the smartctl -d type ("sat", "scsi", "nvme") and Protocol
	// smartctl's protocol name (ATA, SCSI, NVMe).
	Type     string `json:"type"`
	Protocol string `json:"protocol"`
	// Slot is the enclosure slot (0-based), -1 for drives outside it (NVMe).
	Slot int `json:"slot"`
	// SCSIAddr is the drive's host:channel:target:lun in the tree.
	SCSIAddr string `json:"scsi_addr,omitempty"`
	Model    string `json:"model"`
	Serial   string `json:"serial"`
	// Base is the report the drive starts from, a file in the state dir;
	// Series, when set, replaces it step by step (one file per step, the
	// last held).
	Base   string   `json:"base"`
	Series []string `json:"series,omitempty"`
	// Source says where the report came from (a capture path or "made up").
	Source string `json:"source"`
	Role   Role   `json:"role"`
}

// Event changes the board or the enclosure from a step on.
type Event struct {
	Step   int       `json:"step"`
	Kind   EventKind `json:"kind"`
	Target int       `json:"target"`
}

// Duration is a time.Duration that reads and writes as "1h0m0s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Now is the simulated time at the current step.
func (s *State) Now() time.Time { return s.At(s.Step) }

// At is the simulated time at a step.
func (s *State) At(step int) time.Time {
	return s.Start.Add(time.Duration(step) * time.Duration(s.StepDuration))
}

func statePath(stateDir string) string { return filepath.Join(stateDir, "state.json") }

// loadState reads a state dir's state.json.
func loadState(stateDir string) (*State, error) {
	b, err := os.ReadFile(statePath(stateDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sim: no simulated hardware at %s (no state.json): run `dcsim hardware --root DIR` first", stateDir)
		}
		return nil, fmt.Errorf("sim: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("sim: %s: %w", statePath(stateDir), err)
	}
	if s.Format != stateFormat {
		return nil, fmt.Errorf("sim: %s has format %d; this simulator reads format %d", statePath(stateDir), s.Format, stateFormat)
	}
	return &s, nil
}

// saveState writes state.json atomically, so the smartctl stand-in never
// reads half a file.
func saveState(stateDir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(statePath(stateDir), append(b, '\n'), 0o644)
}

// writeAtomic writes a file through a temporary name in the same
// directory and a rename. The temporary name starts with a dot, which the
// hwmon and enclosure readers skip.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// lockState takes an exclusive lock on the state dir so that two steppers
// (a tick loop and a `step` command) cannot interleave.
func lockState(stateDir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("sim: lock %s: %w", f.Name(), err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
