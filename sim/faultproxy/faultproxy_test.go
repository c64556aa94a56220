package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoTCP runs a line echo server on loopback and counts its connections.
func echoTCP(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), accepted
}

func newTCP(t *testing.T, target string) *TCP {
	t.Helper()
	p, err := NewTCP("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *TCP) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return line, err
}

func TestTCPPass(t *testing.T) {
	target, _ := echoTCP(t)
	p := newTCP(t, target)
	c := dial(t, p)
	got, err := roundTrip(c, "hello", 10*time.Second)
	if err != nil || got != "hello\n" {
		t.Fatalf("echo through pass: got %q, %v", got, err)
	}
}

func TestTCPResetBreaksOpenAndNewConnections(t *testing.T) {
	target, _ := echoTCP(t)
	p := newTCP(t, target)
	c := dial(t, p)
	if _, err := roundTrip(c, "before", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Reset)
	_, err := roundTrip(c, "after", 10*time.Second)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("open connection after Reset: got %v, want connection reset", err)
	}
	c2, err := net.DialTimeout("tcp", p.Addr().String(), 10*time.Second)
	if err == nil { // the reset may come before connect returns, or after
		defer c2.Close()
		_, err = roundTrip(c2, "new", 10*time.Second)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("new connection in Reset: got %v, want connection reset", err)
	}
	if p.Stats().Resets < 2 {
		t.Fatalf("stats: %+v, want at least 2 resets", p.Stats())
	}
	p.SetMode(Pass)
	c3 := dial(t, p)
	if got, err := roundTrip(c3, "again", 10*time.Second); err != nil || got != "again\n" {
		t.Fatalf("after Pass again: %q, %v", got, err)
	}
}

func TestTCPDropStallsThenResumes(t *testing.T) {
	target, _ := echoTCP(t)
	p := newTCP(t, target)
	c := dial(t, p)
	if _, err := roundTrip(c, "warm", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Drop)
	_, err := roundTrip(c, "held", 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("in Drop: got %v, want a timeout (stall)", err)
	}
	p.SetMode(Pass)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "held\n" {
		t.Fatalf("after Drop ends the held bytes should arrive: %q, %v", line, err)
	}
}

func TestTCPBlackholeNeverReachesTarget(t *testing.T) {
	target, accepted := echoTCP(t)
	p := newTCP(t, target)
	p.SetMode(Blackhole)
	c := dial(t, p)
	_, err := roundTrip(c, "void", 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("in Blackhole: got %v, want a timeout", err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("target accepted %d connections through a blackhole", n)
	}
	if p.Open() != 1 {
		t.Fatalf("blackholed connection should be held open, proxy holds %d", p.Open())
	}
}

func TestTCPDelayAddsLatency(t *testing.T) {
	target, _ := echoTCP(t)
	p := newTCP(t, target)
	p.SetFault(Fault{Mode: Delay, Delay: 100 * time.Millisecond})
	c := dial(t, p)
	start := time.Now()
	if _, err := roundTrip(c, "slow", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// One delay each way: a lower bound only, never an upper one.
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("round trip took %v, want at least 200ms with 100ms each way", el)
	}
	if p.Stats().Delayed < 2 {
		t.Fatalf("stats %+v: want 2 delayed chunks", p.Stats())
	}
}

func TestTCPRandomMixBreaksSomeConnections(t *testing.T) {
	target, _ := echoTCP(t)
	p := newTCP(t, target)
	p.SetFault(Fault{Mode: Random, Seed: 42, Mix: Mix{Pass: 1, Reset: 1, Delay: 1, MaxDelay: 5 * time.Millisecond, MaxStall: 50 * time.Millisecond, ResetAfterBytes: 4}})
	var ok, broken int
	for i := 0; i < 40; i++ {
		c, err := net.DialTimeout("tcp", p.Addr().String(), 10*time.Second)
		if err != nil { // a reset can come before connect returns
			broken++
			continue
		}
		if _, err := roundTrip(c, "0123456789", 5*time.Second); err != nil {
			broken++
		} else {
			ok++
		}
		c.Close()
	}
	if ok == 0 || broken == 0 {
		t.Fatalf("random mix: %d ok, %d broken; want some of each", ok, broken)
	}
}

func TestTCPTargetDownResetsClient(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	target := ln.Addr().String()
	ln.Close()
	p := newTCP(t, target)
	c, err := net.DialTimeout("tcp", p.Addr().String(), 10*time.Second)
	if err == nil {
		defer c.Close()
		_, err = roundTrip(c, "x", 10*time.Second)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("target down: got %v, want connection reset", err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	target, _ := echoTCP(t)
	p, err := NewTCP("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	if _, err := roundTrip(c, "x", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Drop)
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return with a stalled connection")
	}
	if _, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); err == nil {
		t.Fatal("proxy still accepts after Close")
	}
}

// echoUDP runs a UDP echo server and records the source addresses it saw.
func echoUDP(t *testing.T) (addr string, peers func() map[string]int) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			seen[from.String()]++
			mu.Unlock()
			_, _ = pc.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		cp := map[string]int{}
		for k, v := range seen {
			cp[k] = v
		}
		return cp
	}
}

