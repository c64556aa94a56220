package keystore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultTPMDevice is the kernel's TPM resource manager: it lets several
// processes share the TPM and flushes their objects when they exit.
const DefaultTPMDevice = "/dev/tpmrm0"

// DefaultKeyName names the device key when a tpm: URI does not.
const DefaultKeyName = "device"

// PINEnv is the environment variable a PKCS#11 PIN is read from when the
// URI names no pin-source.
const PINEnv = "DCAGENT_PKCS11_PIN"

// The checks below are written out instead of using regexp, which would
// cost the static agent about 150 KiB for four patterns.

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validKeyName: a letter or digit, then up to 63 of letters, digits, . _ -
func validKeyName(s string) bool {
	if len(s) < 1 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validDevicePath: "/" then 1 to 255 of letters, digits, / . _ -
func validDevicePath(s string) bool {
	if len(s) < 2 || len(s) > 256 || s[0] != '/' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '/' && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validEnvName: a letter or _, then letters, digits or _.
func validEnvName(s string) bool {
	if s == "" || !(s[0] == '_' || 'a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

// TPMURI is a parsed tpm: key URI:
//
//	tpm:                                  /dev/tpmrm0, key "device"
//	tpm:/dev/tpmrm0?key=device            a character device
//	tpm:///dev/tpm0                       the same, with an empty authority
//	tpm://127.0.0.1:2321?key=device       a TPM serving the raw TPM 2.0
//	                                      command stream on TCP (swtpm
//	                                      --server type=tcp)
//	tpm:?handle=0x81000010                a key persisted at that handle
//
// Without handle=, the key's wrapped blob (TPM2B_PUBLIC and TPM2B_PRIVATE,
// in the TSS2 PEM format) is kept in <state>/keys/<key>.tpmkey: the blob is
// useless outside the TPM that made it, because only that TPM's storage
// root key can unwrap it. With handle=, the key stays inside the TPM's own
// NV under that owner handle and nothing is written to the state dir.
type TPMURI struct {
	Device string // character device path; "" when Addr is set
	Addr   string // host:port of a TCP TPM; "" when Device is set
	Key    string // blob name, [A-Za-z0-9._-], 64 characters at most
	Handle uint32 // persistent handle 0x81000000-0x817FFFFF, or 0 for a blob
}

// Where is the device path or the TCP address.
func (u *TPMURI) Where() string {
	if u.Addr != "" {
		return u.Addr
	}
	return u.Device
}

// ParseTPMURI reads a tpm: URI.
func ParseTPMURI(s string) (*TPMURI, error) {
	rest, ok := cutSchemeFold(s, "tpm")
	if !ok {
		return nil, fmt.Errorf("keystore: %q is not a tpm: URI", redact(s))
	}
	hier, query, _ := strings.Cut(rest, "?")
	u := &TPMURI{Key: DefaultKeyName}
	switch {
	case strings.HasPrefix(hier, "//"):
		authority, path, _ := strings.Cut(hier[2:], "/")
		if authority != "" {
			if path != "" {
				return nil, fmt.Errorf("keystore: tpm: URI %q: a TCP address takes no path", s)
			}
			host, port, err := net.SplitHostPort(authority)
			if err != nil || host == "" {
				return nil, fmt.Errorf("keystore: tpm: URI %q: %q is not host:port", s, authority)
			}
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
				return nil, fmt.Errorf("keystore: tpm: URI %q: bad port %q", s, port)
			}
			if strings.ContainsAny(host, "/?#%@ ") {
				return nil, fmt.Errorf("keystore: tpm: URI %q: bad host %q", s, host)
			}
			u.Addr = net.JoinHostPort(host, port)
		} else {
			u.Device = "/" + path
		}
	case hier == "":
		u.Device = DefaultTPMDevice
	default:
		u.Device = hier
	}
	if u.Device != "" && !validDevicePath(u.Device) {
		return nil, fmt.Errorf("keystore: tpm: URI %q: device %q is not an absolute path of plain characters", s, u.Device)
	}
	if u.Device != "" && (filepath.Clean(u.Device) != u.Device || strings.Contains(u.Device, "..")) {
		return nil, fmt.Errorf("keystore: tpm: URI %q: device path %q is not clean (no //, /./, .. or trailing /)", s, u.Device)
	}
	attrs, err := parseQuery(query, "tpm")
	if err != nil {
		return nil, fmt.Errorf("keystore: tpm: URI %q: %w", s, err)
	}
	for k, v := range attrs {
		switch k {
		case "key":
			if !validKeyName(v) {
				return nil, fmt.Errorf("keystore: tpm: URI %q: key name %q must be 1-64 of A-Z a-z 0-9 . _ -", s, v)
			}
			u.Key = v
		case "handle":
			h, err := strconv.ParseUint(v, 0, 32)
			if err != nil || h < 0x81000000 || h > 0x817FFFFF {
				return nil, fmt.Errorf("keystore: tpm: URI %q: handle %q is not an owner persistent handle (0x81000000-0x817FFFFF)", s, v)
			}
			u.Handle = uint32(h)
		default:
			return nil, fmt.Errorf("keystore: tpm: URI %q: unknown attribute %q (known: key, handle)", s, k)
		}
	}
	if u.Handle != 0 && attrs["key"] != "" {
		return nil, fmt.Errorf("keystore: tpm: URI %q: give key= (a blob in the state dir) or handle= (persisted in the TPM), not both", s)
	}
	return u, nil
}

// String is the canonical form of the URI.
func (u *TPMURI) String() string {
	var b strings.Builder
	b.WriteString("tpm:")
	if u.Addr != "" {
		b.WriteString("//" + u.Addr)
	} else {
		b.WriteString(u.Device)
	}
	if u.Handle != 0 {
		fmt.Fprintf(&b, "?handle=0x%08x", u.Handle)
	} else if u.Key != DefaultKeyName {
		b.WriteString("?key=" + u.Key)
	}
	return b.String()
}

// BlobPath is where the key's blob lives under stateDir.
func (u *TPMURI) BlobPath(stateDir string) string {
	return filepath.Join(stateDir, "keys", u.Key+".tpmkey")
}

// PKCS11URI is a parsed RFC 7512 pkcs11: URI naming a private key:
//
//	pkcs11:token=dcagent;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/dcagent/pin
//
// Path attributes (';'-separated): token, manufacturer, serial, model,
// slot-id, object, id, type (only "private"); library-* are accepted and
// ignored. Query attributes ('&'-separated): module-path, module-name,
// pin-source. pin-source is file:PATH (or an absolute PATH) or env:NAME;
// without it the PIN comes from $DCAGENT_PKCS11_PIN. pin-value is refused:
// a URI travels through command lines, configuration files and logs, and
// a PIN must not.
type PKCS11URI struct {
	Token        string
	Manufacturer string
	Serial       string
	Model        string
	SlotID       int // -1 when not given
	Object       string
	ID           []byte
	ModulePath   string
	ModuleName   string
	// PINSource is "file:/path", "env:NAME" or "" ($DCAGENT_PKCS11_PIN).
	PINSource string
}

// ParsePKCS11URI reads a pkcs11: URI.
func ParsePKCS11URI(s string) (*PKCS11URI, error) {
	rest, ok := cutSchemeFold(s, "pkcs11")
	if !ok {
		return nil, fmt.Errorf("keystore: %q is not a pkcs11: URI", redact(s))
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &PKCS11URI{SlotID: -1}
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: path attribute %q is not name=value", redact(s), attr)
			}
			if seen[name] {
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: attribute %q given twice", redact(s), name)
			}
			seen[name] = true
			val, err := pctDecode(raw)
			if err != nil {
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: %s: %w", redact(s), name, err)
			}
			switch name {
			case "token":
				u.Token = val
			case "manufacturer":
				u.Manufacturer = val
			case "serial":
				u.Serial = val
			case "model":
				u.Model = val
			case "object":
				u.Object = val
			case "id":
				if val == "" {
					return nil, fmt.Errorf("keystore: pkcs11: URI %q: empty id", redact(s))
				}
				u.ID = []byte(val)
			case "slot-id":
				n, err := strconv.ParseUint(val, 10, 31)
				if err != nil || strconv.FormatUint(n, 10) != val {
					return nil, fmt.Errorf("keystore: pkcs11: URI %q: slot-id %q is not a number", redact(s), val)
				}
				u.SlotID = int(n)
			case "type":
				if val != "private" {
					return nil, fmt.Errorf("keystore: pkcs11: URI %q: type=%s does not name a private key (use type=private or leave it out)", redact(s), val)
				}
			case "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer":
				// Describe the module or slot, which module-path and token
				// already pin down; accepted so that URIs printed by
				// p11tool or pkcs11-tool work as they are.
			default:
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: unknown path attribute %q", redact(s), name)
			}
		}
	}
	if query != "" {
		for _, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: query attribute %q is not name=value", redact(s), attr)
			}
			if name == "pin-value" {
				return nil, fmt.Errorf("keystore: pkcs11: URI: %w", ErrPINInURI)
			}
			if seen[name] {
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: attribute %q given twice", redact(s), name)
			}
			seen[name] = true
			val, err := pctDecode(raw)
			if err != nil {
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: %s: %w", redact(s), name, err)
			}
			switch name {
			case "module-path":
				if !filepath.IsAbs(val) {
					return nil, fmt.Errorf("keystore: pkcs11: URI %q: module-path %q must be absolute", redact(s), val)
				}
				u.ModulePath = val
			case "module-name":
				if val == "" || strings.ContainsAny(val, "/\x00") {
					return nil, fmt.Errorf("keystore: pkcs11: URI %q: module-name %q must be a bare name", redact(s), val)
				}
				u.ModuleName = val
			case "pin-source":
				src, err := normalizePINSource(val)
				if err != nil {
					return nil, fmt.Errorf("keystore: pkcs11: URI %q: %w", redact(s), err)
				}
				u.PINSource = src
			default:
				return nil, fmt.Errorf("keystore: pkcs11: URI %q: unknown query attribute %q (known: module-path, module-name, pin-source)", redact(s), name)
			}
		}
	}
	if u.Token == "" && u.Serial == "" && u.SlotID < 0 {
		return nil, fmt.Errorf("keystore: pkcs11: URI %q names no token (give token=LABEL, serial= or slot-id=)", redact(s))
	}
	if u.Object == "" && u.ID == nil {
		return nil, fmt.Errorf("keystore: pkcs11: URI %q names no key (give object=LABEL or id=)", redact(s))
	}
	if u.ModulePath == "" && u.ModuleName == "" {
		return nil, fmt.Errorf("keystore: pkcs11: URI %q names no module (give module-path=/path/to/module.so)", redact(s))
	}
	return u, nil
}

