package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/daemon"
	"github.com/dcagent/dcagent/agent/diag"
	"github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/status"
	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// The identity, daemon and spool checks need no network; the backend
// checks (DNS, TCP and TLS against the pinned CA, UDP for the heartbeat)
// do, and are skipped with --offline.
func init() {
	addDiagChecks(diagSource{name: "identity", checks: identityChecks})
	addDiagChecks(diagSource{name: "daemon", checks: daemonChecks})
	addDiagChecks(diagSource{name: "backend", network: true, checks: backendChecks})
}

func identityChecks(cfg *config.Config, _ *slog.Logger) []diag.Check {
	return []diag.Check{{Name: "identity", Run: func(ctx context.Context) []diag.Finding {
		var out []diag.Finding
		for _, f := range identity.Inspect(cfg, time.Now()) {
			out = append(out, diag.Finding{Check: "identity", Status: diag.Status(f.Status), Subject: f.Subject, Message: f.Message, Action: f.Action})
		}
		return out
	}}}
}

func daemonChecks(cfg *config.Config, _ *slog.Logger) []diag.Check {
	return []diag.Check{
		{Name: "daemon", Run: func(ctx context.Context) []diag.Finding { return checkDaemon(ctx, cfg) }},
		{Name: "spool", Run: func(ctx context.Context) []diag.Finding { return checkSpool(cfg) }},
	}
}

func checkDaemon(ctx context.Context, cfg *config.Config) []diag.Finding {
	sock := filepath.Join(cfg.Device.StateDir, status.SocketName)
	var st daemon.Status
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := status.Call(ctx, sock, "status", nil, &st); err != nil {
		if errors.Is(err, status.ErrNotRunning) {
			return []diag.Finding{{Check: "daemon", Status: diag.Warn, Subject: sock, Message: "the daemon is not running: nothing is monitored or sent home",
				Action: "Start it (/etc/init.d/S95dcagent start, or systemctl start dcagent), then run dcagent status."}}
		}
		return []diag.Finding{{Check: "daemon", Status: diag.Fail, Subject: sock, Message: err.Error(), Action: "Run diag as root, or as a member of [policy] socket_group."}}
	}
	var out []diag.Finding
	add := func(s diag.Status, subject, msg, action string) {
		out = append(out, diag.Finding{Check: "daemon", Status: s, Subject: subject, Message: msg, Action: action})
	}
	add(diag.OK, "", fmt.Sprintf("the daemon %s is running since %s", st.Version, st.Started.Format(time.RFC3339)), "")
	switch hb := st.Heartbeat; {
	case !st.Enrolled:
		add(diag.Fail, "enrollment", "the device is not enrolled: "+st.EnrollError, "Get a token from the vendor and run dcagent enroll --token TOKEN.")
	case hb == nil || hb.LastHeartbeat.IsZero():
		add(diag.Warn, "heartbeat", "no heartbeat has been answered yet", "Check the backend checks below; the daemon keeps trying.")
	case time.Since(hb.LastHeartbeat) > 3*cfg.Heartbeat.Interval+time.Minute:
		add(diag.Fail, "heartbeat", fmt.Sprintf("the last heartbeat was answered %s ago (%s)", time.Since(hb.LastHeartbeat).Round(time.Second), hb.LastError), "Check the backend checks below and the device's network.")
	default:
		add(diag.OK, "heartbeat", fmt.Sprintf("answered %s ago over %s", time.Since(hb.LastHeartbeat).Round(time.Second), hb.Channel), "")
		if hb.Channel == "https" {
			add(diag.Warn, "heartbeat", "heartbeats go over HTTPS because UDP to the backend is blocked", "Allow UDP to "+cfg.Backend.HeartbeatAddr+" in the firewall; HTTPS works but costs more.")
		}
	}
	if up := st.Upload; up != nil && !up.FailingSince.IsZero() {
		add(diag.Fail, "upload", fmt.Sprintf("sending events home fails since %s: %s", up.FailingSince.Format(time.RFC3339), up.LastError), "Check the backend checks below; events wait in the spool meanwhile.")
	}
	return out
}

// checkSpool looks at the spool on disk: free space, quarantined files.
func checkSpool(cfg *config.Config) []diag.Finding {
	dir := filepath.Join(cfg.Device.StateDir, "spool")
	f := func(s diag.Status, msg, action string) diag.Finding {
		return diag.Finding{Check: "spool", Status: s, Subject: dir, Message: msg, Action: action}
	}
	var out []diag.Finding
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return []diag.Finding{f(diag.Warn, "there is no spool yet (the daemon makes it at its first start)", "Start the daemon.")}
	case err != nil:
		return []diag.Finding{f(diag.Fail, err.Error(), "Check the state directory's permissions.")}
	}
	files := 0
	for _, e := range entries {
		if !e.IsDir() {
			files++
		}
	}
	out = append(out, f(diag.OK, fmt.Sprintf("%d spool files waiting", files), ""))
	if q, err := os.ReadDir(filepath.Join(dir, "quarantine")); err == nil && len(q) > 0 {
		out = append(out, f(diag.Warn, fmt.Sprintf("%d damaged spool files were set aside in quarantine/", len(q)), "Send them to the vendor's support; they are kept, never deleted."))
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err == nil {
		free := int64(sfs.Bavail) * int64(sfs.Bsize)
		switch {
		case free < 1<<20:
			out = append(out, f(diag.Fail, fmt.Sprintf("only %d KiB free on the spool's filesystem", free>>10), "Free space in the state directory's filesystem; events cannot be saved."))
		case free < int64(cfg.Spool.MaxBytes):
			out = append(out, f(diag.Warn, fmt.Sprintf("%d MiB free, less than the spool may use ([spool] max_bytes %d MiB)", free>>20, cfg.Spool.MaxBytes>>20), "Free space or lower [spool] max_bytes."))
		default:
			out = append(out, f(diag.OK, fmt.Sprintf("%d MiB free", free>>20), ""))
		}
		if sfs.Flags&0x1 != 0 { // ST_RDONLY
			out = append(out, f(diag.Fail, "the spool's filesystem is mounted read-only", "Remount the state directory read-write."))
		}
	}
	return out
}

