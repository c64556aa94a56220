package smartctl

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessageBytes bounds one message line of smartctl's (or one value such
// as a model name) where it reaches a log line, an error or a terminal.
// smartctl's own lines are under 100 bytes; a longer one is hostile or
// broken output and is clipped.
const MaxMessageBytes = 300

// maxErrorMessages bounds how many of smartctl's messages an error repeats.
const maxErrorMessages = 8

// Printable returns s ready for a log line, an error or a terminal: control
// characters (a terminal escape, a carriage return, a NUL) and bytes that
// are not UTF-8 are written as Go escapes (\x1b, \r, \x00), and the result
// is cut after about max bytes of s with a marker saying how much was left
// out. max <= 0 means no clipping.
func Printable(s string, max int) string {
	var b strings.Builder
	cut := len(s)
	if max > 0 && len(s) > max {
		cut = max
		// Do not split a UTF-8 sequence.
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
	}
	for i := 0; i < cut; {
		r, size := utf8.DecodeRuneInString(s[i:cut])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff':
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if cut < len(s) {
		fmt.Fprintf(&b, "… [%d more bytes cut]", len(s)-cut)
	}
	return b.String()
}

// joinMessages joins messages for an error: each made printable and
// clipped, at most maxErrorMessages of them, so that an error stays short
// whatever smartctl printed.
func joinMessages(msgs []string) string {
	shown := msgs
	if len(shown) > maxErrorMessages {
		shown = shown[:maxErrorMessages]
	}
	parts := make([]string, 0, len(shown)+1)
	for _, m := range shown {
		parts = append(parts, Printable(m, MaxMessageBytes))
	}
	if n := len(msgs) - len(shown); n > 0 {
		parts = append(parts, fmt.Sprintf("(%d more messages)", n))
	}
	return strings.Join(parts, " / ")
}
