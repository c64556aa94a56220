// Package cases is the reference backend's case logic: from the events
// devices send home it opens a service case, with the part to dispatch,
// for a drive predicted to fail and for a suspected backplane or cable.
//
// A case is opened by an alert (agent/monitor's payloads, declared in the
// reportable-items registry):
//
//   - condition drive_risk, state raised, drive.risk fail: a drive case.
//     The part is a drive of the same model and capacity for the slot it
//     sits in (enclosure and slot from the alert).
//   - condition link_errors, state raised: a backplane case. The part is
//     the backplane or the cable of the named enclosure, with the slots
//     whose interface errors rose.
//
// Cases are de-duplicated: one open case per drive serial, and one per
// enclosure, on each device (system ID). A later alert about the same
// thing is added to the open case as an update; the same event arriving
// twice (by HTTPS and by mail, say) counts once. A drive case is closed
// when the device reports the drive in its slot replaced (condition
// drive_replaced); any case can be closed by hand (Close). Nothing else
// closes a case: a drive whose risk falls back or a backplane whose errors
// stop rising still wants a person to decide.
//
// The book keeps its cases in memory and, when given a path, in a JSON
// file written atomically on every change, so that a backend restart keeps
// them.
package cases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/sim/eventstore"
)

// Kind is what a case is about.
type Kind string

const (
	KindDrive     Kind = "drive"
	KindBackplane Kind = "backplane"
)

// Status is whether a case is open.
type Status string

const (
	StatusOpen   Status = "open"
	StatusClosed Status = "closed"
)

// Part is what to dispatch.
type Part struct {
	// Kind is "drive" or "backplane_or_cable".
	Kind string `json:"kind"`
	// For a drive: the model and capacity to send, and the failing drive.
	Model         string `json:"model,omitempty"`
	CapacityBytes uint64 `json:"capacity_bytes,omitempty"`
	Serial        string `json:"serial,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
	// Where it goes.
	Enclosure string   `json:"enclosure,omitempty"`
	Slot      string   `json:"slot,omitempty"`
	Device    string   `json:"device,omitempty"`
	Slots     []string `json:"slots,omitempty"`
	// Description is the dispatch line for a person.
	Description string `json:"description"`
}

// Update is a later event about an open case's subject.
type Update struct {
	EventID string    `json:"event_id"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// maxUpdates bounds the updates kept per case (the newest stay).
const maxUpdates = 50

// Case is one service case.
type Case struct {
	ID       string    `json:"id"`
	SystemID string    `json:"system_id"`
	Kind     Kind      `json:"kind"`
	Status   Status    `json:"status"`
	Opened   time.Time `json:"opened"`
	// EventID is the alert that opened the case.
	EventID string   `json:"event_id"`
	Summary string   `json:"summary"`
	Reasons []string `json:"reasons,omitempty"`
	Part    Part     `json:"part"`
	Updates []Update `json:"updates,omitempty"`
	// Closed and Resolution are set when the case is closed.
	Closed     time.Time `json:"closed,omitempty"`
	Resolution string    `json:"resolution,omitempty"`

	key string // de-duplication key (see keyOf)
}

func (c *Case) clone() Case {
	d := *c
	d.Reasons = append([]string(nil), c.Reasons...)
	d.Part.Slots = append([]string(nil), c.Part.Slots...)
	d.Updates = append([]Update(nil), c.Updates...)
	return d
}

// Options configure a Book.
type Options struct {
	// Path, when set, is the JSON file the cases are kept in.
	Path string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger gets one line per case opened or closed; nil discards.
	Logger *slog.Logger
}

// Book holds the cases. Its methods are safe for concurrent use.
type Book struct {
	path string
	now  func() time.Time
	log  *slog.Logger

	mu     sync.Mutex
	cases  []*Case
	open   map[string]*Case // by key
	seen   map[string]bool  // event ids already handled
	seq    int
	onOpen []func(Case)
}

// New makes a book, reading the cases kept at Options.Path if it exists.
func New(o Options) (*Book, error) {
	b := &Book{path: o.Path, now: o.Now, log: o.Logger, open: map[string]*Case{}, seen: map[string]bool{}}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.path == "" {
		return b, nil
	}
	data, err := os.ReadFile(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cases: %w", err)
	}
	var saved struct {
		Seq   int     `json:"seq"`
		Cases []*Case `json:"cases"`
	}
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, fmt.Errorf("cases: %s is not a case file: %w (move it aside to start with no cases)", b.path, err)
	}
	b.seq = saved.Seq
	for _, c := range saved.Cases {
		if c == nil {
			continue
		}
		c.key = keyOfCase(c)
		b.cases = append(b.cases, c)
		b.seen[c.EventID] = true
		for _, u := range c.Updates {
			b.seen[u.EventID] = true
		}
		if c.Status == StatusOpen {
			b.open[c.key] = c
		}
	}
	return b, nil
}

