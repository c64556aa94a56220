package config

import "errors"

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
	if d.SystemID == "" {
		return &KeyError{Key: "system_id", Err: errors.New("must be set: it names this device at the backend")}
	}
	return nil
}
