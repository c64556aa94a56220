package eventstore

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/klauspost/compress/zstd"
)

// Authenticator names the device behind a request (from its verified
// client certificate), or fails.
type Authenticator func(*http.Request) (systemID string, err error)

// PeerCN is an Authenticator for tests and the simulator: the CommonName
// of the verified client certificate is the system ID.
func PeerCN(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified client certificate")
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	if cn == "" {
		return "", errors.New("client certificate has no CommonName")
	}
	return cn, nil
}

// maxCompressedBody bounds what a request may send before decompression.
const maxCompressedBody = 32 << 20

// Handler serves PUT /v1/events/{id} and POST /v1/events/batch; mount it
// at wire.PathPrefix on the backend's mutual-TLS server.
func (s *Store) Handler(auth Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ra := s.unavailable(); ra > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((ra+time.Second-1)/time.Second)))
			httpError(w, http.StatusServiceUnavailable, "backend is in maintenance")
			return
		}
		systemID, err := auth(r)
		if err != nil {
			httpError(w, http.StatusUnauthorized, "device not authenticated: "+err.Error())
			return
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == wire.BatchPath:
			s.serveBatch(w, r, systemID)
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, wire.PathPrefix):
			s.servePut(w, r, systemID, strings.TrimPrefix(r.URL.Path, wire.PathPrefix))
		default:
			w.Header().Set("Allow", "PUT, POST")
			httpError(w, http.StatusMethodNotAllowed, "use PUT "+wire.PathPrefix+"{id} or POST "+wire.BatchPath)
		}
	})
}

func (s *Store) servePut(w http.ResponseWriter, r *http.Request, systemID, id string) {
	if _, err := event.ParseID(id); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, status, err := readBody(r)
	if err != nil {
		httpError(w, status, err.Error())
		return
	}
	results, err := s.Store([]Incoming{{Data: body, SystemID: systemID, Channel: ChannelHTTPS}})
	if err != nil {
		s.log.Error("eventstore: cannot store", "err", err)
		w.Header().Set("Retry-After", "30")
		httpError(w, http.StatusServiceUnavailable, "cannot store events now")
		return
	}
	res := results[0]
	if res.ID != id && res.Status != wire.StatusRejected {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("body holds event %s, the path names %s", res.ID, id))
		return
	}
	switch res.Status {
	case wire.StatusStored:
		writeJSON(w, http.StatusCreated, res)
	case wire.StatusDuplicate:
		writeJSON(w, http.StatusOK, res)
	default:
		res.ID = id
		writeJSON(w, http.StatusUnprocessableEntity, res)
	}
}

func (s *Store) serveBatch(w http.ResponseWriter, r *http.Request, systemID string) {
	body, status, err := readBody(r)
	if err != nil {
		httpError(w, status, err.Error())
		return
	}
	events, err := wire.DecodeBatch(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	in := make([]Incoming, len(events))
	for i, e := range events {
		in[i] = Incoming{Data: e, SystemID: systemID, Channel: ChannelHTTPS}
	}
	results, err := s.Store(in)
	if err != nil {
		s.log.Error("eventstore: cannot store", "err", err)
		w.Header().Set("Retry-After", "30")
		httpError(w, http.StatusServiceUnavailable, "cannot store events now")
		return
	}
	writeJSON(w, http.StatusOK, wire.BatchResponse{Results: results})
}

// readBody reads, checks the digest of, and decompresses a request body.
func readBody(r *http.Request) ([]byte, int, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxCompressedBody+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %v", err)
	}
	if len(raw) > maxCompressedBody {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", maxCompressedBody)
	}
	if err := wire.CheckContentDigest(r.Header.Get("Content-Digest"), raw); err != nil {
		return nil, http.StatusBadRequest, err
	}
	var rd io.Reader
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return raw, 0, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("gzip: %v", err)
		}
		rd = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderMaxMemory(wire.MaxBodyBytes), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("zstd: %v", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q not supported (gzip, zstd, identity)", enc)
	}
	out, err := io.ReadAll(io.LimitReader(rd, wire.MaxBodyBytes+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decompress: %v", err)
	}
	if len(out) > wire.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("decompressed body larger than %d bytes", wire.MaxBodyBytes)
	}
	return out, 0, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, wire.ErrorResponse{Error: msg})
}
