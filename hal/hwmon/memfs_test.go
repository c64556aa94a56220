package hwmon

import (
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// memFS is an in-memory tree for the errno values a real filesystem
// cannot be made to return on demand (a chip driver's ENODATA, ETIMEDOUT)
// and for the fuzz target. Paths are slash paths; errs makes a read of that
// file fail.
type memFS struct {
	files map[string][]byte
	errs  map[string]error
}

func newMemFS() *memFS { return &memFS{files: map[string][]byte{}, errs: map[string]error{}} }

func (m *memFS) add(name, content string) { m.files[name] = []byte(content) }

func (m *memFS) ReadDirNames(dir string) ([]string, error) {
	if err, ok := m.errs[dir]; ok {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	seen := map[string]bool{}
	for name := range m.files {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			first, _, _ := strings.Cut(rest, "/")
			seen[first] = true
		}
	}
	for name := range m.errs {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			first, _, _ := strings.Cut(rest, "/")
			seen[first] = true
		}
	}
	if len(seen) == 0 {
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.ENOENT}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (m *memFS) ReadFile(name string, buf []byte) (int, error) {
	if err, ok := m.errs[name]; ok {
		return 0, &os.PathError{Op: "read", Path: name, Err: err}
	}
	b, ok := m.files[name]
	if !ok {
		if _, err := m.ReadDirNames(name); err == nil {
			return 0, &os.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
		}
		return 0, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	}
	return copy(buf, b), nil
}

func (m *memFS) EvalSymlinks(name string) (string, error) { return path.Clean(name), nil }
func (m *memFS) IsSymlink(string) bool                    { return false }

var _ FS = (*memFS)(nil)
