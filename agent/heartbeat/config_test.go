package heartbeat

import (
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
)

// The [heartbeat] section as an operator writes it, and the errors that
// name the key at fault.
func TestConfigSection(t *testing.T) {
	base := "[device]\nsystem_id = SYS-1\n[heartbeat]\n"
	c, err := config.Parse("hb.conf", []byte(base+"interval = 30s\nreply_timeout = 2s\nudp_tries = 4\nudp_probe_interval = 2m\nbackoff_min = 1s\nbackoff_max = 5m\nsession_max_age = 12h\ntelemetry_every = 30m\nserver_name = backend.example.net\nwatch_network = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Heartbeat
	if h.Interval != 30*time.Second || h.UDPTries != 4 || h.ServerName != "backend.example.net" || h.WatchNetwork {
		t.Fatalf("%+v", h)
	}
	d := config.Default().Heartbeat
	if d.Interval != time.Minute || d.UDPTries != 3 || !d.WatchNetwork || d.SessionMaxAge != 24*time.Hour {
		t.Fatalf("defaults %+v", d)
	}
	for line, key := range map[string]string{
		"interval = 10ms":           "interval",
		"reply_timeout = 1ms":       "reply_timeout",
		"udp_tries = 0":             "udp_tries",
		"udp_probe_interval = 10ms": "udp_probe_interval",
		"backoff_max = 1ms":         "backoff_max",
		"session_max_age = 1s":      "session_max_age",
		"telemetry_every = 1s":      "telemetry_every",
		"server_name = bad name!":   "server_name",
		"server_name = a..b":        "server_name",
		"udp_tries = many":          "udp_tries",
		"interval = soon":           "interval",
		"replytimeout = 1s":         "replytimeout",
	} {
		_, err := config.Parse("hb.conf", []byte(base+line+"\n"))
		if err == nil || !strings.Contains(err.Error(), "[heartbeat] "+key) {
			t.Errorf("%q: %v (want the key %s named)", line, err, key)
		}
	}
}
