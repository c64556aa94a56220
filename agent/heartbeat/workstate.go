package heartbeat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/dcagent/dcagent/agent/work"
)

// WorkStateFile is the file in the state directory that remembers which
// work items the device has taken on, so that an item whose
// acknowledgement was lost runs once even across a restart.
const WorkStateFile = "heartbeat-work.cbor"

// rememberItems is how many taken item ids the device keeps. The backend
// resends an item only until it sees the acknowledgement, which is a few
// heartbeats at most, so this is far more than needed.
const rememberItems = 1024

// workState is the device's side of exactly-once delivery. It is owned by
// the Run goroutine.
type workState struct {
	path    string // "" keeps it in memory only
	seen    map[string]struct{}
	order   []string     // seen ids, oldest first
	acks    []pendingAck // acknowledgements to send
	results []pendingResult
	// redelivered counts items that came again after the device took
	// them and had no acknowledgement of them pending.
	redelivered int
}

type pendingAck struct {
	id   string
	sent int // heartbeats that carried it so far
	// again: the item was taken before and came again after its
	// acknowledgement had gone (the backend lost it, or misbehaves, or
	// the device restarted). It rides on the next regular heartbeat
	// rather than making one at once (see unsent).
	again bool
}

type pendingResult struct {
	work.Result
	sent int // heartbeats that carried it so far
}

// loadWorkState reads the taken ids from dir (if dir is not empty). A
// file that cannot be read is moved aside and reported, and the agent
// goes on with an empty list: the worst case is that an item whose
// acknowledgement was lost just before runs again.
func loadWorkState(dir string) (*workState, error) {
	ws := &workState{seen: map[string]struct{}{}}
	if dir == "" {
		return ws, nil
	}
	ws.path = filepath.Join(dir, WorkStateFile)
	data, err := os.ReadFile(ws.path)
	if errors.Is(err, fs.ErrNotExist) {
		return ws, nil
	}
	if err != nil {
		return ws, fmt.Errorf("heartbeat: work state %s: %w", ws.path, err)
	}
	var ids []string
	if err := decMode.Unmarshal(data, &ids); err != nil || len(ids) > rememberItems {
		bad := ws.path + ".bad"
		_ = os.Rename(ws.path, bad)
		if err == nil {
			err = fmt.Errorf("%d ids, at most %d", len(ids), rememberItems)
		}
		return ws, fmt.Errorf("heartbeat: work state %s is damaged (%v); moved to %s", ws.path, err, bad)
	}
	for _, id := range ids {
		if _, dup := ws.seen[id]; !dup {
			ws.seen[id] = struct{}{}
			ws.order = append(ws.order, id)
		}
	}
	return ws, nil
}

// take records that the device takes item id on. It reports whether the
// item is new (run it) or was taken before (do not run it again, only
// acknowledge it again). The id is on disk before take returns true.
func (ws *workState) take(id string) (bool, error) {
	_, seen := ws.seen[id]
	if !slices.ContainsFunc(ws.acks, func(a pendingAck) bool { return a.id == id }) {
		ws.acks = append(ws.acks, pendingAck{id: id, again: seen})
		if seen {
			ws.redelivered++
		}
	}
	if seen {
		return false, nil
	}
	ws.seen[id] = struct{}{}
	ws.order = append(ws.order, id)
	if len(ws.order) > rememberItems {
		delete(ws.seen, ws.order[0])
		ws.order = ws.order[1:]
	}
	return true, ws.save()
}

func (ws *workState) save() error {
	if ws.path == "" {
		return nil
	}
	data, err := encMode.Marshal(ws.order)
	if err != nil {
		return err
	}
	tmp := ws.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("heartbeat: saving work state: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("heartbeat: saving work state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("heartbeat: saving work state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heartbeat: saving work state: %w", err)
	}
	if err := os.Rename(tmp, ws.path); err != nil {
		return fmt.Errorf("heartbeat: saving work state: %w", err)
	}
	return nil
}

// confirmAcks drops acknowledgements the backend has seen.
func (ws *workState) confirmAcks(ids []string) {
	ws.acks = slices.DeleteFunc(ws.acks, func(a pendingAck) bool { return slices.Contains(ids, a.id) })
}

// addResult queues a finished item's result.
func (ws *workState) addResult(r work.Result) {
	if len(r.Detail) > MaxDetailLen {
		r.Detail = r.Detail[:MaxDetailLen-3] + "..."
	}
	ws.results = append(ws.results, pendingResult{Result: r})
}

// confirmResults drops results the backend has stored.
func (ws *workState) confirmResults(done []string) {
	ws.results = slices.DeleteFunc(ws.results, func(r pendingResult) bool { return slices.Contains(done, r.ID) })
}

// fill puts the pending acknowledgements and results into h.
func (ws *workState) fill(h *Heartbeat) {
	for i := range ws.acks {
		if len(h.Acks) == MaxAcks {
			break
		}
		ws.acks[i].sent++
		h.Acks = append(h.Acks, ws.acks[i].id)
	}
	for i := range ws.results {
		if len(h.Results) == MaxResults {
			break
		}
		ws.results[i].sent++
		h.Results = append(h.Results, ws.results[i].Result)
	}
}

// unsent says whether something is waiting that no heartbeat has carried
// yet: the reason to send one now rather than at the next interval. An
// acknowledgement sent again for an item that came again is not: it goes
// with the next regular heartbeat, so that a backend re-sending an item
// cannot make the agent answer each copy at once.
func (ws *workState) unsent() bool {
	for _, a := range ws.acks {
		if a.sent == 0 && !a.again {
			return true
		}
	}
	for _, r := range ws.results {
		if r.sent == 0 {
			return true
		}
	}
	return false
}
