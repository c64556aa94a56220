// Package hwmon reads a device's temperatures, fans, voltages, currents,
// power and energy from the Linux hwmon sysfs class (/sys/class/hwmon) under
// a configurable root, in SI units (°C, V, A, W, J, RPM), with labels,
// limits and alarms.
//
// It is written for devices that run for years unattended, so a bad sensor
// never hides the good ones: a sensor whose value cannot be read (the chip
// does not answer, has no data, vanished mid-read, printed garbage or a value
// no working sensor can have) is reported as unreadable with the reason in
// plain words, and every other sensor is still read. A chip that cannot be
// read at all is reported on its own, next to the chips that could.
//
// Chips with the same name (two CPU packages' "coretemp", two power
// supplies' "pmbus") are told apart by their device path: the target of the
// chip's "device" link relative to the root, e.g.
// /sys/devices/platform/coretemp.1. Trees whose links were flattened into
// plain directories fall back to the class path (/sys/class/hwmon/hwmon1).
// The pre-2.6.3x layout, where the attributes sit under device/ instead of
// in the hwmon directory (applesmc), is read too.
package hwmon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dcagent/dcagent/hal"
)

// Sensor is one hwmon channel: the normalised hal.Sensor and what hwmon
// knows beyond it.
type Sensor struct {
	hal.Sensor
	// LCrit is the lower critical limit (temp, in, curr), when exposed.
	LCrit *float64 `json:"lcrit,omitempty"`
	// Emergency is a temperature's emergency limit, above crit.
	Emergency *float64 `json:"emergency,omitempty"`
	// Alarms names the alarm attributes that are set, e.g. "crit_alarm";
	// hal.Sensor.Alarm is true when this is not empty.
	Alarms []string `json:"alarms,omitempty"`
	// Problems lists attributes other than the value (a limit, an alarm
	// flag, the label) that could not be read, each with the reason.
	Problems []string `json:"problems,omitempty"`
}

// Name is the channel's attribute prefix, e.g. "temp2" or "in0".
func (s *Sensor) Name() string {
	if ki := infoFor(s.Kind); ki != nil {
		return ki.prefix + strconv.Itoa(s.Index)
	}
	return string(s.Kind) + strconv.Itoa(s.Index)
}

// Describe names the sensor for a person: chip, channel and label, e.g.
// `coretemp temp2 "Core 0" (/sys/devices/platform/coretemp.0)`.
func (s *Sensor) Describe() string {
	var b strings.Builder
	b.WriteString(s.Chip)
	b.WriteByte(' ')
	b.WriteString(s.Name())
	if s.Label != "" {
		fmt.Fprintf(&b, " %q", s.Label)
	}
	if s.DevicePath != "" {
		fmt.Fprintf(&b, " (%s)", s.DevicePath)
	}
	return b.String()
}

// Chip is one hwmon device.
type Chip struct {
	// Name is the chip's "name" attribute (coretemp, nct6779, pmbus, nvme).
	Name string `json:"name"`
	// DevicePath tells chips with the same name apart; see the package doc.
	DevicePath string `json:"device_path"`
	// Dir is the directory the attributes were read from.
	Dir string `json:"dir"`
	// OldStyle is true when the attributes sat under device/.
	OldStyle bool     `json:"old_style,omitempty"`
	Sensors  []Sensor `json:"sensors"`
	// Err is set when the chip could not be read at all (it vanished, or
	// its directory could not be listed); Sensors is then empty.
	Err error `json:"-"`
	// Problem is Err in words, for JSON.
	Problem string `json:"problem,omitempty"`
}

// Reading is one pass over every chip.
type Reading struct {
	Chips []Chip `json:"chips"`
}

// Sensors returns every sensor of every chip, in chip order.
func (r *Reading) Sensors() []Sensor {
	n := 0
	for i := range r.Chips {
		n += len(r.Chips[i].Sensors)
	}
	out := make([]Sensor, 0, n)
	for i := range r.Chips {
		out = append(out, r.Chips[i].Sensors...)
	}
	return out
}

// HAL returns the normalised view of every sensor.
func (r *Reading) HAL() []hal.Sensor {
	var out []hal.Sensor
	for i := range r.Chips {
		for j := range r.Chips[i].Sensors {
			out = append(out, r.Chips[i].Sensors[j].Sensor)
		}
	}
	return out
}

// Errors returns the chips that could not be read.
func (r *Reading) Errors() []*ChipError {
	var out []*ChipError
	for i := range r.Chips {
		if r.Chips[i].Err != nil {
			out = append(out, &ChipError{Dir: r.Chips[i].Dir, Err: r.Chips[i].Err})
		}
	}
	return out
}

