package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
# a device configuration
[device]
system_id = SYS-0001
model = R750
labels = location=dc1, org=storage-team
state_dir = /tmp/dcagent-state

[backend]
url = https://127.0.0.1:8443
heartbeat_addr = 127.0.0.1:8444

[hal]
drives = /dev/sda:sat /dev/bus/0:megaraid,14
drive_interval = 10m

[spool]
max_bytes = 16MiB
max_events = 500

[log]
level = debug
`

func TestParseGood(t *testing.T) {
	c, err := Parse("dcagent.conf", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Device.SystemID != "SYS-0001" || c.Device.Model != "R750" {
		t.Errorf("device = %+v", c.Device)
	}
	if c.Device.Labels["location"] != "dc1" || c.Device.Labels["org"] != "storage-team" {
		t.Errorf("labels = %v", c.Device.Labels)
	}
	// Drives are separated by spaces so that a type keeps its comma.
	if got := strings.Join(c.HAL.Drives, "|"); got != "/dev/sda:sat|/dev/bus/0:megaraid,14" {
		t.Errorf("drives = %q", got)
	}
	if c.HAL.DriveInterval != 10*time.Minute {
		t.Errorf("drive_interval = %v", c.HAL.DriveInterval)
	}
	if c.Spool.MaxBytes != 16<<20 || c.Spool.MaxEvents != 500 {
		t.Errorf("spool = %+v", c.Spool)
	}
	// Defaults survive where the file is silent.
	if c.Heartbeat.Interval != time.Minute || c.Identity.RenewAt != 2.0/3.0 {
		t.Errorf("defaults lost: %+v %+v", c.Heartbeat, c.Identity)
	}
	if c.Log.Level != "debug" {
		t.Errorf("log level = %q", c.Log.Level)
	}
}

func TestParseErrorsNameTheFault(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"unknown key", "[device]\nsystem_id = X\nsystem_idd = Y\n", []string{"f.conf:3", "[device] system_idd", "unknown key"}},
		{"unknown section", "[devices]\n", []string{"f.conf:1", "unknown section"}},
		{"bad duration", "[device]\nsystem_id = X\n[hal]\ndrive_interval = 10 minutes\n", []string{"f.conf:4", "[hal] drive_interval", "not a duration"}},
		{"negative duration", "[device]\nsystem_id = X\n[hal]\ndrive_interval = -1s\n", []string{"negative"}},
		{"bad number", "[device]\nsystem_id = X\n[spool]\nmax_events = many\n", []string{"[spool] max_events", "not a whole number"}},
		{"overflow", "[device]\nsystem_id = X\n[spool]\nmax_bytes = 99999999999999999GiB\n", []string{"max_bytes"}},
		{"bad bool", "[device]\nsystem_id = X\n[audit]\nsyslog_tls = yes please\n", []string{"not true or false"}},
		{"no equals", "[device]\nsystem_id\n", []string{"f.conf:2", "expected key = value"}},
		{"outside section", "system_id = X\n", []string{"outside any [section]"}},
		{"twice", "[device]\nsystem_id = X\nsystem_id = Y\n", []string{"set twice (first on line 2)"}},
		{"unclosed header", "[device\n", []string{"no closing ]"}},
		{"missing system id", "[device]\nmodel = M\n", []string{"[device] system_id", "must be set"}},
		{"validation names line", "[device]\nsystem_id = X\n[log]\nlevel = loud\n", []string{"f.conf:4", "[log] level", "loud"}},
		{"bad map", "[device]\nsystem_id = X\nlabels = dc1\n", []string{"not name=value"}},
		{"renew fraction", "[device]\nsystem_id = X\n[identity]\nrenew_at = 1.5\n", []string{"renew_at", "between 0 and 1"}},
		{"comment after a value", "[device]\nsystem_id = X ; the lab box\n", []string{"f.conf:2", "[device] system_id", "comment after a value"}},
		{"relative state dir", "[device]\nsystem_id = X\nstate_dir = var/lib\n", []string{"[device] state_dir", "absolute"}},
		{"long line", "[device]\nsystem_id = " + strings.Repeat("x", 2<<20) + "\n", []string{"longer than 1 MiB"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.conf", []byte(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *config.Error: %v", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestByteOrderMarkIgnored(t *testing.T) {
	c, err := Parse("bom.conf", []byte("\xef\xbb\xbf[device]\nsystem_id = S1\n"))
	if err != nil || c.Device.SystemID != "S1" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.conf"))
	if err == nil || !strings.Contains(err.Error(), "nope.conf") || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dcagent.conf")
	if err := os.WriteFile(p, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != p {
		t.Errorf("path = %q", c.Path)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[device]\nsystem_id=\x00\n[spool]\nmax_bytes=1G\n"))
	f.Add([]byte("[hal]\ndrive_interval = 9223372036854775807ns\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.conf", data)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.conf") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
