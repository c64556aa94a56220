package realparts

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/testpki"
)

func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%d %s", len(msg), msg); err != nil {
		t.Fatal(err)
	}
}

func TestRsyslogPlainTCP(t *testing.T) {
	r := StartRsyslog(t, nil)
	c, err := net.Dial("tcp", r.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send(t, c, `<109>1 2025-03-01T12:00:00.000001Z SYS-1 dcagent 42 audit.start [dcagent@32473 seq="1"] {"seq":1}`)
	send(t, c, `<109>1 2025-03-01T12:00:01Z SYS-1 dcagent 42 policy.decision - second`)
	lines := r.WaitLines(2, 10*time.Second)
	if !strings.Contains(lines[0], `SYS-1 dcagent 42 audit.start [dcagent@32473 seq="1"] {"seq":1}`) || !strings.HasSuffix(lines[1], "policy.decision - second") {
		t.Fatalf("rsyslog wrote:\n%s", strings.Join(lines, "\n"))
	}

	// Stopped, nothing listens; started again, it listens on the same port.
	r.Stop()
	if c, err := net.DialTimeout("tcp", r.TCPAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("rsyslogd still listening after Stop")
	}
	r.Start()
	c2, err := net.Dial("tcp", r.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	send(t, c2, `<109>1 2025-03-01T12:00:02Z SYS-1 dcagent 42 x - third`)
	lines = r.WaitLines(3, 10*time.Second)
	if !strings.HasSuffix(lines[2], "x - third") {
		t.Fatalf("after restart: %q", lines[2])
	}
}

func TestRsyslogTLS(t *testing.T) {
	ca := testpki.NewCA(t, "customer CA")
	r := StartRsyslog(t, TLSFiles(t, ca))
	dev := ca.Device(t, "SYS-TLS")
	c, err := tls.Dial("tcp", r.TLSAddr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{dev}, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send(t, c, `<109>1 2025-03-01T12:00:00Z SYS-TLS dcagent 1 audit.start - over tls`)
	lines := r.WaitLines(1, 20*time.Second)
	if !strings.HasSuffix(lines[0], "over tls") {
		t.Fatalf("rsyslog wrote %q", lines[0])
	}
}