// Reader reads hwmon chips. The zero value reads the real /sys.
type Reader struct {
	// Root is prepended to /sys (config [hal] sysfs_root); "" means "/".
	Root string
	// FS is the filesystem; nil means the real one (OS).
	FS FS
	// Logger gets one debug line per chip that cannot be read; nil discards.
	Logger *slog.Logger
}

// bufSize bounds one attribute read. sysfs attributes are at most a page,
// and a value or label is a few dozen bytes; anything that fills the buffer
// is not a sensor value.
const bufSize = 256

func (r *Reader) fs() FS {
	if r.FS == nil {
		return OS
	}
	return r.FS
}

func (r *Reader) root() string {
	if r.Root == "" {
		return "/"
	}
	return r.Root
}

// ClassDir is where the hwmon class lives under the root.
func (r *Reader) ClassDir() string {
	return filepath.Join(r.root(), "sys", "class", "hwmon")
}

// Read reads every chip under Root/sys/class/hwmon. It returns an error only
// when the class directory itself cannot be listed (wrapping ErrNoHwmon when
// it does not exist); problems with single chips and sensors are in the
// Reading.
func (r *Reader) Read(ctx context.Context) (*Reading, error) {
	fsys := r.fs()
	class := r.ClassDir()
	names, err := fsys.ReadDirNames(class)
	if err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("%w at %s: no sensor drivers are loaded, or [hal] sysfs_root is wrong", ErrNoHwmon, class)
		}
		return nil, fmt.Errorf("hwmon: cannot list %s: %s", class, reason(err))
	}
	sortHwmonNames(names)
	rd := &Reading{Chips: make([]Chip, 0, len(names))}
	buf := make([]byte, bufSize)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return rd, err
		}
		if strings.HasPrefix(n, ".") {
			continue
		}
		chip := r.readChip(filepath.Join(class, n), n, buf)
		if chip.Err != nil && r.Logger != nil {
			r.Logger.Debug("hwmon: chip unreadable", "dir", chip.Dir, "err", chip.Problem)
		}
		rd.Chips = append(rd.Chips, chip)
	}
	return rd, nil
}

// ReadChip reads one chip directory: a hwmonN directory, or a device
// directory of the old layout that holds the attributes itself (e.g. a
// saved /sys/devices/platform/applesmc.768).
func (r *Reader) ReadChip(dir string) Chip {
	return r.readChip(dir, filepath.Base(dir), make([]byte, bufSize))
}

// channelKey identifies one sensor channel within a chip.
type channelKey struct {
	kind  *kindInfo
	index int
}

func (r *Reader) readChip(dir, className string, buf []byte) Chip {
	fsys := r.fs()
	chip := Chip{Dir: dir}
	entries, err := fsys.ReadDirNames(dir)
	if err != nil {
		chip.Err = err
		if isNotExist(err) {
			chip.Problem = "the chip vanished while it was being read"
		} else {
			chip.Problem = "cannot list the chip's attributes: " + reason(err)
		}
		chip.Name = className
		chip.DevicePath = r.classPath(className)
		return chip
	}
	attrDir := dir
	if !contains(entries, "name") && !hasSensorAttr(entries) && contains(entries, "device") {
		// Old layout: the attributes live on the parent device.
		devDir := filepath.Join(dir, "device")
		if devEntries, err := fsys.ReadDirNames(devDir); err == nil && (contains(devEntries, "name") || hasSensorAttr(devEntries)) {
			attrDir, entries, chip.OldStyle = devDir, devEntries, true
		}
	}
	chip.Name = className
	if contains(entries, "name") {
		if b, err := readAttr(fsys, filepath.Join(attrDir, "name"), buf); err == nil {
			if name := parseLabel(b); name != "" {
				chip.Name = name
			}
		}
	}
	chip.DevicePath = r.devicePath(dir, className)
	chip.Dir = attrDir

	channels := map[channelKey]map[string]string{}
	for _, e := range entries {
		a, ok := parseAttrName(e)
		if !ok {
			continue
		}
		k := channelKey{a.kind, a.index}
		m := channels[k]
		if m == nil {
			m = map[string]string{}
			channels[k] = m
		}
		m[a.item] = e
	}
	keys := make([]channelKey, 0, len(channels))
	for k := range channels {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, oj := kindOrder(keys[i].kind.kind), kindOrder(keys[j].kind.kind)
		if oi != oj {
			return oi < oj
		}
		return keys[i].index < keys[j].index
	})
	for _, k := range keys {
		s, ok := readChannel(fsys, attrDir, k, channels[k], buf)
		if !ok {
			continue
		}
		s.Chip = chip.Name
		s.DevicePath = chip.DevicePath
		chip.Sensors = append(chip.Sensors, s)
	}
	return chip
}

