package realparts

// This file starts rsyslogd (Debian's rsyslog and rsyslog-gnutls) as the
// customer's syslog server: in the foreground, on free loopback ports, with
// its own configuration and working directory in a test's temporary
// folder, stopped by t.Cleanup.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/testpki"
)

// RsyslogBinary is the rsyslog daemon Debian installs.
const RsyslogBinary = "/usr/sbin/rsyslogd"

// RsyslogTLS names the PEM files of an RFC 5425 listener: the server's
// certificate and key and the CA that client certificates must chain to
// (rsyslog's x509/certvalid mode: a client must present a valid
// certificate from that CA).
type RsyslogTLS struct {
	CAFile, CertFile, KeyFile string
}

// Rsyslog is a running rsyslogd.
type Rsyslog struct {
	// TCPAddr receives RFC 5424 over plain TCP (octet counting or LF
	// framing).
	TCPAddr string
	// TLSAddr receives RFC 5424 over TLS; "" without TLS.
	TLSAddr string
	// OutFile is where rsyslog writes each message, one per line, in its
	// RFC 5424 format (RSYSLOG_SyslogProtocol23Format).
	OutFile string
	// Dir holds the configuration, working directory and stderr.
	Dir string

	t    testing.TB
	conf string
	cmd  *exec.Cmd
	done chan error
}

// StartRsyslog starts rsyslogd and waits until it accepts connections.
// tls may be nil for a plain TCP listener only.
func StartRsyslog(t testing.TB, tls *RsyslogTLS) *Rsyslog {
	t.Helper()
	r := &Rsyslog{t: t, Dir: t.TempDir()}
	r.OutFile = filepath.Join(r.Dir, "messages.log")
	r.TCPAddr = freeAddr(t)
	if tls != nil {
		r.TLSAddr = freeAddr(t)
	}
	if err := os.Mkdir(filepath.Join(r.Dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	r.conf = filepath.Join(r.Dir, "rsyslog.conf")
	if err := os.WriteFile(r.conf, []byte(r.config(tls)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(RsyslogBinary, "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("realparts: rsyslogd rejects its configuration %s: %v\n%s", r.conf, err, out)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

func (r *Rsyslog) config(tls *RsyslogTLS) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global(workDirectory=%q", filepath.Join(r.Dir, "work"))
	if tls != nil {
		fmt.Fprintf(&b, " DefaultNetstreamDriverCAFile=%q DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q", tls.CAFile, tls.CertFile, tls.KeyFile)
	}
	b.WriteString(")\n")
	b.WriteString("module(load=\"imtcp\")\n")
	host, port, _ := net.SplitHostPort(r.TCPAddr)
	fmt.Fprintf(&b, "input(type=\"imtcp\" address=%q port=%q ruleset=\"out\")\n", host, port)
	if tls != nil {
		host, port, _ := net.SplitHostPort(r.TLSAddr)
		fmt.Fprintf(&b, "input(type=\"imtcp\" address=%q port=%q ruleset=\"out\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"x509/certvalid\")\n", host, port)
	}
	fmt.Fprintf(&b, "ruleset(name=\"out\") {\n  action(type=\"omfile\" file=%q template=\"RSYSLOG_SyslogProtocol23Format\")\n}\n", r.OutFile)
	return b.String()
}

// Start starts rsyslogd (again, after Stop) on the same ports and waits
// until every listener accepts connections.
func (r *Rsyslog) Start() {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatal("realparts: rsyslogd is already running")
	}
	stderr, err := os.OpenFile(filepath.Join(r.Dir, "rsyslogd.stderr"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(RsyslogBinary, "-n", "-f", r.conf, "-i", filepath.Join(r.Dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("realparts: start rsyslogd: %v", err)
	}
	r.cmd, r.done = cmd, make(chan error, 1)
	go func() { r.done <- cmd.Wait() }()
	for _, addr := range []string{r.TCPAddr, r.TLSAddr} {
		if addr == "" {
			continue
		}
		if err := r.waitListening(addr, 20*time.Second); err != nil {
			r.Stop()
			log, _ := os.ReadFile(filepath.Join(r.Dir, "rsyslogd.stderr"))
			r.t.Fatalf("realparts: rsyslogd does not listen on %s: %v\n%s", addr, err, log)
		}
	}
}

func (r *Rsyslog) waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-r.done:
			r.done <- err
			return fmt.Errorf("rsyslogd exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops rsyslogd with SIGTERM (it flushes its output) and waits for
// it; safe to call twice.
func (r *Rsyslog) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// Lines returns what rsyslog has written so far, one message a line.
func (r *Rsyslog) Lines() ([]string, error) {
	b, err := os.ReadFile(r.OutFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\n"), nil
}

// WaitLines waits until rsyslog has written at least n lines, or fails
// the test after timeout.
func (r *Rsyslog) WaitLines(n int, timeout time.Duration) []string {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lines, err := r.Lines()
		if err != nil {
			r.t.Fatal(err)
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("realparts: rsyslog wrote %d lines in %v, want %d:\n%s", len(lines), timeout, n, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TLSFiles writes a server certificate for localhost and 127.0.0.1 from ca,
// its key and ca's certificate as PEM files for an rsyslog TLS listener.
func TLSFiles(t testing.TB, ca *testpki.CA) *RsyslogTLS {
	t.Helper()
	dir := t.TempDir()
	srv := ca.Server(t)
	key, err := x509.MarshalECPrivateKey(srv.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return &RsyslogTLS{
		CAFile:   ca.WriteCAFile(t, dir),
		CertFile: write("server.pem", "CERTIFICATE", srv.Certificate[0]),
		KeyFile:  write("server-key.pem", "EC PRIVATE KEY", key),
	}
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
