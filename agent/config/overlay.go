package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// The overlay holds settings changed remotely (a configuration update in a
// heartbeat reply, allowed by policy). It lives in the state directory,
// because the agent writes nothing outside it, and is applied over the
// configuration file at every load, so a remote change survives restarts
// while the file a firmware engineer wrote stays as written.
const OverlayName = "config.overlay"

// Remotely changeable settings. Identity, trust anchors, the state
// directory, policy sources and the services remote access may reach are
// deliberately not here: a backend that could change them could widen its
// own access.
var remotelySettable = map[string]bool{
	"hal.sensor_interval":           true,
	"hal.drive_interval":            true,
	"hal.smartctl_timeout":          true,
	"heartbeat.interval":            true,
	"upload.health_report_interval": true,
	"upload.failover_after":         true,
	"log.level":                     true,
}

// RemotelySettable reports whether section.key may be changed by a
// configuration update from the backend.
func RemotelySettable(section, key string) bool { return remotelySettable[section+"."+key] }

// Set changes one setting and validates the section it belongs to.
func (c *Config) Set(section, key, value string) error {
	var (
		target reflect.Value
		found  bool
	)
	forEachSection(c, func(n string, v reflect.Value) {
		if n == section {
			target, found = v, true
		}
	})
	if !found {
		return &Error{File: c.Path, Section: section, Key: key, Err: fmt.Errorf("unknown section")}
	}
	field, ok := fieldByTag(target, key)
	if !ok {
		return &Error{File: c.Path, Section: section, Key: key, Err: fmt.Errorf("unknown key")}
	}
	old := reflect.New(field.Type()).Elem()
	old.Set(field)
	if err := setValue(field, value, fieldSep(target, key)); err != nil {
		return &Error{File: c.Path, Section: section, Key: key, Err: err}
	}
	if val, ok := target.Addr().Interface().(validator); ok {
		if err := val.validate(); err != nil {
			field.Set(old)
			return &Error{File: c.Path, Section: section, Key: key, Err: err}
		}
	}
	return nil
}

// LoadWithOverlay loads path and applies the overlay in the configured
// state directory, if there is one. An overlay line that no longer applies
// (a key removed in a new release) is an error naming the overlay file.
func LoadWithOverlay(path string) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	op := filepath.Join(c.Device.StateDir, OverlayName)
	data, err := os.ReadFile(op)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: overlay: %w", err)
	}
	for _, s := range parseOverlay(data) {
		if err := c.Set(s.section, s.key, s.value); err != nil {
			var ce *Error
			if e, ok := err.(*Error); ok {
				ce = e
				ce.File = op
				return nil, ce
			}
			return nil, err
		}
	}
	return c, nil
}

type overlaySetting struct{ section, key, value string }

func parseOverlay(data []byte) []overlaySetting {
	var out []overlaySetting
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		section, key, ok := strings.Cut(strings.TrimSpace(name), ".")
		if !ok {
			continue
		}
		out = append(out, overlaySetting{section, key, strings.TrimSpace(value)})
	}
	return out
}

// WriteOverlay records section.key = value in the overlay of stateDir,
// replacing an earlier value of the same key, atomically (temporary file,
// sync, rename, directory sync).
func WriteOverlay(stateDir, section, key, value string) error {
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("config: value for %s.%s holds a line break", section, key)
	}
	op := filepath.Join(stateDir, OverlayName)
	settings := map[string]string{}
	if data, err := os.ReadFile(op); err == nil {
		for _, s := range parseOverlay(data) {
			settings[s.section+"."+s.key] = s.value
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("config: overlay: %w", err)
	}
	settings[section+"."+key] = value
	names := make([]string, 0, len(settings))
	for n := range settings {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("# Settings changed by configuration updates from the backend; applied over the configuration file.\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s = %s\n", n, settings[n])
	}
	tmp, err := os.CreateTemp(stateDir, ".overlay-*")
	if err != nil {
		return fmt.Errorf("config: overlay: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("config: overlay: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("config: overlay: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config: overlay: %w", err)
	}
	if err := os.Rename(tmp.Name(), op); err != nil {
		return fmt.Errorf("config: overlay: %w", err)
	}
	d, err := os.Open(stateDir)
	if err != nil {
		return fmt.Errorf("config: overlay: %w", err)
	}
	defer d.Close()
	return d.Sync()
}
