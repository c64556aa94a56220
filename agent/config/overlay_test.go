package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOverlayAppliedAtLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dcagent.conf")
	conf := "[device]\nsystem_id = S1\nstate_dir = " + dir + "\n[heartbeat]\ninterval = 60s\n"
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteOverlay(dir, "heartbeat", "interval", "30s"); err != nil {
		t.Fatal(err)
	}
	if err := WriteOverlay(dir, "heartbeat", "interval", "45s"); err != nil {
		t.Fatal(err)
	}
	if err := WriteOverlay(dir, "log", "level", "debug"); err != nil {
		t.Fatal(err)
	}
	c, err := LoadWithOverlay(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Heartbeat.Interval != 45*time.Second || c.Log.Level != "debug" {
		t.Errorf("overlay not applied: %v %q", c.Heartbeat.Interval, c.Log.Level)
	}
	// The file a person wrote is untouched.
	if b, _ := os.ReadFile(p); string(b) != conf {
		t.Errorf("configuration file changed:\n%s", b)
	}
}

func TestSetValidates(t *testing.T) {
	c := Default()
	c.Path = "x.conf"
	if err := c.Set("log", "level", "loud"); err == nil || !strings.Contains(err.Error(), "[log] level") {
		t.Fatalf("err = %v", err)
	}
	if c.Log.Level != "info" {
		t.Errorf("invalid value kept: %q", c.Log.Level)
	}
	if err := c.Set("nope", "x", "1"); err == nil {
		t.Error("unknown section accepted")
	}
	if err := c.Set("log", "nope", "1"); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestBadOverlayNamesItsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dcagent.conf")
	os.WriteFile(p, []byte("[device]\nsystem_id = S1\nstate_dir = "+dir+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, OverlayName), []byte("heartbeat.interval = soon\n"), 0o600)
	_, err := LoadWithOverlay(p)
	if err == nil || !strings.Contains(err.Error(), OverlayName) || !strings.Contains(err.Error(), "interval") {
		t.Fatalf("err = %v", err)
	}
}

func TestRemotelySettableExcludesTrust(t *testing.T) {
	for _, k := range [][2]string{{"backend", "ca_file"}, {"identity", "key_uri"}, {"remote", "services"}, {"device", "state_dir"}, {"policy", "manager_url"}} {
		if RemotelySettable(k[0], k[1]) {
			t.Errorf("%s.%s is remotely settable", k[0], k[1])
		}
	}
	if !RemotelySettable("heartbeat", "interval") {
		t.Error("heartbeat.interval not settable")
	}
}

func TestWriteOverlayRefusesLineBreak(t *testing.T) {
	if err := WriteOverlay(t.TempDir(), "log", "level", "info\n[identity]"); err == nil {
		t.Fatal("line break accepted")
	}
}
