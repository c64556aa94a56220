package remote

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/work"
)

// reassemble joins the chunks of one transfer and checks each chunk's
// digest, the count and the whole file's digest.
func reassemble(t *testing.T, evs []*event.Event) []byte {
	t.Helper()
	var out bytes.Buffer
	var fileSum string
	for i, e := range evs {
		p := e.Payload
		if e.Type != event.TypeFileChunk || p["index"] != i || p["total"] != len(evs) {
			t.Fatalf("chunk %d: %+v", i, p)
		}
		data := p["data"].([]byte)
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != p["sha256"] {
			t.Fatalf("chunk %d digest", i)
		}
		out.Write(data)
		if s, ok := p["file_sha256"].(string); ok {
			fileSum = s
		}
	}
	whole := sha256.Sum256(out.Bytes())
	if fileSum != hex.EncodeToString(whole[:]) {
		t.Fatal("file digest missing or wrong in the last chunk")
	}
	return out.Bytes()
}

func TestFileFetch(t *testing.T) {
	logs := t.TempDir()
	secret := t.TempDir()
	os.WriteFile(filepath.Join(secret, "shadow"), []byte("secret"), 0o600)
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes: 3 chunks
	os.WriteFile(filepath.Join(logs, "agent.log"), big, 0o600)
	os.WriteFile(filepath.Join(logs, "empty.log"), nil, 0o600)
	os.Mkdir(filepath.Join(logs, "sub"), 0o700)
	os.WriteFile(filepath.Join(logs, "sub", "x.log"), []byte("x"), 0o600)
	os.Symlink(filepath.Join(secret, "shadow"), filepath.Join(logs, "escape"))
	os.Symlink("agent.log", filepath.Join(logs, "inside-link"))
	os.Symlink(secret, filepath.Join(logs, "dirlink"))
	os.WriteFile(filepath.Join(logs, "huge.log"), make([]byte, 2<<20), 0o600)
	single := filepath.Join(t.TempDir(), "messages")
	os.WriteFile(single, []byte("one file"), 0o600)

	f := newFixture(t, "all file-fetch allow\n", func(c *Remote) { c.FetchPaths = []string{logs, single}; c.FetchMaxBytes = 1 << 20 })
	fetch := func(p string) work.Result {
		return f.m.Handle(context.Background(), item(work.KindFileFetch, work.FileFetch{Path: p}))
	}
	r := fetch(filepath.Join(logs, "agent.log"))
	if !r.OK {
		t.Fatal(r.Detail)
	}
	evs := f.sink.all()
	if len(evs) != 3 || !bytes.Equal(reassemble(t, evs), big) {
		t.Fatalf("%d chunks", len(evs))
	}
	if evs[0].Payload["path"] != filepath.Join(logs, "agent.log") || evs[0].Payload["size"] != int64(len(big)) {
		t.Fatalf("chunk payload %+v", evs[0].Payload)
	}
	for _, p := range []string{filepath.Join(logs, "empty.log"), filepath.Join(logs, "sub", "x.log"), single} {
		if r := fetch(p); !r.OK {
			t.Fatalf("%s: %s", p, r.Detail)
		}
	}
	refused := map[string]string{
		filepath.Join(logs, "..", filepath.Base(secret), "shadow"): "not clean",
		logs + "/sub/../agent.log":                                 "not clean",
		"agent.log":                                                "not absolute",
		filepath.Join(secret, "shadow"):                            "not under [remote] fetch_paths",
		filepath.Join(logs, "escape"):                              "symbolic link",
		filepath.Join(logs, "inside-link"):                         "symbolic link",
		filepath.Join(logs, "dirlink", "shadow"):                   "outside its allowed folder",
		filepath.Join(logs, "sub"):                                 "not a regular file",
		filepath.Join(logs, "huge.log"):                            "more than [remote] fetch_max_bytes",
		filepath.Join(logs, "missing.log"):                         "no such file",
		single + "/x":                                              "not under",
	}
	before := len(f.sink.all())
	for p, want := range refused {
		if r := fetch(p); r.OK || !strings.Contains(r.Detail, want) {
			t.Errorf("%s: %+v, want %q", p, r, want)
		}
	}
	if len(f.sink.all()) != before {
		t.Fatal("a refused fetch sent chunks")
	}
	recs := f.records(t, audit.KindFileFetch)
	if len(recs) != 4+len(refused) || recs[0].Fields["status"] != "sent" || recs[0].Fields["chunks"] != "3" {
		t.Fatalf("%d fetch records: %+v", len(recs), recs[0].Fields)
	}

	// Policy decides too.
	f2 := newFixture(t, "all file-fetch deny\n", func(c *Remote) { c.FetchPaths = []string{logs} })
	r = f2.m.Handle(context.Background(), item(work.KindFileFetch, work.FileFetch{Path: filepath.Join(logs, "agent.log")}))
	if r.OK || !strings.Contains(r.Detail, "policy") || len(f2.sink.all()) != 0 {
		t.Fatalf("denied fetch: %+v", r)
	}
}

