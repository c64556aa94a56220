package predict

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
)

// DriveInput is one drive read in a pass, with the enclosure slot it sits
// in ("" when the drive is not behind a known enclosure).
type DriveInput struct {
	Snapshot  hal.DriveSnapshot
	Enclosure string
	Slot      string
}

// DriveResult is the verdict on one drive in a pass.
type DriveResult struct {
	// Key is what the drive's history is filed under (see DriveKey).
	Key           string       `json:"key"`
	Serial        string       `json:"serial,omitempty"`
	Model         string       `json:"model,omitempty"`
	Firmware      string       `json:"firmware,omitempty"`
	Protocol      hal.Protocol `json:"protocol,omitempty"`
	CapacityBytes *uint64      `json:"capacity_bytes,omitempty"`
	Source        string       `json:"source,omitempty"`
	Enclosure     string       `json:"enclosure,omitempty"`
	Slot          string       `json:"slot,omitempty"`
	Risk          Risk         `json:"risk"`
	// HistorySince is when this drive's history began.
	HistorySince time.Time `json:"history_since"`
}

// BackplaneSuspect is the verdict that an enclosure's backplane or cabling,
// not its drives, is at fault.
type BackplaneSuspect struct {
	Enclosure string   `json:"enclosure"`
	Slots     []string `json:"slots"`
	Serials   []string `json:"serials"`
	Reasons   []string `json:"reasons"`
}

// Replacement is a slot that holds a different drive than before.
type Replacement struct {
	Enclosure string `json:"enclosure"`
	Slot      string `json:"slot"`
	OldSerial string `json:"old_serial"`
	NewSerial string `json:"new_serial"`
	NewModel  string `json:"new_model,omitempty"`
}

// Result is one prediction pass over all drives.
type Result struct {
	Time         time.Time          `json:"time"`
	Drives       []DriveResult      `json:"drives"`
	Backplanes   []BackplaneSuspect `json:"backplanes,omitempty"`
	Replacements []Replacement      `json:"replacements,omitempty"`
	// Notes are things a person may want to know about the histories
	// themselves (a corrupt file quarantined, a history restarted).
	Notes []string `json:"notes,omitempty"`
}

// Predictor keeps every drive's history and judges all drives together,
// so that interface errors can be correlated across an enclosure. It is
// safe for use by several goroutines, though passes run one at a time.
type Predictor struct {
	cfg   config.Predict
	store *Store // nil: histories in memory only
	log   *slog.Logger

	mu     sync.Mutex
	drives map[string]*driveState
	slots  map[string]slotRecord // by slotKey(enclosure, slot)
	// slotsDirty: the slot map changed since it was last written.
	slotsDirty bool
}

type driveState struct {
	h         *History
	savedAt   time.Time
	savedSig  string
	saveError string // the last save error, logged once until it changes
}

type slotRecord struct {
	Key    string `json:"key"`
	Serial string `json:"serial"`
	Model  string `json:"model,omitempty"`
}

const slotsFile = "slots.json"

// New makes a predictor. dir is where histories are kept (normally
// <state_dir>/predict); "" keeps them in memory only. A nil logger
// discards.
func New(cfg config.Predict, dir string, log *slog.Logger) (*Predictor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Predictor{cfg: cfg, log: log, drives: map[string]*driveState{}, slots: map[string]slotRecord{}}
	if dir != "" {
		st, err := OpenStore(dir, log)
		if err != nil {
			return nil, err
		}
		p.store = st
		if _, err := st.Prune(time.Now(), time.Duration(cfg.HistoryDays)*24*time.Hour); err != nil {
			log.Warn("predict: pruning old histories failed", "err", err)
		}
		p.loadSlots()
	}
	return p, nil
}

func slotKey(enclosure, slot string) string { return enclosure + "\x00" + slot }

func (p *Predictor) loadSlots() {
	path := filepath.Join(p.store.dir, slotsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var m map[string]slotRecord
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		// Losing the slot map only loses replacement detection for
		// drives swapped while the agent was down; it must not stop it.
		p.log.Warn("predict: slot map unreadable, starting a new one", "file", path, "err", err)
		if _, qerr := p.store.quarantineFile(slotsFile); qerr != nil {
			p.log.Warn("predict: could not quarantine slot map", "err", qerr)
		}
		return
	}
	p.slots = m
}

// DriveKey is what a drive's history is filed under: its serial number, or
// its WWN when the serial is missing or a placeholder ("REDACTED", "--",
// all one character). It is "" when the drive has neither.
func DriveKey(s *hal.DriveSnapshot) string {
	if serial := strings.TrimSpace(s.Serial); usableID(serial) {
		return serial
	}
	if wwn := strings.TrimSpace(s.WWN); usableID(wwn) {
		return "wwn-" + wwn
	}
	return ""
}

