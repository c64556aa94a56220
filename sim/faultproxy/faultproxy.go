// Package faultproxy is the network-fault proxy of the simulator: it sits
// between a client and a server on loopback (or inside a test's network
// namespace) and forwards TCP connections or UDP datagrams, or breaks them
// on purpose. The fault is switched at run time:
//
//	p, _ := faultproxy.NewTCP("127.0.0.1:0", backendAddr)
//	defer p.Close()
//	client dials p.Addr().String() instead of backendAddr
//	p.SetMode(faultproxy.Reset)   // every connection gets a TCP RST
//	p.SetMode(faultproxy.Pass)    // back to normal
//
// Modes (see Mode for the exact behaviour per protocol): Pass, Drop (UDP
// datagrams are lost; TCP connections stall), Delay, Blackhole (nothing
// comes back, nothing is closed), Reset (TCP RST through SetLinger(0); UDP
// forgets its sessions) and Random, a seeded mix of all of them.
//
// The proxy never dials anything but the target it was given.
package faultproxy

import (
	"fmt"
	"math/rand"
	"sync"
	"time"
)

// Mode is the fault the proxy applies.
type Mode int

const (
	// Pass forwards everything unchanged.
	Pass Mode = iota
	// Drop loses traffic the way a lossy link does. UDP: each datagram is
	// dropped with probability Fault.DropRate (all of them when DropRate is
	// 0). TCP: the bytes stop flowing (the connection stalls, as TCP does
	// when every segment is lost) and resume, in order, once the mode
	// changes to one that forwards.
	Drop
	// Delay forwards every TCP chunk or UDP datagram after Fault.Delay.
	Delay
	// Blackhole swallows everything without a word. UDP: every datagram in
	// either direction is dropped. TCP: new connections are accepted and
	// then held open without ever reaching the target; bytes on existing
	// connections are discarded. Nothing is closed.
	Blackhole
	// Reset breaks connections. TCP: every open connection is closed with
	// a RST on both sides at once, and each new one is reset as soon as it
	// is accepted. UDP: datagrams are dropped and all sessions forgotten,
	// so the next datagram reaches the server from a new source port (what
	// a NAT rebinding looks like).
	Reset
	// Random draws a fault per TCP connection or per UDP datagram from
	// Fault.Mix with a generator seeded by Fault.Seed.
	Random
)

var modeNames = [...]string{"pass", "drop", "delay", "blackhole", "reset", "random"}

func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode reads a mode name as String writes it.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("faultproxy: unknown mode %q (known: pass, drop, delay, blackhole, reset, random)", s)
}

// Mix weighs the faults Random chooses from. Weights are relative; a zero
// Mix means equal weights for all of them. For TCP, Reset resets the
// connection after a random number of bytes (up to ResetAfterBytes, at
// least 1) or a random time (up to MaxDelay), whichever the draw picks, so
// that connections break in the middle of requests and answers, not only
// at their start. Drop stalls the connection for a random time up to
// MaxStall and then lets it go on.
type Mix struct {
	Pass, Drop, Delay, Blackhole, Reset float64
	// MaxDelay bounds the random per-chunk or per-datagram delay.
	// Zero means 50ms.
	MaxDelay time.Duration
	// MaxStall bounds how long a TCP connection drawn for Drop stalls.
	// Zero means 2s.
	MaxStall time.Duration
	// ResetAfterBytes bounds how far into a TCP connection a Reset comes.
	// Zero means 64 KiB.
	ResetAfterBytes int
}

// Fault is the whole fault setting; SetMode changes only Mode.
type Fault struct {
	Mode Mode
	// Delay is the added latency in Delay mode.
	Delay time.Duration
	// DropRate is the probability that a UDP datagram is dropped in Drop
	// mode; 0 means 1 (all of them).
	DropRate float64
	// Seed seeds the generator used by Random and by DropRate.
	Seed int64
	// Mix weighs Random's choices.
	Mix Mix
}

func (m Mix) withDefaults() Mix {
	if m.Pass+m.Drop+m.Delay+m.Blackhole+m.Reset <= 0 {
		m.Pass, m.Drop, m.Delay, m.Blackhole, m.Reset = 1, 1, 1, 1, 1
	}
	if m.MaxDelay <= 0 {
		m.MaxDelay = 50 * time.Millisecond
	}
	if m.MaxStall <= 0 {
		m.MaxStall = 2 * time.Second
	}
	if m.ResetAfterBytes <= 0 {
		m.ResetAfterBytes = 64 << 10
	}
	return m
}

// draw picks one fault from the mix.
func (m Mix) draw(r *rand.Rand) Mode {
	total := m.Pass + m.Drop + m.Delay + m.Blackhole + m.Reset
	x := r.Float64() * total
	for _, c := range []struct {
		w float64
		m Mode
	}{{m.Pass, Pass}, {m.Drop, Drop}, {m.Delay, Delay}, {m.Blackhole, Blackhole}, {m.Reset, Reset}} {
		if x < c.w {
			return c.m
		}
		x -= c.w
	}
	return Pass
}

// Stats counts what the proxy did, for tests that want to be sure a fault
// actually happened.
type Stats struct {
	Accepted  int64 // TCP connections accepted
	Resets    int64 // TCP connections reset
	Stalls    int64 // TCP connections or chunks held by Drop
	Forwarded int64 // TCP chunks or UDP datagrams forwarded
	Dropped   int64 // UDP datagrams or TCP chunks discarded
	Delayed   int64 // TCP chunks or UDP datagrams delayed
}

// control holds the current fault, shared by the TCP and UDP proxies. Every
// change closes changed so that waiters (stalled TCP pumps) look again.
type control struct {
	mu      sync.Mutex
	fault   Fault
	rng     *rand.Rand
	changed chan struct{}
	stats   Stats
}

func newControl() *control {
	return &control{rng: rand.New(rand.NewSource(1)), changed: make(chan struct{})}
}

func (c *control) set(f Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Mode == Random || f.DropRate > 0 {
		if f.Seed != c.fault.Seed || c.fault.Mode != f.Mode {
			c.rng = rand.New(rand.NewSource(f.Seed))
		}
	}
	f.Mix = f.Mix.withDefaults()
	c.fault = f
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *control) get() (Fault, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault, c.changed
}

func (c *control) float() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64()
}

func (c *control) int63n(n int64) int64 {
	if n <= 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Int63n(n)
}

func (c *control) drawMode() Mode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault.Mix.draw(c.rng)
}

func (c *control) count(f func(s *Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func (c *control) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}
