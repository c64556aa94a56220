package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/work"
)

// How much the service remembers per device: acknowledged item ids (so
// that the same id is not queued twice) and stored results.
const (
	rememberAcked   = 64
	rememberResults = 64
)

// maxDTLSWork is how many bytes of work items a DTLS reply carries, so
// that the datagram stays under a typical path MTU; what does not fit is
// announced with Reply.More and fetched over HTTPS.
const maxDTLSWork = 1000

// device is what the service knows about one device, by system ID.
type device struct {
	id string

	mu        sync.Mutex
	lastSeq   uint64
	lastSeen  time.Time
	channel   Channel
	addr      netip.AddrPort
	telemetry *hb.Telemetry
	beats     uint64
	queue     []work.Item // not yet acknowledged, in order
	acked     []string    // recently acknowledged ids, oldest first
	results   map[string]work.Result
	resultIDs []string // order of results, oldest first
	session   *session
	// changed is closed and replaced whenever work is queued or a result
	// stored, to wake long polls and WaitResult.
	changed chan struct{}
}

func (s *Service) device(systemID string) *device {
	s.devMu.RLock()
	d := s.devices[systemID]
	s.devMu.RUnlock()
	if d != nil {
		return d
	}
	s.devMu.Lock()
	defer s.devMu.Unlock()
	if d = s.devices[systemID]; d == nil {
		d = &device{id: systemID, results: map[string]work.Result{}, changed: make(chan struct{})}
		s.devices[systemID] = d
	}
	return d
}

func (s *Service) lookupDevice(systemID string) *device {
	s.devMu.RLock()
	defer s.devMu.RUnlock()
	return s.devices[systemID]
}

// wakeLocked wakes everyone waiting on the device; d.mu is held.
func (d *device) wakeLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// ErrDuplicateItem: Enqueue was given an id the device already has queued,
// acknowledged or answered.
var ErrDuplicateItem = errors.New("heartbeat service: work item id already used for this device")

// Enqueue queues a work item for a device. The item goes out in the
// replies to the device's heartbeats until the device acknowledges its
// id; a device that is not connected gets it when it next heartbeats.
func (s *Service) Enqueue(systemID string, it work.Item) error {
	if systemID == "" {
		return errors.New("heartbeat service: enqueue: empty system ID")
	}
	if it.ID == "" || len(it.ID) > hb.MaxIDLen {
		return fmt.Errorf("heartbeat service: enqueue: item id %q must be 1 to %d bytes", it.ID, hb.MaxIDLen)
	}
	if it.Kind == "" {
		return fmt.Errorf("heartbeat service: enqueue: item %q has no kind", it.ID)
	}
	d := s.device(systemID)
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.ContainsFunc(d.queue, func(q work.Item) bool { return q.ID == it.ID }) ||
		slices.Contains(d.acked, it.ID) {
		return fmt.Errorf("%w: %s for %s", ErrDuplicateItem, it.ID, systemID)
	}
	if _, ok := d.results[it.ID]; ok {
		return fmt.Errorf("%w: %s for %s", ErrDuplicateItem, it.ID, systemID)
	}
	d.queue = append(d.queue, it)
	d.wakeLocked()
	return nil
}

