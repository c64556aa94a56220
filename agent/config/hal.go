package config

import "time"

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
}

func (h *HAL) setDefaults() {
	h.SysfsRoot = "/"
	h.Smartctl = "smartctl"
	h.SmartctlTimeout = 60 * time.Second
	h.SensorInterval = time.Minute
	h.DriveInterval = 30 * time.Minute
}