// readChannel reads one channel's files. ok is false for channels that are
// not sensors the reader reports: no value file, or disabled by the driver.
func readChannel(fsys FS, dir string, k channelKey, items map[string]string, buf []byte) (Sensor, bool) {
	s := Sensor{Sensor: hal.Sensor{Kind: k.kind.kind, Index: k.index}}
	valueItem := "input"
	switch {
	case k.kind.kind == KindIntrusion:
		valueItem = ""
		if _, ok := items["alarm"]; !ok {
			return s, false
		}
	case items["input"] == "" && k.kind.kind == hal.SensorPower && items["average"] != "":
		valueItem = "average"
	case items["input"] == "":
		return s, false
	}
	problem := func(item string, why string) {
		s.Problems = append(s.Problems, fmt.Sprintf("%s: %s", items[item], why))
	}
	// A channel the driver disabled has no reading to report.
	if f := items["enable"]; f != "" {
		if b, err := readAttr(fsys, filepath.Join(dir, f), buf); err == nil {
			if v, err := parseInt(b); err == nil && v == 0 {
				return s, false
			}
		}
	}
	if f := items["label"]; f != "" {
		b, err := readAttr(fsys, filepath.Join(dir, f), buf)
		if err != nil {
			problem("label", reason(err))
		} else {
			s.Label = parseLabel(b)
		}
	}
	if valueItem != "" {
		if v, why := readValue(fsys, dir, items[valueItem], k.kind, buf); why != "" {
			s.Unreadable = why
		} else {
			s.Value = &v
		}
	}
	// A fault flag means the sensor itself is broken (an open or shorted
	// thermal diode, a fan without tachometer signal): its value is not a
	// measurement.
	if f := items["fault"]; f != "" {
		if b, err := readAttr(fsys, filepath.Join(dir, f), buf); err == nil {
			if v, err := parseInt(b); err == nil && v != 0 {
				s.Value = nil
				s.Unreadable = fmt.Sprintf("the chip reports a fault on this sensor (%s = %d): the sensor is broken or disconnected", f, v)
			}
		} else {
			problem("fault", reason(err))
		}
	}
	for _, lim := range []struct {
		item string
		dst  **float64
	}{
		{"min", &s.Min}, {"max", &s.Max}, {"crit", &s.Crit},
		{"lcrit", &s.LCrit}, {"emergency", &s.Emergency},
	} {
		f := items[lim.item]
		if f == "" {
			continue
		}
		b, err := readAttr(fsys, filepath.Join(dir, f), buf)
		if err != nil {
			problem(lim.item, reason(err))
			continue
		}
		raw, err := parseInt(b)
		if err != nil {
			problem(lim.item, err.Error())
			continue
		}
		// A limit no working sensor could reach means "not set": NVMe
		// drives report 65261.85 °C (0xffff kelvin) for an unset threshold.
		if v, ok := k.kind.scale(raw); ok {
			*lim.dst = &v
		}
	}
	if s.Max == nil && k.kind.kind == hal.SensorPower {
		if f := items["cap"]; f != "" {
			if b, err := readAttr(fsys, filepath.Join(dir, f), buf); err == nil {
				if raw, err := parseInt(b); err == nil {
					if v, ok := k.kind.scale(raw); ok {
						s.Max = &v
					}
				}
			}
		}
	}
	// Super-I/O chips report 0 for limits nobody programmed; 0 as both
	// bounds of a voltage, or as a fan's minimum, is not a limit.
	if k.kind.kind == hal.SensorVoltage && s.Min != nil && s.Max != nil && *s.Min == 0 && *s.Max == 0 {
		s.Min, s.Max = nil, nil
	}
	if k.kind.kind == hal.SensorFan && s.Min != nil && *s.Min == 0 {
		s.Min = nil
	}
	alarmItems := make([]string, 0, 4)
	for item := range items {
		if item == "alarm" || strings.HasSuffix(item, "_alarm") {
			alarmItems = append(alarmItems, item)
		}
	}
	sort.Strings(alarmItems)
	for _, item := range alarmItems {
		b, err := readAttr(fsys, filepath.Join(dir, items[item]), buf)
		if err != nil {
			problem(item, reason(err))
			continue
		}
		v, err := parseInt(b)
		if err != nil {
			problem(item, err.Error())
			continue
		}
		if v != 0 {
			s.Alarms = append(s.Alarms, item)
		}
	}
	s.Alarm = len(s.Alarms) > 0
	return s, true
}

