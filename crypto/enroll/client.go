package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/dcagent/dcagent/internal/httpc"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// maxBody bounds what the client reads from the backend.
const maxBody = 1 << 20

// ServerError is a failure answered by the backend.
type ServerError struct {
	Status  int    // HTTP status
	Code    string // one of the Code* constants, "" when the body was not ours
	Message string
	Peer    string // the backend's base URL
}

func (e *ServerError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("enroll: %s answered %d: %s", e.Peer, e.Status, e.Message)
	}
	return fmt.Sprintf("enroll: %s refused (%s): %s", e.Peer, e.Code, e.Message)
}

// Retryable says whether the same request may succeed later: the backend
// was overloaded or failing (5xx, 429), not refusing.
func (e *ServerError) Retryable() bool {
	return e.Status >= 500 || e.Status == 429
}

// Backend is where and how to reach the vendor backend.
type Backend struct {
	URL   string         // HTTPS base, e.g. https://127.0.0.1:8443
	Roots *x509.CertPool // the pinned vendor CA
	// Timeout bounds each call (default 60 s: a TPM may be slow).
	Timeout time.Duration
	Logger  *slog.Logger
}

func (b *Backend) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

// serverName is the host of the base URL: what the backend's
// certificate must name.
func (b *Backend) serverName() (string, error) {
	u, err := url.Parse(b.URL)
	if err != nil {
		return "", fmt.Errorf("enroll: backend URL %q: %w", b.URL, err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("enroll: backend URL %q is not https", b.URL)
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Errorf("enroll: backend URL %q has no host", b.URL)
	}
	return host, nil
}

// client builds an HTTP client whose TLS comes from tlsconf; getCert,
// when not nil, supplies the client certificate.
func (b *Backend) client(getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) (*httpc.Client, error) {
	name, err := b.serverName()
	if err != nil {
		return nil, err
	}
	cfg, err := tlsconf.Client(b.Roots, nil, name)
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = getCert
	timeout := b.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return &httpc.Client{
		TLSConfig:    cfg,
		Timeout:      timeout,
		DialContext:  (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
		MaxBodyBytes: maxBody,
	}, nil
}

// post sends one JSON request and decodes the answer.
func (b *Backend) post(ctx context.Context, c *httpc.Client, path string, in any) (*Response, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := httpc.NewRequest("POST", strings.TrimRight(b.URL, "/")+path, body)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	rsp, err := c.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("enroll: %s: %w", b.URL, err)
	}
	data := rsp.Body
	if rsp.StatusCode != 200 {
		se := &ServerError{Status: rsp.StatusCode, Peer: b.URL}
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Code != "" {
			se.Code, se.Message = eb.Code, eb.Error
		} else {
			se.Message = strings.TrimSpace(string(data))
			if len(se.Message) > 200 {
				se.Message = se.Message[:200]
			}
		}
		return nil, se
	}
	var out Response
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("enroll: %s: the answer is not JSON: %w", b.URL, err)
	}
	return &out, nil
}

// Device is what a CSR says about the device, and the key that signs it.
type Device struct {
	SystemID string
	Model    string
	Signer   crypto.Signer
}

// CreateCSR makes a certificate request signed by the device key.
func CreateCSR(d Device) ([]byte, error) {
	if d.SystemID == "" {
		return nil, errors.New("enroll: no system ID ([device] system_id)")
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: d.SystemID}}
	if d.Model != "" {
		tmpl.Subject.OrganizationalUnit = []string{d.Model}
	}
	switch d.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		tmpl.SignatureAlgorithm = x509.SHA256WithRSA
	default:
		return nil, fmt.Errorf("enroll: key type %T is not supported", d.Signer.Public())
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, d.Signer)
	if err != nil {
		return nil, fmt.Errorf("enroll: sign the CSR with the device key: %w", err)
	}
	return der, nil
}

// QualifyingData is what the TPM's certification of the device key is
// bound to: the CSR, so that evidence cannot be moved to another request.
func QualifyingData(csrDER []byte) []byte {
	sum := sha256.Sum256(csrDER)
	return sum[:]
}

// Enroll runs the enrollment exchange with a one-time token and returns
// the verified chain, device certificate first. attester, when not nil,
// proves that the key lives in a TPM (and answers the challenge).
func Enroll(ctx context.Context, b *Backend, d Device, token string, attester keystore.Attester) ([]*x509.Certificate, error) {
	if token == "" {
		return nil, errors.New("enroll: no token")
	}
	csr, err := CreateCSR(d)
	if err != nil {
		return nil, err
	}
	c, err := b.client(nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	req := &EnrollRequest{Token: token, CSR: csr}
	if attester != nil {
		ev, err := attester.Attest(ctx, QualifyingData(csr))
		if err != nil {
			return nil, err
		}
		req.Attestation = ev
	}
	log := b.logger()
	log.Info("enroll: sending request", "backend", b.URL, "system_id", d.SystemID, "token_bytes", len(token), "tpm_attestation", attester != nil)
	rsp, err := b.post(ctx, c, PathEnroll, req)
	if err != nil {
		return nil, err
	}
	if rsp.Challenge != nil {
		if attester == nil {
			return nil, errors.New("enroll: the backend sent a TPM challenge, but this key store has no TPM")
		}
		log.Info("enroll: answering the TPM challenge", "challenge", rsp.Challenge.ID)
		secret, err := attester.ActivateCredential(ctx, rsp.Challenge.CredentialBlob, rsp.Challenge.EncryptedSecret)
		if err != nil {
			return nil, err
		}
		rsp, err = b.post(ctx, c, PathEnroll, &EnrollRequest{Token: token, ChallengeID: rsp.Challenge.ID, Secret: secret})
		if err != nil {
			return nil, err
		}
	}
	return VerifyChain(rsp.Chain, b.Roots, d.Signer.Public(), d.SystemID, time.Now())
}

// Renew asks for a new certificate for the same key over mutual TLS with
// the current one, and returns the verified chain.
func Renew(ctx context.Context, b *Backend, d Device, current *tls.Certificate) ([]*x509.Certificate, error) {
	csr, err := CreateCSR(d)
	if err != nil {
		return nil, err
	}
	c, err := b.client(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return current, nil })
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	rsp, err := b.post(ctx, c, PathRenew, &RenewRequest{CSR: csr})
	if err != nil {
		return nil, err
	}
	return VerifyChain(rsp.Chain, b.Roots, d.Signer.Public(), d.SystemID, time.Now())
}

// ParseChain reads PEM certificates, device certificate first.
func ParseChain(chainPEM []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	rest := chainPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("enroll: chain holds a %q PEM block", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("enroll: chain: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("enroll: the chain holds no certificate")
	}
	return chain, nil
}

// VerifyChain checks an issued chain before the device keeps it: it
// chains to the pinned vendor CA, is for client authentication, names
// this system ID, and carries this device's public key.
func VerifyChain(chainPEM string, roots *x509.CertPool, pub crypto.PublicKey, systemID string, now time.Time) ([]*x509.Certificate, error) {
	chain, err := ParseChain([]byte(chainPEM))
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("enroll: the issued certificate does not chain to the pinned vendor CA: %w", err)
	}
	if leaf.Subject.CommonName != systemID {
		return nil, fmt.Errorf("enroll: the issued certificate names %q, this device is %q", leaf.Subject.CommonName, systemID)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return nil, errors.New("enroll: the issued certificate is for another key than this device's")
	}
	return chain, nil
}

// EncodeChain writes certificates as PEM.
func EncodeChain(chain []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}
