package hwmon

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// ErrNoHwmon is returned (wrapped) by Read when the root has no
// sys/class/hwmon directory: the kernel has no sensor drivers loaded, or
// the configured sysfs root is wrong.
var ErrNoHwmon = errors.New("hwmon: no sys/class/hwmon directory")

// ChipError says why a whole chip could not be read. The other chips are
// still read.
type ChipError struct {
	Dir string // the chip directory
	Err error
}

func (e *ChipError) Error() string {
	return fmt.Sprintf("hwmon: chip %s: %s", e.Dir, reason(e.Err))
}

func (e *ChipError) Unwrap() error { return e.Err }

// errnoReasons says in plain words what each errno means when a sensor
// attribute is read. hwmon drivers return these when a chip on a bus does
// not answer (EIO, ETIMEDOUT, ENXIO), has no data yet (ENODATA, EAGAIN), or
// has gone away (ENODEV, ENOENT).
var errnoReasons = []struct {
	errno syscall.Errno
	text  string
}{
	{syscall.EIO, "the chip did not answer (I/O error, EIO)"},
	{syscall.ENODATA, "the chip has no reading for this sensor (ENODATA)"},
	{syscall.EAGAIN, "the chip was busy and asked to be read again later (EAGAIN)"},
	{syscall.ETIMEDOUT, "the chip did not answer in time (ETIMEDOUT)"},
	{syscall.ENXIO, "the chip is no longer on its bus (ENXIO)"},
	{syscall.ENODEV, "the device has gone away (ENODEV)"},
	{syscall.ENOENT, "the sensor vanished while it was being read (ENOENT)"},
	{syscall.EISDIR, "is a directory where a value file was expected (EISDIR)"},
	{syscall.EACCES, "permission denied (EACCES); run as root"},
	{syscall.EPERM, "operation not permitted (EPERM)"},
	{syscall.EINVAL, "the driver rejected the read (EINVAL)"},
	{syscall.EOPNOTSUPP, "the driver does not support reading this value (EOPNOTSUPP)"},
	{syscall.EBUSY, "the chip is busy (EBUSY)"},
}

// reason turns a read error into words a person can act on.
func reason(err error) string {
	for _, r := range errnoReasons {
		if errors.Is(err, r.errno) {
			return r.text
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "the sensor vanished while it was being read"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