// readValue reads and checks a channel's value; why is the reason it is
// unreadable, "" when v is good.
func readValue(fsys FS, dir, file string, k *kindInfo, buf []byte) (v float64, why string) {
	b, err := readAttr(fsys, filepath.Join(dir, file), buf)
	if err != nil {
		return 0, file + ": " + reason(err)
	}
	raw, err := parseInt(b)
	if err != nil {
		return 0, file + ": " + err.Error()
	}
	v, ok := k.scale(raw)
	if !ok {
		return 0, file + ": " + outOfRange(k, v)
	}
	return v, ""
}

// readAttr reads one attribute into buf and returns the bytes read. A file
// that fills buf is too long to be an attribute.
func readAttr(fsys FS, path string, buf []byte) ([]byte, error) {
	n, err := fsys.ReadFile(path, buf)
	if err != nil {
		return nil, err
	}
	if n >= len(buf) {
		return nil, fmt.Errorf("the file is longer than %d bytes, which no sensor attribute is", len(buf)-1)
	}
	return buf[:n], nil
}

// devicePath finds the path that tells this chip apart from others of the
// same name; see the package doc.
func (r *Reader) devicePath(dir, className string) string {
	fsys := r.fs()
	dev := filepath.Join(dir, "device")
	if fsys.IsSymlink(dev) {
		if p, err := fsys.EvalSymlinks(dev); err == nil {
			if rel, ok := r.underRoot(p); ok {
				return rel
			}
		}
	}
	if fsys.IsSymlink(dir) {
		// /sys/class/hwmon/hwmonN -> ../../devices/<device>/hwmon/hwmonN
		if p, err := fsys.EvalSymlinks(dir); err == nil {
			parent := filepath.Dir(p)
			if filepath.Base(parent) == "hwmon" {
				p = filepath.Dir(parent)
			}
			if rel, ok := r.underRoot(p); ok {
				return rel
			}
		}
	}
	if rel, ok := r.underRoot(dir); ok {
		return rel
	}
	// A chip directory given outside the root (ReadChip on a saved tree)
	// is named by where it is.
	return dir
}

func (r *Reader) classPath(className string) string {
	return "/sys/class/hwmon/" + className
}

// underRoot turns an absolute path below the root into the path a device
// would show ("/sys/devices/..."). Paths resolved outside the root (a link
// that escapes a copied tree) are refused.
func (r *Reader) underRoot(p string) (string, bool) {
	root := r.root()
	if rr, err := r.fs().EvalSymlinks(root); err == nil {
		root = rr
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		// The root itself may have been given through a symlink.
		rel, err = filepath.Rel(r.root(), p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", false
		}
	}
	return "/" + filepath.ToSlash(rel), true
}

func contains(names []string, want string) bool {
	for _, n := range names {
		if n == want {
			return true
		}
	}
	return false
}

func hasSensorAttr(names []string) bool {
	for _, n := range names {
		if _, ok := parseAttrName(n); ok {
			return true
		}
	}
	return false
}

// sortHwmonNames orders hwmon2 before hwmon10.
func sortHwmonNames(names []string) {
	num := func(s string) (int, bool) {
		n, err := strconv.Atoi(strings.TrimPrefix(s, "hwmon"))
		return n, err == nil && strings.HasPrefix(s, "hwmon")
	}
	sort.Slice(names, func(i, j int) bool {
		a, aok := num(names[i])
		b, bok := num(names[j])
		if aok && bok {
			return a < b
		}
		if aok != bok {
			return aok
		}
		return names[i] < names[j]
	})
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Matches reports whether the sensor matches a "chip/sensor" pattern
// (path.Match syntax, as in [hal] ignore_sensors), where sensor is the
// channel name ("in1", "fan3") or the label ("vin", "Core 0").
func (s *Sensor) Matches(pattern string) bool {
	for _, name := range []string{s.Chip + "/" + s.Name(), s.Chip + "/" + s.Label} {
		if ok, _ := path.Match(pattern, name); ok {
			return true
		}
	}
	return false
}

// Ignored reports whether the sensor matches any of the patterns.
func (s *Sensor) Ignored(patterns []string) bool {
	for _, p := range patterns {
		if s.Matches(p) {
			return true
		}
	}
	return false
}

// Without returns a copy of the reading without the sensors that match
// any of the patterns, and how many were left out.
func (r *Reading) Without(patterns []string) (*Reading, int) {
	out := &Reading{Chips: make([]Chip, len(r.Chips))}
	n := 0
	for i, c := range r.Chips {
		kept := make([]Sensor, 0, len(c.Sensors))
		for _, s := range c.Sensors {
			if s.Ignored(patterns) {
				n++
				continue
			}
			kept = append(kept, s)
		}
		c.Sensors = kept
		out.Chips[i] = c
	}
	return out, n
}
