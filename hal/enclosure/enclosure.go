// Package enclosure reads SCSI Enclosure Services (SES) backplanes from the
// Linux enclosure class (/sys/class/enclosure) under a configurable root:
// each slot's status, its fault, locate and active indicators, and the
// block device in it, so that a drive is tied to its backplane and slot.
//
// The layout follows the kernel's enclosure driver (drivers/misc/enclosure.c,
// filled in by drivers/scsi/ses.c):
//
//	/sys/class/enclosure/<id>/              id is the SES device's SCSI address, e.g. 0:0:24:0
//	    components                          number of components
//	    id                                  the enclosure's logical id, e.g. 0x500304801f715f3f
//	    device -> the SES SCSI device       vendor, model, rev
//	    <component>/                        named by the enclosure ("Slot 01") or numbered ("0")
//	        status                          OK, critical, non-critical, unrecoverable,
//	                                        not installed, unknown, unavailable, unsupported
//	        fault, locate, active           0 or 1
//	        power_status                    on or off (unreadable when the enclosure cannot say)
//	        type                            "device" or "array device"
//	        slot                            the slot number
//	        device -> the SCSI device in the slot, whose block/<sdX> names the drive
//
// No capture of a real enclosure tree is available to the project; the
// tests build trees after this layout, and hal/sim writes one. Anything
// missing or odd is reported on the slot in plain words, and the other
// slots are still read.
package enclosure

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/dcagent/dcagent/hal"
)

// ErrNoEnclosures is returned (wrapped) when the root has no
// sys/class/enclosure directory: the ses driver is not loaded, the device
// has no SES backplane, or [hal] sysfs_root is wrong.
var ErrNoEnclosures = errors.New("enclosure: no sys/class/enclosure directory")

// Statuses the kernel prints for a component.
var knownStatus = map[string]bool{
	"OK": true, "critical": true, "non-critical": true, "unrecoverable": true,
	"not installed": true, "unknown": true, "unavailable": true, "unsupported": true,
}

// Enclosure is one SES enclosure (backplane).
type Enclosure struct {
	// ID is the class entry's name: the SES device's SCSI address.
	ID string `json:"id"`
	// LogicalID is the enclosure's own identifier (a SAS address).
	LogicalID string `json:"logical_id,omitempty"`
	// Vendor, Model and Revision come from the SES device's inquiry data.
	Vendor   string `json:"vendor,omitempty"`
	Model    string `json:"model,omitempty"`
	Revision string `json:"revision,omitempty"`
	// Components is the count the kernel reports; nil when unreadable.
	Components *int   `json:"components,omitempty"`
	Slots      []Slot `json:"slots"`
	// Problems are things about the enclosure itself that could not be
	// read or made no sense, in plain words.
	Problems []string `json:"problems,omitempty"`
	// Err is set when the enclosure directory could not be listed at all.
	Err error `json:"-"`
}

// Describe names the enclosure for a person: "enclosure 0:0:24:0 (LSI SAS2X36)".
func (e *Enclosure) Describe() string {
	s := "enclosure " + e.ID
	if vm := strings.TrimSpace(e.Vendor + " " + e.Model); vm != "" {
		s += " (" + vm + ")"
	}
	return s
}

// Slot is one component of an enclosure.
type Slot struct {
	hal.Slot
	// Type is "array device" or "device" as the kernel prints it.
	Type string `json:"type,omitempty"`
	// Number is the slot number the enclosure reports.
	Number *int `json:"number,omitempty"`
	// PowerOn is the slot's power, when the enclosure reports it.
	PowerOn *bool `json:"power_on,omitempty"`
	// DevicePath is the SCSI device in the slot, relative to the root.
	DevicePath string `json:"device_path,omitempty"`
	// Problems lists attributes that could not be read or held odd values.
	Problems []string `json:"problems,omitempty"`
}

// Describe names the slot for a person: `slot "Slot 03" (sdd)`.
func (s *Slot) Describe() string {
	d := fmt.Sprintf("slot %q", s.Slot.Slot)
	if s.Device != "" {
		d += " (" + s.Device + ")"
	}
	return d
}

// Empty reports whether the enclosure says nothing is installed.
func (s *Slot) Empty() bool { return s.Status == "not installed" }

// Reader reads enclosures. The zero value reads the real /sys.
type Reader struct {
	// Root is prepended to /sys (config [hal] sysfs_root); "" means "/".
	Root string
}

