package httpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newServer starts a TLS test server and a client that trusts it, and
// counts the connections the server accepted.
func newServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *Client, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12}
	c := &Client{TLSConfig: cfg}
	t.Cleanup(c.CloseIdleConnections)
	return srv, c, &conns
}

func TestRequestsReuseOneConnection(t *testing.T) {
	srv, c, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "%s %s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Test"), b)
	})
	for i := 0; i < 5; i++ {
		req, err := NewRequest("PUT", srv.URL+"/v1/events/"+fmt.Sprint(i)+"?q=1", []byte("body"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Test", "yes")
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("PUT /v1/events/%d?q=1 yes body", i)
		if resp.StatusCode != 200 || string(resp.Body) != want || resp.Header.Get("X-Method") != "PUT" {
			t.Fatalf("response %d %q %v", resp.StatusCode, resp.Body, resp.Header)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 requests, want 1", n)
	}
}

func TestChunkedAndStatus(t *testing.T) {
	srv, c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush() // forces chunked framing
		}
	})
	req, _ := NewRequest("GET", srv.URL+"/", nil)
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 || string(resp.Body) != "part0;part1;part2;" || resp.Status != "202 Accepted" {
		t.Fatalf("%d %q %q", resp.StatusCode, resp.Status, resp.Body)
	}
}

func TestNotModifiedHasNoBody(t *testing.T) {
	srv, c, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "policy")
	})
	req, _ := NewRequest("GET", srv.URL+"/policy", nil)
	resp, err := c.Do(context.Background(), req)
	if err != nil || string(resp.Body) != "policy" {
		t.Fatal(err, resp)
	}
	req, _ = NewRequest("GET", srv.URL+"/policy", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp, err = c.Do(context.Background(), req)
	if err != nil || resp.StatusCode != 304 || len(resp.Body) != 0 {
		t.Fatal(err, resp)
	}
	if conns.Load() != 1 {
		t.Errorf("304 broke the connection: %d connections", conns.Load())
	}
}

func TestBodyLimit(t *testing.T) {
	srv, c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 5000))
	})
	c.MaxBodyBytes = 1000
	req, _ := NewRequest("GET", srv.URL+"/", nil)
	if _, err := c.Do(context.Background(), req); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func TestContextCancelsALongPoll(t *testing.T) {
	release := make(chan struct{})
	srv, c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	req, _ := NewRequest("POST", srv.URL+"/v1/heartbeat", []byte("hb"))
	start := time.Now()
	_, err := c.Do(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("cancel did not interrupt the read")
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c.Timeout = 200 * time.Millisecond
	req, _ := NewRequest("GET", srv.URL+"/", nil)
	if _, err := c.Do(context.Background(), req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// A server that closed an idle kept connection: the request goes again on
// a new one, transparently.
func TestStaleIdleConnectionRetried(t *testing.T) {
	srv, c, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	req, _ := NewRequest("GET", srv.URL+"/", nil)
	if _, err := c.Do(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	resp, err := c.Do(context.Background(), req)
	if err != nil || string(resp.Body) != "ok" {
		t.Fatalf("%v %v", err, resp)
	}
	if conns.Load() != 2 {
		t.Errorf("%d connections, want 2", conns.Load())
	}
}

func TestConnectionCloseHonoured(t *testing.T) {
	srv, c, conns := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	for i := 0; i < 2; i++ {
		req, _ := NewRequest("GET", srv.URL+"/", nil)
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if conns.Load() != 2 {
		t.Errorf("%d connections, want 2 (the first was closed by the server)", conns.Load())
	}
}

func TestRefusesPlainHTTPAndBadHeaders(t *testing.T) {
	if _, err := NewRequest("GET", "http://127.0.0.1/", nil); err == nil {
		t.Error("plain http accepted")
	}
	if _, err := NewRequest("GET", "https:///x", nil); err == nil {
		t.Error("no host accepted")
	}
	srv, c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	req, _ := NewRequest("GET", srv.URL+"/", nil)
	req.Header.Set("X-Evil", "a\r\nInjected: yes")
	if _, err := c.Do(context.Background(), req); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Fatalf("err = %v", err)
	}
}

func TestTLSFailureNamesTheAddress(t *testing.T) {
	srv, _, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	c := &Client{TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}} // trusts nothing
	req, _ := NewRequest("GET", srv.URL+"/", nil)
	_, err := c.Do(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "TLS with 127.0.0.1") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadResponseErrors(t *testing.T) {
	cases := map[string]string{
		"HTTP/2 200 OK\r\n\r\n":                                             "malformed status line",
		"HTTP/1.1 2x0 OK\r\n\r\n":                                           "malformed status code",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n":                     "malformed Content-Length",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n": "conflicting",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n":                "unsupported transfer encoding",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n":       "malformed chunk size",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n": "not followed by CRLF",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort":                "unexpected EOF",
		"HTTP/1.1 101 Switching\r\n\r\n":                                    "switched protocols",
	}
	for in, want := range cases {
		_, _, err := readResponse(bufio.NewReader(strings.NewReader(in)), "GET", 1<<20)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
	resp, keep, err := readResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nto the end")), "GET", 1<<20)
	if err != nil || string(resp.Body) != "to the end" || keep {
		t.Errorf("%v %v %v", resp, keep, err)
	}
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: y\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nrest"))
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, _, err := readResponse(bufio.NewReader(strings.NewReader(string(data))), "GET", 4096)
		if err == nil && len(resp.Body) > 4096 {
			t.Fatalf("body of %d bytes passed a 4096-byte limit", len(resp.Body))
		}
	})
}

func BenchmarkRequest(b *testing.B) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	c := &Client{TLSConfig: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}
	defer c.CloseIdleConnections()
	body := []byte(strings.Repeat("e", 300))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		req, _ := NewRequest("PUT", srv.URL+"/v1/events/x", body)
		if _, err := c.Do(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// A server that sends an endless status line, header or trailer is cut
// off at a small bound instead of being buffered.
func TestEndlessLinesBounded(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	cases := map[string]string{
		"status line":  "HTTP/1.1 200 " + huge + "\r\n\r\n",
		"header":       "HTTP/1.1 200 OK\r\nX: " + huge + "\r\n\r\n",
		"many headers": "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 200) + "\r\n",
		"trailer":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: " + huge + "\r\n\r\n",
		"folded":       "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"1xx storm":    strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20),
	}
	for name, in := range cases {
		_, _, err := readResponse(bufio.NewReaderSize(strings.NewReader(in), 16<<10), "GET", 1<<20)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
