//go:build cgo

package p11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"sync"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/miekg/pkcs11"
)

func init() { keystore.Register("pkcs11", open) }

// module is one loaded PKCS#11 module, shared by the stores that use it.
type module struct {
	path string
	ctx  *pkcs11.Ctx
	refs int
}

var modules struct {
	sync.Mutex
	m map[string]*module
}

func loadModule(path string) (*module, error) {
	modules.Lock()
	defer modules.Unlock()
	if modules.m == nil {
		modules.m = map[string]*module{}
	}
	if m := modules.m[path]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("keystore: pkcs11: cannot load the module %s (is the token's library installed at that path?)", path)
	}
	if err := ctx.Initialize(); err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("keystore: pkcs11: initialise %s: %w", path, err)
	}
	m := &module{path: path, ctx: ctx, refs: 1}
	modules.m[path] = m
	return m, nil
}

// release finalises the module after its last user: the next load reads
// the module's configuration afresh (SoftHSM reads $SOFTHSM2_CONF then).
func (m *module) release() {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.m, m.path)
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
}

func isCKR(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// Store is the pkcs11: key store: one key object in one token.
type Store struct {
	mod  *module
	uri  *keystore.PKCS11URI
	log  *slog.Logger
	slot uint
	tok  pkcs11.TokenInfo

	mu      sync.Mutex // a PKCS#11 session is not safe for concurrent use
	session pkcs11.SessionHandle
	closed  bool
}

var _ keystore.Store = (*Store)(nil)

func open(ctx context.Context, uri string, opts keystore.Options) (keystore.Store, error) {
	return Open(ctx, uri, opts)
}

// Open finds the token the URI names, opens a session and logs in.
func Open(ctx context.Context, uri string, opts keystore.Options) (*Store, error) {
	u, err := keystore.ParsePKCS11URI(uri)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pin, err := u.PIN()
	if err != nil {
		return nil, err
	}
	mod, err := loadModule(u.Module())
	if err != nil {
		return nil, err
	}
	s := &Store{mod: mod, uri: u, log: log}
	if err := s.findToken(); err != nil {
		mod.release()
		return nil, err
	}
	sh, err := mod.ctx.OpenSession(s.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		mod.release()
		return nil, fmt.Errorf("keystore: pkcs11: open a session on token %q: %w", s.tok.Label, err)
	}
	s.session = sh
	if err := mod.ctx.Login(sh, pkcs11.CKU_USER, pin); err != nil && !isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = mod.ctx.CloseSession(sh)
		mod.release()
		if isCKR(err, pkcs11.CKR_PIN_INCORRECT) {
			return nil, fmt.Errorf("keystore: pkcs11: wrong PIN for token %q (PIN from %s)", s.tok.Label, pinWhere(u))
		}
		if isCKR(err, pkcs11.CKR_PIN_LOCKED) {
			return nil, fmt.Errorf("keystore: pkcs11: the PIN of token %q is locked after too many wrong tries; the security officer must unblock it", s.tok.Label)
		}
		return nil, fmt.Errorf("keystore: pkcs11: log in to token %q: %w", s.tok.Label, err)
	}
	return s, nil
}

func pinWhere(u *keystore.PKCS11URI) string {
	if u.PINSource == "" {
		return "$" + keystore.PINEnv
	}
	return u.PINSource
}

func trimPad(s string) string { return strings.TrimRight(s, " \x00") }

// findToken picks the one slot whose token matches the URI. SoftHSM gives
// slots random-looking numbers, so tokens are found by their label.
func (s *Store) findToken() error {
	slots, err := s.mod.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("keystore: pkcs11: list slots of %s: %w", s.mod.path, err)
	}
	var seen []string
	found := false
	for _, slot := range slots {
		ti, err := s.mod.ctx.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		label := trimPad(ti.Label)
		seen = append(seen, fmt.Sprintf("%q", label))
		u := s.uri
		if (u.Token != "" && u.Token != label) ||
			(u.Serial != "" && u.Serial != trimPad(ti.SerialNumber)) ||
			(u.Manufacturer != "" && u.Manufacturer != trimPad(ti.ManufacturerID)) ||
			(u.Model != "" && u.Model != trimPad(ti.Model)) ||
			(u.SlotID >= 0 && uint(u.SlotID) != slot) {
			continue
		}
		if found {
			return fmt.Errorf("keystore: pkcs11: more than one token in %s matches %s: add serial= to the URI", s.mod.path, s.uri)
		}
		found, s.slot, s.tok = true, slot, ti
		s.tok.Label = label
	}
	if !found {
		if len(seen) == 0 {
			return fmt.Errorf("keystore: pkcs11: module %s has no token at all (is it initialised?)", s.mod.path)
		}
		return fmt.Errorf("keystore: pkcs11: no token in %s matches %s (tokens present: %s)", s.mod.path, s.uri, strings.Join(seen, ", "))
	}
	return nil
}

