// Package eventstore is the reference backend's event store: it takes the
// events that agents send home (PUT /v1/events/{id} and POST
// /v1/events/batch over mutual TLS, see agent/connecthome/wire), and those
// that came by a failover channel (mail, FTPS), and keeps each event once,
// byte for byte as the device encoded it, whichever way and however often
// it came.
//
// Storage is an append-only log (events.log) of CRC-checked frames, with an
// in-memory index by id rebuilt when the store opens, so it survives
// restarts. A batch is acknowledged only after its frames are synced to
// disk: an acknowledged event is never lost by the backend.
//
// Tests and the demo watch arrivals with Events (a snapshot) or Subscribe
// (a channel).
package eventstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/fxamacker/cbor/v2"
)

// Channels an event can arrive by.
const (
	ChannelHTTPS = "https"
	ChannelSMTP  = "smtp"
	ChannelFTPS  = "ftps"
)

// Received is one stored event.
type Received struct {
	ID         string         `json:"id"`
	SystemID   string         `json:"system_id"`
	Type       event.Type     `json:"type"`
	Severity   event.Severity `json:"severity"`
	Created    time.Time      `json:"created"`
	Channel    string         `json:"channel"`
	ReceivedAt time.Time      `json:"received_at"`
	// Data is the event's encoding exactly as the device made it.
	Data []byte `json:"-"`
}

// Event decodes Data.
func (r Received) Event() (*event.Event, error) { return event.Unmarshal(r.Data) }

