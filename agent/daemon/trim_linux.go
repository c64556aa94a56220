package daemon

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout asks the kernel to reclaim the pages of a range now
// (MADV_PAGEOUT, Linux 5.4). On a read-only mapping of the executable the
// pages are clean copies of the file: reclaiming them loses nothing, and
// the ones the daemon still uses fault back in from the page cache.
const madvPageout = 21

// trimMemory gives back what start-up alone needed: the pages of the
// binary that only initialisation touched (the Go runtime walks the whole
// function table at start, and the kernel maps neighbouring pages of every
// fault), and the heap that start-up garbage left. An agent that idles for
// years should hold its working set, not its start-up set. It returns the
// bytes of mappings it advised.
func trimMemory() int64 {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var advised int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout); errno == 0 {
			advised += int64(end - start)
		}
	}
	return advised
}