// OnOpen registers fn to be called with each case opened from now on
// (after the book is unlocked: fn may call the book).
func (b *Book) OnOpen(fn func(Case)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onOpen = append(b.onOpen, fn)
}

// List returns every case, open and closed, oldest first.
func (b *Book) List() []Case {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Case, 0, len(b.cases))
	for _, c := range b.cases {
		out = append(out, c.clone())
	}
	return out
}

// Open returns the open cases, oldest first.
func (b *Book) Open() []Case {
	var out []Case
	for _, c := range b.List() {
		if c.Status == StatusOpen {
			out = append(out, c)
		}
	}
	return out
}

// Get returns one case by id.
func (b *Book) Get(id string) (Case, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.cases {
		if c.ID == id {
			return c.clone(), true
		}
	}
	return Case{}, false
}

// ErrNoCase is returned by Close for an unknown or already closed case.
var ErrNoCase = errors.New("cases: no such open case")

// Close closes an open case by hand.
func (b *Book) Close(id, resolution string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.cases {
		if c.ID == id && c.Status == StatusOpen {
			b.closeLocked(c, resolution)
			return b.saveLocked()
		}
	}
	return fmt.Errorf("%w: %s", ErrNoCase, id)
}

func (b *Book) closeLocked(c *Case, resolution string) {
	c.Status, c.Closed, c.Resolution = StatusClosed, b.now().UTC(), resolution
	delete(b.open, c.key)
	b.log.Info("cases: closed", "case", c.ID, "system_id", c.SystemID, "resolution", resolution)
}

// Follow handles every event arriving on ch (an eventstore subscription)
// until ctx ends or ch closes; an event it cannot read is logged.
func (b *Book) Follow(ctx context.Context, ch <-chan eventstore.Received) {
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-ch:
			if !ok {
				return
			}
			if _, _, err := b.HandleReceived(r); err != nil {
				b.log.Warn("cases: event not handled", "event", r.ID, "system_id", r.SystemID, "err", err)
			}
		}
	}
}

// HandleReceived decodes a stored event and handles it.
func (b *Book) HandleReceived(r eventstore.Received) (*Case, bool, error) {
	if r.Type != event.TypeAlert {
		return nil, false, nil
	}
	e, err := r.Event()
	if err != nil {
		return nil, false, fmt.Errorf("cases: event %s: %w", r.ID, err)
	}
	return b.Handle(e)
}

// Handle looks at one event. It returns the case the event opened or
// updated (nil when the event concerns no case) and whether it opened it.
// An error names the payload field that is missing or of the wrong kind.
func (b *Book) Handle(e *event.Event) (*Case, bool, error) {
	if e == nil || e.Type != event.TypeAlert {
		return nil, false, nil
	}
	p := payload(e.Payload)
	condition, _ := p.str("condition")
	state, _ := p.str("state")
	var (
		c      *Case
		opened bool
		err    error
	)
	b.mu.Lock()
	switch condition {
	case "drive_risk":
		c, opened, err = b.driveRiskLocked(e, p, state)
	case "link_errors":
		c, opened, err = b.linkErrorsLocked(e, p, state)
	case "drive_replaced":
		c, err = b.replacedLocked(e, p)
	}
	var callbacks []func(Case)
	var snapshot Case
	if err == nil && c != nil {
		b.seen[e.ID] = true
		err = b.saveLocked()
		if opened {
			callbacks = append(callbacks, b.onOpen...)
			snapshot = c.clone()
		}
	}
	b.mu.Unlock()
	for _, fn := range callbacks {
		fn(snapshot)
	}
	if err != nil {
		return nil, false, err
	}
	if c == nil {
		return nil, false, nil
	}
	out := snapshot
	if !opened {
		out = b.mustGet(c.ID)
	}
	return &out, opened, nil
}

