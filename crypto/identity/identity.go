// Package identity is the device's identity as the rest of the agent
// sees it: the key in its key store, the certificate chain the vendor CA
// issued for it, the pinned vendor CA, and the loop that renews the
// certificate before it expires.
//
// The daemon loads it once and hands it to every part that talks to the
// backend:
//
//	id, err := identity.Load(ctx, cfg, identity.Options{Logger: log})
//	defer id.Close()
//	go id.Run(ctx)                               // renewal
//	tlsCfg, err := id.ClientTLS("backend.example") // HTTPS with the device certificate
//	// DTLS: tlsconf.DTLSClientWithSource(id.Roots(), id.Current, name)
//
// TLS configurations built from ClientTLS (or from Current) fetch the
// certificate at every handshake, so they pick up a renewed certificate
// without being rebuilt; Changed tells parts that want to drop long-lived
// sessions.
//
// The chain lives in <state_dir>/identity/chain.pem, written atomically
// (the old one stays until the new one is on disk). The key never does:
// it stays in its TPM or token, so a copy of the state directory cannot
// authenticate, and Load says so when it meets one.
package identity

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// ErrNotEnrolled means the state directory holds no certificate yet.
var ErrNotEnrolled = errors.New("identity: this device is not enrolled yet: run dcagent enroll --token TOKEN with a token from the backend")

// ErrCopiedState means the stored certificate is for a key this device's
// key store does not have.
var ErrCopiedState = errors.New("identity: the stored certificate belongs to a key this device does not hold: the state directory was copied from another device (or the key was deleted); this device must make its own key and enroll: dcagent key generate, then dcagent enroll --token TOKEN")

// ChainPath is where the certificate chain is kept.
func ChainPath(stateDir string) string { return filepath.Join(stateDir, "identity", "chain.pem") }

// SaveChain stores the chain atomically.
func SaveChain(stateDir string, chain []*x509.Certificate) error {
	if err := keystore.WriteFileAtomic(ChainPath(stateDir), enroll.EncodeChain(chain), 0o644); err != nil {
		return fmt.Errorf("identity: store the certificate chain: %w", err)
	}
	return nil
}

// LoadChain reads the stored chain; ErrNotEnrolled when there is none.
func LoadChain(stateDir string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(ChainPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	chain, err := enroll.ParseChain(data)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", ChainPath(stateDir), err)
	}
	return chain, nil
}

