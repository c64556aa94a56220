// Package config reads dcagent's configuration file.
//
// The file is a small INI dialect that a firmware engineer can write by hand
// and a Buildroot post-build script can generate with sed:
//
//	# comment
//	[section]
//	key = value
//
// Values are strings, integers, booleans (true/false), Go durations (30s,
// 5m, 24h), comma-separated lists, or comma-separated key=value maps. Every
// key must be known: a misspelt key is an error that names the file, the
// line, the section and the key, never a silently ignored setting.
//
// Each part of the agent owns one section, declared in a file of its own in
// this package, so that parts can grow their settings independently.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where the daemon looks when --config is not given.
const DefaultPath = "/etc/dcagent/dcagent.conf"

// Config is the whole configuration. Field tags name the INI section.
type Config struct {
	// Path is the file the configuration was read from ("" for defaults).
	Path string `conf:"-"`

	Device    Device    `conf:"device"`
	Backend   Backend   `conf:"backend"`
	Identity  Identity  `conf:"identity"`
	HAL       HAL       `conf:"hal"`
	Predict   Predict   `conf:"predict"`
	Monitor   Monitor   `conf:"monitor"`
	Spool     Spool     `conf:"spool"`
	Upload    Upload    `conf:"upload"`
	Heartbeat Heartbeat `conf:"heartbeat"`
	Policy    Policy    `conf:"policy"`
	Remote    Remote    `conf:"remote"`
	Audit     Audit     `conf:"audit"`
	Log       Log       `conf:"log"`
}

// Error is a configuration problem tied to a place in the file.
type Error struct {
	File    string
	Line    int // 0 when the problem is not on one line (a missing key)
	Section string
	Key     string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Section != "" || e.Key != "" {
		fmt.Fprintf(&b, ": [%s] %s", e.Section, e.Key)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// validator is implemented by sections that check their own values after
// the file is read. The error names the key at fault.
type validator interface {
	validate() error
}

// KeyError is returned by a section's validate method to name its key.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

func keyErr(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Default returns the configuration used when a key is not in the file.
func Default() *Config {
	c := &Config{}
	forEachSection(c, func(name string, v reflect.Value) {
		if d, ok := v.Addr().Interface().(interface{ setDefaults() }); ok {
			d.setDefaults()
		}
	})
	return c
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w (use --config to name another file)", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse reads a configuration from data; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	c.Path = name
	// A byte-order mark from a Windows editor is not part of the first line.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	sections := map[string]reflect.Value{}
	forEachSection(c, func(n string, v reflect.Value) { sections[n] = v })

	var (
		section string
		current reflect.Value
		lineNo  int
		seen    = map[string]int{}
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return nil, &Error{File: name, Line: lineNo, Err: fmt.Errorf("section header %q has no closing ]", line)}
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			v, ok := sections[section]
			if !ok {
				return nil, &Error{File: name, Line: lineNo, Section: section, Err: fmt.Errorf("unknown section (known: %s)", knownSections(sections))}
			}
			current = v
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, &Error{File: name, Line: lineNo, Section: section, Err: fmt.Errorf("expected key = value, got %q", line)}
		}
		key = strings.TrimSpace(key)
		value = strings.TrimSpace(value)
		if !current.IsValid() {
			return nil, &Error{File: name, Line: lineNo, Key: key, Err: errors.New("key outside any [section]")}
		}
		full := section + "." + key
		if prev, dup := seen[full]; dup {
			return nil, &Error{File: name, Line: lineNo, Section: section, Key: key, Err: fmt.Errorf("set twice (first on line %d)", prev)}
		}
		seen[full] = lineNo
		field, ok := fieldByTag(current, key)
		if !ok {
			return nil, &Error{File: name, Line: lineNo, Section: section, Key: key, Err: fmt.Errorf("unknown key (known in [%s]: %s)", section, knownKeys(current))}
		}
		if err := setValue(field, value, fieldSep(current, key)); err != nil {
			return nil, &Error{File: name, Line: lineNo, Section: section, Key: key, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = errors.New("a line is longer than 1 MiB")
		}
		return nil, &Error{File: name, Line: lineNo + 1, Err: err}
	}
	var verr error
	forEachSection(c, func(n string, v reflect.Value) {
		if verr != nil {
			return
		}
		if val, ok := v.Addr().Interface().(validator); ok {
			if err := val.validate(); err != nil {
				e := &Error{File: name, Section: n, Err: err}
				var ke *KeyError
				if errors.As(err, &ke) {
					e.Key, e.Err = ke.Key, ke.Err
					e.Line = seen[n+"."+ke.Key]
				}
				verr = e
			}
		}
	})
	if verr != nil {
		return nil, verr
	}
	return c, nil
}

func forEachSection(c *Config, fn func(name string, v reflect.Value)) {
	rv := reflect.ValueOf(c).Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		tag := rt.Field(i).Tag.Get("conf")
		if tag == "" || tag == "-" {
			continue
		}
		fn(tag, rv.Field(i))
	}
}

func fieldByTag(section reflect.Value, key string) (reflect.Value, bool) {
	t := section.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("conf") == key {
			return section.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func knownSections(m map[string]reflect.Value) string {
	var names []string
	forEachSection(&Config{}, func(n string, _ reflect.Value) { names = append(names, n) })
	return strings.Join(names, ", ")
}

func knownKeys(section reflect.Value) string {
	t := section.Type()
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("conf"); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return strings.Join(keys, ", ")
}

var durationType = reflect.TypeOf(time.Duration(0))

// fieldSep returns the list separator of a field: a comma unless the field
// is tagged sep:"space" (for lists whose items contain commas, such as
// smartctl's "megaraid,14" device types).
func fieldSep(section reflect.Value, key string) string {
	t := section.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("conf") == key && t.Field(i).Tag.Get("sep") == "space" {
			return " "
		}
	}
	return ","
}

func setValue(f reflect.Value, s, sep string) error {
	if f.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (write e.g. 30s, 5m, 24h)", s)
		}
		if d < 0 {
			return fmt.Errorf("duration %s is negative", s)
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := parseSize(s)
		if err != nil {
			return err
		}
		if f.OverflowInt(n) {
			return fmt.Errorf("%q is too large", s)
		}
		f.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		f.SetFloat(x)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", f.Type())
		}
		var parts []string
		if sep == " " {
			parts = strings.Fields(s)
		} else {
			parts = strings.Split(s, sep)
		}
		var items []string
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		f.Set(reflect.ValueOf(items))
	case reflect.Map:
		if f.Type().Key().Kind() != reflect.String || f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported map type %s", f.Type())
		}
		m := map[string]string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("%q is not name=value", p)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		f.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported setting type %s", f.Type())
	}
	return nil
}

// parseSize reads an integer with an optional binary size suffix (K, M, G,
// KiB, MiB, GiB), so that spool limits read naturally.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, suf.s)), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	if n != 0 && (n*mult)/mult != n {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// StateDirOf finds [device] state_dir in the file at path without
// validating the rest, so that local commands (status, approve, deny) can
// still reach a running daemon while the file on disk has an error the
// daemon refused at its last reload. It returns the default when the file
// does not set it.
func StateDirOf(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	dir := Default().Device.StateDir
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "device" && strings.TrimSpace(k) == "state_dir" {
			dir = strings.TrimSpace(v)
		}
	}
	return dir, nil
}
