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
