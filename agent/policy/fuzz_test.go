package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
)

// FuzzPolicy: the parser never panics on any document; what it accepts
// has rules that read back the same from their own text, and deciding any
// action under it never panics and never allows a malformed action.
func FuzzPolicy(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signed, _ := SignDocument([]byte(sampleDoc), key)
	f.Add([]byte(sampleDoc), "remote:ssh")
	f.Add(signed, "script:smart-dump")
	f.Add([]byte("dcagent-policy 1\nversion 1\nall * allow\n"), "remote:")
	f.Add([]byte("dcagent-policy 1\r\nversion 18446744073709551615\r\ngroup:a=b=c file-put ask # x\r\n"), "file-put")
	dev := Device{Type: "storage", Model: "R750", Serial: "CZ20240117", Labels: map[string]string{"location": "lab", "a": "b=c"}}
	f.Fuzz(func(t *testing.T, doc []byte, action string) {
		p, err := Parse(doc, ParseOptions{Source: "fuzz", Key: key.Public()})
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, r := range p.Rules {
			again, err := parseRule(strings.Fields(r.Text))
			if err != nil || again.Level != r.Level || again.Key != r.Key || again.Value != r.Value || again.Action != r.Action || again.Effect != r.Effect {
				t.Fatalf("rule %q does not read back: %+v vs %+v (%v)", r.Text, again, r, err)
			}
		}
		d := p.Decide(dev, action)
		if CheckAction(action) != nil && d.Effect != Deny {
			t.Fatalf("malformed action %q got %s", action, d.Effect)
		}
		_ = p.Explain(dev, action)
	})
}