func (b *Book) mustGet(id string) Case {
	c, _ := b.Get(id)
	return c
}

func (b *Book) driveRiskLocked(e *event.Event, p payload, state string) (*Case, bool, error) {
	drive, ok := p.obj("drive")
	if !ok {
		return nil, false, fmt.Errorf("cases: event %s: drive_risk alert without a drive object", e.ID)
	}
	risk, _ := drive.str("risk")
	part := Part{Kind: "drive"}
	part.Serial, _ = drive.str("serial")
	part.Model, _ = drive.str("model")
	part.Protocol, _ = drive.str("protocol")
	part.CapacityBytes, _ = drive.uint("capacity_bytes")
	part.Slot, _ = drive.str("slot")
	part.Enclosure, _ = p.str("enclosure")
	if slot, ok := p.obj("slot"); ok {
		if v, ok := slot.str("enclosure"); ok && part.Enclosure == "" {
			part.Enclosure = v
		}
		if v, ok := slot.str("slot"); ok && part.Slot == "" {
			part.Slot = v
		}
		part.Device, _ = slot.str("device")
	}
	if part.Serial == "" && part.Enclosure == "" && part.Slot == "" && part.Device == "" {
		return nil, false, fmt.Errorf("cases: event %s: drive_risk alert names neither the drive's serial nor where it is", e.ID)
	}
	key := keyOf(e.SystemID, KindDrive, part.Serial, part.Enclosure+"/"+part.Slot+"/"+part.Device)
	msg, _ := p.str("message")
	if c := b.open[key]; c != nil {
		if !b.seen[e.ID] {
			b.addUpdate(c, e, msg)
		}
		return c, false, nil
	}
	if state != "raised" || risk != "fail" || b.seen[e.ID] {
		return nil, false, nil
	}
	part.Description = driveDispatch(&part)
	return b.openLocked(e, KindDrive, key, part, msg, p.strs("reasons")), true, nil
}

func (b *Book) linkErrorsLocked(e *event.Event, p payload, state string) (*Case, bool, error) {
	encl, ok := p.str("enclosure")
	if !ok || encl == "" {
		return nil, false, fmt.Errorf("cases: event %s: link_errors alert without an enclosure", e.ID)
	}
	key := keyOf(e.SystemID, KindBackplane, encl, "")
	msg, _ := p.str("message")
	if c := b.open[key]; c != nil {
		if !b.seen[e.ID] {
			b.addUpdate(c, e, msg)
		}
		return c, false, nil
	}
	if state != "raised" || b.seen[e.ID] {
		return nil, false, nil
	}
	part := Part{Kind: "backplane_or_cable", Enclosure: encl}
	for _, d := range p.objs("drives") {
		if s, ok := d.str("slot"); ok && s != "" {
			part.Slots = append(part.Slots, s)
		}
	}
	part.Description = fmt.Sprintf("backplane or drive cable of enclosure %s", encl)
	if len(part.Slots) > 0 {
		part.Description += fmt.Sprintf(" (interface errors on slots %s; check the cabling to the backplane first)", strings.Join(part.Slots, ", "))
	}
	return b.openLocked(e, KindBackplane, key, part, msg, p.strs("reasons")), true, nil
}

