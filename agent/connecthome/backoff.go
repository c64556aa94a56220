package connecthome

import (
	"math/rand/v2"
	"time"
)

// maxRetryAfter caps how long a Retry-After from the backend can hold the
// agent back, so that a wrong header cannot silence a device for days.
const maxRetryAfter = 6 * time.Hour

// backoff is exponential with "equal jitter": the n-th wait is uniformly
// random in [d/2, d] with d = min·2ⁿ capped at max. The jitter spreads a
// fleet that lost the backend at the same moment, so it does not come back
// as one wave; the floor of d/2 keeps each device from hammering.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

// next returns the wait before the next attempt. A longer Retry-After
// wins (with up to 10% jitter on top, for the same reason as above).
func (b *backoff) next(retryAfter time.Duration) time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
		if b.cur > b.max {
			b.cur = b.max
		}
	}
	d := b.cur/2 + time.Duration(rand.Int64N(int64(b.cur/2)+1))
	if retryAfter > maxRetryAfter {
		retryAfter = maxRetryAfter
	}
	if retryAfter > d {
		d = retryAfter + time.Duration(rand.Int64N(int64(retryAfter/10)+1))
	}
	return d
}
