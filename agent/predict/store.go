package predict

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Store keeps drive histories on disk, one file per drive key, in one
// directory (normally <state_dir>/predict). Writes are atomic: a new file
// is written beside the old one, synced, renamed over it and the directory
// synced, so a crash leaves either the old history or the new one. A file
// that cannot be decoded is moved to quarantine/ with its reason logged,
// and the drive starts a new history; it never stops the agent.
type Store struct {
	dir string
	log *slog.Logger
}

const (
	historyExt    = ".hist"
	quarantineDir = "quarantine"
	// keepQuarantined bounds the quarantine folder: the newest files stay
	// for a person to look at, older ones are removed (and logged).
	keepQuarantined = 16
)

// OpenStore opens (creating it if needed) the history directory.
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dir == "" {
		return nil, errors.New("predict: history directory is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("predict: failed to create history directory: %w", err)
	}
	return &Store{dir: dir, log: log}, nil
}

// Dir is the directory the store writes to.
func (s *Store) Dir() string { return s.dir }

// fileName turns a drive key into a file name: letters, digits, '-', '_'
// and '.' stay, anything else is %XX-escaped, so a serial can never name a
// path outside the directory; a long key is replaced by its hash.
func fileName(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	name := b.String()
	if len(name) > 120 {
		sum := sha256.Sum256([]byte(key))
		name = "h-" + hex.EncodeToString(sum[:16])
	}
	return name + historyExt
}

// Path is the file a drive key's history lives in.
func (s *Store) Path(key string) string { return filepath.Join(s.dir, fileName(key)) }

// Load reads a drive's history. It returns an error matching
// fs.ErrNotExist when there is none, and a *CorruptError (matching
// ErrCorrupt) naming the file when it cannot be decoded.
func (s *Store) Load(key string) (*History, error) {
	path := s.Path(key)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("predict: failed to read history: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDecodeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("predict: failed to read history %s: %w", path, err)
	}
	h, err := DecodeHistory(b)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			ce.Path = path
		}
		return nil, err
	}
	if h.Key != key {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("file holds the history of %q, not %q", h.Key, key)}
	}
	return h, nil
}

// Save writes a history atomically.
func (s *Store) Save(h *History) error {
	return writeAtomic(s.Path(h.Key), h.encode())
}

// Quarantine moves a drive's unreadable history file aside, so a person can
// look at it, and returns where it went.
func (s *Store) Quarantine(key string, reason error) (string, error) {
	src := s.Path(key)
	dst, err := s.quarantineFile(filepath.Base(src))
	if err != nil {
		return "", fmt.Errorf("predict: failed to quarantine %s: %w", src, err)
	}
	s.log.Warn("predict: history file quarantined", "file", src, "moved_to", dst, "reason", reason)
	return dst, nil
}

// quarantineFile moves a file of the store's directory to quarantine/.
func (s *Store) quarantineFile(name string) (string, error) {
	qdir := filepath.Join(s.dir, quarantineDir)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return "", err
	}
	dst := filepath.Join(qdir, fmt.Sprintf("%s.%d", name, time.Now().UnixNano()))
	if err := os.Rename(filepath.Join(s.dir, name), dst); err != nil {
		return "", err
	}
	_ = syncDir(s.dir)
	s.trimQuarantine(qdir)
	return dst, nil
}

func (s *Store) trimQuarantine(qdir string) {
	entries, err := os.ReadDir(qdir)
	if err != nil || len(entries) <= keepQuarantined {
		return
	}
	type aged struct {
		name string
		mod  time.Time
	}
	var files []aged
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			files = append(files, aged{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.After(files[j].mod) })
	for _, f := range files[min(keepQuarantined, len(files)):] {
		if err := os.Remove(filepath.Join(qdir, f.name)); err == nil {
			s.log.Info("predict: old quarantined history removed", "file", f.name)
		}
	}
}

// Prune removes history files not written for longer than maxAge: drives
// that left the device. It returns how many went.
func (s *Store) Prune(now time.Time, maxAge time.Duration) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("predict: failed to list histories: %w", err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		// Leftover temporary files from a crash mid-write are removed at any age.
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		}
		if !strings.HasSuffix(name, historyExt) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) <= maxAge {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err == nil {
			n++
			s.log.Info("predict: history of a drive not seen for long removed", "file", name, "last_written", info.ModTime().UTC())
		}
	}
	return n, nil
}

// writeAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("predict: failed to write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("predict: failed to write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("predict: failed to sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("predict: failed to write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("predict: failed to replace %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("predict: failed to sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("predict: failed to sync directory %s: %w", dir, err)
	}
	return nil
}
