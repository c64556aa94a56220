package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Report is what Inspect finds in a spool directory.
type Report struct {
	Dir         string `json:"dir"`
	Files       int    `json:"files"`
	Events      int    `json:"events"`
	Bytes       int64  `json:"bytes"`
	Damaged     int    `json:"damaged"`     // files that would be quarantined at the next start
	Unfinished  int    `json:"unfinished"`  // temporary files of interrupted commits
	Quarantined int    `json:"quarantined"` // files already in quarantine/
	FreeBytes   uint64 `json:"free_bytes"`
	Writable    bool   `json:"writable"`
	// Problem says in plain words what is wrong and what to do; "" when
	// all is well.
	Problem string `json:"problem,omitempty"`
}

// Inspect looks at a spool directory without opening the spool and
// without changing anything but a probe file, for `dcagent diag`, which
// may run while the daemon is down (or up: it only reads the spool).
func Inspect(dir string) (Report, error) {
	r := Report{Dir: dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			r.Problem = fmt.Sprintf("spool directory %s does not exist yet; the daemon creates it at its first start", dir)
			return r, nil
		}
		return r, fmt.Errorf("spool: inspect %s: %w", dir, err)
	}
	for _, de := range entries {
		name := de.Name()
		switch {
		case de.IsDir() && name == quarantineDir:
			q, _ := filepath.Glob(filepath.Join(dir, quarantineDir, "*.reason"))
			r.Quarantined = len(q)
		case strings.HasPrefix(name, tmpPrefix):
			r.Unfinished++
		case strings.HasSuffix(name, fileSuffix):
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				r.Damaged++
				continue
			}
			recs, derr := decodeFile(data)
			if derr != nil {
				r.Damaged++
				recs = salvageFile(data).recs // what the next start will recover
			}
			r.Files++
			r.Events += len(recs)
			r.Bytes += int64(len(data))
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		r.FreeBytes = uint64(st.Bavail) * uint64(st.Bsize)
	}
	probe := filepath.Join(dir, tmpPrefix+"probe")
	if f, err := os.OpenFile(probe, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		f.Close()
		os.Remove(probe)
		r.Writable = true
	} else if os.IsExist(err) {
		r.Writable = true
	} else {
		s := &Spool{dir: dir}
		r.Problem = s.classify("write in", dir, err).Error()
	}
	switch {
	case r.Problem != "":
	case r.FreeBytes < 1<<20:
		r.Problem = fmt.Sprintf("only %d bytes free on the filesystem holding %s: new events may not fit; free space there", r.FreeBytes, dir)
	case r.Damaged > 0:
		r.Problem = fmt.Sprintf("%d damaged spool files in %s: they will be moved to %s/ at the next start, and their intact events sent", r.Damaged, dir, quarantineDir)
	}
	return r, nil
}