func normalizePINSource(v string) (string, error) {
	switch {
	case strings.HasPrefix(v, "file:"):
		p := strings.TrimPrefix(v, "file:")
		p = strings.TrimPrefix(p, "//")
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("pin-source %q: the file path must be absolute", v)
		}
		return "file:" + p, nil
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		if !validEnvName(name) {
			return "", fmt.Errorf("pin-source %q: %q is not an environment variable name", v, name)
		}
		return v, nil
	case filepath.IsAbs(v):
		return "file:" + v, nil
	}
	return "", fmt.Errorf("pin-source %q: use file:/path or env:NAME", v)
}

// String is the canonical form of the URI, attributes in a fixed order.
func (u *PKCS11URI) String() string {
	var path []string
	add := func(name, val string) {
		if val != "" {
			path = append(path, name+"="+pctEncode(val, false))
		}
	}
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("serial", u.Serial)
	add("model", u.Model)
	if u.SlotID >= 0 {
		path = append(path, "slot-id="+strconv.Itoa(u.SlotID))
	}
	add("object", u.Object)
	if u.ID != nil {
		var b strings.Builder
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		path = append(path, "id="+b.String())
	}
	var query []string
	if u.ModulePath != "" {
		query = append(query, "module-path="+pctEncode(u.ModulePath, true))
	}
	if u.ModuleName != "" {
		query = append(query, "module-name="+pctEncode(u.ModuleName, true))
	}
	if u.PINSource != "" {
		query = append(query, "pin-source="+pctEncode(u.PINSource, true))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// Module is the module to load: module-path, or module-name looked up in
// the usual library directories.
func (u *PKCS11URI) Module() string {
	if u.ModulePath != "" {
		return u.ModulePath
	}
	for _, dir := range []string{"/usr/lib/pkcs11", "/usr/lib", "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf"} {
		p := filepath.Join(dir, u.ModuleName+".so")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return u.ModuleName + ".so"
}

// PIN reads the user PIN from where the URI says. A PIN file must be
// readable by its owner only; a trailing newline is dropped.
func (u *PKCS11URI) PIN() (string, error) {
	src := u.PINSource
	if src == "" {
		src = "env:" + PINEnv
	}
	switch {
	case strings.HasPrefix(src, "env:"):
		name := strings.TrimPrefix(src, "env:")
		pin, ok := os.LookupEnv(name)
		if !ok || pin == "" {
			if u.PINSource == "" {
				return "", fmt.Errorf("keystore: pkcs11: no PIN: the key URI has no pin-source and $%s is not set (use pin-source=file:/path/to/pin, mode 0600)", PINEnv)
			}
			return "", fmt.Errorf("keystore: pkcs11: no PIN: $%s named by pin-source is not set", name)
		}
		return pin, nil
	default:
		path := strings.TrimPrefix(src, "file:")
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("keystore: pkcs11: PIN file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("keystore: pkcs11: PIN file %s is readable by others (mode %#o): chmod 600 it", path, fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("keystore: pkcs11: PIN file: %w", err)
		}
		pin := strings.TrimRight(string(b), "\r\n")
		if pin == "" {
			return "", fmt.Errorf("keystore: pkcs11: PIN file %s is empty", path)
		}
		return pin, nil
	}
}

// FileURI is a parsed file: URI: file:/abs/key.pem, file:///abs/key.pem,
// or file:name.pem relative to the state directory.
type FileURI struct {
	Path string // as written; see Resolve
}

// ParseFileURI reads a file: URI.
func ParseFileURI(s string) (*FileURI, error) {
	rest, ok := cutSchemeFold(s, "file")
	if !ok {
		return nil, fmt.Errorf("keystore: %q is not a file: URI", s)
	}
	if strings.HasPrefix(rest, "//") {
		authority, path, _ := strings.Cut(rest[2:], "/")
		if authority != "" && authority != "localhost" {
			return nil, fmt.Errorf("keystore: file: URI %q names host %q: only local files", s, authority)
		}
		rest = "/" + path
	}
	if strings.ContainsAny(rest, "?#\x00") {
		return nil, fmt.Errorf("keystore: file: URI %q: a key file path takes no query or fragment", s)
	}
	if rest == "" || rest == "/" || strings.HasSuffix(rest, "/") {
		return nil, fmt.Errorf("keystore: file: URI %q names no file", s)
	}
	clean := filepath.Clean(rest)
	if clean == "/" {
		return nil, fmt.Errorf("keystore: file: URI %q names no file", s)
	}
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, fmt.Errorf("keystore: file: URI %q: a relative path must stay under the state directory", s)
	}
	return &FileURI{Path: clean}, nil
}

// String is the canonical form.
func (u *FileURI) String() string { return "file:" + u.Path }

// Resolve gives the path, a relative one taken under stateDir.
func (u *FileURI) Resolve(stateDir string) string {
	if filepath.IsAbs(u.Path) {
		return filepath.Clean(u.Path)
	}
	return filepath.Join(stateDir, u.Path)
}

// cutSchemeFold strips "scheme:" from s, ignoring the scheme's case.
func cutSchemeFold(s, scheme string) (string, bool) {
	if len(s) <= len(scheme) || s[len(scheme)] != ':' || !strings.EqualFold(s[:len(scheme)], scheme) {
		return "", false
	}
	return s[len(scheme)+1:], true
}

// parseQuery reads name=value&... with every name at most once.
func parseQuery(q, scheme string) (map[string]string, error) {
	out := map[string]string{}
	if q == "" {
		return out, nil
	}
	for _, part := range strings.Split(q, "&") {
		name, raw, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("attribute %q is not name=value", part)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("attribute %q given twice", name)
		}
		v, err := url.QueryUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// pctDecode undoes RFC 3986 percent-encoding (a '+' stays a '+').
func pctDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated %-escape")
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad %%-escape %q", s[i:i+3])
		}
		b = append(b, byte(n))
		i += 2
	}
	return string(b), nil
}

// pctEncode escapes everything but RFC 3986 unreserved characters and
// the few RFC 7512 lets stand in attribute values ('/' only in the query).
func pctEncode(s string, query bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '@', c == '!', c == '$', c == '\'', c == '(', c == ')', c == '*', c == '+', c == ',',
			query && c == '/':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// redact hides a pin-value in a URI that is about to be shown: every
// attribute whose name, percent-decoded and in any case, is "pin-value"
// keeps its name and loses its value.
func redact(s string) string {
	var b strings.Builder
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '?' && s[i] != ';' && s[i] != '&' && s[i] != ':' {
			continue
		}
		attr := s[start:i]
		if name, _, ok := strings.Cut(attr, "="); ok {
			decoded, err := url.PathUnescape(name)
			if err != nil {
				decoded = name
			}
			if strings.EqualFold(strings.TrimSpace(decoded), "pin-value") {
				attr = name + "=REDACTED"
			}
		}
		b.WriteString(attr)
		if i < len(s) {
			b.WriteByte(s[i])
		}
		start = i + 1
	}
	return b.String()
}

// Redact hides any secret in a key URI (a pin-value) so it can be logged.
func Redact(uri string) string { return redact(uri) }
