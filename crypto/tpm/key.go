package tpm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"os"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

func init() { keystore.Register("tpm", openStore) }

// Store is the tpm: key store: one key in one TPM, named by a tpm: URI
// (see keystore.TPMURI).
type Store struct {
	t        *TPM
	uri      *keystore.TPMURI
	stateDir string
	log      *slog.Logger

	// Guarded by t.mu (used only inside t.do).
	blob      *keyBlob        // nil in handle mode or before Signer/Generate
	pub       tpm2.TPMTPublic // the key's public area
	pubRaw    []byte          // the same as the TPM gave it (TPMT_PUBLIC)
	handle    tpm2.TPMHandle  // loaded transient handle, or the persistent one
	name      tpm2.TPM2BName
	loadedGen uint64 // t.gen when handle was loaded; 0: not loaded
}

var (
	_ keystore.Store        = (*Store)(nil)
	_ keystore.Attester     = (*Store)(nil)
	_ keystore.CounterStore = (*Store)(nil)
)

func openStore(ctx context.Context, uri string, opts keystore.Options) (keystore.Store, error) {
	return OpenStore(ctx, uri, opts)
}

// OpenStore opens the tpm: store the URI names.
func OpenStore(ctx context.Context, uri string, opts keystore.Options) (*Store, error) {
	u, err := keystore.ParseTPMURI(uri)
	if err != nil {
		return nil, err
	}
	if u.Handle == 0 && opts.StateDir == "" {
		return nil, errors.New("tpm: the key blob needs a state directory ([device] state_dir)")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, err := Open(ctx, u.Where(), log)
	if err != nil {
		return nil, err
	}
	return &Store{t: t, uri: u, stateDir: opts.StateDir, log: log}, nil
}

// TPM returns the shared connection this store uses.
func (s *Store) TPM() *TPM { return s.t }

// Describe says where the key lives.
func (s *Store) Describe() string {
	where := "TPM 2.0 at " + s.t.where + " (" + s.t.Info().String() + ")"
	if s.uri.Handle != 0 {
		return fmt.Sprintf("%s, key persisted inside the TPM at handle 0x%08x; it cannot be exported", where, s.uri.Handle)
	}
	return fmt.Sprintf("%s, key wrapped by this TPM's storage root key in %s; the blob is useless on any other TPM", where, s.uri.BlobPath(s.stateDir))
}

// Close flushes the loaded key and gives back the TPM connection.
func (s *Store) Close() error {
	_ = s.t.do(context.Background(), func(tp transport.TPM) error {
		if s.uri.Handle == 0 && s.loadedGen == s.t.gen && s.handle != 0 {
			_, _ = (tpm2.FlushContext{FlushHandle: s.handle}).Execute(tp)
		}
		s.loadedGen = 0
		return nil
	})
	return s.t.Close()
}

// Signer returns the key. A blob made by another TPM gives an error
// wrapping ErrForeignKey.
func (s *Store) Signer(ctx context.Context) (crypto.Signer, error) {
	if s.uri.Handle == 0 {
		path := s.uri.BlobPath(s.stateDir)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tpm: no key blob at %s: %w (make one with dcagent key generate)", path, keystore.ErrNoKey)
		}
		if err != nil {
			return nil, fmt.Errorf("tpm: %w", err)
		}
		blob, err := parseBlob(data)
		if err != nil {
			return nil, fmt.Errorf("tpm: key blob %s: %w", path, err)
		}
		if err := s.t.do(ctx, func(tp transport.TPM) error {
			s.blob, s.pub, s.pubRaw, s.loadedGen = blob, blob.public, blob.pubRaw, 0
			return s.ensureLoaded(tp)
		}); err != nil {
			return nil, err
		}
		return s.newSigner()
	}
	if err := s.t.do(ctx, func(tp transport.TPM) error {
		rsp, err := (tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(s.uri.Handle)}).Execute(tp)
		if errors.Is(err, tpm2.TPMRCHandle) {
			return fmt.Errorf("tpm: no key at persistent handle 0x%08x in the TPM at %s: %w (make one with dcagent key generate)", s.uri.Handle, s.t.where, keystore.ErrNoKey)
		}
		if err != nil {
			return fmt.Errorf("tpm: read key at 0x%08x: %w", s.uri.Handle, err)
		}
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("tpm: key at 0x%08x: %w", s.uri.Handle, err)
		}
		if err := checkSigningKey(pub); err != nil {
			return fmt.Errorf("tpm: key at 0x%08x: %w", s.uri.Handle, err)
		}
		s.pub, s.pubRaw, s.handle, s.name, s.loadedGen = *pub, rsp.OutPublic.Bytes(), tpm2.TPMHandle(s.uri.Handle), rsp.Name, s.t.gen
		return nil
	}); err != nil {
		return nil, err
	}
	return s.newSigner()
}

