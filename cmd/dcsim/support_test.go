package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
	"github.com/dcagent/dcagent/sim/relay"
	"github.com/fxamacker/cbor/v2"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSupportRequestAccess(t *testing.T) {
	ca := testpki.NewCA(t, "vendor CA")
	caFile := ca.WriteCAFile(t, t.TempDir())
	queued := make(chan work.Item, 1)
	rl, err := relay.New(relay.Options{Cert: ca.Server(t), ClientCAs: ca.Pool, Enqueue: func(_ string, it work.Item) error { queued <- it; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	api := httptest.NewUnstartedServer(rl.SupportHandler())
	api.TLS = tlsconf.Server(ca.Server(t), nil, false)
	api.StartTLS()
	defer api.Close()

	// A device that echoes in upper case once its request arrives.
	go func() {
		it := <-queued
		var ra work.RemoteAccess
		cbor.Unmarshal(it.Body, &ra)
		dev := ca.Device(t, "SYS-CLI")
		c, err := tls.Dial("tcp", ra.RelayAddr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{dev}, ServerName: "127.0.0.1"})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		remote.WriteHello(c, ra.SessionID)
		if err := remote.ReadReply(c); err != nil {
			t.Error(err)
			return
		}
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintln(c, strings.ToUpper(sc.Text()))
		}
	}()

	pr, pw := io.Pipe()
	supportStdin = pr
	defer func() { supportStdin = nil }()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain([]string{"support", "request-access", "--backend", api.URL, "--ca", caFile, "--system-id", "SYS-CLI", "--service", "ssh", "--requester", "alice", "--sr", "SR-5", "--wait", "30s"}, &stdout, &stderr)
	}()
	fmt.Fprintln(pw, "hello device")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "HELLO DEVICE\n") {
		if time.Now().After(deadline) {
			t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pw.Close() // the engineer is done
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(stderr.String(), "connected to SYS-CLI's ssh") || !strings.Contains(stderr.String(), "session closed") {
			t.Fatalf("exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not end")
	}
}

func TestSupportUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runMain([]string{"support"}, &out, &errOut); code != 2 {
		t.Fatalf("no sub-command: %d", code)
	}
	errOut.Reset()
	if code := runMain([]string{"support", "request-access", "--backend", "https://127.0.0.1:1", "--ca", "x"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--system-id is required") {
		t.Fatalf("%d %s", code, errOut.String())
	}
	errOut.Reset()
	if code := runMain([]string{"support", "request-access", "--backend", "http://x", "--ca", "x", "--system-id", "S", "--requester", "a"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "not an https:// URL") {
		t.Fatalf("%d %s", code, errOut.String())
	}
	errOut.Reset()
	if code := runMain([]string{"support", "request-access", "--backend", "https://x", "--ca", "/nonexistent.pem", "--system-id", "S", "--requester", "a"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "nonexistent.pem") {
		t.Fatalf("%d %s", code, errOut.String())
	}
}