func (r *Reader) root() string {
	if r.Root == "" {
		return "/"
	}
	return r.Root
}

// ClassDir is where the enclosure class lives under the root.
func (r *Reader) ClassDir() string { return filepath.Join(r.root(), "sys", "class", "enclosure") }

// Read reads every enclosure. It returns an error only when the class
// directory cannot be listed (wrapping ErrNoEnclosures when it does not
// exist); problems with single enclosures and slots are in the result.
func (r *Reader) Read(ctx context.Context) ([]Enclosure, error) {
	class := r.ClassDir()
	names, err := readDirNames(class)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: the ses driver is not loaded, the device has no SES backplane, or [hal] sysfs_root is wrong", ErrNoEnclosures, class)
		}
		return nil, fmt.Errorf("enclosure: cannot list %s: %v", class, errText(err))
	}
	sort.Strings(names)
	out := make([]Enclosure, 0, len(names))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if strings.HasPrefix(n, ".") {
			continue
		}
		out = append(out, r.readEnclosure(filepath.Join(class, n), n))
	}
	return out, nil
}

// entries of an enclosure or component directory that are not components.
var notComponent = map[string]bool{"device": true, "power": true, "subsystem": true}

func (r *Reader) readEnclosure(dir, id string) Enclosure {
	e := Enclosure{ID: id}
	names, err := readDirNames(dir)
	if err != nil {
		e.Err = err
		e.Problems = append(e.Problems, "cannot list the enclosure: "+errText(err))
		return e
	}
	if s, err := readText(filepath.Join(dir, "components")); err != nil {
		e.Problems = append(e.Problems, "components: "+errText(err))
	} else if n, err := strconv.Atoi(s); err != nil || n < 0 {
		e.Problems = append(e.Problems, fmt.Sprintf("components: %q is not a count", clip(s)))
	} else {
		e.Components = &n
	}
	if s, err := readText(filepath.Join(dir, "id")); err == nil {
		e.LogicalID = s
	} else if !errors.Is(err, fs.ErrNotExist) {
		e.Problems = append(e.Problems, "id: "+errText(err))
	}
	dev := filepath.Join(dir, "device")
	e.Vendor, _ = readText(filepath.Join(dev, "vendor"))
	e.Model, _ = readText(filepath.Join(dev, "model"))
	e.Revision, _ = readText(filepath.Join(dev, "rev"))

	sort.Slice(names, func(i, j int) bool { return lessNatural(names[i], names[j]) })
	for _, n := range names {
		if notComponent[n] || strings.HasPrefix(n, ".") {
			continue
		}
		p := filepath.Join(dir, n)
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			continue // components, id, uevent
		}
		e.Slots = append(e.Slots, r.readSlot(p, id, n))
	}
	if e.Components != nil && *e.Components != len(e.Slots) {
		e.Problems = append(e.Problems, fmt.Sprintf("the enclosure reports %d components but %d component directories were found", *e.Components, len(e.Slots)))
	}
	return e
}

func (r *Reader) readSlot(dir, encID, name string) Slot {
	s := Slot{Slot: hal.Slot{Enclosure: encID, Slot: name}}
	problem := func(format string, args ...any) { s.Problems = append(s.Problems, fmt.Sprintf(format, args...)) }

	if v, err := readText(filepath.Join(dir, "status")); err != nil {
		problem("status: %s", errText(err))
	} else {
		s.Status = v
		if !knownStatus[v] {
			problem("status: %q is not a status the kernel prints", clip(v))
		}
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"fault", &s.Fault}, {"locate", &s.Locate}, {"active", &s.Active}} {
		v, err := readText(filepath.Join(dir, f.name))
		if err != nil {
			problem("%s: %s", f.name, errText(err))
			continue
		}
		switch v {
		case "0":
		case "1":
			*f.dst = true
		default:
			problem("%s: %q is neither 0 nor 1", f.name, clip(v))
		}
	}
	if v, err := readText(filepath.Join(dir, "type")); err != nil {
		problem("type: %s", errText(err))
	} else {
		s.Type = v
	}
	if v, err := readText(filepath.Join(dir, "slot")); err == nil {
		if n, err := strconv.Atoi(v); err == nil {
			s.Number = &n
		} else {
			problem("slot: %q is not a slot number", clip(v))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		problem("slot: %s", errText(err))
	}
	// power_status fails with ENOTTY or EIO when the enclosure has no way
	// to report slot power; that is not a fault of the slot.
	if v, err := readText(filepath.Join(dir, "power_status")); err == nil {
		switch v {
		case "on", "off":
			on := v == "on"
			s.PowerOn = &on
		default:
			problem("power_status: %q is neither on nor off", clip(v))
		}
	}
	r.readSlotDevice(dir, &s, problem)
	return s
}