// Generate makes a new key in the TPM; it refuses to replace one.
func (s *Store) Generate(ctx context.Context, alg keystore.Algorithm) (crypto.Signer, error) {
	tmpl, err := keyTemplate(alg)
	if err != nil {
		return nil, err
	}
	k, err := s.generate(ctx, tmpl)
	if err != nil {
		return nil, err
	}
	s.log.Info("tpm: key generated", "tpm", s.t.where, "alg", string(alg), "uri", s.uri.String())
	return k, nil
}

func (s *Store) generate(ctx context.Context, tmpl tpm2.TPMTPublic) (crypto.Signer, error) {
	var err error
	if s.uri.Handle == 0 {
		path := s.uri.BlobPath(s.stateDir)
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("tpm: key blob %s: %w", path, keystore.ErrKeyExists)
		}
	}
	err = s.t.do(ctx, func(tp transport.TPM) error {
		if s.uri.Handle != 0 {
			if _, err := (tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(s.uri.Handle)}).Execute(tp); err == nil {
				return fmt.Errorf("tpm: persistent handle 0x%08x: %w", s.uri.Handle, keystore.ErrKeyExists)
			}
		}
		srk, err := createSRK(tp)
		if err != nil {
			return err
		}
		defer flush(tp, srk.ObjectHandle)
		created, err := tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
			InPublic:     tpm2.New2B(tmpl),
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: create key: %w", err)
		}
		pub, err := created.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("tpm: create key: %w", err)
		}
		blob := &keyBlob{public: *pub, pubRaw: created.OutPublic.Bytes(), private: created.OutPrivate.Buffer}
		loaded, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    created.OutPrivate,
			InPublic:     created.OutPublic,
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: load new key: %w", err)
		}
		if s.uri.Handle != 0 {
			defer flush(tp, loaded.ObjectHandle)
			if _, err := (tpm2.EvictControl{
				Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
				ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
				PersistentHandle: tpm2.TPMHandle(s.uri.Handle),
			}).Execute(tp); err != nil {
				return fmt.Errorf("tpm: persist key at 0x%08x: %w", s.uri.Handle, err)
			}
			s.pub, s.pubRaw, s.handle, s.name, s.loadedGen = *pub, blob.pubRaw, tpm2.TPMHandle(s.uri.Handle), loaded.Name, s.t.gen
			return nil
		}
		data, err := marshalBlob(blob)
		if err != nil {
			flush(tp, loaded.ObjectHandle)
			return err
		}
		if err := keystore.WriteFileAtomic(s.uri.BlobPath(s.stateDir), data, 0o600); err != nil {
			flush(tp, loaded.ObjectHandle)
			return fmt.Errorf("tpm: store key blob: %w", err)
		}
		s.blob, s.pub, s.pubRaw, s.handle, s.name, s.loadedGen = blob, *pub, blob.pubRaw, loaded.ObjectHandle, loaded.Name, s.t.gen
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.newSigner()
}

// ensureLoaded loads the blob under a fresh SRK when the key is not
// loaded in the current connection generation. The SRK is flushed at
// once: a loaded key needs no parent to sign.
func (s *Store) ensureLoaded(tp transport.TPM) error {
	if s.loadedGen == s.t.gen && s.handle != 0 {
		return nil
	}
	if s.uri.Handle != 0 {
		s.loadedGen = s.t.gen
		return nil
	}
	if s.blob == nil {
		return errors.New("tpm: no key: call Signer or Generate first")
	}
	srk, err := createSRK(tp)
	if err != nil {
		return err
	}
	defer flush(tp, srk.ObjectHandle)
	loaded, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: s.blob.private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](s.blob.pubRaw),
	}.Execute(tp)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCIntegrity) || errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCSize) {
			return fmt.Errorf("tpm: the key blob %s was not made by the TPM at %s (%v): %w", s.uri.BlobPath(s.stateDir), s.t.where, err, ErrForeignKey)
		}
		return fmt.Errorf("tpm: load key blob %s: %w", s.uri.BlobPath(s.stateDir), err)
	}
	s.handle, s.name, s.loadedGen = loaded.ObjectHandle, loaded.Name, s.t.gen
	return nil
}

func (s *Store) newSigner() (crypto.Signer, error) {
	pub, err := tpm2.Pub(s.pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: key public part: %w", err)
	}
	return &signer{s: s, pub: pub}, nil
}

// signer is a crypto.Signer whose private half stays in the TPM.
type signer struct {
	s   *Store
	pub crypto.PublicKey
}

func (k *signer) Public() crypto.PublicKey { return k.pub }

