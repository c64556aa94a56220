// Package httpc is the agent's HTTPS client: HTTP/1.1 over crypto/tls with
// keep-alive, for the few requests the device makes (enrollment and
// renewal, event uploads, the heartbeat's HTTPS fallback, policy sync).
//
// The standard library's net/http client would do, but it brings the
// server, HTTP/2, multipart forms, IDNA tables and more into the static
// binary: about 1 MiB of a device agent whose budget is 8 MiB on arm64.
// What the agent needs is small: a request with a byte body, a response
// whose body is read whole (bounded), Content-Length or chunked framing,
// connections reused across requests, contexts that cancel. That is all
// this package does. It speaks only HTTPS: a plain-text URL is refused.
package httpc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is one HTTP request. Body may be nil.
type Request struct {
	Method string
	URL    *url.URL
	Header textproto.MIMEHeader
	Body   []byte
}

// NewRequest makes a request for an https URL.
func NewRequest(method, rawURL string, body []byte) (*Request, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("httpc: %w", err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("httpc: %s: only https URLs are allowed", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("httpc: %s: no host", rawURL)
	}
	if method == "" || strings.ContainsAny(method, " \r\n") {
		return nil, fmt.Errorf("httpc: bad method %q", method)
	}
	return &Request{Method: method, URL: u, Header: textproto.MIMEHeader{}, Body: body}, nil
}

// Response is a complete response.
type Response struct {
	StatusCode int
	Status     string // e.g. "200 OK"
	Header     textproto.MIMEHeader
	Body       []byte
}

// ErrBodyTooLarge means the response's body exceeded MaxBodyBytes.
var ErrBodyTooLarge = errors.New("httpc: response body larger than allowed")

// Client sends requests, reusing connections per host. Its zero value is
// not usable: TLSConfig must be set (from crypto/tlsconf). Methods are safe
// for concurrent use.
type Client struct {
	// TLSConfig is the client TLS configuration; ServerName defaults to
	// the URL's host.
	TLSConfig *tls.Config
	// DialContext dials TCP; nil means a net.Dialer with a 30 s timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds a whole request (dial, TLS, write, read); 0 leaves
	// it to the context.
	Timeout time.Duration
	// MaxBodyBytes bounds a response body; 0 means 8 MiB.
	MaxBodyBytes int64
	// IdleTimeout is how long an idle connection is kept; 0 means 90 s.
	IdleTimeout time.Duration
	// MaxIdlePerHost bounds kept connections per host; 0 means 2.
	MaxIdlePerHost int

	mu   sync.Mutex
	idle map[string][]*conn
}

type conn struct {
	net.Conn
	br       *bufio.Reader
	idleFrom time.Time
}

func (c *Client) maxBody() int64 {
	if c.MaxBodyBytes > 0 {
		return c.MaxBodyBytes
	}
	return 8 << 20
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return 90 * time.Second
}

// Do sends req and reads the whole response. A request that fails on a
// reused connection before any byte of the response came back (the server
// had closed it while idle) is sent once more on a new connection.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	if c.TLSConfig == nil {
		return nil, errors.New("httpc: no TLS configuration")
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	addr := hostPort(req.URL)
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.getConn(ctx, addr, req.URL.Hostname())
		if err != nil {
			return nil, err
		}
		resp, keep, gotBytes, err := c.roundTrip(ctx, cn, req)
		if err != nil {
			cn.Close()
			if reused && !gotBytes && attempt == 0 && ctxErr(ctx) == nil {
				continue
			}
			if cerr := ctxErr(ctx); cerr != nil {
				return nil, fmt.Errorf("httpc: %s %s: %w", req.Method, req.URL.Redacted(), cerr)
			}
			return nil, fmt.Errorf("httpc: %s %s: %w", req.Method, req.URL.Redacted(), err)
		}
		if keep {
			c.putIdle(addr, cn)
		} else {
			cn.Close()
		}
		return resp, nil
	}
}

// ctxErr is ctx's error, also in the instant after its deadline passed
// but before its timer fired: the connection's deadline, set to the same
// time, can expire first.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

