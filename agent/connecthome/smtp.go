package connecthome

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"time"
)

// SMTPChannel delivers sealed events through the customer's mail relay.
// It insists on STARTTLS (the relay's certificate verified against the
// configured CA) before it authenticates or sends anything; a relay that
// does not offer STARTTLS is refused, never used in clear.
type SMTPChannel struct {
	Addr     string // host:port of the relay
	From, To string
	User     string
	Password string // never logged
	// TLS verifies the relay (crypto/tlsconf.Client with the relay's CA).
	TLS *tls.Config
	// Hostname is what the agent calls itself in EHLO; default "dcagent".
	Hostname string
}

// Name implements Channel.
func (c *SMTPChannel) Name() string { return "smtp" }

// Send implements Channel: one mail carrying the armored events.
func (c *SMTPChannel) Send(ctx context.Context, message []byte, events int) error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", c.Addr, err)
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("smtp: dial %s: %w", c.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: greeting: %w", c.Addr, err)
	}
	defer cl.Close()
	name := c.Hostname
	if name == "" {
		name = "dcagent"
	}
	if err := cl.Hello(name); err != nil {
		return fmt.Errorf("smtp %s: EHLO: %w", c.Addr, err)
	}
	if ok, _ := cl.Extension("STARTTLS"); !ok {
		return errors.New("smtp " + c.Addr + ": the relay does not offer STARTTLS; refusing to send in clear")
	}
	tcfg := c.TLS.Clone()
	if tcfg.ServerName == "" {
		tcfg.ServerName = host
	}
	if err := cl.StartTLS(tcfg); err != nil {
		return fmt.Errorf("smtp %s: STARTTLS: %w", c.Addr, err)
	}
	if c.User != "" {
		if ok, _ := cl.Extension("AUTH"); !ok {
			return errors.New("smtp " + c.Addr + ": the relay offers no AUTH after STARTTLS")
		}
		if err := cl.Auth(smtp.PlainAuth("", c.User, c.Password, host)); err != nil {
			return fmt.Errorf("smtp %s: authentication as %q failed: %w", c.Addr, c.User, err)
		}
	}
	if err := cl.Mail(c.From); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", c.Addr, err)
	}
	if err := cl.Rcpt(c.To); err != nil {
		return fmt.Errorf("smtp %s: RCPT TO %s: %w", c.Addr, c.To, err)
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", c.Addr, err)
	}
	if _, err := w.Write(c.compose(message, events)); err != nil {
		return fmt.Errorf("smtp %s: writing the message: %w", c.Addr, err)
	}
	// Close waits for the relay's 250: from then on the message is the
	// relay's responsibility.
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: message not accepted: %w", c.Addr, err)
	}
	_ = cl.Quit()
	return nil
}

// compose builds the mail. The headers say nothing about the device or the
// customer: the subject is fixed and the body is sealed.
func (c *SMTPChannel) compose(armored []byte, events int) []byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	_, domain, _ := strings.Cut(c.From, "@")
	if domain == "" {
		domain = "dcagent.invalid"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\n", c.From)
	fmt.Fprintf(&b, "To: <%s>\r\n", c.To)
	fmt.Fprintf(&b, "Subject: dcagent sealed events (%d)\r\n", events)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id[:]), domain)
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n")
	b.WriteString("X-Dcagent-Format: sealed-events-1\r\n\r\n")
	b.WriteString("Events from a dcagent device, encrypted to the vendor. Forward unchanged.\r\n\r\n")
	b.WriteString(strings.ReplaceAll(string(armored), "\n", "\r\n"))
	return []byte(b.String())
}
