package connecthome

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"github.com/dcagent/dcagent/internal/httpc"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/spool"
)

// httpError is a failed request; retryAfter is the backend's Retry-After.
type httpError struct {
	status     int
	retryAfter time.Duration
	msg        string
}

func (e *httpError) Error() string {
	if e.status == 0 {
		return "connecthome: " + e.msg
	}
	return fmt.Sprintf("connecthome: backend answered %d: %s", e.status, e.msg)
}

type resultOf struct {
	acked    bool
	rejected string
}

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

func compress(data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data)/3 + 64)
	zw := gzipPool.Get().(*gzip.Writer)
	zw.Reset(&b)
	_, _ = zw.Write(data)
	_ = zw.Close()
	gzipPool.Put(zw)
	return b.Bytes()
}

// sendHTTPS uploads recs: one PUT for a single event, a batch POST for
// more. It returns the backend's answer per event id, or an error when
// there was no usable answer at all.
func (u *Uploader) sendHTTPS(ctx context.Context, recs []spool.Record) (map[string]resultOf, error) {
	ctx, cancel := context.WithTimeout(ctx, u.opts.RequestTimeout)
	defer cancel()
	var (
		method, path, ctype string
		body                []byte
	)
	if len(recs) == 1 {
		method, path, ctype, body = "PUT", wire.PathPrefix+recs[0].ID, wire.ContentTypeEvent, recs[0].Data
	} else {
		events := make([][]byte, len(recs))
		for i, r := range recs {
			events[i] = r.Data
		}
		b, err := wire.EncodeBatch(events)
		if err != nil {
			return nil, err
		}
		method, path, ctype, body = "POST", wire.BatchPath, wire.ContentTypeBatch, b
	}
	z := compress(body)
	target := u.base.JoinPath(path)
	req, err := httpc.NewRequest(method, target.String(), z)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Digest", wire.ContentDigest(z))
	req.Header.Set("Accept", "application/json")
	resp, err := u.client.Do(ctx, req)
	if err != nil {
		return nil, &httpError{msg: err.Error()}
	}
	answer := resp.Body
	results := map[string]resultOf{}
	switch {
	case len(recs) == 1 && (resp.StatusCode == 201 || resp.StatusCode == 200):
		results[recs[0].ID] = resultOf{acked: true}
		return results, nil
	case len(recs) == 1 && resp.StatusCode == 422:
		var r wire.Result
		if json.Unmarshal(answer, &r) != nil || r.Error == "" {
			r.Error = strings.TrimSpace(string(answer))
		}
		results[recs[0].ID] = resultOf{rejected: r.Error}
		return results, nil
	case len(recs) > 1 && resp.StatusCode == 200:
		var br wire.BatchResponse
		if err := json.Unmarshal(answer, &br); err != nil {
			return nil, &httpError{status: resp.StatusCode, msg: "unreadable batch answer: " + err.Error()}
		}
		for _, r := range br.Results {
			switch {
			case r.Acked():
				results[r.ID] = resultOf{acked: true}
			case r.Status == wire.StatusRejected:
				results[r.ID] = resultOf{rejected: r.Error}
			}
		}
		return results, nil
	}
	he := &httpError{status: resp.StatusCode, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var er wire.ErrorResponse
	if json.Unmarshal(answer, &er) == nil && er.Error != "" {
		he.msg = er.Error
	} else {
		he.msg = resp.Status
	}
	return nil, he
}

// parseRetryAfter reads delta-seconds or an HTTP date (RFC 9110 10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	// The three date forms HTTP allows: IMF-fixdate, RFC 850, asctime.
	for _, layout := range []string{"Mon, 02 Jan 2006 15:04:05 GMT", "Monday, 02-Jan-06 15:04:05 GMT", "Mon Jan _2 15:04:05 2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			if d := t.Sub(now); d > 0 {
				return d
			}
			return 0
		}
	}
	return 0
}
