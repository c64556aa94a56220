package policy

import (
	"strconv"
	"strings"
	"testing"
)

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc), ParseOptions{Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecidePrecedence(t *testing.T) {
	p := mustParse(t, sampleDoc)
	r750 := Device{Type: "server", Model: "R750", Serial: "S1", Labels: map[string]string{"location": "dc1"}}
	lab := Device{Type: "storage", Model: "ME5", Serial: "S2", Labels: map[string]string{"location": "lab"}}
	frozen := Device{Type: "server", Model: "R750", Serial: "CZ20240117", Labels: map[string]string{"location": "lab"}}
	cases := []struct {
		dev    Device
		action string
		want   Effect
		line   int // 0: no rule
	}{
		{r750, "remote:ssh", Ask, 4},
		{r750, "remote:console", Deny, 0},     // no rule: denied by default
		{r750, "script:smart-dump", Allow, 6}, // model
		{r750, "file-fetch", Deny, 0},
		{lab, "remote:console", Allow, 7},      // group beats type (ask)
		{lab, "remote:ssh", Ask, 5},            // type:storage remote:* ask beats all
		{frozen, "script:smart-dump", Deny, 8}, // serial beats model
		{frozen, "remote:console", Deny, 8},    // serial beats group
		{Device{}, "remote:ssh", Ask, 4},
	}
	for _, c := range cases {
		d := p.Decide(c.dev, c.action)
		got := 0
		if d.Rule != nil {
			got = d.Rule.Line
		}
		if d.Effect != c.want || got != c.line {
			t.Errorf("%s on %v: got %s (line %d), want %s (line %d): %s", c.action, c.dev, d.Effect, got, c.want, c.line, d.Reason)
		}
	}
}

// Deny beats ask beats allow at one level, whatever the order of lines or
// the exactness of the action patterns.
func TestDecideSameLevel(t *testing.T) {
	dev := Device{Model: "X", Labels: map[string]string{"a": "1", "b": "2"}}
	for _, doc := range []string{
		"dcagent-policy 1\nversion 1\nmodel:X remote:ssh allow\nmodel:X remote:* deny\n",
		"dcagent-policy 1\nversion 1\nmodel:X remote:* deny\nmodel:X remote:ssh allow\n",
		"dcagent-policy 1\nversion 1\ngroup:a=1 remote:ssh allow\ngroup:b=2 * deny\n",
	} {
		if d := mustParse(t, doc).Decide(dev, "remote:ssh"); d.Effect != Deny || !strings.Contains(d.Reason, "deny beats ask beats allow") {
			t.Errorf("%q: %s: %s", doc, d.Effect, d.Reason)
		}
	}
	doc := "dcagent-policy 1\nversion 1\nall remote:ssh allow\nall remote:ssh ask\n"
	if d := mustParse(t, doc).Decide(dev, "remote:ssh"); d.Effect != Ask {
		t.Errorf("ask must beat allow: %s", d.Effect)
	}
}

func TestDecideDefaultsAndBadActions(t *testing.T) {
	p := mustParse(t, "dcagent-policy 1\nversion 1\nall remote:ssh allow\n")
	if d := p.Decide(Device{}, "remote:console"); d.Effect != Deny || d.Rule != nil || !strings.Contains(d.Reason, "no rule applies") {
		t.Errorf("default: %+v", d)
	}
	var none *Policy
	if d := none.Decide(Device{}, "remote:ssh"); d.Effect != Deny || !strings.Contains(d.Reason, "no policy") {
		t.Errorf("nil policy: %+v", d)
	}
	all := mustParse(t, "dcagent-policy 1\nversion 1\nall * allow\n")
	for _, a := range []string{"remote:", "remote", "remote:../etc", "shell:x", "file-put:x", ""} {
		if d := all.Decide(Device{}, a); d.Effect != Deny {
			t.Errorf("malformed action %q allowed", a)
		}
	}
	// Patterns match only their own kind.
	p = mustParse(t, "dcagent-policy 1\nversion 1\nall script allow\nall remote:* ask\n")
	if d := p.Decide(Device{}, "script:x"); d.Effect != Allow {
		t.Errorf("script pattern: %s", d.Effect)
	}
	if d := p.Decide(Device{}, "file-put"); d.Effect != Deny {
		t.Errorf("file-put: %s", d.Effect)
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, sampleDoc)
	out := p.Explain(Device{Type: "storage", Model: "ME5", Serial: "S2", Labels: map[string]string{"location": "lab"}}, "remote:console")
	for _, want := range []string{
		"action:   remote:console",
		"groups location=lab",
		"decision: ALLOW",
		"line 7 (group:location=lab remote:console allow) decides allow: this device is in group location=lab, and no serial rule applies",
		"1 rule(s) at less specific levels are overruled",
		"* line 7    group   group:location=lab remote:console allow",
		"  line 5    type    type:storage remote:* ask",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	ask := p.Explain(Device{}, "remote:ssh")
	if !strings.Contains(ask, "dcagent approve ID") {
		t.Errorf("an ask does not say how to answer:\n%s", ask)
	}
}

func BenchmarkDecide(b *testing.B) {
	// A realistic policy of 200 rules across all levels.
	var doc strings.Builder
	doc.WriteString("dcagent-policy 1\nversion 1\nall remote:ssh ask\n")
	for i := 0; i < 50; i++ {
		doc.WriteString("model:M" + strconv.Itoa(i) + " script allow\n")
		doc.WriteString("serial:S" + strconv.Itoa(i) + " * deny\n")
		doc.WriteString("group:site=s" + strconv.Itoa(i) + " remote:console allow\n")
		doc.WriteString("type:t" + strconv.Itoa(i) + " file-fetch allow\n")
	}
	p := mustParse(b, doc.String())
	dev := Device{Type: "t7", Model: "M3", Serial: "S99", Labels: map[string]string{"site": "s5", "org": "x"}}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(dev, "remote:ssh"); d.Effect != Ask {
			b.Fatal(d.Effect)
		}
	}
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+i/10)) + string(rune('0'+i%10)))
}
