package tlsconf

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/testpki"
	"github.com/pion/dtls/v3"
)

// serve accepts one TLS connection with cfg, echoes four bytes, and
// returns the server's handshake error.
func serve(t *testing.T, cfg *tls.Config) (addr string, result <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
		if err := tc.Handshake(); err != nil {
			ch <- err
			return
		}
		_, err = io.Copy(tc, io.LimitReader(tc, 4))
		ch <- err
	}()
	return l.Addr().String(), ch
}

// dial runs a client handshake and one round trip, and returns the
// connection state.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// rsaServer issues an RSA server certificate (the non-ECDHE RSA key
// exchange needs an RSA key).
func rsaServer(t *testing.T, ca *testpki.CA) tls.Certificate {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// TestClientRefusesWeakServers: a server that offers only what the rules
// forbid — TLS 1.1, CBC suites, RSA key exchange without ECDHE — or a
// certificate from another CA is refused by the client configuration.
// Each weak server is first shown to work with a client that accepts its
// weakness, so the refusal is the configuration's doing.
func TestClientRefusesWeakServers(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	other := testpki.NewCA(t, "someone else")
	for _, tc := range []struct {
		name    string
		server  *tls.Config
		control *tls.Config // a client that accepts the server's weakness
		want    string      // in the client's error
	}{
		{
			name:    "TLS 1.1 only",
			server:  &tls.Config{Certificates: []tls.Certificate{ca.Server(t)}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			control: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, ServerName: "localhost"},
			want:    "protocol version",
		},
		{
			name: "ECDHE with CBC only",
			server: &tls.Config{Certificates: []tls.Certificate{ca.Server(t)}, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
			control: &tls.Config{RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12, ServerName: "localhost",
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
			want: "handshake failure",
		},
		{
			name: "RSA key exchange only (no ECDHE)",
			server: &tls.Config{Certificates: []tls.Certificate{rsaServer(t, ca)}, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}},
			control: &tls.Config{RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12, ServerName: "localhost",
				CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
			want: "handshake failure",
		},
		{
			name:    "certificate from another CA",
			server:  &tls.Config{Certificates: []tls.Certificate{other.Server(t)}},
			control: &tls.Config{RootCAs: other.Pool, ServerName: "localhost"},
			want:    "certificate signed by unknown authority",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, res := serve(t, tc.server)
			if _, err := dial(addr, tc.control); err != nil {
				t.Fatalf("control client could not reach the weak server, so the test proves nothing: %v", err)
			}
			<-res
			addr, res = serve(t, tc.server)
			cfg, err := Client(ca.Pool, nil, "localhost")
			if err != nil {
				t.Fatal(err)
			}
			st, err := dial(addr, cfg)
			if err == nil {
				t.Fatalf("connected: version %x suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			<-res
		})
	}
}

// TestClientAcceptsGoodServers: TLS 1.3 is preferred; a TLS 1.2 server
// gets one of the four allowed suites; mutual authentication works.
func TestClientAcceptsGoodServers(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	dev := ca.Device(t, "SYS-1")
	addr, res := serve(t, Server(ca.Server(t), ca.Pool, true))
	cfg, err := Client(ca.Pool, &dev, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	st, err := dial(addr, cfg)
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: %x, %v", st.Version, err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	for _, cert := range []tls.Certificate{ca.Server(t), rsaServer(t, ca)} {
		srv := Server(cert, ca.Pool, true)
		srv.MaxVersion = tls.VersionTLS12
		addr, res = serve(t, srv)
		st, err = dial(addr, cfg)
		if err != nil || st.Version != tls.VersionTLS12 || !slices.Contains(TLS12Suites, st.CipherSuite) {
			t.Fatalf("TLS 1.2: %x %s, %v", st.Version, tls.CipherSuiteName(st.CipherSuite), err)
		}
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
}

// TestServerRefusesWeakClients: the backend's configuration refuses a
// client offering only TLS 1.1 or only CBC suites, and requires a client
// certificate when told to.
func TestServerRefusesWeakClients(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	for name, cli := range map[string]*tls.Config{
		"TLS 1.1":               {RootCAs: ca.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
		"CBC only":              {RootCAs: ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		"no client certificate": {RootCAs: ca.Pool, ServerName: "localhost"},
	} {
		addr, res := serve(t, Server(ca.Server(t), ca.Pool, true))
		_, _ = dial(addr, cli)
		if srvErr := <-res; srvErr == nil {
			t.Errorf("%s: the server accepted it", name)
		} else {
			t.Logf("%s: %v", name, srvErr)
		}
	}
}

// TestClientWithSource: the certificate comes from the source at every
// handshake, so a renewed one is used without a new configuration.
func TestClientWithSource(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	certs := []tls.Certificate{ca.Device(t, "SYS-1"), ca.Device(t, "SYS-1")}
	i := 0
	cfg, err := ClientWithSource(ca.Pool, func() (*tls.Certificate, error) { return &certs[i], nil }, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	for i = range certs {
		addr, res := serve(t, Server(ca.Server(t), ca.Pool, true))
		if _, err := dial(addr, cfg); err != nil {
			t.Fatal(err)
		}
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ClientWithSource(ca.Pool, nil, "localhost"); err == nil {
		t.Error("a nil source was accepted")
	}
	if _, err := ClientWithSource(nil, func() (*tls.Certificate, error) { return &certs[0], nil }, "localhost"); err == nil {
		t.Error("no pinned CA was accepted")
	}
}

func TestNoSystemPool(t *testing.T) {
	if _, err := Client(nil, nil, "localhost"); err == nil || !strings.Contains(err.Error(), "system pool") {
		t.Fatalf("Client without a pinned CA: %v", err)
	}
	if _, err := DTLSClient(nil, tls.Certificate{}, "localhost"); err == nil {
		t.Fatal("DTLSClient without a pinned CA")
	}
}

func TestLoadCAFile(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "vendor")
	if _, err := LoadCAFile(ca.WriteCAFile(t, dir)); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("nothing"), 0o644)
	if _, err := LoadCAFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("no PEM: %v", err)
	}
	if _, err := LoadCAFile(filepath.Join(dir, "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestDTLS: the heartbeat configurations agree with each other, the
// client refuses a server from another CA, and the certificate source is
// asked at the handshake.
func TestDTLS(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	other := testpki.NewCA(t, "other")
	dev := ca.Device(t, "SYS-1")
	for name, tc := range map[string]struct {
		server tls.Certificate
		ok     bool
	}{"same CA": {ca.Server(t), true}, "another CA": {other.Server(t), false}} {
		t.Run(name, func(t *testing.T) {
			l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, DTLSServer(tc.server, ca.Pool))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = c.(*dtls.Conn).HandshakeContext(ctx)
					buf := make([]byte, 8)
					if n, err := c.Read(buf); err == nil {
						c.Write(buf[:n])
					}
					c.Close()
				}
			}()
			asked := false
			cfg, err := DTLSClientWithSource(ca.Pool, func() (*tls.Certificate, error) { asked = true; return &dev, nil }, "localhost")
			if err != nil {
				t.Fatal(err)
			}
			dc, err := dtls.Dial("udp", l.Addr().(*net.UDPAddr), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = dc.HandshakeContext(ctx)
			if tc.ok && (err != nil || !asked) {
				t.Fatalf("handshake: %v (certificate asked: %v)", err, asked)
			}
			if !tc.ok && err == nil {
				t.Fatal("a DTLS server from another CA was accepted")
			}
		})
	}
}
