package smartctl

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Number reading shared by the JSON and text parsers. smartctl prints
// integers with the thousands separator of the user's locale ("4,000,787",
// "256.060.514.304", "4 000 787", a no-break space on Windows), so the
// text parser reads digit groups, not strconv input. One Windows build
// even printed "120-034-123-776 bytes".

// isGroupSep reports whether r separates digit groups in some locale.
func isGroupSep(r rune) bool {
	switch r {
	case ',', '.', '\'', ' ', '-', '\u00a0', '\u202f', '\u2009', '\u2019':
		return true
	}
	return false
}

// groupedUint reads the unsigned integer at the start of s (after leading
// spaces), skipping thousands separators that sit between digits, and
// stops at the first other character: "4,000,787,030,016 bytes [4.00 TB]"
// gives 4000787030016. It must not be used for numbers with a decimal
// part. ok is false when s does not start with a digit or the number
// overflows uint64.
func groupedUint(s string) (v uint64, ok bool) {
	s = strings.TrimLeft(s, " \t")
	digits := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r >= '0' && r <= '9':
			d := uint64(r - '0')
			if v > (math.MaxUint64-d)/10 {
				return 0, false
			}
			v = v*10 + d
			digits++
		case digits > 0 && isGroupSep(r):
			// A separator counts only when a digit follows it.
			next, _ := utf8.DecodeRuneInString(s[i+size:])
			if next < '0' || next > '9' {
				return v, true
			}
		default:
			return v, digits > 0
		}
		i += size
	}
	return v, digits > 0
}

// leadingInt reads the optionally signed decimal integer at the start of s
// (after leading spaces) and ignores what follows: "36 (Min/Max 20/45)"
// gives 36, "7963h+07m+54.620s" gives 7963, "22332,68" gives 22332.
func leadingInt(s string) (int64, bool) {
	s = strings.TrimLeft(s, " \t")
	end := 0
	if end < len(s) && (s[end] == '-' || s[end] == '+') {
		end++
	}
	start := end
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == start {
		return 0, false
	}
	v, err := strconv.ParseInt(s[:end], 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// leadingUint is leadingInt for values that cannot be negative; it also
// takes the full uint64 range.
func leadingUint(s string) (uint64, bool) {
	s = strings.TrimLeft(s, " \t")
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(s[:end], 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// hexOrUint reads "0x04" as hexadecimal and anything else as groupedUint.
func hexOrUint(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		end := 2
		for end < len(s) && isHexDigit(s[end]) {
			end++
		}
		v, err := strconv.ParseUint(s[2:end], 16, 64)
		return v, err == nil
	}
	return groupedUint(s)
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// isAllDigits reports whether s is a non-empty run of ASCII digits.
func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func ptrU64(v uint64) *uint64   { return &v }
func ptrF64(v float64) *float64 { return &v }
func ptrInt(v int) *int         { return &v }
func ptrBool(v bool) *bool      { return &v }

// setU64Once sets *p when it is still unset: the first place a report
// gives a value wins over later, less direct ones.
func setU64Once(p **uint64, v uint64) {
	if *p == nil {
		*p = &v
	}
}

func setF64Once(p **float64, v float64) {
	if *p == nil {
		*p = &v
	}
}

// plausibleTemp reports whether t can be a drive temperature in °C.
// smartctl itself ignores attribute temperatures outside 1..127 (a 0 is
// what drives and RAID controllers report when they have no sensor).
func plausibleTemp(t int64) bool { return t > 0 && t < 128 }

// cleanID trims an identity string and drops values that only stand for
// "elided" in shared captures ("--", "...", "[No Information Found]").
func cleanID(s string) string {
	s = strings.TrimSpace(s)
	if strings.Trim(s, "-. ") == "" || strings.HasPrefix(s, "[No Information") {
		return ""
	}
	return strings.Join(strings.Fields(s), " ")
}