// Sign signs a digest in the TPM. ECDSA signatures come back ASN.1
// encoded, as crypto.Signer promises; RSA keys sign PKCS #1 v1.5, or PSS
// when opts is *rsa.PSSOptions.
func (k *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	hashAlg, err := tpmHash(opts.HashFunc())
	if err != nil {
		return nil, err
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("tpm: digest of %d bytes for %v", len(digest), opts.HashFunc())
	}
	s := k.s
	var scheme tpm2.TPMTSigScheme
	switch s.pub.Type {
	case tpm2.TPMAlgECC:
		scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: hashAlg})}
	case tpm2.TPMAlgRSA:
		if _, pss := opts.(*rsa.PSSOptions); pss {
			scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSAPSS, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSchemeHash{HashAlg: hashAlg})}
		} else {
			scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSASSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: hashAlg})}
		}
	default:
		return nil, fmt.Errorf("tpm: key type %v cannot sign", s.pub.Type)
	}
	var sig *tpm2.TPMTSignature
	err = s.t.do(context.Background(), func(tp transport.TPM) error {
		for attempt := 0; ; attempt++ {
			if err := s.ensureLoaded(tp); err != nil {
				return err
			}
			rsp, err := tpm2.Sign{
				KeyHandle:  tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
				Digest:     tpm2.TPM2BDigest{Buffer: digest},
				InScheme:   scheme,
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}.Execute(tp)
			// A key flushed behind our back (another program on a TPM
			// without a resource manager) is loaded again once.
			if attempt == 0 && s.uri.Handle == 0 && (errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCReferenceH0)) {
				s.loadedGen = 0
				continue
			}
			if errors.Is(err, tpm2.TPMRCLockout) {
				return fmt.Errorf("tpm: sign: the TPM is in dictionary-attack lockout (too many wrong passwords or power losses while a protected key was in use); it recovers by itself after its recovery time, or the owner can reset it (tpm2_dictionarylockout --clear-lockout): %w", err)
			}
			if err != nil {
				return fmt.Errorf("tpm: sign: %w", err)
			}
			sig = &rsp.Signature
			return nil
		}
	})
	if err != nil {
		return nil, err
	}
	switch s.pub.Type {
	case tpm2.TPMAlgECC:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("tpm: signature: %w", err)
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(e.SignatureR.Buffer),
			new(big.Int).SetBytes(e.SignatureS.Buffer),
		})
	default:
		var r *tpm2.TPMSSignatureRSA
		if sig.SigAlg == tpm2.TPMAlgRSAPSS {
			r, err = sig.Signature.RSAPSS()
		} else {
			r, err = sig.Signature.RSASSA()
		}
		if err != nil {
			return nil, fmt.Errorf("tpm: signature: %w", err)
		}
		return r.Sig.Buffer, nil
	}
}

func tpmHash(h crypto.Hash) (tpm2.TPMIAlgHash, error) {
	switch h {
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, nil
	}
	return 0, fmt.Errorf("tpm: hash %v is not supported (SHA-256, SHA-384, SHA-512)", h)
}

// keyTemplate is an unrestricted signing key that cannot leave the TPM:
// fixedTPM, fixedParent, sensitiveDataOrigin (the TPM made the secret),
// no password (userWithAuth with an empty one) and noDA. The scheme is
// left open (TPM_ALG_NULL) so one key serves TLS 1.2 and 1.3.
func keyTemplate(alg keystore.Algorithm) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	}
	switch alg {
	case keystore.ECCP256, "":
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				CurveID: tpm2.TPMECCNistP256,
				Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
				Symmetric: tpm2.TPMTSymDefObject{
					Algorithm: tpm2.TPMAlgNull,
				},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case keystore.RSA2048:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				KeyBits:   2048,
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("tpm: unknown key algorithm %q (ecc-p256 or rsa-2048)", alg)
}

// checkSigningKey refuses a key the TPM would let out, or that cannot
// sign arbitrary digests.
func checkSigningKey(pub *tpm2.TPMTPublic) error {
	a := pub.ObjectAttributes
	switch {
	case !a.SignEncrypt || a.Restricted || a.Decrypt:
		return errors.New("not an unrestricted signing key")
	case !a.FixedTPM || !a.FixedParent:
		return errors.New("the key can leave the TPM (fixedTPM or fixedParent is clear)")
	}
	return nil
}

// createSRK makes the owner hierarchy's storage root key from the TCG
// ECC P-256 template. The TPM derives it from its storage seed, so it is
// the same key every time on this TPM, and a different one on any other.
func createSRK(tp transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tp)
	if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
		return nil, fmt.Errorf("tpm: the owner hierarchy has a password; dcagent needs it empty to derive its storage root key: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: create storage root key: %w", err)
	}
	return rsp, nil
}

func flush(tp transport.TPM, h tpm2.TPMHandle) {
	_, _ = (tpm2.FlushContext{FlushHandle: h}).Execute(tp)
}