func usableID(s string) bool {
	if s == "" {
		return false
	}
	switch strings.ToLower(s) {
	case "redacted", "none", "n/a", "unknown", "not specified", "to be filled by o.e.m.", "default string":
		return false
	}
	// "--", "ZZZZZZZZ", "00000000": a placeholder, not a serial.
	for i := 1; i < len(s); i++ {
		if s[i] != s[0] {
			return true
		}
	}
	return false
}

// keyFor names a drive without a usable serial or WWN by where it is read
// from, so it still gets a history for as long as it stays there.
func keyFor(in *DriveInput) string {
	if k := DriveKey(&in.Snapshot); k != "" {
		return k
	}
	where := in.Snapshot.Source
	if in.Enclosure != "" || in.Slot != "" {
		where = in.Enclosure + "/" + in.Slot
	}
	return "at-" + where + "-" + in.Snapshot.Model
}

// Assess runs one prediction pass: it adds each drive's reading, taken at
// now, to its history, judges every drive and correlates interface errors
// per enclosure. Histories are written to disk when something in them
// changed, or every history_flush otherwise.
func (p *Predictor) Assess(now time.Time, drives []DriveInput) Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	now = now.UTC()
	res := Result{Time: now, Drives: make([]DriveResult, len(drives))}
	keep := time.Duration(p.cfg.HistoryDays) * 24 * time.Hour
	ctxs := make([]evalContext, len(drives))
	seen := make(map[string]bool, len(drives))
	for i := range drives {
		in := &drives[i]
		snap := &in.Snapshot
		key := keyFor(in)
		if seen[key] {
			// Two drives report the same serial: keep them apart so
			// neither's history is mixed into the other's.
			key = fmt.Sprintf("%s#%d", key, i)
		}
		seen[key] = true
		ds := p.state(key, snap, now, &res)
		ds.h.Add(snap, now)
		// A clock that went back (a device whose real-time clock reset)
		// cannot reorder a history: Add kept the reading at the last
		// sample's time, and the drive is judged as of that time.
		at := ds.h.last().Time()
		ds.h.compact(at, keep, 1)
		if in.Enclosure != "" || in.Slot != "" {
			p.noteSlot(in, key, &res)
		}
		ctxs[i] = evalContext{cfg: &p.cfg, h: ds.h, snap: snap, now: at}
		res.Drives[i] = DriveResult{
			Key: key, Serial: snap.Serial, Model: snap.Model, Firmware: snap.Firmware,
			Protocol: snap.Protocol, CapacityBytes: snap.CapacityBytes, Source: snap.Source,
			Enclosure: in.Enclosure, Slot: in.Slot, HistorySince: ds.h.Started,
		}
	}

	all := make([]findings, len(drives))
	for i := range ctxs {
		all[i] = ctxs[i].findings()
	}
	res.Backplanes = p.correlate(ctxs, drives, all)
	for i := range all {
		res.Drives[i].Risk = all[i].risk()
	}

	p.persist(now, seen)
	return res
}

// state returns the drive's history, loading it from disk on first use. A
// history that belongs to another drive (another model or WWN, or power-on
// hours that went backwards) or cannot be read starts afresh.
func (p *Predictor) state(key string, snap *hal.DriveSnapshot, now time.Time, res *Result) *driveState {
	id := Identity{Serial: snap.Serial, Model: snap.Model, WWN: snap.WWN}
	ds := p.drives[key]
	if ds == nil && p.store != nil {
		h, err := p.store.Load(key)
		switch {
		case err == nil:
			ds = &driveState{h: h, savedAt: now, savedSig: signature(h)}
		case errors.Is(err, fs.ErrNotExist):
		case errors.Is(err, ErrCorrupt):
			where, qerr := p.store.Quarantine(key, err)
			if qerr != nil {
				p.log.Warn("predict: corrupt history could not be quarantined; it will be overwritten", "drive", key, "err", qerr)
				where = "nowhere (" + qerr.Error() + ")"
			}
			res.Notes = append(res.Notes, fmt.Sprintf("history of drive %s was unreadable (%v); moved to %s, starting a new history", key, err, where))
		default:
			p.log.Warn("predict: history unreadable, starting a new one in memory", "drive", key, "err", err)
			res.Notes = append(res.Notes, fmt.Sprintf("history of drive %s could not be read (%v); starting a new history", key, err))
		}
	}
	if ds != nil {
		if why := otherDrive(ds.h, id, snap); why != "" {
			p.log.Info("predict: history restarted", "drive", key, "reason", why)
			res.Notes = append(res.Notes, fmt.Sprintf("history of drive %s restarted: %s", key, why))
			ds = nil
		}
	}
	if ds == nil {
		ds = &driveState{h: &History{Key: key, Identity: id}}
	}
	if ds.h.Identity.Model == "" {
		ds.h.Identity.Model = id.Model
	}
	if ds.h.Identity.WWN == "" {
		ds.h.Identity.WWN = id.WWN
	}
	p.drives[key] = ds
	return ds
}

