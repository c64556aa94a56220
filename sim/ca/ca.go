// Package ca is the reference backend's private certificate authority:
// it enrolls devices with one-time tokens, renews their certificates over
// mutual TLS, keeps a revocation list, and authenticates devices for the
// backend's other services.
//
// The backend composition mounts it like this:
//
//	ca, err := ca.Open(ca.Config{Dir: ca.DirIn(stateDir), RequireTPM: true, TPMRootsFile: roots})
//	mux.Handle("/v1/enroll", ca.Handler())
//	mux.Handle("/v1/renew", ca.Handler())
//	mux.Handle("/v1/events/", ca.RequireDevice(eventsHandler)) // ca.DeviceID(r) inside
//	srv := &http.Server{Handler: mux, TLSConfig: ca.ServerTLSConfig()}
//	// DTLS: tlsconf.DTLSServer(ca.ServerCertificate(), ca.Pool()) and
//	// ca.AuthenticateCert(peerLeaf) per session.
//
// Everything it must remember lives under Config.Dir, so a backend that
// restarts keeps its CA, its tokens, its devices and its revocations:
//
//	ca.pem, ca-key.pem           the CA (ECDSA P-256, ten years)
//	server.pem, server-key.pem   the backend's own certificate for 127.0.0.1, ::1, localhost
//	tokens/<sha256>.json         unused enrollment tokens (only their hash is kept)
//	tokens/<sha256>.used         used ones
//	devices/<system-id>.json     the enrolled key of each device, and its serials
//	revoked.json                 revoked serials
//
// The wire protocol is documented in crypto/enroll.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// DefaultLifetime is how long a device certificate lasts unless
// Config.Lifetime says otherwise: short, so that renewal is exercised
// and a lost device falls off by itself.
const DefaultLifetime = 30 * 24 * time.Hour

// DirIn is where the CA keeps its state inside a backend state
// directory: both the backend and dcsim token use it, so that a token
// made by one is seen by the other.
func DirIn(backendState string) string { return filepath.Join(backendState, "ca") }

// Config shapes the CA.
type Config struct {
	// Dir holds the CA's state; created when missing.
	Dir string
	// Lifetime of device certificates; 0 means DefaultLifetime.
	Lifetime time.Duration
	// RequireTPM refuses enrollment without TPM attestation.
	RequireTPM bool
	// TPMRootsFile is a PEM file of the TPM makers' certificates that
	// endorsement key certificates must chain to: self-signed ones are
	// roots, the others intermediates. Needed to accept attestation.
	TPMRootsFile string
	// ServerNames are extra DNS names or IPs for the backend certificate,
	// besides 127.0.0.1, ::1 and localhost.
	ServerNames []string
	// Logger gets one line per enrollment, renewal and refusal; nil
	// means discard. Tokens never reach it.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// CA is the backend's certificate authority. Methods are safe for
// concurrent use.
type CA struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	lifetime time.Duration

	cert    *x509.Certificate
	key     crypto.Signer
	pool    *x509.CertPool
	certPEM []byte
	server  tls.Certificate

	tpmRoots, tpmInter *x509.CertPool

	mu         sync.Mutex // serialises token use, issuing and records
	revoked    map[string]time.Time
	challenges map[string]*challenge
	keyFP      map[string]string // system ID -> enrolled key fingerprint, a cache of devices/
}

var systemIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidSystemID says whether s can be a system ID: 1-64 characters of
// A-Z a-z 0-9 . _ -, starting with a letter or digit.
func ValidSystemID(s string) bool { return systemIDRE.MatchString(s) }

// Open loads the CA from cfg.Dir, or creates it there.
func Open(cfg Config) (*CA, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ca: no state directory")
	}
	ca := &CA{cfg: cfg, log: cfg.Logger, now: cfg.Now, lifetime: cfg.Lifetime, challenges: map[string]*challenge{}, keyFP: map[string]string{}}
	if ca.log == nil {
		ca.log = slog.New(slog.DiscardHandler)
	}
	if ca.now == nil {
		ca.now = time.Now
	}
	if ca.lifetime <= 0 {
		ca.lifetime = DefaultLifetime
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "tokens"), filepath.Join(cfg.Dir, "devices")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
	}
	if err := ca.loadOrCreateRoot(); err != nil {
		return nil, err
	}
	if err := ca.loadOrCreateServer(); err != nil {
		return nil, err
	}
	if err := ca.loadRevoked(); err != nil {
		return nil, err
	}
	if cfg.TPMRootsFile != "" {
		if err := ca.loadTPMRoots(cfg.TPMRootsFile); err != nil {
			return nil, err
		}
	} else if cfg.RequireTPM {
		return nil, errors.New("ca: RequireTPM needs TPMRootsFile, the TPM makers' root certificates")
	}
	return ca, nil
}

