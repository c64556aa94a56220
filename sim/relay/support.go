package relay

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/work"
)

// The support API, for a support engineer's tool (`dcsim support
// request-access`), mounted by the backend on its HTTPS server:
//
//	POST /v1/support/access                {system_id, service, requester, service_request}
//	  → 201 {"session_id": ..., "work_id": ...}
//	GET  /v1/support/access/{id}           → {"session_id", "device_connected", "result"?}
//	GET  /v1/support/access/{id}/connect?wait=SECONDS
//	     with "Connection: Upgrade", "Upgrade: dcrelay-support"
//	  → 101 Switching Protocols once the device is connected, then the raw
//	    session both ways; 403 with the device's reason when it refused;
//	    504 when it did not connect in time.
//
// With Options.SupportToken set, every request needs "Authorization: Bearer
// TOKEN".
const (
	supportUpgrade = "dcrelay-support"
	maxWait        = 2 * time.Hour
)

// SupportHandler returns the support API.
func (r *Relay) SupportHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/support/access", r.handleRequest)
	mux.HandleFunc("GET /v1/support/access/{id}", r.handleStatus)
	mux.HandleFunc("GET /v1/support/access/{id}/connect", r.handleConnect)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if tok := r.opts.SupportToken; tok != "" {
			got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
				httpError(w, http.StatusUnauthorized, "a support token is needed (Authorization: Bearer ...)")
				return
			}
		}
		mux.ServeHTTP(w, req)
	})
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// RequestResponse is the answer to a request for access.
type RequestResponse struct {
	SessionID string `json:"session_id"`
	WorkID    string `json:"work_id"`
}

func (r *Relay) handleRequest(w http.ResponseWriter, req *http.Request) {
	var ar AccessRequest
	dec := json.NewDecoder(io.LimitReader(req.Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ar); err != nil {
		httpError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return
	}
	s, err := r.RequestAccess(ar)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(RequestResponse{SessionID: s.ID, WorkID: s.WorkID})
}

// SessionStatus is the answer to GET /v1/support/access/{id}.
type SessionStatus struct {
	SessionID       string       `json:"session_id"`
	DeviceConnected bool         `json:"device_connected"`
	Expires         time.Time    `json:"expires"`
	Result          *work.Result `json:"result,omitempty"`
}

func (r *Relay) handleStatus(w http.ResponseWriter, req *http.Request) {
	s, ok := r.Session(req.PathValue("id"))
	if !ok {
		httpError(w, http.StatusNotFound, "no such session")
		return
	}
	st := SessionStatus{SessionID: s.ID, DeviceConnected: s.DeviceConnected(), Expires: s.Expires}
	if r.opts.WaitResult != nil {
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Millisecond)
		if res, err := r.opts.WaitResult(ctx, s.Request.SystemID, s.WorkID); err == nil {
			st.Result = &res
		}
		cancel()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

func (r *Relay) handleConnect(w http.ResponseWriter, req *http.Request) {
	s, ok := r.Session(req.PathValue("id"))
	if !ok {
		httpError(w, http.StatusNotFound, "no such session")
		return
	}
	if !strings.EqualFold(req.Header.Get("Upgrade"), supportUpgrade) {
		httpError(w, http.StatusBadRequest, "ask with Connection: Upgrade and Upgrade: "+supportUpgrade)
		return
	}
	wait := 10 * time.Minute
	if v := req.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > maxWait {
			httpError(w, http.StatusBadRequest, "wait must be 1 to 7200 seconds")
			return
		}
		wait = time.Duration(n) * time.Second
	}
	ctx, cancel := context.WithTimeout(req.Context(), wait)
	defer cancel()

	// While waiting for the device, learn if it said no.
	refused := make(chan work.Result, 1)
	if r.opts.WaitResult != nil {
		go func() {
			if res, err := r.opts.WaitResult(ctx, s.Request.SystemID, s.WorkID); err == nil && !res.OK {
				refused <- res
			}
		}()
	}
	type got struct {
		c   net.Conn
		err error
	}
	devCh := make(chan got, 1)
	go func() {
		c, err := r.AwaitDevice(ctx, s)
		devCh <- got{c, err}
	}()
	var device net.Conn
	select {
	case g := <-devCh:
		if g.err != nil {
			httpError(w, http.StatusGatewayTimeout, "the device did not connect: "+g.err.Error())
			return
		}
		device = g.c
	case res := <-refused:
		cancel()
		if g := <-devCh; g.c != nil {
			g.c.Close()
		}
		httpError(w, http.StatusForbidden, "the device refused: "+res.Detail)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		device.Close()
		httpError(w, http.StatusInternalServerError, "this server cannot switch protocols")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		device.Close()
		return
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", supportUpgrade)
	if err := brw.Flush(); err != nil {
		conn.Close()
		device.Close()
		return
	}
	// Bytes the engineer sent early sit in brw's reader.
	eng := &bufferedConn{Conn: conn, r: brw.Reader}
	to, from := Bridge(eng, device)
	r.logger.Info("relay: session ended", "session", s.ID, "bytes_to_device", to, "bytes_from_device", from)
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// SupportClient is the engineer's side of the support API.
type SupportClient struct {
	// BaseURL is the backend's HTTPS base, e.g. https://127.0.0.1:8443.
	BaseURL string
	// HTTP is the client to use (pinned to the backend's CA).
	HTTP  *http.Client
	Token string
}

func (c *SupportClient) do(req *http.Request) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("support API %s: %w", c.BaseURL, err)
	}
	return resp, nil
}

func apiError(resp *http.Response) error {
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 8<<10)).Decode(&e)
	if e.Error == "" {
		e.Error = resp.Status
	}
	return &APIError{Status: resp.StatusCode, Message: e.Error}
}

// APIError is an error answer of the support API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("support API: %s (HTTP %d)", e.Message, e.Status)
}

// Request asks for access and returns the session.
func (c *SupportClient) Request(ctx context.Context, ar AccessRequest) (RequestResponse, error) {
	var out RequestResponse
	b, _ := json.Marshal(ar)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v1/support/access", strings.NewReader(string(b)))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return out, apiError(resp)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Connect waits up to wait for the device and returns the session's
// stream.
func (c *SupportClient) Connect(ctx context.Context, sessionID string, wait time.Duration) (io.ReadWriteCloser, error) {
	u := fmt.Sprintf("%s/v1/support/access/%s/connect?wait=%d", c.BaseURL, sessionID, max(1, int(wait/time.Second)))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", supportUpgrade)
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, errors.New("support API: the connection cannot carry a session")
	}
	return rwc, nil
}

// Pipe joins a session stream to a terminal or a program's stdio (ssh's
// ProxyCommand): in goes to the device, what the device sends goes to out.
// It returns when the session ends (the device or the relay closed it) or
// when in ends (the engineer is done), closing the stream either way.
func Pipe(rwc io.ReadWriteCloser, in io.Reader, out io.Writer) error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(rwc, in)
		done <- err
	}()
	outDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, rwc)
		outDone <- err
	}()
	var err error
	select {
	case err = <-outDone:
	case err = <-done:
		// The engineer is done: close, and let what is in flight arrive.
		rwc.Close()
		<-outDone
	}
	rwc.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