// otherDrive says why a history cannot be this drive's, or "".
func otherDrive(h *History, id Identity, snap *hal.DriveSnapshot) string {
	if h.Identity.Model != "" && id.Model != "" && h.Identity.Model != id.Model {
		return fmt.Sprintf("model changed from %q to %q", h.Identity.Model, id.Model)
	}
	if h.Identity.WWN != "" && id.WWN != "" && !strings.EqualFold(h.Identity.WWN, id.WWN) {
		return fmt.Sprintf("WWN changed from %s to %s", h.Identity.WWN, id.WWN)
	}
	if len(h.Samples) > 0 && snap.PowerOnHours != nil {
		if was, ok := h.last().get(fPowerOnHours); ok && clampU64(*snap.PowerOnHours)+24 < was {
			return fmt.Sprintf("power-on hours went back from %d to %d: another drive", was, *snap.PowerOnHours)
		}
	}
	return ""
}

// noteSlot records which drive sits in a slot and reports a replacement.
func (p *Predictor) noteSlot(in *DriveInput, key string, res *Result) {
	sk := slotKey(in.Enclosure, in.Slot)
	rec, had := p.slots[sk]
	if had && rec.Key == key {
		return
	}
	if had {
		res.Replacements = append(res.Replacements, Replacement{
			Enclosure: in.Enclosure, Slot: in.Slot,
			OldSerial: rec.Serial, NewSerial: in.Snapshot.Serial, NewModel: in.Snapshot.Model,
		})
		p.log.Info("predict: drive replaced", "enclosure", in.Enclosure, "slot", in.Slot, "old_serial", rec.Serial, "new_serial", in.Snapshot.Serial)
	}
	p.slots[sk] = slotRecord{Key: key, Serial: in.Snapshot.Serial, Model: in.Snapshot.Model}
	p.slotsDirty = true
}

// ifaceRise is one drive's interface-error rise in the backplane window.
type ifaceRise struct {
	idx   int
	text  string // "UDMA CRC errors (ATA 199) rose from 0 to 40 in 3 hours"
	media bool   // its media counters rose too
}

// correlate finds the drives whose interface errors rose in the backplane
// window, groups those with flat media counters by enclosure, and adds a
// reason to each: backplane suspected (two or more behind one enclosure)
// or its own slot or cable (one alone).
func (p *Predictor) correlate(ctxs []evalContext, drives []DriveInput, all []findings) []BackplaneSuspect {
	window := p.cfg.BackplaneWindow
	byEnclosure := map[string][]ifaceRise{}
	var alone []ifaceRise
	for i := range ctxs {
		r, ok := interfaceRise(&ctxs[i], window)
		if !ok {
			continue
		}
		r.idx = i
		if r.media || drives[i].Enclosure == "" {
			alone = append(alone, r)
			continue
		}
		byEnclosure[drives[i].Enclosure] = append(byEnclosure[drives[i].Enclosure], r)
	}
	var suspects []BackplaneSuspect
	encls := make([]string, 0, len(byEnclosure))
	for e := range byEnclosure {
		encls = append(encls, e)
	}
	sort.Strings(encls)
	for _, encl := range encls {
		rises := byEnclosure[encl]
		if len(rises) < p.cfg.BackplaneMinDrives {
			alone = append(alone, rises...)
			continue
		}
		sort.Slice(rises, func(a, b int) bool { return slotLess(drives[rises[a].idx].Slot, drives[rises[b].idx].Slot) })
		bp := BackplaneSuspect{Enclosure: encl}
		for _, r := range rises {
			bp.Slots = append(bp.Slots, drives[r.idx].Slot)
			bp.Serials = append(bp.Serials, drives[r.idx].Snapshot.Serial)
		}
		bp.Reasons = append(bp.Reasons, fmt.Sprintf(
			"interface errors rose on %d drives behind enclosure %s (slots %s) in the last %s while their media counters stayed flat: backplane or cable suspected, not the drives",
			len(rises), encl, strings.Join(bp.Slots, ", "), humanDuration(window)))
		for _, r := range rises {
			bp.Reasons = append(bp.Reasons, fmt.Sprintf("slot %s (serial %s): %s", drives[r.idx].Slot, drives[r.idx].Snapshot.Serial, r.text))
			all[r.idx].add(LevelWatch, "%s while its media counters stayed flat, as on %d other %s behind enclosure %s: backplane or cable suspected, not this drive",
				r.text, len(rises)-1, plural(int64(len(rises)-1), "drive", "drives"), encl)
		}
		suspects = append(suspects, bp)
	}
	for _, r := range alone {
		if r.media {
			all[r.idx].add(LevelWatch, "%s together with its media counters", r.text)
			continue
		}
		all[r.idx].add(LevelWatch, "%s while its media counters stayed flat: check this drive's own slot and cable", r.text)
	}
	return suspects
}

