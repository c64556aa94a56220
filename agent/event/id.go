package event

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// An event id is 26 characters of Crockford base32 (0-9, A-Z without I, L,
// O, U) holding 128 bits: 48 bits of Unix milliseconds, then 80 random
// bits. Ids sort as strings in the order they were made: the time comes
// first, and within one millisecond a generator increments the random part
// instead of drawing a new one, so two ids from the same process never
// collide and never go backwards, even when the wall clock does. Across
// processes and reboots the 80 random bits make a collision negligible.
// (This is the layout known as ULID.)
const IDLen = 26

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordIndex = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
	}
	return t
}()

// IDGenerator makes unique, time-ordered ids. The zero value is not usable;
// NewIDGenerator makes one. It is safe for concurrent use.
type IDGenerator struct {
	mu      sync.Mutex
	now     func() time.Time
	entropy io.Reader
	lastMS  uint64
	last    [10]byte
}

// NewIDGenerator returns a generator reading the time from now and the
// random part from entropy. nil means time.Now and crypto/rand.
func NewIDGenerator(now func() time.Time, entropy io.Reader) *IDGenerator {
	if now == nil {
		now = time.Now
	}
	if entropy == nil {
		entropy = rand.Reader
	}
	return &IDGenerator{now: now, entropy: entropy}
}

var defaultGen = NewIDGenerator(nil, nil)

// NewID returns a new id from the process-wide generator.
func NewID() string { return defaultGen.New() }

// New returns the next id.
func (g *IDGenerator) New() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(g.now().UnixMilli())
	if ms <= g.lastMS {
		// Same millisecond, or the clock stepped back: keep the order by
		// counting up from the last id.
		ms = g.lastMS
		if !increment(g.last[:]) {
			ms++ // 80 bits ran over: borrow the next millisecond
		}
	} else if _, err := io.ReadFull(g.entropy, g.last[:]); err != nil {
		// crypto/rand does not fail on Linux; a custom reader might. Fall
		// back to the clock's nanoseconds so ids stay unique in-process.
		binary.BigEndian.PutUint64(g.last[2:], uint64(g.now().UnixNano()))
	}
	g.lastMS = ms
	return FormatID(ms, g.last)
}

func increment(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// FormatID builds an id from its parts: Unix milliseconds (48 bits used)
// and 80 bits of randomness. Tools that must make the same id twice (the
// crash test's event generator) use it directly.
func FormatID(unixMS uint64, random [10]byte) string {
	var raw [16]byte
	raw[0] = byte(unixMS >> 40)
	raw[1] = byte(unixMS >> 32)
	raw[2] = byte(unixMS >> 24)
	raw[3] = byte(unixMS >> 16)
	raw[4] = byte(unixMS >> 8)
	raw[5] = byte(unixMS)
	copy(raw[6:], random[:])
	// 128 bits in 26 digits of 5 bits: the first digit holds 3 bits.
	hi := binary.BigEndian.Uint64(raw[:8])
	lo := binary.BigEndian.Uint64(raw[8:])
	var out [IDLen]byte
	for i := IDLen - 1; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ParseID checks an id and returns the time it carries.
func ParseID(id string) (time.Time, error) {
	if len(id) != IDLen {
		return time.Time{}, fmt.Errorf("event: id %q: %d characters, want %d", truncate(id, 40), len(id), IDLen)
	}
	if crockfordIndex[id[0]] > 7 {
		return time.Time{}, fmt.Errorf("event: id %q: first character must be 0-7", id)
	}
	var hi, lo uint64
	for i := 0; i < IDLen; i++ {
		v := crockfordIndex[id[i]]
		if v == 0xff {
			return time.Time{}, fmt.Errorf("event: id %q: character %q at %d is not Crockford base32 (upper case)", id, id[i], i)
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	ms := hi >> 16
	return time.UnixMilli(int64(ms)).UTC(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
