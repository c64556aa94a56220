package eventstore

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
)

func TestUploadEndToEndOverOneConnection(t *testing.T) {
	b := startBackend(t, t.TempDir())
	ch, cancel := b.store.Subscribe(1000)
	defer cancel()
	a := startAgent(t, t.TempDir(), b.addr(), deviceTLS(t, b.ca, "SYS-E2E"), "SYS-E2E", connecthome.Options{BatchEvents: 64}, nil)
	want := map[string][]byte{}
	for i := 0; i < 300; i++ {
		e := alert(event.Severity(1+i%5), i)
		if err := a.sp.Put(e); err != nil {
			t.Fatal(err)
		}
		enc, _ := event.Marshal(e)
		want[e.ID] = enc
	}
	waitFor(t, "300 events at the backend", func() bool { return b.store.Count() == 300 })
	waitFor(t, "an empty spool", func() bool { return a.sp.Len() == 0 })
	for _, r := range b.store.Events() {
		if !bytes.Equal(r.Data, want[r.ID]) {
			t.Fatalf("event %s not stored byte for byte", r.ID)
		}
		if r.SystemID != "SYS-E2E" || r.Channel != ChannelHTTPS {
			t.Fatalf("event %s: %+v", r.ID, r)
		}
	}
	// One kept-alive connection per batch in flight (two by default), not
	// one per request.
	if n := b.conns.Load(); n < 1 || n > 2 {
		t.Fatalf("%d connections for 300 events, want 1 or 2", n)
	}
	got := 0
	for got < 300 {
		select {
		case <-ch:
			got++
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber got %d arrivals, want 300", got)
		}
	}
	waitFor(t, "the uploader to count 300", func() bool { return a.up.Status().Sent["https"] == 300 })
	st := a.up.Status()
	if st.Channel != "https" || st.LastSuccess.IsZero() {
		t.Fatalf("uploader status %+v", st)
	}
}

// put sends one raw PUT as the device would.
func rawPut(t *testing.T, b *backend, systemID, id string, body []byte, digest string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: deviceTLS(t, b.ca, systemID)}}
	defer c.CloseIdleConnections()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(body)
	zw.Close()
	if digest == "" {
		digest = wire.ContentDigest(z.Bytes())
	}
	req, _ := http.NewRequest(http.MethodPut, "https://"+b.addr()+wire.PathPrefix+id, bytes.NewReader(z.Bytes()))
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Digest", digest)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ans, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(ans)
}

func TestPutIsIdempotentAndChecked(t *testing.T) {
	b := startBackend(t, t.TempDir())
	e := alert(event.SeverityError, 1)
	e.SystemID = "SYS-A"
	enc, _ := event.Marshal(e)
	if code, ans := rawPut(t, b, "SYS-A", e.ID, enc, ""); code != http.StatusCreated {
		t.Fatalf("first PUT: %d %s", code, ans)
	}
	if code, ans := rawPut(t, b, "SYS-A", e.ID, enc, ""); code != http.StatusOK || !strings.Contains(ans, wire.StatusDuplicate) {
		t.Fatalf("second PUT: %d %s", code, ans)
	}
	if b.store.Count() != 1 {
		t.Fatalf("stored %d times", b.store.Count())
	}
	// Same id, other content.
	e.Payload["message"] = "changed"
	enc2, _ := event.Marshal(e)
	if code, ans := rawPut(t, b, "SYS-A", e.ID, enc2, ""); code != http.StatusUnprocessableEntity || !strings.Contains(ans, "different content") {
		t.Fatalf("conflicting PUT: %d %s", code, ans)
	}
	// Another device cannot send events in SYS-A's name.
	e2 := alert(event.SeverityError, 2)
	e2.SystemID = "SYS-A"
	enc3, _ := event.Marshal(e2)
	if code, ans := rawPut(t, b, "SYS-B", e2.ID, enc3, ""); code != http.StatusUnprocessableEntity || !strings.Contains(ans, "does not match") {
		t.Fatalf("PUT as another device: %d %s", code, ans)
	}
	// A wrong digest.
	if code, ans := rawPut(t, b, "SYS-A", e2.ID, enc3, wire.ContentDigest([]byte("x"))); code != http.StatusBadRequest || !strings.Contains(ans, "Content-Digest") {
		t.Fatalf("bad digest: %d %s", code, ans)
	}
	// Path and body disagree.
	e3 := alert(event.SeverityError, 3)
	e3.SystemID = "SYS-A"
	enc4, _ := event.Marshal(e3)
	if code, _ := rawPut(t, b, "SYS-A", gen.New(), enc4, ""); code != http.StatusBadRequest {
		t.Fatalf("mismatched path: %d", code)
	}
	// An undeclared field is refused at the backend too.
	bad := bytes.Replace(enc4, []byte("message"), []byte("mezzage"), 1)
	if code, ans := rawPut(t, b, "SYS-A", e3.ID, bad, ""); code != http.StatusUnprocessableEntity || !strings.Contains(ans, "reportable-items") {
		t.Fatalf("undeclared field: %d %s", code, ans)
	}
}

