package policy

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Limits on a policy document.
const (
	MaxDocumentBytes = 1 << 20
	maxLineBytes     = 1024
	maxRules         = 10000
	formatHeader     = "dcagent-policy 1"
)

// ParseError says what is wrong with a policy document and where.
type ParseError struct {
	Source string
	Line   int // 0 when the problem is not on one line
	Reason string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policy %s: line %d: %s", e.Source, e.Line, e.Reason)
	}
	return fmt.Sprintf("policy %s: %s", e.Source, e.Reason)
}

// ParseOptions say how strictly to read a document.
type ParseOptions struct {
	// Source names the document in errors and in Policy.Source.
	Source string
	// Key verifies the signature line. With RequireSignature, a document
	// without a valid signature is refused; without it, a signature that
	// is present must still verify when Key is set.
	Key              crypto.PublicKey
	RequireSignature bool
}

// Parse reads and checks a policy document. Errors are *ParseError.
func Parse(data []byte, opts ParseOptions) (*Policy, error) {
	fail := func(line int, format string, args ...any) (*Policy, error) {
		return nil, &ParseError{Source: opts.Source, Line: line, Reason: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxDocumentBytes {
		return fail(0, "the document is %d bytes, more than the %d allowed", len(data), MaxDocumentBytes)
	}
	if len(data) == 0 {
		return fail(0, "the document is empty")
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		return fail(0, "the document does not end with a newline (cut short?)")
	}
	sum := sha256.Sum256(data)
	p := &Policy{Source: opts.Source, Digest: hex.EncodeToString(sum[:]), Raw: data}

	var (
		offset     int
		sawHeader  bool
		sawVersion bool
		sigLine    int
		sig        []byte
		signedPart []byte
	)
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, raw := range lines {
		n := i + 1
		start := offset
		offset += len(raw)
		if len(raw) == 0 {
			continue
		}
		if len(raw) > maxLineBytes {
			return fail(n, "line is longer than %d bytes", maxLineBytes)
		}
		text := strings.TrimRight(string(raw), "\r\n")
		for _, c := range text {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return fail(n, "control character %q", c)
			}
		}
		if sigLine > 0 {
			if strings.TrimSpace(text) != "" {
				return fail(n, "text after the signature line %d (the signature must be the last line)", sigLine)
			}
			continue
		}
		if h, _, _ := strings.Cut(text, "#"); strings.TrimSpace(h) == "" {
			continue
		}
		body, _, _ := strings.Cut(text, "#")
		fields := strings.Fields(body)
		switch {
		case !sawHeader:
			if strings.Join(fields, " ") != formatHeader {
				return fail(n, "the first line must be %q (this agent reads format 1)", formatHeader)
			}
			sawHeader = true
		case fields[0] == "version":
			if sawVersion {
				return fail(n, "version given twice")
			}
			if len(fields) != 2 {
				return fail(n, "write: version NUMBER")
			}
			v, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return fail(n, "version %q is not a whole number", fields[1])
			}
			p.Version, sawVersion = v, true
		case fields[0] == "signature":
			if len(fields) != 2 {
				return fail(n, "write: signature BASE64")
			}
			s, err := base64.StdEncoding.DecodeString(fields[1])
			if err != nil || len(s) == 0 {
				return fail(n, "the signature is not base64")
			}
			sigLine, sig, signedPart = n, s, data[:start]
		default:
			r, err := parseRule(fields)
			if err != nil {
				return fail(n, "%v", err)
			}
			if len(p.Rules) == maxRules {
				return fail(n, "more than %d rules", maxRules)
			}
			r.Line = n
			r.Text = strings.Join(fields, " ")
			p.Rules = append(p.Rules, r)
		}
	}
	if !sawHeader {
		return fail(0, "no %q line: not a policy document", formatHeader)
	}
	if !sawVersion {
		return fail(0, "no version line")
	}
	switch {
	case sigLine == 0 && opts.RequireSignature:
		return fail(0, "the document is not signed, and policies from the manager must be")
	case sigLine > 0 && opts.Key != nil:
		if err := VerifySignature(opts.Key, DomainPolicy, signedPart, sig); err != nil {
			return fail(sigLine, "the signature does not verify with the manager's key: the policy was changed or signed by someone else")
		}
		p.Signed = true
	case sigLine > 0 && opts.RequireSignature:
		return fail(sigLine, "no key to verify the signature with")
	}
	return p, nil
}

