package remote

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// bridgeResult is how a bridged session went.
type bridgeResult struct {
	ToDevice, FromDevice int64
	Duration             time.Duration
	// Reason is why it ended: "engineer closed", "local service closed",
	// "idle timeout", "maximum duration", "agent stopped", or a
	// connection error.
	Reason string
}

// bridge copies bytes between relay (the engineer's side) and local (the
// device's service) until either side closes, no byte has moved either way
// for idle, max has passed, or ctx ends. It counts bytes as they are
// written to the other side.
func bridge(ctx context.Context, relay, local net.Conn, idle, max time.Duration, toDevice, fromDevice *atomic.Int64) bridgeResult {
	start := time.Now()
	var (
		last   atomic.Int64 // unix nanoseconds of the last byte either way
		once   sync.Once
		reason string
		done   = make(chan struct{})
	)
	last.Store(start.UnixNano())
	end := func(why string) {
		once.Do(func() {
			reason = why
			relay.Close()
			local.Close()
			close(done)
		})
	}
	pump := func(dst, src net.Conn, n *atomic.Int64, eofReason string) {
		buf := make([]byte, 32<<10)
		for {
			k, rerr := src.Read(buf)
			if k > 0 {
				last.Store(time.Now().UnixNano())
				w, werr := dst.Write(buf[:k])
				n.Add(int64(w))
				if werr != nil {
					end(connReason(werr, "write"))
					return
				}
			}
			if rerr != nil {
				if errors.Is(rerr, io.EOF) {
					end(eofReason)
				} else {
					end(connReason(rerr, "read"))
				}
				return
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pump(local, relay, toDevice, "engineer closed") }()
	go func() { defer wg.Done(); pump(relay, local, fromDevice, "local service closed") }()

	tick := min(idle/4, time.Second)
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	deadline := time.NewTimer(max)
watch:
	for {
		select {
		case <-done:
			break watch
		case <-ctx.Done():
			end("agent stopped")
		case <-deadline.C:
			end("maximum duration")
		case now := <-t.C:
			if now.Sub(time.Unix(0, last.Load())) >= idle {
				end("idle timeout")
			}
		}
	}
	t.Stop()
	deadline.Stop()
	wg.Wait()
	return bridgeResult{ToDevice: toDevice.Load(), FromDevice: fromDevice.Load(), Duration: time.Since(start), Reason: reason}
}

func connReason(err error, op string) string {
	if errors.Is(err, net.ErrClosed) {
		return "closed"
	}
	return "connection error on " + op + ": " + err.Error()
}
