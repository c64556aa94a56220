// Package tlsconf is the one place where dcagent's TLS and DTLS
// configurations are built, so that every channel (enrollment, event
// upload, heartbeat, remote-access relay, policy manager, syslog) follows
// the same rules:
//
//   - TLS 1.3 preferred; TLS 1.2 only with ECDHE-ECDSA or ECDHE-RSA and
//     AES-128-GCM-SHA256 or AES-256-GCM-SHA384 (DTLS 1.2 likewise).
//   - The peer is verified against a CA pool pinned from configuration,
//     never the system pool.
//   - The client certificate's key is a crypto.Signer from the key store: a
//     TPM or PKCS#11 key never leaves its token.
//
// Device certificates carry the device's system ID as the subject's
// CommonName and its model as the OrganizationalUnit.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS12Suites are the only TLS 1.2 cipher suites allowed.
var TLS12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// LoadCAFile reads a PEM file of one or more CA certificates into a pool
// that holds nothing else.
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: vendor CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsconf: vendor CA %s holds no PEM certificate", path)
	}
	return pool, nil
}

// Client returns the configuration for a connection from the device to a
// backend service. cert may be nil for enrollment, where the device has no
// certificate yet. serverName is the name the server's certificate must
// carry.
func Client(roots *x509.CertPool, cert *tls.Certificate, serverName string) (*tls.Config, error) {
	if roots == nil {
		return nil, errors.New("tlsconf: no pinned CA: refusing to fall back to the system pool")
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS13,
		CipherSuites: TLS12Suites,
		RootCAs:      roots,
		ServerName:   serverName,
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c, nil
}

// ClientWithSource is Client with the client certificate fetched from
// source at every handshake, so that a renewed certificate is used
// without rebuilding the configuration. source must not return nil.
func ClientWithSource(roots *x509.CertPool, source func() (*tls.Certificate, error), serverName string) (*tls.Config, error) {
	if source == nil {
		return nil, errors.New("tlsconf: no certificate source")
	}
	c, err := Client(roots, nil, serverName)
	if err != nil {
		return nil, err
	}
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return source() }
	return c, nil
}

// Server returns the configuration for a backend service (used by the
// simulator and tests; the device itself serves nothing). clientCAs, when
// not nil, makes the server ask for a client certificate and verify any it
// is given against that pool; requireClient makes one mandatory.
func Server(cert tls.Certificate, clientCAs *x509.CertPool, requireClient bool) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS13,
		CipherSuites: TLS12Suites,
		Certificates: []tls.Certificate{cert},
	}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if requireClient {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return c
}