// frame is one log entry.
type frame struct {
	Channel    string `cbor:"1,keyasint"`
	ReceivedAt int64  `cbor:"2,keyasint"`
	Data       []byte `cbor:"3,keyasint"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const logName = "events.log"

// Store is the event store. Open makes one.
type Store struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	f       *os.File
	size    int64
	index   map[string]int // id -> position in events
	events  []Received
	subs    map[chan Received]struct{}
	missed  int64
	closed  bool
	unavail time.Duration // > 0: answer 503 with this Retry-After (tests)
}

// Open opens (creating) the store in dir. A torn frame at the end of the
// log (a crash while writing an unacknowledged batch) is cut off after a
// copy is kept next to the log.
func Open(dir string) (*Store, error) { return OpenWithLogger(dir, nil) }

// OpenWithLogger is Open with a logger (nil discards).
func OpenWithLogger(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	s := &Store{dir: dir, log: logger.With("part", "eventstore"), index: map[string]int{}, subs: map[chan Received]struct{}{}}
	path := filepath.Join(dir, logName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	good, err := s.replay(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	st, _ := f.Stat()
	if st.Size() > good {
		tail := make([]byte, st.Size()-good)
		if _, err := f.ReadAt(tail, good); err == nil {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("torn-%d.bin", time.Now().UnixNano())), tail, 0o600)
		}
		s.log.Warn("eventstore: cut a torn frame off the end of the log (an unacknowledged write)", "bytes", st.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("eventstore: truncate torn tail: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	s.f, s.size = f, good
	return s, nil
}

// replay reads every whole frame and returns where the good part ends.
func (s *Store) replay(f *os.File) (int64, error) {
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return off, nil // EOF or torn header
		}
		n := binary.BigEndian.Uint32(hdr)
		sum := binary.BigEndian.Uint32(hdr[4:])
		if n > 8<<20 {
			return off, nil
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return off, nil
		}
		if crc32.Checksum(body, crcTable) != sum {
			return off, nil
		}
		var fr frame
		if err := cbor.Unmarshal(body, &fr); err != nil {
			return off, nil
		}
		ev, err := event.Unmarshal(fr.Data)
		if err != nil {
			return 0, fmt.Errorf("eventstore: log holds an invalid event at offset %d: %w", off, err)
		}
		s.addLocked(ev, fr)
		off += 8 + int64(n)
	}
}

func (s *Store) addLocked(ev *event.Event, fr frame) Received {
	rec := Received{ID: ev.ID, SystemID: ev.SystemID, Type: ev.Type, Severity: ev.Severity, Created: ev.Created,
		Channel: fr.Channel, ReceivedAt: time.Unix(0, fr.ReceivedAt), Data: fr.Data}
	s.index[ev.ID] = len(s.events)
	s.events = append(s.events, rec)
	return rec
}

// Incoming is one event offered to the store.
type Incoming struct {
	Data []byte
	// SystemID is the authenticated device (certificate CN); the event
	// must carry the same.
	SystemID string
	Channel  string
}

// ErrUnavailable is returned while the store cannot write.
var ErrUnavailable = errors.New("eventstore: unavailable")

// Store validates and stores events, one result per event, syncing once
// for the whole call. An error (the disk failed) means none of the new ones
// is stored; results are then nil.
func (s *Store) Store(in []Incoming) ([]wire.Result, error) {
	results := make([]wire.Result, len(in))
	type pending struct {
		i  int
		ev *event.Event
		fr frame
	}
	var todo []pending
	now := time.Now()
	for i, x := range in {
		ev, err := event.Unmarshal(x.Data)
		if err != nil {
			results[i] = wire.Result{ID: guessID(x.Data), Status: wire.StatusRejected, Error: err.Error()}
			continue
		}
		results[i].ID = ev.ID
		if ev.SystemID != x.SystemID {
			results[i].Status = wire.StatusRejected
			results[i].Error = fmt.Sprintf("event system_id %q does not match the device %q that sent it", ev.SystemID, x.SystemID)
			continue
		}
		todo = append(todo, pending{i: i, ev: ev, fr: frame{Channel: x.Channel, ReceivedAt: now.UnixNano(), Data: x.Data}})
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("eventstore: closed")
	}
	var buf bytes.Buffer
	var fresh []pending
	inBatch := map[string]int{}
	for _, p := range todo {
		if pos, ok := s.index[p.ev.ID]; ok {
			s.dupResultLocked(&results[p.i], s.events[pos].Data, p.fr.Data)
			continue
		}
		if j, ok := inBatch[p.ev.ID]; ok {
			s.dupResultLocked(&results[p.i], fresh[j].fr.Data, p.fr.Data)
			continue
		}
		body, err := cbor.Marshal(p.fr)
		if err != nil {
			results[p.i].Status = wire.StatusRejected
			results[p.i].Error = err.Error()
			continue
		}
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
		binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(body, crcTable))
		buf.Write(hdr[:])
		buf.Write(body)
		inBatch[p.ev.ID] = len(fresh)
		fresh = append(fresh, p)
	}
	if len(fresh) > 0 {
		if _, err := s.f.Write(buf.Bytes()); err != nil {
			s.rollbackLocked()
			s.mu.Unlock()
			return nil, fmt.Errorf("eventstore: write: %w", err)
		}
		if err := syscall.Fdatasync(int(s.f.Fd())); err != nil {
			s.rollbackLocked()
			s.mu.Unlock()
			return nil, fmt.Errorf("eventstore: sync: %w", err)
		}
		s.size += int64(buf.Len())
	}
	var arrived []Received
	for _, p := range fresh {
		arrived = append(arrived, s.addLocked(p.ev, p.fr))
		results[p.i].Status = wire.StatusStored
	}
	for _, rec := range arrived {
		for ch := range s.subs {
			select {
			case ch <- rec:
			default:
				s.missed++
			}
		}
	}
	s.mu.Unlock()
	return results, nil
}

func (s *Store) dupResultLocked(r *wire.Result, have, got []byte) {
	if bytes.Equal(have, got) {
		r.Status = wire.StatusDuplicate
		return
	}
	r.Status = wire.StatusRejected
	r.Error = "an event with this id is already stored with different content"
}

// rollbackLocked cuts a partly written batch off the log.
func (s *Store) rollbackLocked() {
	_ = s.f.Truncate(s.size)
	_, _ = s.f.Seek(s.size, io.SeekStart)
}

func guessID(b []byte) string {
	var e struct {
		ID string `cbor:"1,keyasint"`
	}
	if cbor.Unmarshal(b, &e) == nil && len(e.ID) == event.IDLen {
		return e.ID
	}
	return ""
}

// Events returns a snapshot of every stored event in arrival order.
func (s *Store) Events() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.events...)
}

// Count returns how many events are stored.
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// Get returns one event by id.
func (s *Store) Get(id string) (Received, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, ok := s.index[id]
	if !ok {
		return Received{}, false
	}
	return s.events[pos], true
}

// Subscribe returns a channel that gets every event stored from now on,
// and a function that ends the subscription. A subscriber that falls more
// than buf events behind misses events (counted in Missed); use Events to
// catch up.
func (s *Store) Subscribe(buf int) (<-chan Received, func()) {
	if buf <= 0 {
		buf = 1024
	}
	ch := make(chan Received, buf)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, ok := s.subs[ch]; ok {
				delete(s.subs, ch)
				close(ch)
			}
		})
	}
}

// Missed counts notifications dropped because a subscriber was full.
func (s *Store) Missed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.missed
}

// SetUnavailable makes the HTTP handler answer 503 with the given
// Retry-After (0 ends it). For tests of the agent's back-off and of
// failover.
func (s *Store) SetUnavailable(retryAfter time.Duration) {
	s.mu.Lock()
	s.unavail = retryAfter
	s.mu.Unlock()
}

func (s *Store) unavailable() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unavail
}

// Close closes the log.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for ch := range s.subs {
		delete(s.subs, ch)
		close(ch)
	}
	return s.f.Close()
}
