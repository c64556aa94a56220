package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/enclosure"
	"github.com/dcagent/dcagent/hal/hwmon"
	"github.com/dcagent/dcagent/hal/smartctl"
)

// SensorReader reads every sensor once. An error with readings means some
// chips could not be read; the readings are still used.
type SensorReader interface {
	ReadSensors(ctx context.Context) ([]hal.Sensor, error)
}

// DriveReader reads every drive once. An error with snapshots means some
// drives could not be read; the others are still used.
type DriveReader interface {
	ReadDrives(ctx context.Context) ([]hal.DriveSnapshot, error)
}

// SlotReader reads every enclosure slot once. A device without an
// enclosure returns no slots and no error.
type SlotReader interface {
	ReadSlots(ctx context.Context) ([]hal.Slot, error)
}

// Sources are where the monitor reads the hardware. A nil reader is a
// source the device does not have.
type Sources struct {
	Sensors SensorReader
	Drives  DriveReader
	Slots   SlotReader
}

// HardwareSources reads the real hardware as the [hal] section says:
// hwmon and the SES enclosures under sysfs_root, and drives through
// smartctl (the configured list, or what `smartctl --scan` finds).
func HardwareSources(h config.HAL, log *slog.Logger) Sources {
	return Sources{
		Sensors: &HwmonSensors{Reader: &hwmon.Reader{Root: h.SysfsRoot, Logger: log}},
		Drives: &SmartctlDrives{
			Runner:     &smartctl.Runner{Program: h.Smartctl, Timeout: h.SmartctlTimeout, Logger: log},
			Configured: h.Drives,
		},
		Slots: &EnclosureSlots{Reader: &enclosure.Reader{Root: h.SysfsRoot}},
	}
}

// HwmonSensors reads sensors through hal/hwmon.
type HwmonSensors struct{ Reader *hwmon.Reader }

func (s *HwmonSensors) ReadSensors(ctx context.Context) ([]hal.Sensor, error) {
	r, err := s.Reader.Read(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range r.Errors() {
		errs = append(errs, e)
	}
	return r.HAL(), errors.Join(errs...)
}

// EnclosureSlots reads slots through hal/enclosure.
type EnclosureSlots struct{ Reader *enclosure.Reader }

func (s *EnclosureSlots) ReadSlots(ctx context.Context) ([]hal.Slot, error) {
	encs, err := s.Reader.Read(ctx)
	if errors.Is(err, enclosure.ErrNoEnclosures) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var errs []error
	for i := range encs {
		if encs[i].Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", encs[i].Describe(), encs[i].Err))
		}
	}
	return enclosure.HAL(encs), errors.Join(errs...)
}

// SmartctlDrives reads drives through hal/smartctl.
type SmartctlDrives struct {
	Runner *smartctl.Runner
	// Configured is [hal] drives; empty means `smartctl --scan`.
	Configured []string
}

func (s *SmartctlDrives) ReadDrives(ctx context.Context) ([]hal.DriveSnapshot, error) {
	specs, err := s.Runner.Drives(ctx, s.Configured)
	if err != nil {
		return nil, err
	}
	var out []hal.DriveSnapshot
	var errs []error
	for _, spec := range specs {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		snap, err := s.Runner.Read(ctx, spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, *snap)
	}
	return out, errors.Join(errs...)
}

// deviceName is the kernel name of the block device a snapshot was read
// from, as an enclosure slot names it: "/dev/sda:sat" and "/dev/sda" give
// "sda". It is "" for sources that name no block device.
func deviceName(source string) string {
	if i := strings.LastIndexByte(source, ':'); i >= 0 && !strings.Contains(source[i+1:], "/") {
		source = source[:i]
	}
	if !strings.HasPrefix(source, "/dev/") || strings.HasPrefix(source, "/dev/bus/") {
		return ""
	}
	return filepath.Base(source)
}
