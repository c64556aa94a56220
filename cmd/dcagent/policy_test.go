package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/policy"
)

func TestPolicyExplainAndCheck(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "site.policy")
	os.WriteFile(pf, []byte("dcagent-policy 1\nversion 3\nall remote:ssh ask\ntype:storage remote:* deny\ngroup:location=lab remote:ssh allow\n"), 0o600)
	e := newSecurityEnv(t, "[policy]\nfile = "+pf+"\n")

	st, out, _ := e.run(t, "policy", "explain", "remote:ssh")
	for _, want := range []string{"decision: ALLOW", "line 5 (group:location=lab remote:ssh allow)", "group location=lab", "type storage, model ME5, serial SN-9", "version 3 from file " + pf} {
		if st != 0 || !strings.Contains(out, want) {
			t.Fatalf("explain lacks %q:\n%s", want, out)
		}
	}
	st, out, _ = e.run(t, "policy", "explain", "--json", "remote:console")
	var d policy.Decision
	if err := json.Unmarshal([]byte(out), &d); err != nil || st != 0 || d.Effect != policy.Deny || d.Rule == nil || d.Rule.Line != 4 {
		t.Fatalf("--json: %v %s", err, out)
	}
	if st, _, errOut := e.run(t, "policy", "explain", "shell"); st != 2 || !strings.Contains(errOut, `unknown action "shell"`) {
		t.Fatalf("bad action: %d %s", st, errOut)
	}

	if st, out, _ := e.run(t, "policy", "check", pf); st != 0 || !strings.Contains(out, "policy version 3, 3 rule(s), unsigned") {
		t.Fatalf("check: %d %s", st, out)
	}
	bad := filepath.Join(dir, "bad.policy")
	os.WriteFile(bad, []byte("dcagent-policy 1\nversion 3\nall remote:ssh perhaps\n"), 0o600)
	if st, _, errOut := e.run(t, "policy", "check", bad); st != 1 || !strings.Contains(errOut, "line 3") {
		t.Fatalf("check bad: %d %s", st, errOut)
	}

	// A signed file is checked with the manager's key.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := policy.MarshalPublicKey(key.Public())
	kf := filepath.Join(dir, "pm.pem")
	os.WriteFile(kf, pub, 0o644)
	signed, _ := policy.SignDocument([]byte("dcagent-policy 1\nversion 4\nall remote:ssh ask\n"), key)
	sf := filepath.Join(dir, "signed.policy")
	os.WriteFile(sf, signed, 0o600)
	e2 := newSecurityEnv(t, "[policy]\nfile = "+sf+"\nmanager_key_file = "+kf+"\n")
	if st, out, _ := e2.run(t, "policy", "check", sf); st != 0 || !strings.Contains(out, "signature verified") {
		t.Fatalf("signed: %d %s", st, out)
	}
	os.WriteFile(sf, []byte(strings.Replace(string(signed), "ask", "allow", 1)), 0o600)
	if st, _, errOut := e2.run(t, "policy", "check", sf); st != 1 || !strings.Contains(errOut, "signature does not verify") {
		t.Fatalf("tampered signed: %d %s", st, errOut)
	}
}