// Options are what Load needs besides the configuration.
type Options struct {
	// Logger gets the identity's lines; nil means discard.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// Identity is the device's key and certificate. Methods are safe for
// concurrent use.
type Identity struct {
	cfg     *config.Config
	store   keystore.Store
	signer  crypto.Signer
	roots   *x509.CertPool
	log     *slog.Logger
	now     func() time.Time
	backend *enroll.Backend

	renewMu sync.Mutex // one renewal at a time

	mu           sync.RWMutex
	cert         *tls.Certificate
	changed      chan struct{}
	lastErr      error
	lastRenewal  time.Time
	clockVerdict string // "", "behind" or "expired": what was last reported
	closed       bool
}

// Load opens the key store named by [identity] key_uri, reads the stored
// chain and checks that it belongs to this key and chains to the pinned
// vendor CA ([backend] ca_file). It does not check the clock: see
// CheckClock and Run.
func Load(ctx context.Context, cfg *config.Config, opts Options) (*Identity, error) {
	id, err := open(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	chain, err := LoadChain(cfg.Device.StateDir)
	if err != nil {
		id.store.Close()
		return nil, err
	}
	if err := id.adopt(chain); err != nil {
		id.store.Close()
		return nil, err
	}
	_ = id.checkClock(id.now(), chain[0])
	return id, nil
}

// open opens the store and the key, without a certificate.
func open(ctx context.Context, cfg *config.Config, opts Options) (*Identity, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if cfg.Identity.KeyURI == "" {
		return nil, &config.Error{File: cfg.Path, Section: "identity", Key: "key_uri", Err: errors.New("must name the device key (tpm:, pkcs11: or file:)")}
	}
	roots, err := tlsconf.LoadCAFile(cfg.Backend.CAFile)
	if err != nil {
		return nil, fmt.Errorf("identity: [backend] ca_file: %w", err)
	}
	store, err := keystore.Open(ctx, cfg.Identity.KeyURI, keystore.Options{StateDir: cfg.Device.StateDir, Logger: log})
	if err != nil {
		return nil, err
	}
	signer, err := store.Signer(ctx)
	if err != nil {
		store.Close()
		if errors.Is(err, keystore.ErrNoKey) {
			if _, cerr := os.Stat(ChainPath(cfg.Device.StateDir)); cerr == nil {
				return nil, fmt.Errorf("%w (%v)", ErrCopiedState, err)
			}
		}
		return nil, err
	}
	return &Identity{
		cfg: cfg, store: store, signer: signer, roots: roots, log: log, now: now,
		backend: &enroll.Backend{URL: cfg.Backend.URL, Roots: roots, Logger: log},
		changed: make(chan struct{}),
	}, nil
}

// adopt checks a chain against this device and makes it current.
func (id *Identity) adopt(chain []*x509.Certificate) error {
	leaf := chain[0]
	pub := id.signer.Public()
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		certFP, _ := keystore.Fingerprint(leaf.PublicKey)
		keyFP, _ := keystore.Fingerprint(pub)
		return fmt.Errorf("%w (certificate key %s, key store %s holds %s)", ErrCopiedState, certFP, id.store.Describe(), keyFP)
	}
	if leaf.Subject.CommonName != id.cfg.Device.SystemID {
		return fmt.Errorf("identity: the stored certificate is for system ID %q, the configuration says %q ([device] system_id): enroll again with a token for this system ID", leaf.Subject.CommonName, id.cfg.Device.SystemID)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.roots, Intermediates: inter, CurrentTime: verifyTime(leaf, id.now()), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("identity: the stored certificate does not chain to the pinned vendor CA %s: %w", id.cfg.Backend.CAFile, err)
	}
	der := make([][]byte, len(chain))
	for i, c := range chain {
		der[i] = c.Raw
	}
	cert := &tls.Certificate{Certificate: der, PrivateKey: id.signer, Leaf: leaf}
	id.mu.Lock()
	old := id.cert
	id.cert = cert
	if old != nil {
		close(id.changed)
		id.changed = make(chan struct{})
	}
	id.mu.Unlock()
	return nil
}

// verifyTime is when to check a chain: now, or, when the clock puts now
// outside the certificate's validity, its mid-life, so that a clock far
// off is diagnosed on its own (CheckClock) and not as a bad chain.
func verifyTime(leaf *x509.Certificate, now time.Time) time.Time {
	if CheckClock(now, leaf) == nil {
		return now
	}
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
}

// Current returns the current certificate. Its PrivateKey is the key
// store's signer.
func (id *Identity) Current() (*tls.Certificate, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert, nil
}

// TLSCertificate returns the current certificate by value.
func (id *Identity) TLSCertificate() tls.Certificate {
	c, _ := id.Current()
	return *c
}

// GetClientCertificate is a crypto/tls callback that always hands out the
// current certificate.
func (id *Identity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return id.Current()
}

// ClientTLS returns a client configuration for serverName from tlsconf,
// with the device certificate fetched at every handshake.
func (id *Identity) ClientTLS(serverName string) (*tls.Config, error) {
	return tlsconf.ClientWithSource(id.roots, id.Current, serverName)
}

// Roots is the pinned vendor CA.
func (id *Identity) Roots() *x509.CertPool { return id.roots }

// Leaf is the current device certificate.
func (id *Identity) Leaf() *x509.Certificate {
	c, _ := id.Current()
	return c.Leaf
}

// NotAfter is when the current certificate expires.
func (id *Identity) NotAfter() time.Time { return id.Leaf().NotAfter }

// SystemID is the device's system ID, as certified.
func (id *Identity) SystemID() string { return id.Leaf().Subject.CommonName }

// Signer is the device key.
func (id *Identity) Signer() crypto.Signer { return id.signer }

// Store is the key store; a TPM store also offers keystore.CounterStore.
func (id *Identity) Store() keystore.Store { return id.store }

// Changed returns a channel closed when a new certificate is in place;
// call it again after that for the next one.
func (id *Identity) Changed() <-chan struct{} {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.changed
}

// Status is a snapshot for `dcagent status` and diagnostics.
type Status struct {
	SystemID    string    `json:"system_id"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	RenewAt     time.Time `json:"renew_at"`
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	KeyStore    string    `json:"key_store"`
}

// Status reports the identity's state.
func (id *Identity) Status() Status {
	id.mu.RLock()
	defer id.mu.RUnlock()
	leaf := id.cert.Leaf
	s := Status{
		SystemID: leaf.Subject.CommonName, Serial: leaf.SerialNumber.Text(16),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		RenewAt:     RenewTime(leaf, id.cfg.Identity.RenewAt),
		LastRenewal: id.lastRenewal,
		KeyStore:    id.store.Describe(),
	}
	if id.lastErr != nil {
		s.LastError = id.lastErr.Error()
	}
	return s
}

// Close releases the key store.
func (id *Identity) Close() error {
	id.mu.Lock()
	if id.closed {
		id.mu.Unlock()
		return nil
	}
	id.closed = true
	id.mu.Unlock()
	return id.store.Close()
}