func backendChecks(cfg *config.Config, _ *slog.Logger) []diag.Check {
	return []diag.Check{{Name: "backend", Run: func(ctx context.Context) []diag.Finding { return checkBackend(ctx, cfg) }}}
}

// checkBackend follows the path a connection takes: the name, TCP, TLS
// against the pinned CA, then UDP for the heartbeat. Each step says what
// broke in words a network administrator can act on.
func checkBackend(ctx context.Context, cfg *config.Config) []diag.Finding {
	var out []diag.Finding
	add := func(s diag.Status, subject, msg, action string) {
		out = append(out, diag.Finding{Check: "backend", Status: s, Subject: subject, Message: msg, Action: action})
	}
	u, err := url.Parse(cfg.Backend.URL)
	if err != nil || u.Host == "" {
		add(diag.Fail, "[backend] url", fmt.Sprintf("%q is not a URL", cfg.Backend.URL), "Set [backend] url to the vendor's https:// address.")
		return out
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	if net.ParseIP(host) == nil {
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			add(diag.Fail, host, "the backend's name does not resolve: "+err.Error(), "Check the device's DNS servers (/etc/resolv.conf).")
			return out
		}
		add(diag.OK, host, fmt.Sprintf("resolves to %v", addrs), "")
	}
	addr := net.JoinHostPort(host, port)
	d := net.Dialer{Timeout: 10 * time.Second}
	start := time.Now()
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		add(diag.Fail, addr, "TCP to the backend fails: "+err.Error(), "Allow outbound TCP to "+addr+" in the firewall.")
		return out
	}
	add(diag.OK, addr, fmt.Sprintf("TCP connects in %s", time.Since(start).Round(time.Millisecond)), "")
	roots, err := tlsconf.LoadCAFile(cfg.Backend.CAFile)
	if err != nil {
		raw.Close()
		add(diag.Fail, cfg.Backend.CAFile, err.Error(), "Install the vendor CA at [backend] ca_file.")
		return out
	}
	tc, _ := tlsconf.Client(roots, nil, host)
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		add(diag.Fail, addr, "TLS with the backend fails against the pinned vendor CA: "+err.Error(),
			"If a proxy or firewall intercepts TLS, exempt the backend; otherwise check [backend] ca_file and the device's clock.")
		return out
	}
	st := conn.ConnectionState()
	add(diag.OK, addr, fmt.Sprintf("%s, certificate for %s verified against the pinned vendor CA", tls.VersionName(st.Version), st.PeerCertificates[0].Subject.CommonName), "")
	conn.Close()

	if cfg.Backend.HeartbeatAddr == "" {
		add(diag.Warn, "[backend] heartbeat_addr", "no heartbeat address: heartbeats use HTTPS only", "Set [backend] heartbeat_addr for DTLS heartbeats.")
		return out
	}
	if n, err := probeUDP(ctx, cfg.Backend.HeartbeatAddr, host); n == 0 {
		add(diag.Fail, cfg.Backend.HeartbeatAddr, "no answer over UDP (DTLS): "+errText(err), "Allow outbound UDP to "+cfg.Backend.HeartbeatAddr+"; until then heartbeats fall back to HTTPS.")
	} else {
		add(diag.OK, cfg.Backend.HeartbeatAddr, fmt.Sprintf("the heartbeat service answers over UDP (%d bytes)", n), "")
	}
	return out
}

func errText(err error) string {
	if err == nil {
		return "timed out"
	}
	return err.Error()
}

// countingPacketConn counts the bytes that arrive, so that a DTLS
// handshake the server ends (it wants a device certificate this probe does
// not present) still shows that UDP gets through.
type countingPacketConn struct {
	net.PacketConn
	n atomic.Int64
}

func (c *countingPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	c.n.Add(int64(n))
	return n, a, err
}

func probeUDP(ctx context.Context, addr, serverName string) (int64, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, err
	}
	pc, err := heartbeat.DialUDP(raddr)
	if err != nil {
		return 0, err
	}
	cc := &countingPacketConn{PacketConn: pc}
	defer cc.Close()
	cfg := &dtls.Config{ServerName: serverName, CipherSuites: tlsconf.DTLSSuites, InsecureSkipVerify: true} // the probe only asks whether UDP gets through; nothing is sent over it
	conn, err := dtls.Client(cc, raddr, cfg)                                                                //nolint:staticcheck // the probe builds its own config
	if err != nil {
		return cc.n.Load(), err
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = conn.HandshakeContext(hctx)
	conn.Close()
	return cc.n.Load(), err
}