// Result returns the result a device reported for an item, if it has.
func (s *Service) Result(systemID, itemID string) (work.Result, bool) {
	d := s.lookupDevice(systemID)
	if d == nil {
		return work.Result{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.results[itemID]
	return r, ok
}

// WaitResult waits until the device reports the item's result or ctx ends.
func (s *Service) WaitResult(ctx context.Context, systemID, itemID string) (work.Result, error) {
	d := s.device(systemID)
	for {
		d.mu.Lock()
		r, ok := d.results[itemID]
		ch := d.changed
		d.mu.Unlock()
		if ok {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return work.Result{}, fmt.Errorf("heartbeat service: waiting for %s's result of %s: %w", systemID, itemID, ctx.Err())
		}
	}
}

// DeviceInfo is what the service knows about a device.
type DeviceInfo struct {
	SystemID   string        `json:"system_id"`
	LastSeen   time.Time     `json:"last_seen"`
	Channel    Channel       `json:"channel,omitempty"`
	Addr       string        `json:"addr,omitempty"`
	LastSeq    uint64        `json:"last_seq"`
	Heartbeats uint64        `json:"heartbeats"`
	Telemetry  *hb.Telemetry `json:"telemetry,omitempty"`
	Pending    []string      `json:"pending,omitempty"` // ids of queued, unacknowledged items
	SessionID  uint32        `json:"session_id,omitempty"`
	Results    []work.Result `json:"results,omitempty"`
}

// Device returns what the service knows about one device.
func (s *Service) Device(systemID string) (DeviceInfo, bool) {
	d := s.lookupDevice(systemID)
	if d == nil {
		return DeviceInfo{}, false
	}
	return d.info(), true
}

// Devices returns every device the service has heard of or queued for.
func (s *Service) Devices() []DeviceInfo {
	s.devMu.RLock()
	all := make([]*device, 0, len(s.devices))
	for _, d := range s.devices {
		all = append(all, d)
	}
	s.devMu.RUnlock()
	out := make([]DeviceInfo, 0, len(all))
	for _, d := range all {
		out = append(out, d.info())
	}
	slices.SortFunc(out, func(a, b DeviceInfo) int {
		switch {
		case a.SystemID < b.SystemID:
			return -1
		case a.SystemID > b.SystemID:
			return 1
		}
		return 0
	})
	return out
}

func (d *device) info() DeviceInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	in := DeviceInfo{SystemID: d.id, LastSeen: d.lastSeen, Channel: d.channel, LastSeq: d.lastSeq, Heartbeats: d.beats}
	if d.addr.IsValid() {
		in.Addr = d.addr.String()
	}
	if d.telemetry != nil {
		t := *d.telemetry
		in.Telemetry = &t
	}
	for _, it := range d.queue {
		in.Pending = append(in.Pending, it.ID)
	}
	if d.session != nil {
		in.SessionID = d.session.id
	}
	for _, id := range d.resultIDs {
		in.Results = append(in.Results, d.results[id])
	}
	return in
}

// Seen is one heartbeat the service answered, for watchers (the demo).
type Seen struct {
	SystemID  string
	Channel   Channel
	Addr      netip.AddrPort
	Seq       uint64
	At        time.Time
	Telemetry *hb.Telemetry
	Acks      []string
	Results   []work.Result
	// SessionID is the DTLS session (0 over HTTPS).
	SessionID uint32
}

// Subscribe returns a channel that receives every heartbeat answered from
// now on, and a function that ends the subscription. A subscriber that
// does not keep up misses heartbeats rather than slowing the service:
// buf is the channel's capacity.
func (s *Service) Subscribe(buf int) (<-chan Seen, func()) {
	ch := make(chan Seen, buf)
	s.subMu.Lock()
	var cur []chan Seen
	if p := s.subs.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clip(cur), ch)
	s.subs.Store(&next)
	s.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.subMu.Lock()
			defer s.subMu.Unlock()
			var cur []chan Seen
			if p := s.subs.Load(); p != nil {
				cur = *p
			}
			next := slices.DeleteFunc(slices.Clone(cur), func(c chan Seen) bool { return c == ch })
			s.subs.Store(&next)
		})
	}
}

func (s *Service) publish(e Seen) {
	p := s.subs.Load()
	if p == nil {
		return
	}
	for _, ch := range *p {
		select {
		case ch <- e:
		default:
		}
	}
}

// process applies one authenticated heartbeat of device d and builds its
// reply. workBudget bounds the bytes of work items in the reply (0: no
// bound but the protocol's item count).
func (s *Service) process(d *device, h *hb.Heartbeat, ch Channel, addr netip.AddrPort, sessionID uint32, now time.Time, workBudget int) *hb.Reply {
	r := &hb.Reply{Echo: hb.EchoFor(d.id, h.Seq, h.Nonce)}
	d.mu.Lock()
	if h.Seq > d.lastSeq {
		d.lastSeq = h.Seq
		if h.Telemetry != nil {
			t := *h.Telemetry
			d.telemetry = &t
		}
	} else {
		// A heartbeat older than one already seen: answer it (the device
		// waits for it), but do not let it overwrite newer telemetry.
		s.stats.stale.Add(1)
	}
	d.lastSeen, d.channel, d.addr = now, ch, addr
	d.beats++
	woke := false
	for _, id := range h.Acks {
		if i := slices.IndexFunc(d.queue, func(q work.Item) bool { return q.ID == id }); i >= 0 {
			d.queue = slices.Delete(d.queue, i, i+1)
			d.acked = append(d.acked, id)
			if len(d.acked) > rememberAcked {
				d.acked = slices.Delete(d.acked, 0, len(d.acked)-rememberAcked)
			}
			s.stats.delivered.Add(1)
		}
	}
	for _, res := range h.Results {
		if _, dup := d.results[res.ID]; !dup {
			d.results[res.ID] = res
			d.resultIDs = append(d.resultIDs, res.ID)
			if len(d.resultIDs) > rememberResults {
				delete(d.results, d.resultIDs[0])
				d.resultIDs = d.resultIDs[1:]
			}
			s.stats.results.Add(1)
			woke = true
		}
		r.Done = append(r.Done, res.ID)
	}
	r.Work, r.More = d.pendingWorkLocked(workBudget)
	if woke {
		d.wakeLocked()
	}
	d.mu.Unlock()

	if s.subs.Load() != nil {
		s.publish(Seen{SystemID: d.id, Channel: ch, Addr: addr, Seq: h.Seq, At: now, Telemetry: h.Telemetry,
			Acks: h.Acks, Results: h.Results, SessionID: sessionID})
	}
	return r
}

// pendingWorkLocked returns the queued items that fit in budget bytes (0:
// no byte bound), and whether more are waiting.
func (d *device) pendingWorkLocked(budget int) ([]work.Item, bool) {
	if len(d.queue) == 0 {
		return nil, false
	}
	var out []work.Item
	used := 0
	for _, it := range d.queue {
		size := len(it.ID) + len(it.Kind) + len(it.Body) + 16
		if len(out) == hb.MaxWorkItems || (budget > 0 && used+size > budget) {
			return out, true
		}
		used += size
		out = append(out, it)
	}
	return out, false
}
