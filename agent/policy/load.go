package policy

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dcagent/dcagent/agent/config"
)

// Load reads the policy the daemon would use, without starting anything
// or recording anything: the cached copy from the manager when there is a
// good one, else the local file, else none (nil: everything is denied).
// notes says what was passed over and why. It is for commands that look
// (`dcagent policy explain`, `dcagent diag`); the daemon uses New.
func Load(cfg config.Policy, stateDir string) (p *Policy, notes []string, err error) {
	var key crypto.PublicKey
	if cfg.ManagerKeyFile != "" {
		if key, err = LoadPublicKey(cfg.ManagerKeyFile); err != nil {
			return nil, nil, err
		}
	}
	if cfg.ManagerURL != "" {
		path := filepath.Join(stateDir, "policy", cacheDoc)
		data, rerr := os.ReadFile(path)
		switch {
		case errors.Is(rerr, os.ErrNotExist):
			notes = append(notes, "no copy from the policy manager yet")
		case rerr != nil:
			notes = append(notes, fmt.Sprintf("the cached copy cannot be read: %v", rerr))
		default:
			cp, perr := Parse(data, ParseOptions{Source: "cache of " + cfg.ManagerURL, Key: key, RequireSignature: true})
			if perr == nil {
				if fi, err := os.Stat(path); err == nil {
					cp.Fetched = fi.ModTime()
				}
				return cp, notes, nil
			}
			notes = append(notes, "the cached copy is refused: "+perr.Error())
		}
	}
	if cfg.File == "" {
		notes = append(notes, "no local policy file ([policy] file)")
		return nil, notes, nil
	}
	data, err := os.ReadFile(cfg.File)
	if err != nil {
		return nil, notes, fmt.Errorf("policy: %w", err)
	}
	fp, err := Parse(data, ParseOptions{Source: "file " + cfg.File, Key: key})
	if err != nil {
		return nil, notes, err
	}
	fp.Fetched = time.Now()
	return fp, notes, nil
}

// DeviceFromConfig is the device as [device] describes it: type, model,
// serial, and the labels that customer groups match.
func DeviceFromConfig(d config.Device) Device {
	return Device{Type: d.Type, Model: d.Model, Serial: d.Serial, Labels: d.Labels}
}
