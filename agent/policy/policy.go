// Package policy decides what the device lets its vendor do: open a remote
// session to a local service, run a diagnostic script, fetch a file, put a
// file, change the configuration. The customer writes the rules; the agent
// follows them, asks a local person when a rule says so, and records every
// decision in the audit log.
//
// # Rules
//
// A policy is a short text document:
//
//	dcagent-policy 1
//	version 12
//	# scope              action          effect
//	all                   remote:ssh      ask
//	type:storage          remote:*        ask
//	model:R750            script          allow
//	group:location=lab    remote:console  allow
//	serial:CZ20240117     *               deny    # under investigation
//	signature MEUCIQ...
//
// Scopes form levels, from the least to the most specific: all devices,
// device type (type:), model (model:), customer group (group:KEY=VALUE,
// matched against the labels in [device] labels: location, organisation or
// any other), serial number (serial:). Groups rank above model because a
// group is the customer's own choice about these particular devices (a lab,
// a site under change freeze), where type and model describe the hardware;
// a serial names one device.
//
// For a request, the rules whose scope matches this device and whose action
// pattern matches the action apply; the most specific level among them
// decides, and within that level deny beats ask beats allow. When no rule
// applies the answer is deny, so a policy lists what it permits; a rule
// "all * deny" would overrule every other rule for all devices (same level,
// and deny beats the rest), so it is not needed and not wanted. Actions are remote:SERVICE (a service named in
// [remote] services), script:NAME, file-fetch, file-put and config;
// patterns may be exact, CATEGORY:*, a bare category (script matches every
// script:NAME) or * for everything.
//
// Effects: allow, deny, and ask: the request waits for a local person to run
// `dcagent approve ID` or `dcagent deny ID` on the device (over the
// daemon's control socket, only for the users and groups [policy]
// approvers names); unanswered within [policy] ask_timeout it is denied.
//
// # Where the policy comes from
//
// From the customer's policy manager when [policy] manager_url is set:
// fetched over HTTPS against a pinned CA with conditional requests
// (If-None-Match), polled every poll_interval, and accepted only when its
// last line is a signature by the manager's key (manager_key_file) over
// everything before it, it parses, and its version is not older than the
// one in use. The last good copy is cached on disk (and verified again when
// read back), so the device keeps its policy while the manager is
// unreachable; a bad one is rejected with its reason (logged, audited,
// shown by `dcagent status`) and the old one kept. Without a manager, the
// local file [policy] file is used (a signature there is optional, and
// checked when present). Without either, everything is denied.
package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Level is how specific a rule's scope is; higher wins.
type Level int

const (
	LevelAll Level = iota
	LevelType
	LevelModel
	LevelGroup
	LevelSerial
)

var levelNames = [...]string{"all", "type", "model", "group", "serial"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// Effect is what a rule says to do.
type Effect int

const (
	Deny Effect = iota
	Ask
	Allow
)

var effectNames = [...]string{"deny", "ask", "allow"}

func (e Effect) String() string {
	if e >= 0 && int(e) < len(effectNames) {
		return effectNames[e]
	}
	return fmt.Sprintf("effect(%d)", int(e))
}

// MarshalText writes the effect's name (for JSON).
func (e Effect) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText reads an effect's name.
func (e *Effect) UnmarshalText(b []byte) error {
	for i, n := range effectNames {
		if string(b) == n {
			*e = Effect(i)
			return nil
		}
	}
	return fmt.Errorf("policy: %q is not allow, deny or ask", b)
}

// strictness orders effects at one level: deny beats ask beats allow.
func (e Effect) strictness() int { return 2 - int(e) }

// Device is what scopes are matched against.
type Device struct {
	Type, Model, Serial string
	Labels              map[string]string
}

func (d Device) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "type %s, model %s, serial %s", orDash(d.Type), orDash(d.Model), orDash(d.Serial))
	if len(d.Labels) > 0 {
		keys := make([]string, 0, len(d.Labels))
		for k := range d.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(", groups")
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, d.Labels[k])
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Rule is one line of a policy.
type Rule struct {
	Line   int    `json:"line"`
	Level  Level  `json:"-"`
	Key    string `json:"-"` // group label key
	Value  string `json:"-"` // type, model, serial or label value
	Action string `json:"action"`
	Effect Effect `json:"effect"`
	// Text is the rule as written (without a trailing comment).
	Text string `json:"text"`
}

// Scope returns the rule's scope as written.
func (r Rule) Scope() string {
	switch r.Level {
	case LevelAll:
		return "all"
	case LevelGroup:
		return "group:" + r.Key + "=" + r.Value
	}
	return r.Level.String() + ":" + r.Value
}

// appliesTo reports whether the rule's scope includes the device.
func (r Rule) appliesTo(d Device) bool {
	switch r.Level {
	case LevelAll:
		return true
	case LevelType:
		return d.Type != "" && d.Type == r.Value
	case LevelModel:
		return d.Model != "" && d.Model == r.Value
	case LevelSerial:
		return d.Serial != "" && d.Serial == r.Value
	case LevelGroup:
		v, ok := d.Labels[r.Key]
		return ok && v == r.Value
	}
	return false
}

// matchAction reports whether pattern covers action.
func matchAction(pattern, action string) bool {
	if pattern == "*" || pattern == action {
		return true
	}
	cat, _, _ := strings.Cut(action, ":")
	return pattern == cat+":*" || pattern == cat
}