func (ca *CA) path(name string) string { return filepath.Join(ca.cfg.Dir, name) }

func (ca *CA) loadOrCreateRoot() error {
	cert, key, err := loadPair(ca.path("ca.pem"), ca.path("ca-key.pem"))
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("ca: %w", err)
		}
		now := ca.now()
		tmpl := &x509.Certificate{
			SerialNumber:          randomSerial(),
			Subject:               pkix.Name{CommonName: "dcagent reference backend CA", Organization: []string{"dcagent"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.AddDate(10, 0, 0),
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLenZero:        true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			return fmt.Errorf("ca: %w", err)
		}
		if err := savePair(ca.path("ca.pem"), ca.path("ca-key.pem"), der, k); err != nil {
			return err
		}
		cert, key, err = loadPair(ca.path("ca.pem"), ca.path("ca-key.pem"))
		if err != nil {
			return err
		}
		ca.log.Info("ca: created", "dir", ca.cfg.Dir)
	} else if err != nil {
		return err
	}
	ca.cert, ca.key = cert, key
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(cert)
	ca.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return nil
}

func (ca *CA) loadOrCreateServer() error {
	cert, key, err := loadPair(ca.path("server.pem"), ca.path("server-key.pem"))
	if err == nil && cert.NotAfter.After(ca.now().Add(30*24*time.Hour)) && ca.serverNamesCovered(cert) {
		ca.server = tls.Certificate{Certificate: [][]byte{cert.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: cert}
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "dcagent reference backend"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, n := range ca.cfg.ServerNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := savePair(ca.path("server.pem"), ca.path("server-key.pem"), der, k); err != nil {
		return err
	}
	leaf, _ := x509.ParseCertificate(der)
	ca.server = tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: k, Leaf: leaf}
	return nil
}

func (ca *CA) serverNamesCovered(c *x509.Certificate) bool {
	for _, n := range ca.cfg.ServerNames {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func (ca *CA) loadTPMRoots(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ca: TPM makers' roots: %w", err)
	}
	ca.tpmRoots, ca.tpmInter = x509.NewCertPool(), x509.NewCertPool()
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("ca: TPM makers' roots %s: %w", path, err)
		}
		if c.CheckSignatureFrom(c) == nil {
			ca.tpmRoots.AddCert(c)
			n++
		} else {
			ca.tpmInter.AddCert(c)
		}
	}
	if n == 0 {
		return fmt.Errorf("ca: TPM makers' roots %s holds no self-signed certificate", path)
	}
	return nil
}

// CAPEM is the CA certificate: what devices pin as [backend] ca_file.
func (ca *CA) CAPEM() []byte { return ca.certPEM }

// Pool is a pool holding only the CA, for verifying device certificates.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// ServerCertificate is the backend's certificate (with the CA in its
// chain) for 127.0.0.1, ::1, localhost and Config.ServerNames.
func (ca *CA) ServerCertificate() tls.Certificate { return ca.server }

// ServerTLSConfig is the backend's HTTPS configuration: from tlsconf,
// asking for a client certificate and verifying any it gets against the
// CA (enrollment comes without one). Handlers that need a device call
// Authenticate, which also checks revocation.
func (ca *CA) ServerTLSConfig() *tls.Config {
	c := tlsconf.Server(ca.server, ca.pool, false)
	c.Time = ca.now
	return c
}

// Lifetime is the lifetime of the certificates the CA issues.
func (ca *CA) Lifetime() time.Duration { return ca.lifetime }

// issue signs a device certificate for pub.
func (ca *CA) issue(pub crypto.PublicKey, systemID, model string) (*x509.Certificate, error) {
	now := ca.now()
	// Backdated a little for devices whose clocks run slow, but never by
	// a large part of a short lifetime.
	backdate := min(5*time.Minute, ca.lifetime/10)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: systemID},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(ca.lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if model != "" {
		tmpl.Subject.OrganizationalUnit = []string{model}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("ca: issue: %w", err)
	}
	return x509.ParseCertificate(der)
}

func (ca *CA) chainPEM(leaf *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})) + string(ca.certPEM)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("ca: no randomness: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, fmt.Errorf("ca: %s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", certPath, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("ca: %s: not a signing key", keyPath)
	}
	return cert, signer, nil
}

func savePair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := keystore.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := keystore.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}
