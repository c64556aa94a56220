package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// udpSessionIdle is how long a client address keeps its upstream socket
// without traffic.
const udpSessionIdle = 2 * time.Minute

// UDP is a UDP proxy with switchable faults. Each client address gets its
// own upstream socket, so the server sees one peer per client, and replies
// go back to the client they belong to. Make one with NewUDP.
type UDP struct {
	ctl    *control
	pc     *net.UDPConn
	target *net.UDPAddr

	mu       sync.Mutex
	sessions map[string]*udpSession
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

type udpSession struct {
	client *net.UDPAddr
	up     *net.UDPConn
	mu     sync.Mutex
	last   time.Time
}

// NewUDP listens on listen (use "127.0.0.1:0") and forwards datagrams to
// target, in Pass mode until told otherwise.
func NewUDP(listen, target string) (*UDP, error) {
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %s: %w", target, err)
	}
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", listen, err)
	}
	pc, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen udp %s: %w", listen, err)
	}
	p := &UDP{ctl: newControl(), pc: pc, target: taddr, sessions: map[string]*udpSession{}, done: make(chan struct{})}
	p.ctl.set(Fault{Mode: Pass})
	p.wg.Add(2)
	go p.readLoop()
	go p.janitor()
	return p, nil
}

// Addr is the address clients should send to.
func (p *UDP) Addr() net.Addr { return p.pc.LocalAddr() }

// Target is the address the proxy forwards to.
func (p *UDP) Target() string { return p.target.String() }

// SetMode changes the fault's mode and keeps its other settings.
func (p *UDP) SetMode(m Mode) {
	f, _ := p.ctl.get()
	f.Mode = m
	p.SetFault(f)
}

// SetDelay sets the latency added in Delay mode.
func (p *UDP) SetDelay(d time.Duration) {
	f, _ := p.ctl.get()
	f.Delay = d
	p.SetFault(f)
}

// SetFault replaces the whole fault setting. Switching to Reset forgets
// every session at once.
func (p *UDP) SetFault(f Fault) {
	p.ctl.set(f)
	if f.Mode == Reset {
		p.forgetAll()
	}
}

// Fault returns the current setting.
func (p *UDP) Fault() Fault { f, _ := p.ctl.get(); return f }

// Stats returns what the proxy has done so far.
func (p *UDP) Stats() Stats { return p.ctl.snapshot() }

// Sessions returns how many client addresses the proxy tracks right now.
func (p *UDP) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// Close stops the proxy and waits for its goroutines.
func (p *UDP) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	err := p.pc.Close()
	p.forgetAll()
	p.wg.Wait()
	return err
}

func (p *UDP) forgetAll() {
	p.mu.Lock()
	old := p.sessions
	p.sessions = map[string]*udpSession{}
	p.mu.Unlock()
	for _, s := range old {
		s.up.Close()
	}
}

func (p *UDP) readLoop() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.pc.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		data := append([]byte(nil), buf[:n]...)
		mode, delay := p.decide()
		if mode == Reset {
			p.forgetAll()
			p.ctl.count(func(s *Stats) { s.Dropped++ })
			continue
		}
		s, err := p.session(from)
		if err != nil {
			continue
		}
		p.deliver(mode, delay, func() { _, _ = s.up.Write(data) })
	}
}

// decide returns what happens to one datagram.
func (p *UDP) decide() (Mode, time.Duration) {
	f, _ := p.ctl.get()
	switch f.Mode {
	case Random:
		m := p.ctl.drawMode()
		return m, time.Duration(p.ctl.int63n(int64(f.Mix.MaxDelay)))
	case Drop:
		if f.DropRate > 0 && p.ctl.float() >= f.DropRate {
			return Pass, 0
		}
		return Drop, 0
	}
	return f.Mode, f.Delay
}

func (p *UDP) deliver(mode Mode, delay time.Duration, send func()) {
	switch mode {
	case Pass:
		send()
		p.ctl.count(func(s *Stats) { s.Forwarded++ })
	case Delay:
		p.ctl.count(func(s *Stats) { s.Delayed++ })
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
				send()
				p.ctl.count(func(s *Stats) { s.Forwarded++ })
			case <-p.done:
			}
		}()
	default: // Drop, Blackhole, Reset: the datagram is lost
		p.ctl.count(func(s *Stats) { s.Dropped++ })
	}
}

func (p *UDP) session(from *net.UDPAddr) (*udpSession, error) {
	key := from.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if s, ok := p.sessions[key]; ok {
		s.touch()
		return s, nil
	}
	up, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil, err
	}
	s := &udpSession{client: from, up: up, last: time.Now()}
	p.sessions[key] = s
	p.wg.Add(1)
	go p.replyLoop(s)
	return s, nil
}

// replyLoop carries the server's datagrams back to the session's client.
func (p *UDP) replyLoop(s *udpSession) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable while the server is down: keep going.
			continue
		}
		s.touch()
		data := append([]byte(nil), buf[:n]...)
		mode, delay := p.decide()
		if mode == Reset {
			p.forgetAll()
			p.ctl.count(func(st *Stats) { st.Dropped++ })
			continue
		}
		p.deliver(mode, delay, func() { _, _ = p.pc.WriteToUDP(data, s.client) })
	}
}

func (s *udpSession) touch() {
	s.mu.Lock()
	s.last = time.Now()
	s.mu.Unlock()
}

func (s *udpSession) idleSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// janitor closes sessions idle for longer than udpSessionIdle.
func (p *UDP) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(udpSessionIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			for k, s := range p.sessions {
				if time.Since(s.idleSince()) > udpSessionIdle {
					s.up.Close()
					delete(p.sessions, k)
				}
			}
			p.mu.Unlock()
		}
	}
}
