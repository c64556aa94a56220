//go:build !linux

package heartbeat

// Without netlink the agent relies on its back-off alone.
func defaultNetworkWatch() NetworkWatch { return NoNetworkWatch }
