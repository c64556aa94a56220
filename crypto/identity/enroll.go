package identity

import (
	"context"
	"errors"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
)

// EnrollOptions shape Enroll.
type EnrollOptions struct {
	Options
	// GenerateKey makes the device key when the store has none yet, with
	// Algorithm (default ECC P-256).
	GenerateKey bool
	Algorithm   keystore.Algorithm
}

// Enroll makes this device's identity with a one-time token: the key
// (made first when allowed and missing), a CSR signed by it, the
// exchange with the backend ([backend] url) including the TPM's proof
// when the key store is a TPM with an endorsement key certificate, and
// the verified chain stored in the state directory. It returns the
// loaded identity. A device that is enrolled already is enrolled again
// (a new token replaces the old certificate).
func Enroll(ctx context.Context, cfg *config.Config, token string, opts EnrollOptions) (*Identity, error) {
	if cfg.Backend.URL == "" {
		return nil, &config.Error{File: cfg.Path, Section: "backend", Key: "url", Err: errors.New("must be set to enroll")}
	}
	id, err := open(ctx, cfg, opts.Options)
	if (errors.Is(err, keystore.ErrNoKey) || errors.Is(err, ErrCopiedState)) && opts.GenerateKey {
		// No key yet (or only a certificate copied from another device,
		// which the new chain replaces): make this device's own.
		id, err = generateAndOpen(ctx, cfg, opts)
	}
	if err != nil {
		return nil, err
	}
	var attester keystore.Attester
	if a, ok := id.store.(keystore.Attester); ok {
		attester = probeAttester{a, id}
	}
	chain, err := enroll.Enroll(ctx, id.backend, id.device(), token, attester)
	if err != nil {
		id.store.Close()
		return nil, err
	}
	if err := SaveChain(cfg.Device.StateDir, chain); err != nil {
		id.store.Close()
		return nil, err
	}
	if err := id.adopt(chain); err != nil {
		id.store.Close()
		return nil, err
	}
	fp, _ := keystore.Fingerprint(id.signer.Public())
	id.log.Info("identity: enrolled", "system_id", cfg.Device.SystemID, "serial", chain[0].SerialNumber.Text(16), "not_after", chain[0].NotAfter, "key", fp)
	return id, nil
}

func generateAndOpen(ctx context.Context, cfg *config.Config, opts EnrollOptions) (*Identity, error) {
	store, err := keystore.Open(ctx, cfg.Identity.KeyURI, keystore.Options{StateDir: cfg.Device.StateDir, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	_, err = store.Generate(ctx, opts.Algorithm)
	store.Close()
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg, opts.Options)
}

// probeAttester turns "this TPM cannot attest" (no EK certificate) into
// no attestation: the backend then decides whether it needs one, and
// says so if it does.
type probeAttester struct {
	keystore.Attester
	id *Identity
}

func (p probeAttester) Attest(ctx context.Context, qd []byte) (*keystore.Evidence, error) {
	ev, err := p.Attester.Attest(ctx, qd)
	if errors.Is(err, keystore.ErrNoAttestation) {
		p.id.log.Warn("identity: enrolling without TPM attestation", "reason", err)
		return nil, nil
	}
	return ev, err
}