// replacedLocked closes the open drive cases of the slot where a drive was
// replaced.
func (b *Book) replacedLocked(e *event.Event, p payload) (*Case, error) {
	encl, _ := p.str("enclosure")
	var slot string
	if so, ok := p.obj("slot"); ok {
		slot, _ = so.str("slot")
		if encl == "" {
			encl, _ = so.str("enclosure")
		}
	}
	if slot == "" {
		return nil, fmt.Errorf("cases: event %s: drive_replaced alert without a slot", e.ID)
	}
	newSerial := ""
	if d, ok := p.obj("drive"); ok {
		newSerial, _ = d.str("serial")
	}
	var last *Case
	for _, c := range b.cases {
		if c.Status != StatusOpen || c.Kind != KindDrive || c.SystemID != e.SystemID || c.Part.Enclosure != encl || c.Part.Slot != slot {
			continue
		}
		if newSerial != "" && newSerial == c.Part.Serial {
			continue // the same drive, re-seated
		}
		b.addUpdate(c, e, "drive replaced")
		b.closeLocked(c, fmt.Sprintf("drive in enclosure %s slot %s replaced (new serial %s)", encl, slot, orUnknown(newSerial)))
		last = c
	}
	return last, nil
}

func (b *Book) openLocked(e *event.Event, kind Kind, key string, part Part, msg string, reasons []string) *Case {
	b.seq++
	c := &Case{
		ID: fmt.Sprintf("C-%06d", b.seq), SystemID: e.SystemID, Kind: kind, Status: StatusOpen,
		Opened: b.now().UTC(), EventID: e.ID, Summary: msg, Reasons: reasons, Part: part, key: key,
	}
	if c.Summary == "" {
		c.Summary = part.Description
	}
	b.cases = append(b.cases, c)
	b.open[key] = c
	b.log.Info("cases: opened", "case", c.ID, "system_id", c.SystemID, "kind", kind, "part", part.Description)
	return c
}

func (b *Book) addUpdate(c *Case, e *event.Event, msg string) {
	c.Updates = append(c.Updates, Update{EventID: e.ID, At: e.Created.UTC(), Message: msg})
	if n := len(c.Updates); n > maxUpdates {
		c.Updates = append([]Update(nil), c.Updates[n-maxUpdates:]...)
	}
}

// keyOf is the de-duplication key: one open case per drive serial (or,
// for a drive without one, per place) or per enclosure, per device.
func keyOf(systemID string, kind Kind, id, place string) string {
	if id == "" {
		id = "at:" + place
	}
	return systemID + "\x00" + string(kind) + "\x00" + id
}

func keyOfCase(c *Case) string {
	if c.Kind == KindBackplane {
		return keyOf(c.SystemID, c.Kind, c.Part.Enclosure, "")
	}
	return keyOf(c.SystemID, c.Kind, c.Part.Serial, c.Part.Enclosure+"/"+c.Part.Slot+"/"+c.Part.Device)
}

// driveDispatch is the dispatch line for a drive.
func driveDispatch(p *Part) string {
	var b strings.Builder
	b.WriteString("replacement drive: ")
	b.WriteString(orUnknown(p.Model))
	if p.CapacityBytes > 0 {
		b.WriteString(", " + capacity(p.CapacityBytes))
	}
	switch {
	case p.Enclosure != "" || p.Slot != "":
		fmt.Fprintf(&b, ", for enclosure %s slot %s", orUnknown(p.Enclosure), orUnknown(p.Slot))
	case p.Device != "":
		fmt.Fprintf(&b, ", for %s", p.Device)
	}
	if p.Serial != "" {
		fmt.Fprintf(&b, " (failing drive serial %s)", p.Serial)
	}
	return b.String()
}

// capacity writes bytes the way drive makers label them: 4.0 TB, 480 GB.
func capacity(n uint64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if f >= 100 || i == 0 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// saveLocked writes the book when it has a path.
func (b *Book) saveLocked() error {
	if b.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(struct {
		Seq   int     `json:"seq"`
		Cases []*Case `json:"cases"`
	}{b.seq, b.cases}, "", "  ")
	if err != nil {
		return fmt.Errorf("cases: %w", err)
	}
	dir := filepath.Dir(b.path)
	f, err := os.CreateTemp(dir, ".cases-*")
	if err != nil {
		return fmt.Errorf("cases: failed to save: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), b.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cases: failed to save %s: %w", b.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
