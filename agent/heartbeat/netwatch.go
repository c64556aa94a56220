package heartbeat

import "context"

// NetworkWatch reports network changes that may have broken the path to
// the backend by calling changed with a reason a person can read, until
// ctx ends. The heartbeat then reconnects at once instead of waiting out
// its back-off. NetlinkWatch is the real one (Linux); tests and the fleet
// simulator pass their own or NoNetworkWatch.
type NetworkWatch func(ctx context.Context, changed func(reason string)) error

// NoNetworkWatch reports nothing.
func NoNetworkWatch(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return nil
}

// DefaultNetworkWatch is the watch the heartbeat uses when Options gives
// none and [heartbeat] watch_network is on: netlink in the agent's own
// namespace on Linux, nothing elsewhere.
func DefaultNetworkWatch() NetworkWatch { return defaultNetworkWatch() }

// Also returns a watch that calls also, then changed, on every change the
// watch w reports: the daemon uses it to wake the event uploader too.
func (w NetworkWatch) Also(also func(reason string)) NetworkWatch {
	return func(ctx context.Context, changed func(string)) error {
		return w(ctx, func(reason string) {
			also(reason)
			changed(reason)
		})
	}
}
