//go:build !linux

package heartbeat

import (
	"log/slog"
	"net"
	"time"
)

// socketOptions has nothing to set outside Linux: no arrival stamps, so
// no shedding by queueing time.
func socketOptions(*net.UDPConn, int, *slog.Logger) {}

func parseControl([]byte) (time.Time, uint32, bool) { return time.Time{}, 0, false }
