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
	"testing"

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
