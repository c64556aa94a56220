package connecthome

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// FTPSChannel delivers sealed events to the customer's FTPS server with
// explicit TLS (RFC 4217): AUTH TLS on the control connection before the
// password is sent, PROT P so the data connection is encrypted too, and
// passive mode. The file is stored under a temporary name and renamed when
// complete, so a collector never picks up half a file. This is a small
// client of our own: the agent needs STOR and RNFR/RNTO only, and a
// library would cost more binary than these lines.
type FTPSChannel struct {
	Addr     string // host:port of the control connection
	User     string
	Password string // never logged
	Dir      string // directory to store into; "" for the login directory
	// TLS verifies the server (crypto/tlsconf.Client with its CA).
	TLS *tls.Config
}

// Name implements Channel.
func (c *FTPSChannel) Name() string { return "ftps" }

type ftpConn struct {
	tp   *textproto.Conn
	addr string
}

// cmd sends one command and reads the answer, which must have one of the
// expected codes. The password never appears in an error.
func (f *ftpConn) cmd(show string, expect []int, format string, args ...any) (int, string, error) {
	if format != "" {
		if err := f.tp.PrintfLine(format, args...); err != nil {
			return 0, "", fmt.Errorf("ftps %s: %s: %w", f.addr, show, err)
		}
	}
	code, msg, err := f.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, "", fmt.Errorf("ftps %s: %s: %w", f.addr, show, err)
	}
	for _, e := range expect {
		if code == e {
			return code, msg, nil
		}
	}
	return code, msg, fmt.Errorf("ftps %s: %s: server answered %d %s", f.addr, show, code, msg)
}

// Send implements Channel: one file carrying the armored events.
func (c *FTPSChannel) Send(ctx context.Context, message []byte, events int) error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("ftps %s: %w", c.Addr, err)
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("ftps: dial %s: %w", c.Addr, err)
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	f := &ftpConn{tp: textproto.NewConn(raw), addr: c.Addr}
	if _, _, err := f.cmd("greeting", []int{220}, ""); err != nil {
		return err
	}
	if _, _, err := f.cmd("AUTH TLS", []int{234}, "AUTH TLS"); err != nil {
		return fmt.Errorf("%w (explicit TLS is required; refusing to log in in clear)", err)
	}
	tcfg := c.TLS.Clone()
	if tcfg.ServerName == "" {
		tcfg.ServerName = host
	}
	// Servers may require the data connection to resume the control
	// connection's TLS session.
	tcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	ctl := tls.Client(raw, tcfg)
	if err := ctl.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("ftps %s: TLS: %w", c.Addr, err)
	}
	f.tp = textproto.NewConn(ctl)
	code, _, err := f.cmd("USER", []int{230, 331}, "USER %s", c.User)
	if err != nil {
		return err
	}
	if code == 331 {
		if _, _, err := f.cmd("PASS", []int{230}, "PASS %s", c.Password); err != nil {
			return fmt.Errorf("ftps %s: login as %q refused", c.Addr, c.User)
		}
	}
	for _, step := range []struct {
		show string
		line string
	}{{"PBSZ", "PBSZ 0"}, {"PROT P", "PROT P"}, {"TYPE I", "TYPE I"}} {
		if _, _, err := f.cmd(step.show, []int{200}, "%s", step.line); err != nil {
			return err
		}
	}
	if c.Dir != "" {
		if _, _, err := f.cmd("CWD", []int{250}, "CWD %s", c.Dir); err != nil {
			return err
		}
	}
	dataAddr, err := f.passive(raw.RemoteAddr())
	if err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := "dcagent-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(rnd[:]) + ".dcev"
	dataRaw, err := d.DialContext(ctx, "tcp", dataAddr)
	if err != nil {
		return fmt.Errorf("ftps %s: data connection to %s: %w", c.Addr, dataAddr, err)
	}
	defer dataRaw.Close()
	if _, _, err := f.cmd("STOR", []int{125, 150}, "STOR %s.part", name); err != nil {
		return err
	}
	data := tls.Client(dataRaw, tcfg)
	if err := data.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("ftps %s: data connection TLS: %w", c.Addr, err)
	}
	if _, err := data.Write(message); err != nil {
		return fmt.Errorf("ftps %s: sending the file: %w", c.Addr, err)
	}
	if err := data.Close(); err != nil {
		return fmt.Errorf("ftps %s: closing the data connection: %w", c.Addr, err)
	}
	if _, _, err := f.cmd("transfer", []int{226, 250}, ""); err != nil {
		return err
	}
	if _, _, err := f.cmd("RNFR", []int{350}, "RNFR %s.part", name); err != nil {
		return err
	}
	if _, _, err := f.cmd("RNTO", []int{250}, "RNTO %s", name); err != nil {
		return err
	}
	_, _, _ = f.cmd("QUIT", []int{221}, "QUIT")
	return nil
}

// passive asks for a passive data port, EPSV first (RFC 2428), then PASV.
// The data connection always goes to the control connection's address,
// never to an address the server names (which could point anywhere).
func (f *ftpConn) passive(ctl net.Addr) (string, error) {
	host := ctl.(*net.TCPAddr).IP.String()
	if _, msg, err := f.cmd("EPSV", []int{229}, "EPSV"); err == nil {
		port, perr := parseEPSV(msg)
		if perr != nil {
			return "", fmt.Errorf("ftps %s: EPSV: %w", f.addr, perr)
		}
		return net.JoinHostPort(host, strconv.Itoa(port)), nil
	}
	_, msg, err := f.cmd("PASV", []int{227}, "PASV")
	if err != nil {
		return "", err
	}
	port, err := parsePASV(msg)
	if err != nil {
		return "", fmt.Errorf("ftps %s: PASV: %w", f.addr, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// parseEPSV reads "Entering Extended Passive Mode (|||6446|)".
func parseEPSV(msg string) (int, error) {
	i := strings.Index(msg, "(")
	j := strings.LastIndex(msg, ")")
	if i < 0 || j <= i+4 {
		return 0, fmt.Errorf("cannot read %q", msg)
	}
	inner := msg[i+1 : j]
	if len(inner) < 5 {
		return 0, fmt.Errorf("cannot read %q", msg)
	}
	delim := inner[0:1]
	parts := strings.Split(inner, delim)
	if len(parts) != 5 {
		return 0, fmt.Errorf("cannot read %q", msg)
	}
	return checkPort(parts[3])
}

// parsePASV reads "Entering Passive Mode (h1,h2,h3,h4,p1,p2)".
func parsePASV(msg string) (int, error) {
	i := strings.Index(msg, "(")
	j := strings.LastIndex(msg, ")")
	if i < 0 || j <= i {
		return 0, fmt.Errorf("cannot read %q", msg)
	}
	f := strings.Split(msg[i+1:j], ",")
	if len(f) != 6 {
		return 0, fmt.Errorf("cannot read %q", msg)
	}
	hi, err1 := strconv.Atoi(strings.TrimSpace(f[4]))
	lo, err2 := strconv.Atoi(strings.TrimSpace(f[5]))
	if err1 != nil || err2 != nil || hi < 0 || hi > 255 || lo < 0 || lo > 255 {
		return 0, fmt.Errorf("cannot read %q", msg)
	}
	return checkPort(strconv.Itoa(hi*256 + lo))
}

func checkPort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, errors.New("bad port " + strconv.Quote(s))
	}
	return p, nil
}