// readSlotDevice follows the slot's device link to the SCSI device and its
// block device.
func (r *Reader) readSlotDevice(dir string, s *Slot, problem func(string, ...any)) {
	link := filepath.Join(dir, "device")
	target, err := os.Readlink(link)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return // nothing in the slot
		}
		fi, serr := os.Lstat(link)
		if serr != nil || !fi.IsDir() {
			problem("device: %s", errText(err))
			return
		}
		// A copied tree may hold the device as a plain directory.
		target = link
	}
	real, err := filepath.EvalSymlinks(link)
	if err != nil {
		problem("device: the link points to %s, which does not exist (was the drive just removed?)", target)
		return
	}
	s.DevicePath = r.rel(real)
	blocks, err := readDirNames(filepath.Join(real, "block"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			problem("device: the SCSI device in the slot (%s) has no block device", s.DevicePath)
		} else {
			problem("device: cannot list its block devices: %s", errText(err))
		}
		return
	}
	sort.Strings(blocks)
	switch len(blocks) {
	case 0:
		problem("device: the SCSI device in the slot (%s) has no block device", s.DevicePath)
	default:
		s.Device = blocks[0]
		if len(blocks) > 1 {
			problem("device: more than one block device in the slot (%s); using %s", strings.Join(blocks, ", "), blocks[0])
		}
	}
}

// rel turns an absolute path below the root into the path a device shows.
func (r *Reader) rel(p string) string {
	for _, root := range []string{r.root(), evalOr(r.root())} {
		if rel, err := filepath.Rel(root, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return "/" + filepath.ToSlash(rel)
		}
	}
	return p
}

func evalOr(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// BySlotDevice maps each block device ("sda") to the slot holding it.
func BySlotDevice(encs []Enclosure) map[string]*Slot {
	m := map[string]*Slot{}
	for i := range encs {
		for j := range encs[i].Slots {
			if d := encs[i].Slots[j].Device; d != "" {
				m[d] = &encs[i].Slots[j]
			}
		}
	}
	return m
}

// HAL returns the normalised view of every slot.
func HAL(encs []Enclosure) []hal.Slot {
	var out []hal.Slot
	for i := range encs {
		for j := range encs[i].Slots {
			out = append(out, encs[i].Slots[j].Slot)
		}
	}
	return out
}

// readDirNames opens with O_DIRECTORY so that a FIFO where a directory
// belongs fails at once (ENOTDIR) instead of blocking the open.
func readDirNames(dir string) ([]string, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// readText reads a small attribute without blocking (see hwmon's reader)
// and trims it.
func readText(name string) (string, error) {
	fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	var buf [256]byte
	n, err := syscall.Read(fd, buf[:])
	for err == syscall.EINTR {
		n, err = syscall.Read(fd, buf[:])
	}
	if err != nil {
		return "", &os.PathError{Op: "read", Path: name, Err: err}
	}
	if n == len(buf) {
		return "", fmt.Errorf("longer than %d bytes, which no enclosure attribute is", len(buf)-1)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// errText says in plain words why an attribute could not be read.
func errText(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	case errors.Is(err, syscall.EISDIR):
		return "is a directory, not an attribute file"
	case errors.Is(err, syscall.EIO):
		return "the enclosure did not answer (I/O error)"
	case errors.Is(err, syscall.EAGAIN):
		return "the enclosure was busy (EAGAIN)"
	case errors.Is(err, syscall.ENOTTY):
		return "the enclosure cannot report it"
	case errors.Is(err, syscall.EACCES):
		return "permission denied; run as root"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if r := []rune(s); len(r) > 32 {
		return string(r[:32]) + "…"
	}
	return s
}

// lessNatural orders "Slot 2" before "Slot 10" and "2" before "10".
func lessNatural(a, b string) bool {
	for a != "" && b != "" {
		da, db := leadingDigits(a), leadingDigits(b)
		if da != "" && db != "" {
			na, _ := strconv.Atoi(da)
			nb, _ := strconv.Atoi(db)
			if len(da) > 9 || len(db) > 9 || na == nb && da != db {
				return da < db
			}
			if na != nb {
				return na < nb
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
