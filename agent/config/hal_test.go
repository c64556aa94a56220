package config

import (
	"strings"
	"testing"
	"time"
)

func TestHALSection(t *testing.T) {
	c, err := Parse("f.conf", []byte("[device]\nsystem_id = X\n[hal]\nsysfs_root = /tmp/sim\nsmartctl = /tmp/sim/bin/smartctl\nsmartctl_timeout = 5s\ndrives = /dev/sda:sat /dev/bus/0:megaraid,14\nsensor_interval = 2s\ndrive_interval = 5s\nignore_sensors = nct6779/in1 pmbus/vin\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := c.HAL
	if h.SysfsRoot != "/tmp/sim" || h.Smartctl != "/tmp/sim/bin/smartctl" || h.SmartctlTimeout != 5*time.Second || h.DriveInterval != 5*time.Second {
		t.Errorf("hal = %+v", h)
	}
	if strings.Join(h.IgnoreSensors, "|") != "nct6779/in1|pmbus/vin" {
		t.Errorf("ignore_sensors = %q", h.IgnoreSensors)
	}
	d := Default().HAL
	if d.SysfsRoot != "/" || d.Smartctl != "smartctl" || d.SensorInterval != time.Minute || d.DriveInterval != 30*time.Minute {
		t.Errorf("defaults = %+v", d)
	}
}

func TestHALValidation(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"sysfs_root = sim", "[hal] sysfs_root: \"sim\" is not an absolute path"},
		{"sysfs_root = ", "[hal] sysfs_root"},
		{"smartctl = ", "[hal] smartctl: is empty"},
		{"smartctl_timeout = 10ms", "[hal] smartctl_timeout"},
		{"sensor_interval = 0s", "[hal] sensor_interval"},
		{"drive_interval = 10ms", "[hal] drive_interval"},
		{"drives = /dev/sda: /dev/sdb", "[hal] drives: \"/dev/sda:\""},
		{"drives = -d", "[hal] drives"},
		{"ignore_sensors = nct6779", "[hal] ignore_sensors: \"nct6779\" is not chip/sensor"},
		{"ignore_sensors = nct6779/[", "not a valid pattern"},
	} {
		_, err := Parse("f.conf", []byte("[device]\nsystem_id = X\n[hal]\n"+tc.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "f.conf:4") {
			t.Errorf("%q: err = %v, want %q at f.conf:4", tc.line, err, tc.want)
		}
	}
}