func TestSupportBundle(t *testing.T) {
	logs := t.TempDir()
	os.WriteFile(filepath.Join(logs, "agent.log"), []byte("log line\n"), 0o600)
	os.Symlink("/etc/passwd", filepath.Join(logs, "passwd"))
	f := newFixture(t, "all file-fetch allow\n", func(c *Remote) { c.FetchPaths = []string{logs} })
	f.m.opts.BundleParts = func(context.Context) map[string][]byte {
		return map[string][]byte{"status.json": []byte(`{"ok":true}`)}
	}
	r := f.m.Handle(context.Background(), item(work.KindFileFetch, work.FileFetch{Path: BundlePath}))
	if !r.OK {
		t.Fatal(r.Detail)
	}
	data := reassemble(t, f.sink.all())
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	if files[strings.TrimPrefix(filepath.Join(logs, "agent.log"), "/")] != "log line\n" || files["agent/status.json"] != `{"ok":true}` {
		t.Fatalf("bundle holds %v", files)
	}
	if !strings.Contains(files["MANIFEST.txt"], "passwd") {
		t.Fatalf("the skipped link is not named in the manifest:\n%s", files["MANIFEST.txt"])
	}
	for name := range files {
		if strings.Contains(name, "passwd") {
			t.Fatalf("a link was followed into the bundle: %s", name)
		}
	}
}

func TestFilePut(t *testing.T) {
	f := newFixture(t, "all file-put allow\n", func(c *Remote) { c.InboxMaxBytes = 1024 })
	put := func(name string, content []byte, domain string) work.Result {
		sig, err := SignNamed(f.vendor, domain, name, content)
		if err != nil {
			t.Fatal(err)
		}
		return f.m.Handle(context.Background(), item(work.KindFilePut, work.FilePut{Name: name, Content: content, Signature: sig}))
	}
	inbox := filepath.Join(f.dir, InboxDir)
	if r := put("fw-notes.txt", []byte("new notes"), policy.DomainFile); !r.OK {
		t.Fatal(r.Detail)
	}
	if b, err := os.ReadFile(filepath.Join(inbox, "fw-notes.txt")); err != nil || string(b) != "new notes" {
		t.Fatalf("inbox: %q %v", b, err)
	}
	// A link planted at the name is replaced, not written through.
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("untouched"), 0o600)
	os.Symlink(target, filepath.Join(inbox, "planted"))
	if r := put("planted", []byte("data"), policy.DomainFile); !r.OK {
		t.Fatal(r.Detail)
	}
	if b, _ := os.ReadFile(target); string(b) != "untouched" {
		t.Fatal("the write followed a planted link")
	}
	if fi, _ := os.Lstat(filepath.Join(inbox, "planted")); fi.Mode()&os.ModeSymlink != 0 {
		t.Fatal("the link is still there")
	}

	cases := []struct {
		name    string
		content []byte
		domain  string
		tamper  bool
		want    string
	}{
		{"../escape", []byte("x"), policy.DomainFile, false, "is not 1-128"},
		{"a/b", []byte("x"), policy.DomainFile, false, "is not 1-128"},
		{".hidden", []byte("x"), policy.DomainFile, false, "is not 1-128"},
		{"big.bin", make([]byte, 1025), policy.DomainFile, false, "more than [remote] inbox_max_bytes"},
		{"script-sig.txt", []byte("x"), policy.DomainScript, false, "signature does not verify"},
		{"tampered.txt", []byte("x"), policy.DomainFile, true, "signature does not verify"},
	}
	for _, c := range cases {
		sig, _ := SignNamed(f.vendor, c.domain, c.name, c.content)
		content := c.content
		if c.tamper {
			content = []byte("y")
		}
		r := f.m.Handle(context.Background(), item(work.KindFilePut, work.FilePut{Name: c.name, Content: content, Signature: sig}))
		if r.OK || !strings.Contains(r.Detail, c.want) {
			t.Errorf("%s: %+v, want %q", c.name, r, c.want)
		}
	}
	ents, _ := os.ReadDir(inbox)
	if len(ents) != 2 {
		t.Fatalf("inbox holds %d entries, want 2", len(ents))
	}
	// Renaming a signed file makes its signature invalid.
	sig, _ := SignNamed(f.vendor, policy.DomainFile, "a.txt", []byte("x"))
	if r := f.m.Handle(context.Background(), item(work.KindFilePut, work.FilePut{Name: "b.txt", Content: []byte("x"), Signature: sig})); r.OK {
		t.Fatal("a signature moved to another name was accepted")
	}
	if n := len(f.records(t, audit.KindFilePut)); n != 2+len(cases)+1 {
		t.Fatalf("%d file.put records", n)
	}

	// Without a vendor key nothing is accepted.
	f2 := newFixture(t, "all file-put allow\n", nil)
	f2.m.vendorKey, f2.m.keyErr = nil, os.ErrNotExist
	if r := f2.m.Handle(context.Background(), item(work.KindFilePut, work.FilePut{Name: "a", Content: []byte("x")})); r.OK || !strings.Contains(r.Detail, "no vendor key") {
		t.Fatalf("%+v", r)
	}
}

