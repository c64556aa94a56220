package config

import (
	"path"
	"path/filepath"
	"strings"
	"time"
)

// HAL configures how hardware is read.
type HAL struct {
	// SysfsRoot is prepended to /sys paths; tests and the simulator point it
	// at a generated tree.
	SysfsRoot string `conf:"sysfs_root"`
	// Smartctl is the smartctl program to run.
	Smartctl        string        `conf:"smartctl"`
	SmartctlTimeout time.Duration `conf:"smartctl_timeout"`
	// Drives lists device[:type] pairs separated by spaces (a type may hold
	// a comma), e.g. "/dev/sda:sat /dev/bus/0:megaraid,14".
	// Empty means every drive `smartctl --scan` finds.
	Drives []string `conf:"drives" sep:"space"`
	// SensorInterval and DriveInterval are how often each is read.
	SensorInterval time.Duration `conf:"sensor_interval"`
	DriveInterval  time.Duration `conf:"drive_interval"`
	// IgnoreSensors lists hwmon sensors to leave out of alarms and
	// diagnostics, as chip/sensor patterns (shell-style * and ?), where
	// sensor is the channel ("in1", "fan3") or its label: e.g.
	// "nct6779/in1 nct6779/fan5 pmbus/vin". Boards often wire a Super-I/O
	// chip's spare inputs to nothing, and those read garbage and raise
	// alarms forever.
	IgnoreSensors []string `conf:"ignore_sensors" sep:"space"`
}

func (h *HAL) setDefaults() {
	h.SysfsRoot = "/"
	h.Smartctl = "smartctl"
	h.SmartctlTimeout = 60 * time.Second
	h.SensorInterval = time.Minute
	h.DriveInterval = 30 * time.Minute
}

func (h *HAL) validate() error {
	if h.SysfsRoot == "" || !filepath.IsAbs(h.SysfsRoot) {
		return keyErr("sysfs_root", "%q is not an absolute path (write / on a device, or the simulator's root)", h.SysfsRoot)
	}
	if strings.TrimSpace(h.Smartctl) == "" {
		return keyErr("smartctl", "is empty; write smartctl, or the program's full path")
	}
	if h.SmartctlTimeout < time.Second {
		return keyErr("smartctl_timeout", "%s is too short for a drive to answer; use at least 1s (60s is the default)", h.SmartctlTimeout)
	}
	// Zero would spin the readers; the simulator and the demo use short
	// intervals, a device the defaults.
	if h.SensorInterval < 100*time.Millisecond {
		return keyErr("sensor_interval", "%s is too short; use at least 100ms (1m is the default)", h.SensorInterval)
	}
	if h.DriveInterval < time.Second {
		return keyErr("drive_interval", "%s is too short; use at least 1s (30m is the default; reading SMART very often gains nothing on a real drive)", h.DriveInterval)
	}
	for _, d := range h.Drives {
		if strings.HasPrefix(d, "-") || strings.HasSuffix(d, ":") || strings.HasPrefix(d, ":") {
			return keyErr("drives", "%q is not device[:type], e.g. /dev/sda:sat", d)
		}
	}
	for _, p := range h.IgnoreSensors {
		chip, sensor, ok := strings.Cut(p, "/")
		if !ok || chip == "" || sensor == "" {
			return keyErr("ignore_sensors", "%q is not chip/sensor, e.g. nct6779/in1", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return keyErr("ignore_sensors", "%q is not a valid pattern: %v", p, err)
		}
	}
	return nil
}
