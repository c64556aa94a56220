package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// TestEnrollAndMutualTLS: the whole path with a development key: token,
// CSR, chain stored, a mutual-TLS request to a device-only endpoint
// accepted, and the identity loaded again from the state directory.
func TestEnrollAndMutualTLS(t *testing.T) {
	b := startBackend(t, Config{})
	state := t.TempDir()
	cfg := agentConfig(t, b, "file:dev-key.pem", state, "SYS-0001")
	id := enrollDevice(t, b, cfg)
	if got, err := ping(id, b); err != nil || got != "hello SYS-0001" {
		t.Fatalf("ping: %q, %v", got, err)
	}
	if id.Leaf().Subject.OrganizationalUnit[0] != "DC-9000" {
		t.Errorf("model not in the certificate: %v", id.Leaf().Subject)
	}
	if life := id.NotAfter().Sub(time.Now()); life < 29*24*time.Hour || life > 30*24*time.Hour+time.Minute {
		t.Errorf("lifetime %v, want the default 30 days", life)
	}
	id.Close()

	id2, err := identity.Load(context.Background(), cfg, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer id2.Close()
	if got, err := ping(id2, b); err != nil || got != "hello SYS-0001" {
		t.Fatalf("ping after reload: %q, %v", got, err)
	}
	d, ok := b.ca.Device("SYS-0001")
	if !ok || d.TPMAttested {
		t.Errorf("device record %+v, %v", d, ok)
	}
}

func TestTokenRejections(t *testing.T) {
	b := startBackend(t, Config{})
	state := t.TempDir()
	cfg := agentConfig(t, b, "file:k.pem", state, "SYS-A")
	enrollWith := func(cfg *config.Config, token string) error {
		id, err := identity.Enroll(context.Background(), cfg, token, identity.EnrollOptions{GenerateKey: true, Options: identity.Options{Now: b.clock.Now}})
		if err == nil {
			id.Close()
		}
		return err
	}

	tokA, err := b.ca.NewToken("SYS-A", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := enrollWith(cfg, tokA); err != nil {
		t.Fatal(err)
	}
	// Reused.
	err = enrollWith(cfg, tokA)
	if serverCode(err) != enroll.CodeTokenUsed || !strings.Contains(err.Error(), "used already") {
		t.Errorf("reused token: %v", err)
	}
	// Expired.
	tokExp, _ := b.ca.NewToken("SYS-A", time.Minute)
	b.clock.Advance(2 * time.Minute)
	err = enrollWith(cfg, tokExp)
	if serverCode(err) != enroll.CodeTokenExpired || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	// For another device.
	tokB, _ := b.ca.NewToken("SYS-B", time.Hour)
	err = enrollWith(cfg, tokB)
	if serverCode(err) != enroll.CodeTokenWrongDevice || !strings.Contains(err.Error(), "another device") {
		t.Errorf("wrong-device token: %v", err)
	}
	// Made up.
	if err := enrollWith(cfg, "dct1_"+strings.Repeat("A", 32)); serverCode(err) != enroll.CodeTokenUnknown {
		t.Errorf("unknown token: %v", err)
	}
	if err := enrollWith(cfg, "hunter2"); serverCode(err) != enroll.CodeTokenUnknown {
		t.Errorf("not a token: %v", err)
	}
	// The wrong-device token still works for its own device.
	cfgB := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-B")
	if err := enrollWith(cfgB, tokB); err != nil {
		t.Errorf("SYS-B with its own token: %v", err)
	}
	// Tokens never reach the log.
	for _, tok := range []string{tokA, tokB, tokExp} {
		if strings.Contains(b.logs.String(), tok) {
			t.Fatal("a token is in the backend's log")
		}
	}
	if _, err := b.ca.NewToken("../etc", time.Hour); err == nil {
		t.Error("NewToken accepted a system ID with a path in it")
	}
}

// TestTokenRace: two enrollments racing with one token; exactly one wins.
func TestTokenRace(t *testing.T) {
	b := startBackend(t, Config{})
	tok, _ := b.ca.NewToken("SYS-R", time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-R")
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := identity.Enroll(context.Background(), cfg, tok, identity.EnrollOptions{GenerateKey: true})
			if err == nil {
				id.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if serverCode(err) != enroll.CodeTokenUsed {
			t.Errorf("loser: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d enrollments succeeded with one token", ok)
	}
}

// TestStatePersists: the backend restarts; its CA, tokens made by another
// process (dcsim token) and enrolled devices survive.
func TestStatePersists(t *testing.T) {
	dir := t.TempDir()
	b := startBackend(t, Config{Dir: dir})
	other, err := Open(Config{Dir: dir}) // dcsim token, while the backend runs
	if err != nil {
		t.Fatal(err)
	}
	tok, err := other.NewToken("SYS-P", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-P")
	id := enrollDevice(t, b, cfg)
	b.srv.Close()

	b2 := startBackend(t, Config{Dir: dir})
	if !bytes.Equal(b2.ca.CAPEM(), b.ca.CAPEM()) {
		t.Fatal("the CA changed across a restart")
	}
	if got, err := ping(id, b2); err != nil || got != "hello SYS-P" {
		t.Fatalf("ping after backend restart: %q, %v", got, err)
	}
	// The token made by the other process enrolls against the restarted one.
	cfg2 := agentConfig(t, b2, "file:k2.pem", t.TempDir(), "SYS-P")
	id2, err := identity.Enroll(context.Background(), cfg2, tok, identity.EnrollOptions{GenerateKey: true})
	if err != nil {
		t.Fatal(err)
	}
	id2.Close()
	// That re-enrollment replaced the first key: its certificate is revoked.
	if _, err := ping(id, b2); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("old device certificate after re-enrollment: %v", err)
	}
}

// TestRevokedClientCert: a revoked certificate is refused on every
// mutual-TLS request, renewal included, and the answer says why.
func TestRevokedClientCert(t *testing.T) {
	b := startBackend(t, Config{})
	id := enrollDevice(t, b, agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-V"))
	if _, err := ping(id, b); err != nil {
		t.Fatal(err)
	}
	if err := b.ca.Revoke(id.Leaf().SerialNumber); err != nil {
		t.Fatal(err)
	}
	if _, err := ping(id, b); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("ping with a revoked certificate: %v", err)
	}
	err := id.RenewNow(context.Background())
	if serverCode(err) != enroll.CodeRevoked {
		t.Fatalf("renew with a revoked certificate: %v", err)
	}
	// The revocation survives a restart.
	ca2, err := Open(Config{Dir: b.cfg.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if !ca2.IsRevoked(id.Leaf().SerialNumber) {
		t.Fatal("revocation lost across a restart")
	}
}

// TestExpiredClientCert: once the certificate has expired the backend
// refuses it (the TLS layer does, and Authenticate says so in words), and
// the device itself diagnoses it instead of retrying.
func TestExpiredClientCert(t *testing.T) {
	b := startBackend(t, Config{Lifetime: time.Hour})
	id := enrollDevice(t, b, agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-X"))
	if _, err := ping(id, b); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(2 * time.Hour)
	if _, err := ping(id, b); err == nil {
		t.Fatal("an expired certificate was accepted")
	}
	// The server logs the refused handshake on its own goroutine, which
	// may finish after the client has seen the refusal.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.logs.String(), "expired"); {
		if time.Now().After(deadline) {
			t.Fatalf("the backend's log does not say the certificate expired:\n%s", b.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := b.ca.AuthenticateCert(id.Leaf())
	if err == nil || !strings.Contains(err.Error(), "not valid at") {
		t.Errorf("AuthenticateCert of an expired certificate: %v", err)
	}
	if err := identity.CheckClock(b.clock.Now(), id.Leaf()); !identity.IsClockError(err) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("CheckClock: %v", err)
	}
}

// TestCertFromAnotherCA: a device certificate not issued by this CA is
// refused.
func TestCertFromAnotherCA(t *testing.T) {
	b := startBackend(t, Config{})
	other, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := other.issue(&k.PublicKey, "SYS-O", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ca.AuthenticateCert(leaf); err == nil || !strings.Contains(err.Error(), "not issued by this CA") {
		t.Fatalf("foreign certificate: %v", err)
	}
	cli, _ := tlsconf.Client(b.ca.Pool(), &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: k}, "127.0.0.1")
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cli}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	if rsp, err := c.Get(b.url + "/v1/ping"); err == nil {
		rsp.Body.Close()
		t.Fatalf("a certificate from another CA got status %d", rsp.StatusCode)
	}
}

// TestRenewal: RenewNow gets a new certificate for the same key, stores
// it, swaps it in for TLS configurations built before, and tells whoever
// waits on Changed.
func TestRenewal(t *testing.T) {
	b := startBackend(t, Config{})
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-N")
	id := enrollDevice(t, b, cfg)
	tc, err := id.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	old := id.Leaf()
	changed := id.Changed()
	if err := id.RenewNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed after renewal")
	}
	if id.Leaf().SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("renewal kept the old serial")
	}
	stored, err := identity.LoadChain(cfg.Device.StateDir)
	if err != nil || stored[0].SerialNumber.Cmp(id.Leaf().SerialNumber) != 0 {
		t.Fatalf("stored chain is not the renewed one: %v", err)
	}
	// The configuration built before renewal presents the new certificate.
	cert, _ := tc.GetClientCertificate(nil)
	if cert.Leaf.SerialNumber.Cmp(id.Leaf().SerialNumber) != 0 {
		t.Fatal("an older TLS configuration still presents the old certificate")
	}
	if _, err := ping(id, b); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.ca.Device("SYS-N"); len(d.Serials) != 2 {
		t.Errorf("device serials %v", d.Serials)
	}
}

// TestRenewWithAnotherKey: renewal over mutual TLS with a CSR for another
// key is refused: renewal is for the enrolled key only.
func TestRenewWithAnotherKey(t *testing.T) {
	b := startBackend(t, Config{})
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-K")
	id := enrollDevice(t, b, cfg)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := enroll.CreateCSR(enroll.Device{SystemID: "SYS-K", Signer: other})
	if err != nil {
		t.Fatal(err)
	}
	status, body := post(t, b, id, enroll.PathRenew, enroll.RenewRequest{CSR: csr})
	if status != http.StatusForbidden || body.Code != enroll.CodeKeyMismatch {
		t.Fatalf("renew with another key: %d %+v", status, body)
	}
	// A CSR naming another device is refused too.
	csr, _ = enroll.CreateCSR(enroll.Device{SystemID: "SYS-OTHER", Signer: id.Signer()})
	status, body = post(t, b, id, enroll.PathRenew, enroll.RenewRequest{CSR: csr})
	if status != http.StatusForbidden || body.Code != enroll.CodeCSRInvalid {
		t.Fatalf("renew for another system ID: %d %+v", status, body)
	}
	// And renewal without a client certificate.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: mustClient(t, b)}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	rsp, err := c.Post(b.url+enroll.PathRenew, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("renew without certificate: %d", rsp.StatusCode)
	}
}

func mustClient(t *testing.T, b *backend) *tls.Config {
	c, err := tlsconf.Client(b.ca.Pool(), nil, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// post sends a JSON body over mutual TLS with id's certificate.
func post(t *testing.T, b *backend, id *identity.Identity, path string, in any) (int, enroll.ErrorBody) {
	t.Helper()
	tc, err := id.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	data, _ := json.Marshal(in)
	rsp, err := c.Post(b.url+path, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	var eb enroll.ErrorBody
	raw, _ := io.ReadAll(rsp.Body)
	_ = json.Unmarshal(raw, &eb)
	return rsp.StatusCode, eb
}

// TestCSRRejections: a CSR whose signature does not verify with its own
// key (its key does not match its signer), garbage, and a bad system ID.
func TestCSRRejections(t *testing.T) {
	b := startBackend(t, Config{})
	tok, _ := b.ca.NewToken("SYS-C", time.Hour)
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-C", Signer: k1})
	// Same CSR with the key of k2 put in: signed by k1, claims k2.
	csr, _ := x509.ParseCertificateRequest(good)
	swapped, _ := x509.MarshalPKIXPublicKey(&k2.PublicKey)
	forged := bytes.Replace(good, csr.RawSubjectPublicKeyInfo, swapped, 1)
	badID, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "../../x"}}, k1)
	for name, tc := range map[string]struct {
		csr  []byte
		want string
	}{
		"key does not match signature": {forged, "does not verify"},
		"not a CSR":                    {[]byte("hello"), "CSR"},
		"bad system ID":                {badID, "not a valid system ID"},
	} {
		status, body := postAnon(t, b, enroll.EnrollRequest{Token: tok, CSR: tc.csr})
		if status != http.StatusBadRequest || body.Code != enroll.CodeCSRInvalid || !strings.Contains(body.Error, tc.want) {
			t.Errorf("%s: %d %+v", name, status, body)
		}
	}
	// None of them used the token up.
	if err := b.ca.checkToken(tok, "SYS-C"); err != nil {
		t.Fatalf("a refused CSR used up the token: %v", err)
	}
	status, body := postAnon(t, b, "not json")
	if status != http.StatusBadRequest || body.Code != enroll.CodeBadRequest {
		t.Errorf("not JSON: %d %+v", status, body)
	}
}

func postAnon(t *testing.T, b *backend, in any) (int, enroll.ErrorBody) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: mustClient(t, b)}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	var data []byte
	if s, ok := in.(string); ok {
		data = []byte(s)
	} else {
		data, _ = json.Marshal(in)
	}
	rsp, err := c.Post(b.url+enroll.PathEnroll, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	var eb enroll.ErrorBody
	raw, _ := io.ReadAll(rsp.Body)
	_ = json.Unmarshal(raw, &eb)
	return rsp.StatusCode, eb
}

// TestRequireTPMRefusesSoftwareKey: a backend that enrolls TPM keys only
// refuses a request without attestation, and says what is missing.
func TestRequireTPMRefusesSoftwareKey(t *testing.T) {
	roots := filepath.Join(t.TempDir(), "roots.pem")
	other, _ := Open(Config{Dir: t.TempDir()})
	if err := os.WriteFile(roots, other.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, Config{RequireTPM: true, TPMRootsFile: roots})
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-S")
	tok, _ := b.ca.NewToken("SYS-S", time.Hour)
	_, err := identity.Enroll(context.Background(), cfg, tok, identity.EnrollOptions{GenerateKey: true})
	if serverCode(err) != enroll.CodeAttestationRequired || !strings.Contains(err.Error(), "TPM") {
		t.Fatalf("software key at a TPM-only backend: %v", err)
	}
	if _, err := Open(Config{Dir: t.TempDir(), RequireTPM: true}); err == nil {
		t.Error("RequireTPM without roots accepted")
	}
}

// TestRunRenewsAndBacksOff: the renewal loop renews at two thirds of the
// lifetime; during an outage it retries with back-off, not in a tight
// loop, and keeps the old certificate; after the outage it renews.
func TestRunRenewsAndBacksOff(t *testing.T) {
	b := startBackend(t, Config{Lifetime: 6 * time.Second})
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-L")
	cfg.Identity.RetryMin = 200 * time.Millisecond
	cfg.Identity.RetryMax = 400 * time.Millisecond
	id := enrollDevice(t, b, cfg)
	first := id.Leaf()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- id.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	// Renewal at 2/3 of the lifetime.
	renewAt := identity.RenewTime(first, cfg.Identity.RenewAt)
	waitFor(t, "the first renewal", func() bool { return id.Leaf().SerialNumber.Cmp(first.SerialNumber) != 0 })
	if now := time.Now(); now.Before(renewAt.Add(-100 * time.Millisecond)) {
		t.Errorf("renewed at %v, before it was due at %v", now, renewAt)
	}

	// An outage from the next renewal on.
	second := id.Leaf()
	b.down.Store(true)
	callsBefore := b.calls.Load()
	time.Sleep(time.Until(identity.RenewTime(second, cfg.Identity.RenewAt)) + 1500*time.Millisecond)
	if id.Leaf().SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatal("the certificate changed during the outage")
	}
	if b.calls.Load() != callsBefore {
		t.Fatal("calls reached the CA during the outage")
	}
	if st := id.Status(); !strings.Contains(st.LastError, "503") {
		t.Errorf("Status().LastError = %q during the outage", st.LastError)
	}
	b.down.Store(false)
	waitFor(t, "renewal after the outage", func() bool { return id.Leaf().SerialNumber.Cmp(second.SerialNumber) != 0 })
	if id.Status().LastError != "" {
		t.Errorf("LastError after recovery: %q", id.Status().LastError)
	}
}

// TestRunBackOffIsBounded: during an outage the loop's tries spread out
// from retry_min to retry_max, with jitter.
func TestRunBackOffIsBounded(t *testing.T) {
	b := startBackend(t, Config{Lifetime: time.Hour})
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-B2")
	cfg.Identity.RetryMin = 100 * time.Millisecond
	cfg.Identity.RetryMax = 400 * time.Millisecond
	id := enrollDevice(t, b, cfg)
	b.clock.Advance(50 * time.Minute) // past 2/3 of the hour: due
	b.down.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = id.Run(ctx)
	// Waits of [50,100], [100,200], then [200,400] ms: in 2 s between
	// about 7 and 12 tries; a tight loop would make hundreds.
	if n := b.downHits.Load(); n < 4 || n > 16 {
		t.Fatalf("%d renewal attempts in 2 s with back-off from 100 ms to 400 ms", n)
	}
}

// TestClockFarOff: a clock before the certificate's start, or after its
// end, is diagnosed once, in words, and not retried in a loop.
func TestClockFarOff(t *testing.T) {
	b := startBackend(t, Config{})
	cfg := agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-T")
	cfg.Identity.RetryMin = 50 * time.Millisecond
	cfg.Identity.RetryMax = 200 * time.Millisecond
	enrollDevice(t, b, cfg)
	for name, off := range map[string]time.Duration{"behind": -365 * 24 * time.Hour, "expired": 40 * 24 * time.Hour} {
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			c := &clock{}
			c.Advance(off)
			id, err := identity.Load(context.Background(), cfg, identity.Options{Now: c.Now, Logger: testLogger(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer id.Close()
			calls := b.calls.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
			defer cancel()
			_ = id.Run(ctx)
			if b.calls.Load() != calls {
				t.Errorf("%d renewal calls with a clock far off", b.calls.Load()-calls)
			}
			want := map[string]string{"behind": "the clock is wrong", "expired": "enroll it again"}[name]
			if n := strings.Count(logs.String(), want); n != 1 {
				t.Errorf("diagnosis logged %d times, want once:\n%s", n, logs.String())
			}
			if st := id.Status(); !strings.Contains(st.LastError, want) {
				t.Errorf("Status().LastError = %q", st.LastError)
			}
		})
	}
}

// TestAuthenticateWithoutTLS covers the authenticator's refusals that do
// not need a connection.
func TestAuthenticateWithoutTLS(t *testing.T) {
	b := startBackend(t, Config{})
	r, _ := http.NewRequest("GET", "/", nil)
	if _, err := b.ca.Authenticate(r); err == nil {
		t.Fatal("plain request authenticated")
	}
	r.TLS = &tls.ConnectionState{}
	var ae *AuthError
	if _, err := b.ca.Authenticate(r); !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(ae.Message, "enroll first") {
		t.Fatalf("no client certificate: %v", err)
	}
	if _, err := b.ca.AuthenticateCert(nil); err == nil {
		t.Fatal("nil certificate authenticated")
	}
}

// TestKeyFingerprintStable: the fingerprint the backend records is the
// one keystore computes on the device.
func TestKeyFingerprintStable(t *testing.T) {
	b := startBackend(t, Config{})
	id := enrollDevice(t, b, agentConfig(t, b, "file:k.pem", t.TempDir(), "SYS-F"))
	fp, _ := keystore.Fingerprint(id.Signer().Public())
	if d, _ := b.ca.Device("SYS-F"); d.KeyFingerprint != fp {
		t.Fatalf("backend %s, device %s", d.KeyFingerprint, fp)
	}
}

// BenchmarkAuthenticateCert is the backend's cost per mutual-TLS request
// of a device: chain check, revocation list, enrolled key.
func BenchmarkAuthenticateCert(b *testing.B) {
	bk := startBackend(b, Config{})
	id := enrollDevice(b, bk, agentConfig(b, bk, "file:k.pem", b.TempDir(), "SYS-BENCH"))
	leaf := id.Leaf()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bk.ca.AuthenticateCert(leaf); err != nil {
			b.Fatal(err)
		}
	}
}