// unblockFIFO opens a named pipe for writing and closes it, which releases
// a reader stuck in a blocking open (so a failing test does not hang).
func unblockFIFO(p string) {
	if w, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
		w.Close()
	}
}

// A named pipe in a fetch folder is refused at once with a reason that says
// what it is, and the manager still closes: opening it must not wait for a
// writer.
func TestFileFetchRefusesFIFO(t *testing.T) {
	logs := t.TempDir()
	fifo := filepath.Join(logs, "pipe.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "all file-fetch allow\n", func(c *Remote) { c.FetchPaths = []string{logs} })
	ch := f.handleAsync(item(work.KindFileFetch, work.FileFetch{Path: fifo}))
	var r work.Result
	select {
	case r = <-ch:
	case <-time.After(20 * time.Second):
		unblockFIFO(fifo)
		<-ch
		t.Fatal("fetching a named pipe still blocked after 20s")
	}
	if r.OK || !strings.Contains(r.Detail, "pipe.log is a named pipe (FIFO), not a regular file") {
		t.Fatalf("%+v", r)
	}
	if recs := f.records(t, audit.KindFileFetch); len(recs) != 1 || recs[0].Fields["status"] != "refused" || !strings.Contains(recs[0].Fields["reason"], "named pipe") {
		t.Fatalf("fetch records %+v", recs)
	}
	if len(f.sink.all()) != 0 {
		t.Fatal("chunks were sent for a named pipe")
	}
	// The support bundle leaves it out and says so.
	ch = f.handleAsync(item(work.KindFileFetch, work.FileFetch{Path: BundlePath}))
	select {
	case r = <-ch:
	case <-time.After(20 * time.Second):
		unblockFIFO(fifo)
		<-ch
		t.Fatal("the support bundle still blocked on a named pipe after 20s")
	}
	if !r.OK {
		t.Fatal(r.Detail)
	}
	closed := make(chan struct{})
	go func() { f.m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		unblockFIFO(fifo)
		t.Fatal("Manager.Close still blocked after 20s")
	}
}

// A file that was regular when listed or checked but is a named pipe by the
// time it is opened (swapped in between): the open does not block, and the
// opened file is refused.
func TestOpenCheckedRefusesSwappedFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "app.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	type result struct {
		f   io.ReadCloser
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, _, err := openChecked(root, "app.log", 1<<20)
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			r.f.Close()
			t.Fatal("a named pipe was opened for reading as a file")
		}
		if !strings.Contains(r.err.Error(), "app.log is a named pipe (FIFO), not a regular file (it changed while being opened)") {
			t.Fatalf("reason: %v", r.err)
		}
	case <-time.After(20 * time.Second):
		unblockFIFO(filepath.Join(dir, "app.log"))
		<-done
		t.Fatal("opening a named pipe blocked for 20s")
	}
	// A regular file still opens, whole.
	os.WriteFile(filepath.Join(dir, "ok.log"), []byte("fine\n"), 0o600)
	f, size, err := openChecked(root, "ok.log", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); size != 5 || string(b) != "fine\n" {
		t.Fatalf("read %q (size %d)", b, size)
	}
}