// Policy is a parsed, checked policy.
type Policy struct {
	// Version is the document's version line; a manager's new policy must
	// not be older than the one in use.
	Version uint64
	Rules   []Rule
	// Signed says the document carried a signature that verified.
	Signed bool
	// Digest is the SHA-256 of the whole document, hex.
	Digest string
	// Source says where it came from: "manager https://...", "file
	// /etc/...", or "cache ..." with the manager's URL.
	Source string
	// Fetched is when it was read or fetched.
	Fetched time.Time
	// Raw is the document as received.
	Raw []byte `json:"-"`
}

// Decision is the answer for one action on one device.
type Decision struct {
	Action string `json:"action"`
	Effect Effect `json:"effect"`
	// Rule is the rule that decided; nil when none applied (deny).
	Rule *Rule `json:"rule,omitempty"`
	// Applied are all rules that apply, most specific level first, the
	// deciding rule first within its level.
	Applied []Rule `json:"applied,omitempty"`
	// Reason says in plain words why.
	Reason string `json:"reason"`
	// PolicyVersion and PolicySource name the policy that decided.
	PolicyVersion uint64 `json:"policy_version"`
	PolicySource  string `json:"policy_source"`
}

// RuleRef is how a decision names its rule in the audit log.
func (d Decision) RuleRef() string {
	if d.Rule == nil {
		return "default deny"
	}
	return fmt.Sprintf("line %d: %s", d.Rule.Line, d.Rule.Text)
}

// Decide returns the decision for action on device d. A nil policy denies
// everything.
func (p *Policy) Decide(d Device, action string) Decision {
	dec := Decision{Action: action, Effect: Deny}
	if p == nil {
		dec.Reason = "no policy is loaded: everything is denied"
		return dec
	}
	dec.PolicyVersion, dec.PolicySource = p.Version, p.Source
	if err := CheckAction(action); err != nil {
		dec.Reason = err.Error() + ": denied"
		return dec
	}
	for _, r := range p.Rules {
		if r.appliesTo(d) && matchAction(r.Action, action) {
			dec.Applied = append(dec.Applied, r)
		}
	}
	if len(dec.Applied) == 0 {
		dec.Reason = fmt.Sprintf("no rule applies to %s on this device: denied by default", action)
		return dec
	}
	sort.SliceStable(dec.Applied, func(i, j int) bool {
		a, b := dec.Applied[i], dec.Applied[j]
		if a.Level != b.Level {
			return a.Level > b.Level
		}
		return a.Effect.strictness() > b.Effect.strictness()
	})
	win := dec.Applied[0]
	dec.Rule, dec.Effect = &win, win.Effect

	var why strings.Builder
	fmt.Fprintf(&why, "line %d (%s) decides %s: %s", win.Line, win.Text, win.Effect, levelWhy(win, d))
	var sameLevel, weaker int
	for _, r := range dec.Applied[1:] {
		if r.Level == win.Level {
			if r.Effect != win.Effect {
				sameLevel++
			}
		} else {
			weaker++
		}
	}
	if sameLevel > 0 {
		fmt.Fprintf(&why, "; %d other rule(s) at the same level say otherwise, and %s beats them (deny beats ask beats allow)", sameLevel, win.Effect)
	}
	if weaker > 0 {
		fmt.Fprintf(&why, "; %d rule(s) at less specific levels are overruled", weaker)
	}
	dec.Reason = why.String()
	return dec
}

func levelWhy(r Rule, d Device) string {
	switch r.Level {
	case LevelAll:
		return "it is a rule for all devices and no more specific rule applies"
	case LevelType:
		return fmt.Sprintf("it names this device's type %q, and no model, group or serial rule applies", d.Type)
	case LevelModel:
		return fmt.Sprintf("it names this device's model %q, and no group or serial rule applies", d.Model)
	case LevelGroup:
		return fmt.Sprintf("this device is in group %s=%s, and no serial rule applies", r.Key, r.Value)
	default:
		return fmt.Sprintf("it names this device's serial number %q, the most specific level", d.Serial)
	}
}

// Explain describes in plain words how the policy decides action on d:
// the deciding rule, why, and every other rule that applies.
func (p *Policy) Explain(d Device, action string) string {
	dec := p.Decide(d, action)
	var b strings.Builder
	fmt.Fprintf(&b, "action:   %s\n", action)
	fmt.Fprintf(&b, "device:   %s\n", d)
	if p == nil {
		fmt.Fprintf(&b, "policy:   none\n")
	} else {
		fmt.Fprintf(&b, "policy:   version %d from %s (sha256 %.16s…, %s)\n", p.Version, p.Source, p.Digest, signedWord(p.Signed))
	}
	fmt.Fprintf(&b, "decision: %s\n", strings.ToUpper(dec.Effect.String()))
	fmt.Fprintf(&b, "why:      %s\n", dec.Reason)
	if dec.Effect == Ask {
		b.WriteString("          a local approver must answer with `dcagent approve ID` or `dcagent deny ID`; unanswered means denied\n")
	}
	if len(dec.Applied) > 0 {
		b.WriteString("rules that apply, most specific first:\n")
		for i, r := range dec.Applied {
			mark := " "
			if i == 0 {
				mark = "*"
			}
			fmt.Fprintf(&b, "  %s line %-4d %-7s %s\n", mark, r.Line, r.Level, r.Text)
		}
	}
	return b.String()
}

func signedWord(signed bool) string {
	if signed {
		return "signature verified"
	}
	return "unsigned"
}
