package config

import (
	"errors"
	"path/filepath"
)

// Device describes the device the agent runs in. SystemID is the only thing
// about the customer that leaves the device.
type Device struct {
	SystemID string            `conf:"system_id"`
	Type     string            `conf:"type"`   // device type, e.g. "server", "storage"
	Model    string            `conf:"model"`  // vendor model name
	Serial   string            `conf:"serial"` // vendor serial number
	Labels   map[string]string `conf:"labels"` // customer groups: location=..., org=...
	// StateDir holds everything the agent writes: certificates, spool,
	// histories, policy cache, audit log, the control socket.
	StateDir string `conf:"state_dir"`
}

func (d *Device) setDefaults() {
	d.StateDir = "/var/lib/dcagent"
	d.Type = "server"
}

func (d *Device) validate() error {
	if d.StateDir == "" {
		return keyErr("state_dir", "must not be empty")
	}
	if !filepath.IsAbs(d.StateDir) {
		return keyErr("state_dir", "%q must be an absolute path", d.StateDir)
	}
	if d.SystemID == "" {
		return &KeyError{Key: "system_id", Err: errors.New("must be set: it names this device at the backend")}
	}
	if !validSystemID(d.SystemID) {
		return keyErr("system_id", "%q: use 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit (a comment after a value is not allowed)", d.SystemID)
	}
	return nil
}

// validSystemID is the backend CA's rule for system IDs: they become the
// certificate's CommonName and travel in every message.
func validSystemID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}