func (c *Client) getConn(ctx context.Context, addr, host string) (*conn, bool, error) {
	c.mu.Lock()
	now := time.Now()
	for list := c.idle[addr]; len(list) > 0; list = c.idle[addr] {
		cn := list[len(list)-1]
		c.idle[addr] = list[:len(list)-1]
		if now.Sub(cn.idleFrom) < c.idleTimeout() {
			c.mu.Unlock()
			return cn, true, nil
		}
		cn.Close()
	}
	c.mu.Unlock()

	dial := c.DialContext
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second}
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("httpc: dial %s: %w", addr, err)
	}
	cfg := c.TLSConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, false, fmt.Errorf("httpc: TLS with %s: %w", addr, err)
	}
	return &conn{Conn: tc, br: bufio.NewReaderSize(tc, 16<<10)}, false, nil
}

func (c *Client) putIdle(addr string, cn *conn) {
	cn.SetDeadline(time.Time{})
	cn.idleFrom = time.Now()
	max := c.MaxIdlePerHost
	if max <= 0 {
		max = 2
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle == nil {
		c.idle = map[string][]*conn{}
	}
	if len(c.idle[addr]) >= max {
		cn.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], cn)
}

// CloseIdleConnections closes every kept connection.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, list := range c.idle {
		for _, cn := range list {
			cn.Close()
		}
		delete(c.idle, addr)
	}
}

// roundTrip writes req on cn and reads the response. gotBytes says whether
// any byte of a response arrived (after which a retry could repeat a
// request the server acted on).
func (c *Client) roundTrip(ctx context.Context, cn *conn, req *Request) (resp *Response, keep, gotBytes bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		cn.SetDeadline(dl)
	}
	// A cancelled context interrupts a blocked read or write.
	stop := context.AfterFunc(ctx, func() { cn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := writeRequest(cn, req); err != nil {
		return nil, false, false, err
	}
	if _, err := cn.br.Peek(1); err != nil {
		return nil, false, false, err
	}
	resp, keep, err = readResponse(cn.br, req.Method, c.maxBody())
	if err != nil {
		return nil, false, true, err
	}
	if strings.EqualFold(req.Header.Get("Connection"), "close") {
		keep = false
	}
	return resp, keep, true, nil
}

func writeRequest(w io.Writer, req *Request) error {
	var b bytes.Buffer
	target := req.URL.RequestURI()
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, target, req.URL.Host)
	if req.Header.Get("User-Agent") == "" {
		b.WriteString("User-Agent: dcagent\r\n")
	}
	if req.Body != nil || req.Method == "POST" || req.Method == "PUT" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(req.Body))
	}
	for k, vs := range req.Header {
		if strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Host") || strings.EqualFold(k, "Transfer-Encoding") {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(k, "\r\n:") || strings.ContainsAny(v, "\r\n") {
				return fmt.Errorf("header %q holds a line break", k)
			}
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(req.Body)
	_, err := w.Write(b.Bytes())
	return err
}

// Limits on what a server may send outside the body: a peer that sends an
// endless status line, header or trailer must not make the device buffer
// it.
const (
	maxLineBytes   = 8 << 10
	maxHeaderBytes = 64 << 10
	maxHeaders     = 100
)

// errLineTooLong is a status, header, chunk-size or trailer line longer
// than maxLineBytes.
var errLineTooLong = errors.New("a line of the response is longer than allowed")

// readLine reads one CRLF- or LF-terminated line of at most maxLineBytes.
// It uses the reader's own buffer (16 KiB), so it never grows memory.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLineBytes {
		return "", errLineTooLong
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	return string(line), nil
}

// readHeader reads header lines up to the empty line, bounded in count and
// bytes. Folded (obsolete) continuation lines are refused.
func readHeader(br *bufio.Reader) (textproto.MIMEHeader, error) {
	h := textproto.MIMEHeader{}
	total, n := 0, 0
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if line == "" {
			return h, nil
		}
		total += len(line)
		n++
		if total > maxHeaderBytes || n > maxHeaders {
			return nil, fmt.Errorf("more than %d header lines or %d header bytes", maxHeaders, maxHeaderBytes)
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, errors.New("folded header line")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("malformed header line %q", clip(line))
		}
		key := textproto.CanonicalMIMEHeaderKey(k)
		h[key] = append(h[key], strings.TrimSpace(v))
	}
}

