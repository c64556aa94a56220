package config

import (
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Remote configures remote access, file transfers and diagnostic scripts.
// Services map a service name that a request may name to a local address
// that only this file can set.
type Remote struct {
	// Services: name=host:port, e.g. ssh=127.0.0.1:22, console=127.0.0.1:443.
	// The host must be an IP address or localhost (no name to resolve).
	Services    map[string]string `conf:"services"`
	IdleTimeout time.Duration     `conf:"idle_timeout"`
	// RelayHosts are the only hosts a request may name as its relay; empty
	// means the backend's own host ([backend] url). The relay must also
	// prove with a certificate from the vendor CA that it is the vendor's.
	RelayHosts  []string      `conf:"relay_hosts"`
	MaxDuration time.Duration `conf:"max_duration"`
	// FetchPaths are the absolute files and folders the backend may fetch
	// files from (e.g. /var/log/dcagent); a path must lie inside one of
	// them. The support bundle the agent assembles is always allowed.
	FetchPaths []string `conf:"fetch_paths"`
	// FetchMaxBytes bounds one fetched file.
	FetchMaxBytes int64 `conf:"fetch_max_bytes"`
	// InboxMaxBytes bounds one file sent to the device's inbox
	// (<state_dir>/inbox).
	InboxMaxBytes int64 `conf:"inbox_max_bytes"`
	// VendorKeyFile is the vendor's public key (PEM) that signs diagnostic
	// scripts and files sent to the device.
	VendorKeyFile string `conf:"vendor_key_file"`
	// ScriptTimeout is the longest a diagnostic script may run (a script
	// may ask for less).
	ScriptTimeout time.Duration `conf:"script_timeout"`
	// ScriptMaxOutput bounds the output kept from a script.
	ScriptMaxOutput int64 `conf:"script_max_output"`
}

func (r *Remote) setDefaults() {
	r.IdleTimeout = 15 * time.Minute
	r.MaxDuration = 4 * time.Hour
	r.FetchMaxBytes = 64 << 20
	r.InboxMaxBytes = 16 << 20
	r.VendorKeyFile = "/etc/dcagent/vendor-signing.pem"
	r.ScriptTimeout = 5 * time.Minute
	r.ScriptMaxOutput = 256 << 10
}

func (r *Remote) validate() error {
	for name, addr := range r.Services {
		if !validServiceName(name) {
			return keyErr("services", "service name %q is not 1-32 of a-z 0-9 _ -", name)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" {
			return keyErr("services", "%s=%q is not host:port", name, addr)
		}
		if host != "localhost" && net.ParseIP(host) == nil {
			return keyErr("services", "%s=%q: the host must be an IP address or localhost", name, addr)
		}
	}
	if r.IdleTimeout <= 0 {
		return keyErr("idle_timeout", "must be more than 0")
	}
	if r.MaxDuration < r.IdleTimeout {
		return keyErr("max_duration", "%v is shorter than idle_timeout %v", r.MaxDuration, r.IdleTimeout)
	}
	for _, p := range r.FetchPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			return keyErr("fetch_paths", "%q is not a clean absolute path below /", p)
		}
	}
	if r.FetchMaxBytes <= 0 || r.InboxMaxBytes <= 0 || r.ScriptMaxOutput <= 0 {
		return keyErr("inbox_max_bytes", "size limits must be more than 0")
	}
	if r.ScriptTimeout < time.Second {
		return keyErr("script_timeout", "%v is shorter than 1s", r.ScriptTimeout)
	}
	return nil
}

func validServiceName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == ""
}