func newUDP(t *testing.T, target string) (*UDP, *net.UDPConn) {
	t.Helper()
	p, err := NewUDP("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := net.DialUDP("udp", nil, p.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, c
}

func udpEcho(c *net.UDPConn, msg string, timeout time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func TestUDPPassAndBlackhole(t *testing.T) {
	target, peers := echoUDP(t)
	p, c := newUDP(t, target)
	if got, err := udpEcho(c, "ping", 10*time.Second); err != nil || got != "ping" {
		t.Fatalf("pass: %q, %v", got, err)
	}
	p.SetMode(Blackhole)
	before := peers()
	_, err := udpEcho(c, "lost", 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackhole: got %v, want a read timeout", err)
	}
	after := peers()
	for k, v := range after {
		if before[k] != v {
			t.Fatalf("server received a datagram through the blackhole: %v -> %v", before, after)
		}
	}
	p.SetMode(Pass)
	if got, err := udpEcho(c, "back", 10*time.Second); err != nil || got != "back" {
		t.Fatalf("pass again: %q, %v", got, err)
	}
}

func TestUDPResetChangesSourcePort(t *testing.T) {
	target, peers := echoUDP(t)
	p, c := newUDP(t, target)
	if _, err := udpEcho(c, "one", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Reset)
	if p.Sessions() != 0 {
		t.Fatalf("Reset left %d sessions", p.Sessions())
	}
	p.SetMode(Pass)
	if _, err := udpEcho(c, "two", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(peers()); n != 2 {
		t.Fatalf("server saw %d source addresses, want 2 after a reset", n)
	}
}

func TestUDPDropRate(t *testing.T) {
	target, peers := echoUDP(t)
	p, c := newUDP(t, target)
	p.SetFault(Fault{Mode: Drop, DropRate: 0.5, Seed: 7})
	for i := 0; i < 200; i++ {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	st := waitStats(t, p, func(s Stats) bool { return s.Dropped+s.Forwarded >= 200 })
	if st.Dropped < 50 || st.Dropped > 150 {
		t.Fatalf("drop rate 0.5 over 200 datagrams dropped %d", st.Dropped)
	}
	_ = peers
}

func TestUDPDelay(t *testing.T) {
	target, _ := echoUDP(t)
	p, c := newUDP(t, target)
	p.SetFault(Fault{Mode: Delay, Delay: 100 * time.Millisecond})
	start := time.Now()
	if _, err := udpEcho(c, "slow", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("round trip %v, want at least 200ms", el)
	}
}

func waitStats(t *testing.T, p *UDP, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached the condition: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseMode(t *testing.T) {
	for m := Pass; m <= Random; m++ {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Fatalf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("flaky"); err == nil {
		t.Fatal("ParseMode accepted an unknown name")
	}
}
