package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// persisted is what the monitor remembers across restarts, so that a
// restart neither repeats alerts already sent nor forgets to clear them,
// and the health report keeps its 24-hour rhythm.
type persisted struct {
	Version          int                 `json:"version"`
	Tracked          map[string]*tracked `json:"tracked"`
	LastHealthReport time.Time           `json:"last_health_report"`
}

const stateFileName = "state.json"

func (m *Monitor) statePath() string { return filepath.Join(m.dir, stateFileName) }

// loadState reads the remembered state. An unreadable file is moved aside
// with the reason logged and the monitor starts afresh (at worst it
// repeats alerts the backend already has, which it de-duplicates).
func (m *Monitor) loadState() {
	b, err := os.ReadFile(m.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var p persisted
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err == nil && p.Version != 1 {
		err = fmt.Errorf("version %d is not one this agent reads", p.Version)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.bad-%d", m.statePath(), m.clock.Now().UnixNano())
		rerr := os.Rename(m.statePath(), aside)
		m.log.Warn("monitor: state file unreadable; starting afresh", "file", m.statePath(), "err", err, "moved_to", aside, "move_err", rerr)
		return
	}
	for k, t := range p.Tracked {
		if t == nil {
			continue
		}
		t.current = t.Reported
		m.tracked[k] = t
	}
	m.lastHealth = p.LastHealthReport
}

// saveState writes the state atomically when it changed; the caller holds
// m.mu.
func (m *Monitor) saveState() {
	if !m.stateDirty {
		return
	}
	b, err := json.Marshal(persisted{Version: 1, Tracked: m.tracked, LastHealthReport: m.lastHealth})
	if err == nil {
		err = writeAtomic(m.statePath(), b)
	}
	if err != nil {
		if msg := err.Error(); msg != m.lastStateErr {
			m.log.Warn("monitor: state not saved; alerts may repeat after a restart", "err", err)
			m.lastStateErr = msg
		}
		return
	}
	m.lastStateErr = ""
	m.stateDirty = false
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("monitor: failed to write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("monitor: failed to write %s: %w", path, werr)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
