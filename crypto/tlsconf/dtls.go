package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/pion/dtls/v3"
)

// DTLSSuites are the DTLS 1.2 cipher suites allowed: ECDHE with AES-GCM.
// pion/dtls implements the ECDSA ones with AES-GCM; RSA key exchange and
// CBC suites are never offered.
var DTLSSuites = []dtls.CipherSuiteID{
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// DTLSClient returns the heartbeat client configuration: mutual
// authentication with the device certificate, the pinned CA, and
// connection IDs (RFC 9146) so that an address or port change keeps the
// session.
func DTLSClient(roots *x509.CertPool, cert tls.Certificate, serverName string) (*dtls.Config, error) {
	if roots == nil {
		return nil, errors.New("tlsconf: no pinned CA for DTLS")
	}
	return &dtls.Config{
		Certificates:          []tls.Certificate{cert},
		RootCAs:               roots,
		ServerName:            serverName,
		CipherSuites:          DTLSSuites,
		ExtendedMasterSecret:  dtls.RequireExtendedMasterSecret,
		ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
	}, nil
}

// DTLSClientWithSource is DTLSClient with the device certificate fetched
// from source at every handshake (see ClientWithSource).
func DTLSClientWithSource(roots *x509.CertPool, source func() (*tls.Certificate, error), serverName string) (*dtls.Config, error) {
	if roots == nil {
		return nil, errors.New("tlsconf: no pinned CA for DTLS")
	}
	if source == nil {
		return nil, errors.New("tlsconf: no certificate source")
	}
	return &dtls.Config{
		GetClientCertificate:  func(*dtls.CertificateRequestInfo) (*tls.Certificate, error) { return source() },
		RootCAs:               roots,
		ServerName:            serverName,
		CipherSuites:          DTLSSuites,
		ExtendedMasterSecret:  dtls.RequireExtendedMasterSecret,
		ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
	}, nil
}

// DTLSServer returns the backend's heartbeat service configuration: client
// certificates required and verified against clientCAs, connection IDs of
// eight random bytes. The reference backend (sim/heartbeat) replaces the
// generator with its own 4-byte session ids, which index its session table
// and save 4 bytes on every datagram.
func DTLSServer(cert tls.Certificate, clientCAs *x509.CertPool) *dtls.Config {
	return &dtls.Config{
		Certificates:          []tls.Certificate{cert},
		ClientCAs:             clientCAs,
		ClientAuth:            dtls.RequireAndVerifyClientCert,
		CipherSuites:          DTLSSuites,
		ExtendedMasterSecret:  dtls.RequireExtendedMasterSecret,
		ConnectionIDGenerator: dtls.RandomCIDGenerator(8),
	}
}