// interfaceRise reports a drive's rise of interface errors in the window.
func interfaceRise(c *evalContext, window time.Duration) (ifaceRise, bool) {
	var parts []string
	for _, f := range interfaceFields {
		if g, ok := c.growth(f.f, window); ok {
			parts = append(parts, fmt.Sprintf("%s rose from %d to %d %s", f.noun, g.from, g.to, c.span(g.since)))
		}
	}
	if len(parts) == 0 {
		return ifaceRise{}, false
	}
	r := ifaceRise{text: strings.Join(parts, " and ")}
	for _, f := range mediaFields {
		if _, ok := c.growth(f, window); ok {
			r.media = true
			break
		}
	}
	return r, true
}

// slotLess orders slot names numerically when they are numbers.
func slotLess(a, b string) bool {
	if len(a) != len(b) && isDigits(a) && isDigits(b) {
		return len(a) < len(b)
	}
	return a < b
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// signature is the part of a history's newest sample whose change is
// worth writing at once: every counter and verdict, and whether the drive
// is above a temperature limit, but not the temperature or the hours.
func signature(h *History) string {
	if len(h.Samples) == 0 {
		return ""
	}
	s := h.last()
	var b strings.Builder
	for f := field(0); f < numFields; f++ {
		switch f {
		case fTempC, fTempMaxC, fPowerOnHours, fAboveWarnSecs, fAboveCritSecs:
			continue
		}
		if v, ok := s.get(f); ok {
			fmt.Fprintf(&b, "%d=%d,", f, v)
		}
	}
	hot := func(limit field) bool {
		t, ok1 := s.get(fTempC)
		l, ok2 := s.get(limit)
		return ok1 && ok2 && l > 0 && t >= l
	}
	fmt.Fprintf(&b, "hot=%t/%t", hot(fTempWarnC), hot(fTempCritC))
	return b.String()
}

// persist writes the histories that changed (or are due), forgets drives
// not seen in this pass (their files stay until pruned) and writes the
// slot map when it changed.
func (p *Predictor) persist(now time.Time, seen map[string]bool) {
	for key, ds := range p.drives {
		if p.store != nil {
			sig := signature(ds.h)
			if sig != ds.savedSig || now.Sub(ds.savedAt) >= p.cfg.HistoryFlush || !seen[key] {
				p.save(ds, now, sig)
			}
		}
		if !seen[key] {
			delete(p.drives, key)
		}
	}
	if p.store != nil && p.slotsDirty {
		b, err := json.Marshal(p.slots)
		if err == nil {
			err = writeAtomic(filepath.Join(p.store.dir, slotsFile), b)
		}
		if err != nil {
			p.log.Warn("predict: slot map not saved", "err", err)
			return
		}
		p.slotsDirty = false
	}
}

// save writes one history, thinning it harder until it fits the cap.
func (p *Predictor) save(ds *driveState, now time.Time, sig string) {
	h := ds.h
	for factor := int64(2); len(h.encode()) > MaxHistoryBytes && len(h.Samples) > 1 && factor <= 1<<20; factor *= 2 {
		h.compact(now, time.Duration(p.cfg.HistoryDays)*24*time.Hour, factor)
	}
	if err := p.store.Save(h); err != nil {
		if msg := err.Error(); msg != ds.saveError {
			p.log.Warn("predict: history not saved; kept in memory and retried", "drive", h.Key, "err", err)
			ds.saveError = msg
		}
		return
	}
	if ds.saveError != "" {
		p.log.Info("predict: history saved again", "drive", h.Key)
	}
	ds.saveError = ""
	ds.savedAt, ds.savedSig = now, sig
}

// Flush writes every history now, for a clean shutdown.
func (p *Predictor) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.store == nil {
		return nil
	}
	var errs []error
	for _, ds := range p.drives {
		if err := p.store.Save(ds.h); err != nil {
			errs = append(errs, err)
			continue
		}
		ds.savedSig = signature(ds.h)
	}
	return errors.Join(errs...)
}