func TestRejectedEventIsQuarantinedByAgent(t *testing.T) {
	b := startBackend(t, t.TempDir())
	dir := t.TempDir()
	// The spool stamps SYS-OTHER, but the certificate says SYS-REAL.
	a := startAgent(t, dir, b.addr(), deviceTLS(t, b.ca, "SYS-REAL"), "SYS-OTHER", connecthome.Options{}, nil)
	e := alert(event.SeverityCritical, 0)
	if err := a.sp.Put(e); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused event to leave the spool", func() bool { return a.sp.Len() == 0 })
	note, err := os.ReadFile(filepath.Join(dir, "quarantine", e.ID+".rejected.reason"))
	if err != nil || !strings.Contains(string(note), "does not match") {
		t.Fatalf("quarantine note: %q %v", note, err)
	}
	if b.store.Count() != 0 || a.up.Status().Rejected != 1 {
		t.Fatalf("count %d, status %+v", b.store.Count(), a.up.Status())
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	b := startBackend(t, t.TempDir())
	b.store.SetUnavailable(3 * time.Second)
	a := startAgent(t, t.TempDir(), b.addr(), deviceTLS(t, b.ca, "SYS-RA"), "SYS-RA", connecthome.Options{}, nil)
	before := time.Now()
	if err := a.sp.Put(alert(event.SeverityError, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed attempt", func() bool { return a.up.Status().LastError != "" })
	st := a.up.Status()
	// The back-off alone would retry within 50-500 ms; Retry-After: 3 wins.
	if st.NextAttempt.Sub(before) < 3*time.Second {
		t.Fatalf("next attempt at +%v, Retry-After was 3s", st.NextAttempt.Sub(before))
	}
	if !strings.Contains(st.LastError, "503") {
		t.Fatalf("last error %q", st.LastError)
	}
	b.store.SetUnavailable(0)
	a.up.Wake()
	waitFor(t, "delivery after the backend is back", func() bool { return b.store.Count() == 1 })
	waitFor(t, "the uploader to see the success", func() bool { return a.up.Status().FailingSince.IsZero() })
}

func TestCorruptSpoolFileIsQuarantinedRestStillSent(t *testing.T) {
	b := startBackend(t, t.TempDir())
	dir := t.TempDir()
	a := startAgent(t, dir, b.addr(), deviceTLS(t, b.ca, "SYS-C"), "SYS-C", connecthome.Options{}, nil)
	a.stop() // fill the spool while nothing uploads
	sp := openSpoolForTest(t, dir, "SYS-C")
	for i := 0; i < 20; i++ {
		if err := sp.Put(alert(event.SeverityWarning, i)); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*.spl"))
	data, _ := os.ReadFile(files[7])
	data[20] ^= 0x55
	os.WriteFile(files[7], data, 0o600)

	a2 := startAgent(t, dir, b.addr(), deviceTLS(t, b.ca, "SYS-C"), "SYS-C", connecthome.Options{}, nil)
	waitFor(t, "19 events at the backend", func() bool { return b.store.Count() == 19 })
	waitFor(t, "an empty spool", func() bool { return a2.sp.Len() == 0 })
	if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*.reason")); len(q) != 1 {
		t.Fatalf("quarantine: %v", q)
	}
}

func TestStoreSurvivesRestartAndCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var in []Incoming
	for i := 0; i < 5; i++ {
		e := alert(event.SeverityNotice, i)
		e.SystemID = "SYS-R"
		enc, _ := event.Marshal(e)
		in = append(in, Incoming{Data: enc, SystemID: "SYS-R", Channel: ChannelHTTPS})
	}
	res, err := s.Store(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status != wire.StatusStored {
			t.Fatalf("%+v", r)
		}
	}
	s.Close()
	// A crash in the middle of writing the next batch.
	f, _ := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 1, 0, 9, 9})
	f.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Count() != 5 {
		t.Fatalf("after restart %d events", s2.Count())
	}
	for _, x := range in {
		e, _ := event.Unmarshal(x.Data)
		got, ok := s2.Get(e.ID)
		if !ok || !bytes.Equal(got.Data, x.Data) {
			t.Fatalf("event %s lost or changed", e.ID)
		}
	}
	if torn, _ := filepath.Glob(filepath.Join(dir, "torn-*.bin")); len(torn) != 1 {
		t.Fatalf("torn tail not kept: %v", torn)
	}
	// Duplicates are recognised after the restart.
	res, _ = s2.Store(in[:2])
	if res[0].Status != wire.StatusDuplicate {
		t.Fatalf("after restart: %+v", res[0])
	}
}

func TestBatchEndpointAnswersPerEvent(t *testing.T) {
	b := startBackend(t, t.TempDir())
	good := alert(event.SeverityInfo, 0)
	good.SystemID = "SYS-B"
	foreign := alert(event.SeverityInfo, 1)
	foreign.SystemID = "SYS-X"
	g, _ := event.Marshal(good)
	f, _ := event.Marshal(foreign)
	body, _ := wire.EncodeBatch([][]byte{g, f, g, []byte("junk")})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: deviceTLS(t, b.ca, "SYS-B")}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+b.addr()+wire.BatchPath, bytes.NewReader(body))
	req.Header.Set("Content-Digest", wire.ContentDigest(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var br wire.BatchResponse
	json.NewDecoder(resp.Body).Decode(&br)
	got := strings.Join([]string{br.Results[0].Status, br.Results[1].Status, br.Results[2].Status, br.Results[3].Status}, " ")
	if got != "stored rejected duplicate rejected" {
		t.Fatalf("results %+v", br.Results)
	}
}
