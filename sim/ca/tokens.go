package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
)

// tokenPrefix marks dcagent enrollment tokens, so that one pasted in the
// wrong place is recognisable (and greppable by secret scanners).
const tokenPrefix = "dct1_"

// DefaultTokenTTL is how long a token lasts unless NewToken is told.
const DefaultTokenTTL = 24 * time.Hour

// tokenRecord is what the CA keeps of a token: never the token itself,
// only its SHA-256 (the file name).
type tokenRecord struct {
	SystemID string    `json:"system_id"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	Used     time.Time `json:"used,omitzero"`
}

// NewToken makes a one-time enrollment token for the device with this
// system ID, valid for ttl (0 means DefaultTokenTTL). Other processes
// may make tokens in the same Dir while the backend runs (dcsim token):
// tokens are read from disk at every use.
func (ca *CA) NewToken(systemID string, ttl time.Duration) (string, error) {
	if !ValidSystemID(systemID) {
		return "", fmt.Errorf("ca: system ID %q: use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit", systemID)
	}
	if ttl < 0 {
		return "", fmt.Errorf("ca: token lifetime %v is negative", ttl)
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("ca: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	now := ca.now()
	rec := tokenRecord{SystemID: systemID, Created: now, Expires: now.Add(ttl)}
	data, _ := json.Marshal(rec)
	if err := keystore.WriteFileAtomic(ca.tokenPath(token, ".json"), data, 0o600); err != nil {
		return "", fmt.Errorf("ca: store token: %w", err)
	}
	ca.log.Info("ca: token made", "system_id", systemID, "expires", rec.Expires)
	return token, nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (ca *CA) tokenPath(token, ext string) string {
	return filepath.Join(ca.cfg.Dir, "tokens", tokenHash(token)+ext)
}

// checkToken says whether the token may enroll systemID now, without
// using it up.
func (ca *CA) checkToken(token, systemID string) error {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return apiErr(401, enroll.CodeTokenUnknown, "this is not an enrollment token (they start with %s)", tokenPrefix)
	}
	data, err := os.ReadFile(ca.tokenPath(token, ".json"))
	if errors.Is(err, fs.ErrNotExist) {
		if used, uerr := os.ReadFile(ca.tokenPath(token, ".used")); uerr == nil {
			var rec tokenRecord
			_ = json.Unmarshal(used, &rec)
			return apiErr(401, enroll.CodeTokenUsed, "the token was used already (at %s); ask for a new one", rec.Used.UTC().Format(time.RFC3339))
		}
		return apiErr(401, enroll.CodeTokenUnknown, "unknown token")
	}
	if err != nil {
		return apiErr(500, enroll.CodeInternal, "token store: %v", err)
	}
	var rec tokenRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return apiErr(500, enroll.CodeInternal, "token record: %v", err)
	}
	if now := ca.now(); now.After(rec.Expires) {
		return apiErr(401, enroll.CodeTokenExpired, "the token expired at %s; ask for a new one", rec.Expires.UTC().Format(time.RFC3339))
	}
	if rec.SystemID != systemID {
		return apiErr(403, enroll.CodeTokenWrongDevice, "the token was issued for another device, not for system ID %q", systemID)
	}
	return nil
}

// useToken uses the token up. The rename is the atomic step: of two
// requests racing with one token, only one rename succeeds.
func (ca *CA) useToken(token, systemID string) error {
	if err := ca.checkToken(token, systemID); err != nil {
		return err
	}
	from, to := ca.tokenPath(token, ".json"), ca.tokenPath(token, ".used")
	if err := os.Rename(from, to); err != nil {
		return apiErr(401, enroll.CodeTokenUsed, "the token was used already")
	}
	data, err := os.ReadFile(to)
	if err == nil {
		var rec tokenRecord
		if json.Unmarshal(data, &rec) == nil {
			rec.Used = ca.now()
			out, _ := json.Marshal(rec)
			_ = keystore.WriteFileAtomic(to, out, 0o600)
		}
	}
	return nil
}

// deviceRecord is what the CA remembers of an enrolled device.
type deviceRecord struct {
	SystemID       string    `json:"system_id"`
	Model          string    `json:"model,omitempty"`
	KeyFingerprint string    `json:"key_fingerprint"`
	TPMAttested    bool      `json:"tpm_attested"`
	EKFingerprint  string    `json:"ek_fingerprint,omitempty"`
	Serials        []string  `json:"serials"`
	EnrolledAt     time.Time `json:"enrolled_at"`
	RenewedAt      time.Time `json:"renewed_at,omitzero"`
}

// Device is the public view of an enrolled device.
type Device struct {
	SystemID       string
	KeyFingerprint string
	TPMAttested    bool
	EnrolledAt     time.Time
	Serials        []string
}

func (ca *CA) devicePath(systemID string) string {
	return filepath.Join(ca.cfg.Dir, "devices", systemID+".json")
}

func (ca *CA) loadDevice(systemID string) (*deviceRecord, error) {
	if !ValidSystemID(systemID) {
		return nil, fmt.Errorf("invalid system ID %q", systemID)
	}
	data, err := os.ReadFile(ca.devicePath(systemID))
	if err != nil {
		return nil, err
	}
	var rec deviceRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("device record %s: %w", systemID, err)
	}
	return &rec, nil
}

// saveDevice writes a record; the caller holds ca.mu.
func (ca *CA) saveDevice(rec *deviceRecord) error {
	data, _ := json.MarshalIndent(rec, "", "  ")
	if err := keystore.WriteFileAtomic(ca.devicePath(rec.SystemID), data, 0o600); err != nil {
		return err
	}
	ca.keyFP[rec.SystemID] = rec.KeyFingerprint
	return nil
}

// enrolledKeyLocked is the enrolled key's fingerprint, "" when the device
// has no record; the caller holds ca.mu.
func (ca *CA) enrolledKeyLocked(systemID string) string {
	if fp, ok := ca.keyFP[systemID]; ok {
		return fp
	}
	rec, err := ca.loadDevice(systemID)
	if err != nil {
		return ""
	}
	ca.keyFP[systemID] = rec.KeyFingerprint
	return rec.KeyFingerprint
}

// Device returns what the CA knows of an enrolled device.
func (ca *CA) Device(systemID string) (Device, bool) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	rec, err := ca.loadDevice(systemID)
	if err != nil {
		return Device{}, false
	}
	return Device{SystemID: rec.SystemID, KeyFingerprint: rec.KeyFingerprint, TPMAttested: rec.TPMAttested, EnrolledAt: rec.EnrolledAt, Serials: rec.Serials}, true
}

// Revoke adds a certificate serial to the revocation list. Every later
// mutual-TLS request with it is refused.
func (ca *CA) Revoke(serial *big.Int) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.revokeLocked(serial.Text(16))
}

func (ca *CA) revokeLocked(serials ...string) error {
	now := ca.now()
	for _, s := range serials {
		if _, ok := ca.revoked[s]; !ok {
			ca.revoked[s] = now
		}
	}
	data, _ := json.MarshalIndent(ca.revoked, "", "  ")
	if err := keystore.WriteFileAtomic(ca.path("revoked.json"), data, 0o600); err != nil {
		return fmt.Errorf("ca: store the revocation list: %w", err)
	}
	ca.log.Info("ca: revoked", "serials", serials)
	return nil
}

func (ca *CA) loadRevoked() error {
	ca.revoked = map[string]time.Time{}
	data, err := os.ReadFile(ca.path("revoked.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := json.Unmarshal(data, &ca.revoked); err != nil {
		return fmt.Errorf("ca: revoked.json: %w", err)
	}
	return nil
}

// IsRevoked reports whether the serial is on the revocation list.
func (ca *CA) IsRevoked(serial *big.Int) bool {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	_, ok := ca.revoked[serial.Text(16)]
	return ok
}
