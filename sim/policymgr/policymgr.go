// Package policymgr is the reference customer policy manager: an HTTPS
// server that hands devices the customer's policy document, signed with
// the manager's key (agent/policy's format and signature), with an ETag so
// that devices ask with If-None-Match and are answered 304 Not Modified
// while the policy stays the same.
//
//	m := policymgr.New(signer)
//	m.SetPolicy([]byte("dcagent-policy 1\nversion 1\nall remote:ssh ask\n"))
//	url, _ := m.Start(serverCert)   // https://127.0.0.1:PORT/v1/policy
//
// SetRaw serves bytes as they are and SetFailure an HTTP error, so tests
// can show what a device does with a bad or missing policy.
package policymgr

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// Path is where the policy is served.
const Path = "/v1/policy"

// Stats counts requests.
type Stats struct {
	Requests    int // every GET of the policy
	NotModified int // answered 304
	Served      int // answered 200 with the document
}

// Server is the policy manager.
type Server struct {
	signer crypto.Signer

	mu      sync.Mutex
	doc     []byte
	etag    string
	failure int
	stats   Stats

	srv *http.Server
	ln  net.Listener
}

// New makes a manager that signs with signer.
func New(signer crypto.Signer) *Server { return &Server{signer: signer} }

// SetPolicy signs an unsigned policy document and serves it from now on.
// The document must parse: the manager refuses to hand out a policy no
// device would accept.
func (s *Server) SetPolicy(unsigned []byte) error {
	if _, err := policy.Parse(unsigned, policy.ParseOptions{Source: "policy manager"}); err != nil {
		return err
	}
	doc, err := policy.SignDocument(unsigned, s.signer)
	if err != nil {
		return err
	}
	s.SetRaw(doc)
	return nil
}

// SetRaw serves doc exactly as given (signed or not, well formed or not).
func (s *Server) SetRaw(doc []byte) {
	sum := sha256.Sum256(doc)
	s.mu.Lock()
	s.doc, s.etag, s.failure = doc, `"`+hex.EncodeToString(sum[:12])+`"`, 0
	s.mu.Unlock()
}

// SetFailure makes every request fail with code (0 serves again).
func (s *Server) SetFailure(code int) {
	s.mu.Lock()
	s.failure = code
	s.mu.Unlock()
}

// Stats returns the request counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Handler serves GET /v1/policy.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, s.serve)
	return mux
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Requests++
	doc, etag, failure := s.doc, s.etag, s.failure
	switch {
	case failure != 0:
		s.mu.Unlock()
		http.Error(w, "policy manager failure (simulated)", failure)
		return
	case doc == nil:
		s.mu.Unlock()
		http.Error(w, "no policy has been set", http.StatusNotFound)
		return
	case matches(r.Header.Get("If-None-Match"), etag):
		s.stats.NotModified++
		s.mu.Unlock()
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.stats.Served++
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(doc)
}

// matches implements If-None-Match (RFC 9110 §13.1.2): a list of entity
// tags, weak or strong, or *.
func matches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// Start serves HTTPS with cert on a free loopback port and returns the
// policy's URL.
func (s *Server) Start(cert tls.Certificate) (string, error) {
	if s.srv != nil {
		return "", errors.New("policymgr: already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), TLSConfig: tlsconf.Server(cert, nil, false), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.ServeTLS(ln, "", "")
	return "https://" + ln.Addr().String() + Path, nil
}

// Close stops the server.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}