// readResponse reads one response, skipping 1xx answers. keep says whether
// the connection can carry another request.
func readResponse(br *bufio.Reader, method string, maxBody int64) (*Response, bool, error) {
	for interim := 0; ; interim++ {
		if interim > 8 {
			return nil, false, errors.New("too many informational (1xx) responses")
		}
		line, err := readLine(br)
		if err != nil {
			return nil, false, fmt.Errorf("reading the status line: %w", err)
		}
		proto, rest, ok := strings.Cut(line, " ")
		if !ok || (proto != "HTTP/1.1" && proto != "HTTP/1.0") {
			return nil, false, fmt.Errorf("malformed status line %q", clip(line))
		}
		codeText, _, _ := strings.Cut(rest, " ")
		code, err := strconv.Atoi(codeText)
		if err != nil || len(codeText) != 3 || code < 100 {
			return nil, false, fmt.Errorf("malformed status code in %q", clip(line))
		}
		hdr, err := readHeader(br)
		if err != nil {
			return nil, false, fmt.Errorf("reading the headers: %w", err)
		}
		if code >= 100 && code < 200 {
			if code == 101 {
				return nil, false, errors.New("the server switched protocols")
			}
			continue
		}
		resp := &Response{StatusCode: code, Status: rest, Header: hdr}
		keep := proto == "HTTP/1.1" && !strings.EqualFold(hdr.Get("Connection"), "close")
		if proto == "HTTP/1.0" && strings.EqualFold(hdr.Get("Connection"), "keep-alive") {
			keep = true
		}
		if method == "HEAD" || code == 204 || code == 304 {
			return resp, keep, nil
		}
		te := strings.ToLower(hdr.Get("Transfer-Encoding"))
		switch {
		case te != "" && te != "identity":
			if te != "chunked" {
				return nil, false, fmt.Errorf("unsupported transfer encoding %q", clip(te))
			}
			resp.Body, err = readChunked(br, maxBody)
		case hdr.Get("Content-Length") != "":
			cl := hdr.Values("Content-Length")
			n, perr := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64)
			for _, v := range cl[1:] {
				if strings.TrimSpace(v) != strings.TrimSpace(cl[0]) {
					return nil, false, errors.New("conflicting Content-Length headers")
				}
			}
			if perr != nil || n < 0 {
				return nil, false, fmt.Errorf("malformed Content-Length %q", clip(cl[0]))
			}
			if n > maxBody {
				return nil, false, fmt.Errorf("%w (%d bytes, limit %d)", ErrBodyTooLarge, n, maxBody)
			}
			resp.Body = make([]byte, n)
			_, err = io.ReadFull(br, resp.Body)
		default:
			// Delimited by the end of the connection.
			keep = false
			resp.Body, err = readLimited(br, maxBody)
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading the body: %w", err)
		}
		return resp, keep, nil
	}
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// readChunked decodes a chunked body (RFC 9112 §7.1), trailers ignored.
func readChunked(br *bufio.Reader, max int64) ([]byte, error) {
	var out []byte
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := strings.Cut(line, ";")
		sizeText = strings.TrimSpace(sizeText)
		size, err := strconv.ParseInt(sizeText, 16, 64)
		if err != nil || size < 0 || len(sizeText) > 16 {
			return nil, fmt.Errorf("malformed chunk size %q", clip(line))
		}
		if size == 0 {
			// Trailers end at an empty line.
			if _, err := readHeader(br); err != nil {
				return nil, fmt.Errorf("reading the trailers: %w", err)
			}
			return out, nil
		}
		if int64(len(out))+size > max {
			return nil, ErrBodyTooLarge
		}
		start := len(out)
		out = append(out, make([]byte, size)...)
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return nil, err
		}
		crlf, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if crlf != "" {
			return nil, errors.New("chunk not followed by CRLF")
		}
	}
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
