package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TCP is a TCP proxy with switchable faults. Make one with NewTCP.
type TCP struct {
	ctl    *control
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[*tcpConn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// NewTCP listens on listen (use "127.0.0.1:0" for a free loopback port) and
// forwards each accepted connection to target, in Pass mode until told
// otherwise.
func NewTCP(listen, target string) (*TCP, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen tcp %s: %w", listen, err)
	}
	p := &TCP{ctl: newControl(), ln: ln, target: target, conns: map[*tcpConn]struct{}{}, done: make(chan struct{})}
	p.ctl.set(Fault{Mode: Pass})
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients should dial.
func (p *TCP) Addr() net.Addr { return p.ln.Addr() }

// Target is the address the proxy forwards to.
func (p *TCP) Target() string { return p.target }

// SetMode changes the fault's mode and keeps its other settings.
func (p *TCP) SetMode(m Mode) {
	f, _ := p.ctl.get()
	f.Mode = m
	p.SetFault(f)
}

// SetDelay sets the latency added in Delay mode.
func (p *TCP) SetDelay(d time.Duration) {
	f, _ := p.ctl.get()
	f.Delay = d
	p.SetFault(f)
}

// SetFault replaces the whole fault setting. Switching to Reset resets
// every open connection at once.
func (p *TCP) SetFault(f Fault) {
	p.ctl.set(f)
	if f.Mode == Reset {
		p.mu.Lock()
		open := make([]*tcpConn, 0, len(p.conns))
		for c := range p.conns {
			open = append(open, c)
		}
		p.mu.Unlock()
		for _, c := range open {
			c.reset(p)
		}
	}
}

// Fault returns the current setting.
func (p *TCP) Fault() Fault { f, _ := p.ctl.get(); return f }

// Stats returns what the proxy has done so far.
func (p *TCP) Stats() Stats { return p.ctl.snapshot() }

// Open returns how many client connections the proxy holds right now.
func (p *TCP) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end.
func (p *TCP) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	open := make([]*tcpConn, 0, len(p.conns))
	for c := range p.conns {
		open = append(open, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range open {
		c.close()
	}
	p.wg.Wait()
	return err
}

// tcpConn is one proxied connection. fate is the fault Random drew for it
// when it was accepted; it applies only while the proxy is in Random mode.
type tcpConn struct {
	client net.Conn
	server net.Conn // nil while blackholed

	fate       Mode
	resetAfter int64     // Random Reset: bytes (both directions) before the reset; 0 = by time
	stallUntil time.Time // Random Drop: when the stall ends

	mu        sync.Mutex
	forwarded int64
	once      sync.Once
	done      chan struct{}
}

func (p *TCP) acceptLoop() {
	defer p.wg.Done()
	for {
		cl, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (too many files): back off briefly.
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.ctl.count(func(s *Stats) { s.Accepted++ })
		c := &tcpConn{client: cl, done: make(chan struct{})}
		if !p.track(c) {
			rst(cl)
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *TCP) track(c *tcpConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *TCP) untrack(c *tcpConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// serve decides the new connection's fate, dials the target and runs the
// two pumps.
func (p *TCP) serve(c *tcpConn) {
	defer p.wg.Done()
	defer p.untrack(c)

	f, _ := p.ctl.get()
	c.fate = Pass
	if f.Mode == Random {
		c.fate = p.ctl.drawMode()
		switch c.fate {
		case Reset:
			if p.ctl.float() < 0.5 {
				c.resetAfter = 1 + p.ctl.int63n(int64(f.Mix.ResetAfterBytes))
			} else {
				after := time.Duration(p.ctl.int63n(int64(f.Mix.MaxStall)))
				t := time.AfterFunc(after, func() { c.reset(p) })
				defer t.Stop()
			}
		case Drop:
			c.stallUntil = time.Now().Add(time.Duration(p.ctl.int63n(int64(f.Mix.MaxStall))))
		}
	}
	mode := f.Mode
	if mode == Random {
		mode = c.fate
	}
	switch mode {
	case Reset:
		c.reset(p)
		return
	case Blackhole:
		// Accepted, never answered: read and discard until someone closes.
		p.ctl.count(func(s *Stats) { s.Stalls++ })
		n, _ := io.Copy(io.Discard, c.client)
		if n > 0 {
			p.ctl.count(func(s *Stats) { s.Dropped++ })
		}
		c.close()
		return
	}

	srv, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		// The target is down: the client sees what it would see without
		// the proxy, a refused (reset) connection.
		c.reset(p)
		return
	}
	c.mu.Lock()
	c.server = srv
	c.mu.Unlock()
	select {
	case <-c.done: // reset while dialing
		rst(srv)
		return
	default:
	}

	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); p.pump(c, c.client, srv) }()
	go func() { defer pumps.Done(); p.pump(c, srv, c.client) }()
	pumps.Wait()
	c.close()
}

// pump copies src to dst chunk by chunk, applying the fault to each chunk.
func (p *TCP) pump(c *tcpConn, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if ferr := p.forward(c, dst, buf[:n]); ferr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Half-close: pass the FIN on and let the other pump finish.
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			// A reset or local close on one side: reset the other, as a
			// router in between would make it see.
			c.reset(p)
			return
		}
	}
}

// errConnGone means the connection was reset or closed while a chunk waited.
var errConnGone = errors.New("faultproxy: connection gone")

func (p *TCP) forward(c *tcpConn, dst net.Conn, data []byte) error {
	for {
		f, changed := p.ctl.get()
		mode := f.Mode
		delay := f.Delay
		if mode == Random {
			mode = c.fate
			delay = time.Duration(p.ctl.int63n(int64(f.Mix.MaxDelay)))
		}
		switch mode {
		case Pass:
			return p.write(c, dst, data)
		case Delay:
			p.ctl.count(func(s *Stats) { s.Delayed++ })
			if !c.sleep(delay) {
				return errConnGone
			}
			return p.write(c, dst, data)
		case Drop:
			p.ctl.count(func(s *Stats) { s.Stalls++ })
			if f.Mode == Random {
				if !c.sleep(time.Until(c.stallUntil)) {
					return errConnGone
				}
				c.fate = Pass
				return p.write(c, dst, data)
			}
			// Hold the chunk until the mode changes, then look again.
			select {
			case <-changed:
				continue
			case <-c.done:
				return errConnGone
			}
		case Blackhole:
			p.ctl.count(func(s *Stats) { s.Dropped++ })
			return nil
		case Reset:
			if f.Mode == Random && c.resetAfter > 0 {
				// Forward up to the drawn byte count, then reset.
				c.mu.Lock()
				room := c.resetAfter - c.forwarded
				c.mu.Unlock()
				if room > int64(len(data)) {
					return p.write(c, dst, data)
				}
				if room > 0 {
					_ = p.write(c, dst, data[:room])
				}
			}
			if f.Mode == Random && c.resetAfter == 0 {
				// A reset by timer: until it fires, traffic passes.
				return p.write(c, dst, data)
			}
			c.reset(p)
			return errConnGone
		default:
			return p.write(c, dst, data)
		}
	}
}

func (p *TCP) write(c *tcpConn, dst net.Conn, data []byte) error {
	if _, err := dst.Write(data); err != nil {
		c.reset(p)
		return err
	}
	c.mu.Lock()
	c.forwarded += int64(len(data))
	c.mu.Unlock()
	p.ctl.count(func(s *Stats) { s.Forwarded++ })
	return nil
}

// sleep waits d or until the connection ends; it reports whether the
// connection is still there.
func (c *tcpConn) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

// reset closes both sides with a RST (SO_LINGER 0), once.
func (c *tcpConn) reset(p *TCP) {
	c.once.Do(func() {
		p.ctl.count(func(s *Stats) { s.Resets++ })
		close(c.done)
		rst(c.client)
		c.mu.Lock()
		srv := c.server
		c.mu.Unlock()
		if srv != nil {
			rst(srv)
		}
	})
}

// close closes both sides normally, once.
func (c *tcpConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.mu.Lock()
		srv := c.server
		c.mu.Unlock()
		if srv != nil {
			srv.Close()
		}
	})
}

// rst closes a TCP connection so that the peer gets a RST, not a FIN.
func rst(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
