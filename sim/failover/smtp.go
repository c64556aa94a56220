// Package failover runs the servers that stand in for the customer's
// relays in tests and the demo: a mail server (SMTP with STARTTLS and
// AUTH PLAIN, github.com/emersion/go-smtp) and an FTPS server (ProFTPD with
// mod_tls, explicit TLS, started with a configuration of our own on a
// loopback port). Both hand what they receive to the vendor side, where
// eventstore.IngestMessage opens the sealed events.
package failover

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Deliver receives one accepted mail.
type Deliver func(from string, to []string, data []byte) error

// SMTPServer is a mail relay on loopback that requires STARTTLS before
// AUTH PLAIN, and AUTH before MAIL.
type SMTPServer struct {
	srv *smtp.Server
	ln  net.Listener
	wg  sync.WaitGroup

	mu       sync.Mutex
	messages [][]byte
}

// StartSMTP starts the relay on 127.0.0.1 with cert. tlsEnabled false
// makes a relay that offers no STARTTLS (for the agent's refusal test).
func StartSMTP(cert tls.Certificate, tlsEnabled bool, user, password string, deliver Deliver) (*SMTPServer, error) {
	s := &SMTPServer{}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{s: s, user: user, password: password, deliver: deliver}, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain = "relay.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 64 << 20
	srv.AllowInsecureAuth = false
	srv.ErrorLog = discardLogger{}
	if tlsEnabled {
		srv.TLSConfig = tlsconf.Server(cert, nil, false)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv, s.ln = srv, ln
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = srv.Serve(ln) }()
	return s, nil
}

// Addr is the relay's host:port.
func (s *SMTPServer) Addr() string { return s.ln.Addr().String() }

// Messages returns every accepted mail, as received.
func (s *SMTPServer) Messages() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.messages...)
}

// Close stops the relay.
func (s *SMTPServer) Close() error {
	err := s.srv.Close()
	s.wg.Wait()
	return err
}

type smtpSession struct {
	s        *SMTPServer
	user     string
	password string
	deliver  Deliver
	authed   bool
	from     string
	to       []string
}

func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.user || password != ss.password {
			return errors.New("invalid user name or password")
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.deliver != nil {
		if err := ss.deliver(ss.from, ss.to, b); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: fmt.Sprintf("not delivered: %v", err)}
		}
	}
	ss.s.mu.Lock()
	ss.s.messages = append(ss.s.messages, b)
	ss.s.mu.Unlock()
	return nil
}

func (ss *smtpSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *smtpSession) Logout() error { return nil }

type discardLogger struct{}

func (discardLogger) Printf(string, ...interface{}) {}
func (discardLogger) Println(...interface{})        {}
