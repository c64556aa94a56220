package heartbeat

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
)

// HTTPSPath is where the backend mounts Handler.
const HTTPSPath = "/v1/heartbeat"

// maxHTTPSBody bounds a heartbeat request body.
const maxHTTPSBody = 64 << 10

// errNoClientCert: the HTTPS request carries no verified device
// certificate.
var errNoClientCert = errors.New("no verified device certificate on the connection")

// Handler returns the HTTPS fallback: POST a CBOR Heartbeat (Content-Type
// application/cbor), get a CBOR Reply. A heartbeat with Wait > 0 is held
// until work is queued for the device or Wait seconds (at most MaxWait)
// pass: a long poll, so that work reaches a device behind a UDP-blocking
// firewall as soon as it is queued. The device is identified by its
// certificate (Options.Authenticate), never by anything in the body.
//
// Status codes: 200 with a Reply; 400 for a body that is not a valid
// heartbeat (the text says what is wrong); 401 without a device
// certificate; 403 when Authenticate refuses it; 405 for other methods;
// 413 for a body over 64 KiB.
func (s *Service) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "heartbeat: use POST", http.StatusMethodNotAllowed)
		return
	}
	systemID, err := s.authenticate(r)
	if err != nil {
		code := http.StatusForbidden
		if errors.Is(err, errNoClientCert) {
			code = http.StatusUnauthorized
		}
		http.Error(w, "heartbeat: "+err.Error(), code)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHTTPSBody+1))
	if err != nil {
		http.Error(w, "heartbeat: reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxHTTPSBody {
		http.Error(w, fmt.Sprintf("heartbeat: body over %d bytes", maxHTTPSBody), http.StatusRequestEntityTooLarge)
		return
	}
	h, err := hb.DecodeHeartbeat(body)
	if err != nil {
		s.stats.badMessages.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	addr, _ := netip.ParseAddrPort(r.RemoteAddr)
	d := s.device(systemID)
	reply := s.process(d, h, ChannelHTTPS, addr, 0, time.Now(), 0)

	if len(reply.Work) == 0 && h.Wait > 0 {
		if s.longPolls.Add(1) <= int64(s.opts.MaxLongPolls) {
			wait := min(time.Duration(h.Wait)*time.Second, s.opts.MaxWait)
			if !s.holdForWork(r, d, reply, wait) {
				s.longPolls.Add(-1)
				return // the device went away
			}
		}
		s.longPolls.Add(-1)
	}

	enc, err := hb.EncodeReply(reply)
	if err != nil {
		s.stats.replyErrors.Add(1)
		http.Error(w, "heartbeat: encoding reply: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/cbor")
	if _, err := w.Write(enc); err != nil {
		s.stats.replyErrors.Add(1)
		return
	}
	s.stats.httpsHeartbeats.Add(1)
}

// holdForWork waits until work is queued for d (filling reply.Work) or
// wait passes. It returns false when the request or the service ended.
func (s *Service) holdForWork(r *http.Request, d *device, reply *hb.Reply, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		d.mu.Lock()
		items, more := d.pendingWorkLocked(0)
		ch := d.changed
		d.mu.Unlock()
		if len(items) > 0 {
			reply.Work, reply.More = items, more
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return true
		case <-r.Context().Done():
			return false
		case <-s.ctx.Done():
			return true
		}
	}
}

func (s *Service) authenticate(r *http.Request) (string, error) {
	if s.opts.Authenticate != nil {
		return s.opts.Authenticate(r)
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", errNoClientCert
	}
	return s.authenticateCert(r.TLS.VerifiedChains[0][0])
}