// parseRule reads SCOPE ACTION EFFECT.
func parseRule(f []string) (Rule, error) {
	var r Rule
	if len(f) != 3 {
		return r, fmt.Errorf("a rule is SCOPE ACTION EFFECT, got %d word(s): %q", len(f), strings.Join(f, " "))
	}
	scope, action, effect := f[0], f[1], f[2]
	switch {
	case scope == "all":
		r.Level = LevelAll
	case strings.HasPrefix(scope, "type:"):
		r.Level, r.Value = LevelType, scope[len("type:"):]
	case strings.HasPrefix(scope, "model:"):
		r.Level, r.Value = LevelModel, scope[len("model:"):]
	case strings.HasPrefix(scope, "serial:"):
		r.Level, r.Value = LevelSerial, scope[len("serial:"):]
	case strings.HasPrefix(scope, "group:"):
		k, v, ok := strings.Cut(scope[len("group:"):], "=")
		if !ok || k == "" || v == "" {
			return r, fmt.Errorf("group scope %q is not group:KEY=VALUE", scope)
		}
		r.Level, r.Key, r.Value = LevelGroup, k, v
	default:
		return r, fmt.Errorf("scope %q is not all, type:X, model:X, group:KEY=VALUE or serial:X", scope)
	}
	if r.Level != LevelAll && r.Level != LevelGroup && r.Value == "" {
		return r, fmt.Errorf("scope %q names nothing", scope)
	}
	if err := checkPattern(action); err != nil {
		return r, err
	}
	r.Action = action
	switch effect {
	case "allow":
		r.Effect = Allow
	case "deny":
		r.Effect = Deny
	case "ask":
		r.Effect = Ask
	default:
		return r, fmt.Errorf("effect %q is not allow, deny or ask", effect)
	}
	return r, nil
}

// Action categories, and whether an action of the category names a target.
var categories = map[string]bool{
	"remote":     true,  // remote:SERVICE
	"script":     true,  // script:NAME
	"file-fetch": false, // file-fetch
	"file-put":   false, // file-put
	"config":     false, // config
}

// checkPattern validates an action pattern in a rule.
func checkPattern(p string) error {
	if p == "*" {
		return nil
	}
	cat, arg, hasArg := strings.Cut(p, ":")
	named, ok := categories[cat]
	if !ok {
		return fmt.Errorf("action %q: unknown kind %q (known: remote:SERVICE, script:NAME, file-fetch, file-put, config, or *)", p, cat)
	}
	if !hasArg || arg == "*" {
		return nil
	}
	if !named {
		return fmt.Errorf("action %q: %s takes no name", p, cat)
	}
	if !validName(arg) {
		return fmt.Errorf("action %q: %q is not 1-64 of a-z 0-9 . _ -", p, arg)
	}
	return nil
}

// CheckAction validates the action of a request: a category and, where the
// category needs one, a name; no patterns.
func CheckAction(a string) error {
	cat, arg, hasArg := strings.Cut(a, ":")
	named, ok := categories[cat]
	switch {
	case !ok:
		return fmt.Errorf("unknown action %q", a)
	case named && (!hasArg || !validName(arg)):
		return fmt.Errorf("action %q needs a name of 1-64 of a-z 0-9 . _ -", a)
	case !named && hasArg:
		return fmt.Errorf("action %q: %s takes no name", a, cat)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SignDocument appends a signature line to an unsigned document (the
// policy manager's side; tests use it too).
func SignDocument(doc []byte, signer crypto.Signer) ([]byte, error) {
	if !bytes.HasSuffix(doc, []byte("\n")) {
		doc = append(append([]byte{}, doc...), '\n')
	}
	sig, err := Sign(signer, DomainPolicy, doc)
	if err != nil {
		return nil, err
	}
	out := append([]byte{}, doc...)
	return append(out, "signature "+base64.StdEncoding.EncodeToString(sig)+"\n"...), nil
}
