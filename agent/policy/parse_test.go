package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

const sampleDoc = `dcagent-policy 1
version 12
# scope              action          effect
all                   remote:ssh      ask
type:storage          remote:*        ask
model:R750            script          allow
group:location=lab    remote:console  allow
serial:CZ20240117     *               deny    # under investigation
`

func TestParseSample(t *testing.T) {
	p, err := Parse([]byte(sampleDoc), ParseOptions{Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 12 || len(p.Rules) != 5 || p.Signed {
		t.Fatalf("%+v", p)
	}
	r := p.Rules[4]
	if r.Line != 8 || r.Level != LevelSerial || r.Value != "CZ20240117" || r.Effect != Deny || r.Text != "serial:CZ20240117 * deny" {
		t.Fatalf("rule %+v", r)
	}
	g := p.Rules[3]
	if g.Level != LevelGroup || g.Key != "location" || g.Value != "lab" || g.Scope() != "group:location=lab" {
		t.Fatalf("group rule %+v", g)
	}
	if len(p.Digest) != 64 {
		t.Fatalf("digest %q", p.Digest)
	}
}

func TestParseErrorsNameLineAndReason(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"", "empty"},
		{"dcagent-policy 1\nversion 1", "does not end with a newline"},
		{"version 1\n", `line 1: the first line must be "dcagent-policy 1"`},
		{"dcagent-policy 2\nversion 1\n", "line 1: the first line"},
		{"dcagent-policy 1\nall * allow\n", "no version line"},
		{"dcagent-policy 1\nversion x\n", `line 2: version "x" is not a whole number`},
		{"dcagent-policy 1\nversion 1\nversion 2\n", "line 3: version given twice"},
		{"dcagent-policy 1\nversion 1\nall remote:ssh\n", "line 3: a rule is SCOPE ACTION EFFECT, got 2"},
		{"dcagent-policy 1\nversion 1\nal remote:ssh allow\n", `line 3: scope "al" is not`},
		{"dcagent-policy 1\nversion 1\nmodel: remote:ssh allow\n", `names nothing`},
		{"dcagent-policy 1\nversion 1\ngroup:lab remote:ssh allow\n", `not group:KEY=VALUE`},
		{"dcagent-policy 1\nversion 1\nall remot:ssh allow\n", `unknown kind "remot"`},
		{"dcagent-policy 1\nversion 1\nall remote:SSH allow\n", `"SSH" is not`},
		{"dcagent-policy 1\nversion 1\nall file-fetch:x allow\n", "takes no name"},
		{"dcagent-policy 1\nversion 1\nall remote:ssh permit\n", `effect "permit" is not allow, deny or ask`},
		{"dcagent-policy 1\nversion 1\nall remote:ssh allow\x01\n", "control character"},
		{"dcagent-policy 1\nversion 1\nsignature !!!\n", "not base64"},
		{"dcagent-policy 1\nversion 1\nsignature QUJD\nall * allow\n", "text after the signature line 3"},
		{"dcagent-policy 1\nversion 1\n" + strings.Repeat("x", 2000) + "\n", "line 3: line is longer"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc), ParseOptions{Source: "doc.policy"})
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "doc.policy") {
			t.Errorf("%q:\n got %v\nwant it to say %q", c.doc, err, c.want)
		}
	}
}

func TestSignatures(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, signer := range map[string]crypto.Signer{"ecdsa": ec, "ed25519": ed} {
		t.Run(name, func(t *testing.T) {
			doc, err := SignDocument([]byte(sampleDoc), signer)
			if err != nil {
				t.Fatal(err)
			}
			opts := ParseOptions{Source: "m", Key: signer.Public(), RequireSignature: true}
			p, err := Parse(doc, opts)
			if err != nil || !p.Signed || len(p.Rules) != 5 {
				t.Fatalf("signed document: %v %+v", err, p)
			}
			// Any change to the signed text breaks the signature.
			edited := strings.Replace(string(doc), "serial:CZ20240117     *               deny", "serial:CZ20240117     *               allow", 1)
			if _, err := Parse([]byte(edited), opts); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
				t.Fatalf("edited: %v", err)
			}
			// Another key's signature is refused.
			if _, err := Parse(doc, ParseOptions{Source: "m", Key: other.Public(), RequireSignature: true}); err == nil {
				t.Fatal("accepted with the wrong key")
			}
			// A signature for a script is not a signature for a policy.
			sig, _ := Sign(signer, DomainScript, []byte(sampleDoc))
			forged := sampleDoc + "signature " + base64.StdEncoding.EncodeToString(sig) + "\n"
			if _, err := Parse([]byte(forged), opts); err == nil {
				t.Fatal("a script signature passed for a policy signature")
			}
		})
	}
	// Unsigned, when a signature is required.
	if _, err := Parse([]byte(sampleDoc), ParseOptions{Source: "m", Key: ec.Public(), RequireSignature: true}); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned: %v", err)
	}
}

func TestPublicKeyFiles(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pemKey, err := MarshalPublicKey(ec.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePublicKey("k.pem", pemKey); err != nil {
		t.Fatal(err)
	}
	rsaLike := []byte("-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n")
	for name, data := range map[string][]byte{"empty": nil, "wrong block": rsaLike, "garbage": []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")} {
		if _, err := ParsePublicKey("k.pem", data); err == nil || !strings.Contains(err.Error(), "k.pem") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadPublicKey("/nonexistent/key.pem"); err == nil {
		t.Error("missing file accepted")
	}
}