// Describe says where the key lives.
func (s *Store) Describe() string {
	where := fmt.Sprintf("PKCS#11 token %q (manufacturer %q, model %q, serial %q) through %s", s.tok.Label, trimPad(s.tok.ManufacturerID), trimPad(s.tok.Model), trimPad(s.tok.SerialNumber), s.mod.path)
	return where + ", key object " + s.keyName() + "; the token does not let it out"
}

func (s *Store) keyName() string {
	var parts []string
	if s.uri.Object != "" {
		parts = append(parts, fmt.Sprintf("label %q", s.uri.Object))
	}
	if s.uri.ID != nil {
		parts = append(parts, fmt.Sprintf("id %x", s.uri.ID))
	}
	return strings.Join(parts, " ")
}

// Close logs out, closes the session and gives back the module.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	_ = s.mod.ctx.Logout(s.session)
	err := s.mod.ctx.CloseSession(s.session)
	s.mod.release()
	return err
}

// keyTemplate names the key's objects of one class.
func (s *Store) keyTemplate(class uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if s.uri.Object != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, s.uri.Object))
	}
	if s.uri.ID != nil {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, s.uri.ID))
	}
	return t
}

// findLocked returns the objects of a class matching the URI.
func (s *Store) findLocked(class uint) ([]pkcs11.ObjectHandle, error) {
	c := s.mod.ctx
	if err := c.FindObjectsInit(s.session, s.keyTemplate(class)); err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: search token %q: %w", s.tok.Label, err)
	}
	objs, _, err := c.FindObjects(s.session, 2)
	_ = c.FindObjectsFinal(s.session)
	if err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: search token %q: %w", s.tok.Label, err)
	}
	return objs, nil
}

// Signer returns the key the URI names.
func (s *Store) Signer(ctx context.Context) (crypto.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signerLocked()
}

func (s *Store) signerLocked() (crypto.Signer, error) {
	if s.closed {
		return nil, errors.New("keystore: pkcs11: store closed")
	}
	privs, err := s.findLocked(pkcs11.CKO_PRIVATE_KEY)
	if err != nil {
		return nil, err
	}
	switch len(privs) {
	case 0:
		return nil, fmt.Errorf("keystore: pkcs11: token %q has no private key with %s: %w (make one with dcagent key generate)", s.tok.Label, s.keyName(), keystore.ErrNoKey)
	case 1:
	default:
		return nil, fmt.Errorf("keystore: pkcs11: token %q has several private keys with %s: add id= to the URI", s.tok.Label, s.keyName())
	}
	priv := privs[0]
	attrs, err := s.mod.ctx.GetAttributeValue(s.session, priv, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: read key attributes: %w", err)
	}
	keyType := bytesToUint(attrs[0].Value)
	if isTrue(attrs[1].Value) || !isTrue(attrs[2].Value) {
		s.log.Warn("keystore: pkcs11: the device key can be read out of the token (CKA_EXTRACTABLE set or CKA_SENSITIVE clear); make a new one with dcagent key generate", "token", s.tok.Label)
	}
	pub, err := s.publicKeyLocked(priv, keyType)
	if err != nil {
		return nil, err
	}
	return &signer{s: s, key: priv, pub: pub}, nil
}

// publicKeyLocked reads the public half: from the public key object (an
// EC private key object does not carry its point), or from the private
// key object's RSA modulus.
func (s *Store) publicKeyLocked(priv pkcs11.ObjectHandle, keyType uint) (crypto.PublicKey, error) {
	switch keyType {
	case pkcs11.CKK_EC:
		pubs, err := s.findLocked(pkcs11.CKO_PUBLIC_KEY)
		if err != nil {
			return nil, err
		}
		if len(pubs) != 1 {
			return nil, fmt.Errorf("keystore: pkcs11: token %q holds %d public keys with %s, want 1 beside the private key", s.tok.Label, len(pubs), s.keyName())
		}
		attrs, err := s.mod.ctx.GetAttributeValue(s.session, pubs[0], []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("keystore: pkcs11: read EC public key: %w", err)
		}
		return parseECPoint(attrs[0].Value, attrs[1].Value)
	case pkcs11.CKK_RSA:
		attrs, err := s.mod.ctx.GetAttributeValue(s.session, priv, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("keystore: pkcs11: read RSA public key: %w", err)
		}
		e := new(big.Int).SetBytes(attrs[1].Value)
		if !e.IsInt64() || e.Int64() > 1<<31 {
			return nil, errors.New("keystore: pkcs11: RSA public exponent out of range")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(e.Int64())}, nil
	}
	return nil, fmt.Errorf("keystore: pkcs11: key type 0x%x is neither EC nor RSA", keyType)
}

var oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}

// parseECPoint reads CKA_EC_PARAMS (the curve's DER OID) and CKA_EC_POINT
// (a DER OCTET STRING around 04||X||Y).
func parseECPoint(params, point []byte) (*ecdsa.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil || !oid.Equal(oidP256) {
		return nil, fmt.Errorf("keystore: pkcs11: EC curve %x is not P-256", params)
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) > 0 {
		raw = point // some modules give the bare point
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: EC point: %w", err)
	}
	return pub, nil
}

// Generate makes a key pair in the token: a token object, private,
// sensitive, not extractable, for signing only.
func (s *Store) Generate(ctx context.Context, alg keystore.Algorithm) (crypto.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("keystore: pkcs11: store closed")
	}
	privs, err := s.findLocked(pkcs11.CKO_PRIVATE_KEY)
	if err != nil {
		return nil, err
	}
	if len(privs) > 0 {
		return nil, fmt.Errorf("keystore: pkcs11: token %q, %s: %w", s.tok.Label, s.keyName(), keystore.ErrKeyExists)
	}
	id := s.uri.ID
	if id == nil {
		id = make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	common := func(class uint) []*pkcs11.Attribute {
		a := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		if s.uri.Object != "" {
			a = append(a, pkcs11.NewAttribute(pkcs11.CKA_LABEL, s.uri.Object))
		}
		return a
	}
	pubT := append(common(pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
	privT := append(common(pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
	)
	var mech *pkcs11.Mechanism
	switch alg {
	case keystore.ECCP256, "":
		params, _ := asn1.Marshal(oidP256)
		mech = pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)
		pubT = append(pubT, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
		privT = append(privT, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
	case keystore.RSA2048:
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)
		pubT = append(pubT, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		privT = append(privT, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
	default:
		return nil, fmt.Errorf("keystore: pkcs11: unknown key algorithm %q", alg)
	}
	if _, _, err := s.mod.ctx.GenerateKeyPair(s.session, []*pkcs11.Mechanism{mech}, pubT, privT); err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: generate a key in token %q: %w", s.tok.Label, err)
	}
	s.log.Info("keystore: pkcs11: key generated", "token", s.tok.Label, "object", s.uri.Object, "alg", string(alg))
	return s.signerLocked()
}

// signer signs with a private key object of the token.
type signer struct {
	s   *Store
	key pkcs11.ObjectHandle
	pub crypto.PublicKey
}

func (k *signer) Public() crypto.PublicKey { return k.pub }

// digestInfoPrefix is the DER DigestInfo header for PKCS #1 v1.5 (RFC
// 8017 section 9.2, note 1): CKM_RSA_PKCS signs what it is given.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssParams = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// Sign signs a digest in the token. ECDSA comes back from PKCS#11 as
// r||s and is returned ASN.1 encoded, as crypto.Signer promises.
func (k *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	if h == 0 || len(digest) != h.Size() {
		return nil, fmt.Errorf("keystore: pkcs11: digest of %d bytes for %v", len(digest), h)
	}
	var (
		mech *pkcs11.Mechanism
		data = digest
	)
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			p, ok := pssParams[h]
			if !ok {
				return nil, fmt.Errorf("keystore: pkcs11: hash %v not supported for PSS", h)
			}
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthEqualsHash || salt == rsa.PSSSaltLengthAuto {
				salt = h.Size()
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(p[0], p[1], uint(salt)))
		} else {
			prefix, ok := digestInfoPrefix[h]
			if !ok {
				return nil, fmt.Errorf("keystore: pkcs11: hash %v not supported", h)
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
			data = append(append([]byte{}, prefix...), digest...)
		}
	}
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("keystore: pkcs11: store closed")
	}
	if err := s.mod.ctx.SignInit(s.session, []*pkcs11.Mechanism{mech}, k.key); err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: sign: %w", err)
	}
	sig, err := s.mod.ctx.Sign(s.session, data)
	if err != nil {
		return nil, fmt.Errorf("keystore: pkcs11: sign: %w", err)
	}
	if _, ok := k.pub.(*ecdsa.PublicKey); ok {
		if len(sig) == 0 || len(sig)%2 != 0 {
			return nil, fmt.Errorf("keystore: pkcs11: ECDSA signature of %d bytes", len(sig))
		}
		n := len(sig) / 2
		return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
	}
	return sig, nil
}

// bytesToUint reads a CK_ULONG attribute: host byte order, 4 or 8 bytes.
func bytesToUint(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

func isTrue(b []byte) bool { return len(b) > 0 && b[0] != 0 }
