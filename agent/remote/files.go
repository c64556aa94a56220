package remote

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/work"
)

// BundlePath is the path a FileFetch names to get the support bundle.
const BundlePath = "support-bundle"

// ChunkSize is the most bytes one file_chunk event carries.
const ChunkSize = 128 << 10

// InboxDir is the folder, under the state directory, that files sent to
// the device land in.
const InboxDir = "inbox"

// fileFetch sends an allowed file (or the support bundle) home in chunks.
func (m *Manager) fileFetch(ctx context.Context, workID string, ff work.FileFetch) (bool, string) {
	refuse := func(reason string) (bool, string) {
		m.record(audit.KindFileFetch, "", map[string]string{"path": clipText(ff.Path), "request": workID, "status": "refused", "reason": reason})
		return false, "file fetch refused: " + reason
	}
	if m.opts.Events == nil {
		return refuse("no spool to send it through")
	}
	var open func() (io.ReadCloser, int64, error)
	if ff.Path == BundlePath {
		open = func() (io.ReadCloser, int64, error) {
			b, err := m.bundle(ctx)
			if err != nil {
				return nil, 0, err
			}
			return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
		}
	} else {
		root, rel, err := m.allowedPath(ff.Path)
		if err != nil {
			return refuse(err.Error())
		}
		open = func() (io.ReadCloser, int64, error) {
			defer root.Close()
			return openRegular(root, rel, m.opts.Config.FetchMaxBytes)
		}
	}
	out := m.opts.Policy.Authorize(ctx, policy.Request{ID: workID, Action: "file-fetch", Detail: "send " + ff.Path + " to the vendor"})
	if !out.Allowed {
		return refuse("policy: " + out.Reason)
	}
	f, size, err := open()
	if err != nil {
		return refuse(err.Error())
	}
	defer f.Close()
	transfer := newTransferID()
	digest, chunks, err := m.sendChunks(f, size, ff.Path, transfer)
	if err != nil {
		return refuse(err.Error())
	}
	m.record(audit.KindFileFetch, "", map[string]string{"path": ff.Path, "request": workID, "status": "sent", "size": fmt.Sprint(size), "digest": digest, "chunks": fmt.Sprint(chunks), "transfer": transfer})
	return true, fmt.Sprintf("%s (%d bytes, sha256 %s) sent home in %d chunk(s) as transfer %s", ff.Path, size, digest, chunks, transfer)
}

func newTransferID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// allowedPath finds the fetch path that holds p and returns a root opened
// on the folder to look in and p's name relative to it.
func (m *Manager) allowedPath(p string) (*os.Root, string, error) {
	if p == "" || !filepath.IsAbs(p) {
		return nil, "", fmt.Errorf("path %q is not absolute", clipText(p))
	}
	if filepath.Clean(p) != p || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return nil, "", fmt.Errorf("path %q is not clean (no .., no //, no trailing /)", clipText(p))
	}
	for _, allowed := range m.opts.Config.FetchPaths {
		fi, err := os.Lstat(allowed)
		if err != nil {
			continue
		}
		switch {
		case fi.IsDir() && strings.HasPrefix(p, allowed+"/"):
			root, err := os.OpenRoot(allowed)
			if err != nil {
				return nil, "", fmt.Errorf("fetch path %s: %w", allowed, err)
			}
			return root, strings.TrimPrefix(p, allowed+"/"), nil
		case fi.Mode().IsRegular() && p == allowed:
			root, err := os.OpenRoot(filepath.Dir(allowed))
			if err != nil {
				return nil, "", fmt.Errorf("fetch path %s: %w", allowed, err)
			}
			return root, filepath.Base(allowed), nil
		}
	}
	return nil, "", fmt.Errorf("path %s is not under [remote] fetch_paths", p)
}

// openRegular opens rel under root: a regular file (not a link) of at most
// max bytes. The Lstat refuses anything else before it is opened (opening
// a device can have effects of its own), and openChecked checks again on
// the opened file, since rel can be replaced between the two.
func openRegular(root *os.Root, rel string, max int64) (io.ReadCloser, int64, error) {
	li, err := root.Lstat(rel)
	if err != nil {
		return nil, 0, cleanRootErr(err)
	}
	if li.Mode()&fs.ModeSymlink != 0 {
		return nil, 0, fmt.Errorf("%s is a symbolic link: not followed", rel)
	}
	if !li.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is %s, not a regular file", rel, fileKind(li.Mode()))
	}
	return openChecked(root, rel, max)
}

// openChecked opens rel under root without blocking and keeps it only if
// the opened file is regular and at most max bytes. O_NONBLOCK matters for
// a named pipe: a blocking open waits for a writer, holding the work item
// and the manager's Close with it. On a regular file it changes nothing.
func openChecked(root *os.Root, rel string, max int64) (io.ReadCloser, int64, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, cleanRootErr(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is %s, not a regular file (it changed while being opened)", rel, fileKind(fi.Mode()))
	}
	if fi.Size() > max {
		f.Close()
		return nil, 0, fmt.Errorf("%s is %d bytes, more than [remote] fetch_max_bytes (%d)", rel, fi.Size(), max)
	}
	return f, fi.Size(), nil
}

// fileKind names a file type for a refusal.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a folder"
	}
	return "not a regular file"
}

// cleanRootErr says plainly that os.Root refused a path leaving its folder.
func cleanRootErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		return fmt.Errorf("%s leads outside its allowed folder: refused", pe.Path)
	}
	return err
}

// sendChunks reads exactly size bytes from r and puts them in the spool as
// file_chunk events. It returns the whole file's digest and the number of
// chunks.
func (m *Manager) sendChunks(r io.Reader, size int64, name, transfer string) (string, int, error) {
	total := int((size + ChunkSize - 1) / ChunkSize)
	if total == 0 {
		total = 1 // an empty file is one empty chunk
	}
	whole := sha256.New()
	buf := make([]byte, ChunkSize)
	var sent int64
	for i := 0; i < total; i++ {
		n := int(min(int64(ChunkSize), size-sent))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return "", 0, fmt.Errorf("read %s: %w (it shrank while being read?)", name, err)
		}
		sent += int64(n)
		whole.Write(buf[:n])
		sum := sha256.Sum256(buf[:n])
		payload := map[string]any{
			"transfer_id": transfer, "path": name, "index": i, "total": total, "size": size,
			"sha256": hex.EncodeToString(sum[:]), "data": append([]byte(nil), buf[:n]...),
		}
		if i == total-1 {
			payload["file_sha256"] = hex.EncodeToString(whole.Sum(nil))
		}
		if err := m.opts.Events.Put(&event.Event{Type: event.TypeFileChunk, Severity: event.SeverityInfo, Created: time.Now().UTC(), Payload: payload}); err != nil {
			return "", 0, fmt.Errorf("spool: %w", err)
		}
	}
	return hex.EncodeToString(whole.Sum(nil)), total, nil
}

// bundle assembles the support bundle: a tar.gz of the regular files under
// the fetch paths (symbolic links skipped, two folder levels deep) and the
// daemon's extra parts, at most fetch_max_bytes.
func (m *Manager) bundle(ctx context.Context) ([]byte, error) {
	var out bytes.Buffer
	gz := gzip.NewWriter(&out)
	tw := tar.NewWriter(gz)
	budget := m.opts.Config.FetchMaxBytes
	var skipped []string
	add := func(name string, data []byte, mod time.Time) error {
		if int64(len(data)) > budget {
			skipped = append(skipped, name)
			return nil
		}
		budget -= int64(len(data))
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if m.opts.BundleParts != nil {
		parts := m.opts.BundleParts(ctx)
		names := make([]string, 0, len(parts))
		for n := range parts {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := add("agent/"+path.Clean("/" + n)[1:], parts[n], time.Now()); err != nil {
				return nil, err
			}
		}
	}
	for _, allowed := range m.opts.Config.FetchPaths {
		if err := m.addTree(add, allowed, &skipped); err != nil {
			return nil, err
		}
	}
	manifest := fmt.Sprintf("dcagent support bundle\ncreated %s\nfetch paths: %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(m.opts.Config.FetchPaths, ", "))
	if len(skipped) > 0 {
		manifest += "left out (too big, links or unreadable): " + strings.Join(skipped, ", ") + "\n"
	}
	if err := add("MANIFEST.txt", []byte(manifest), time.Now()); err != nil {
		return nil, err
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (m *Manager) addTree(add func(string, []byte, time.Time) error, allowed string, skipped *[]string) error {
	fi, err := os.Lstat(allowed)
	if err != nil {
		*skipped = append(*skipped, allowed)
		return nil
	}
	if fi.Mode().IsRegular() {
		root, err := os.OpenRoot(filepath.Dir(allowed))
		if err != nil {
			*skipped = append(*skipped, allowed)
			return nil
		}
		defer root.Close()
		return addFile(add, root, filepath.Base(allowed), allowed, m.opts.Config.FetchMaxBytes, skipped)
	}
	if !fi.IsDir() {
		*skipped = append(*skipped, allowed)
		return nil
	}
	root, err := os.OpenRoot(allowed)
	if err != nil {
		*skipped = append(*skipped, allowed)
		return nil
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			*skipped = append(*skipped, path.Join(allowed, p))
			return nil
		}
		if d.IsDir() {
			if strings.Count(p, "/") >= 2 {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			*skipped = append(*skipped, path.Join(allowed, p))
			return nil
		}
		return addFile(add, root, p, path.Join(allowed, p), m.opts.Config.FetchMaxBytes, skipped)
	})
}

func addFile(add func(string, []byte, time.Time) error, root *os.Root, rel, full string, max int64, skipped *[]string) error {
	f, size, err := openRegular(root, rel, max)
	if err != nil {
		*skipped = append(*skipped, full)
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, size))
	if err != nil {
		*skipped = append(*skipped, full)
		return nil
	}
	return add(strings.TrimPrefix(full, "/"), data, time.Now())
}

// filePut verifies a file sent to the device and puts it in the inbox.
func (m *Manager) filePut(ctx context.Context, workID string, fp work.FilePut) (bool, string) {
	sum := sha256.Sum256(fp.Content)
	digest := hex.EncodeToString(sum[:])
	refuse := func(reason string) (bool, string) {
		m.record(audit.KindFilePut, "", map[string]string{"name": clipText(fp.Name), "size": fmt.Sprint(len(fp.Content)), "digest": digest, "request": workID, "status": "refused", "reason": reason})
		return false, "file refused: " + reason
	}
	if !validFileName(fp.Name) {
		return refuse(fmt.Sprintf("name %q is not 1-128 of A-Z a-z 0-9 . _ - (and does not start with a dot)", clipText(fp.Name)))
	}
	if int64(len(fp.Content)) > m.opts.Config.InboxMaxBytes {
		return refuse(fmt.Sprintf("%d bytes, more than [remote] inbox_max_bytes (%d)", len(fp.Content), m.opts.Config.InboxMaxBytes))
	}
	if m.vendorKey == nil {
		return refuse(fmt.Sprintf("no vendor key to verify it with (%v)", m.keyErr))
	}
	if err := policy.VerifySignature(m.vendorKey, policy.DomainFile, signedNamed(fp.Name, fp.Content), fp.Signature); err != nil {
		return refuse("the vendor signature does not verify: the file was changed or not signed by the vendor")
	}
	out := m.opts.Policy.Authorize(ctx, policy.Request{ID: workID, Action: "file-put", Detail: fmt.Sprintf("receive %s (%d bytes) into the inbox", fp.Name, len(fp.Content))})
	if !out.Allowed {
		return refuse("policy: " + out.Reason)
	}
	dir := filepath.Join(m.opts.StateDir, InboxDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return refuse(err.Error())
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return refuse(err.Error())
	}
	defer root.Close()
	if err := writeInRoot(root, fp.Name, fp.Content); err != nil {
		return refuse(err.Error())
	}
	m.record(audit.KindFilePut, "", map[string]string{"name": fp.Name, "size": fmt.Sprint(len(fp.Content)), "digest": digest, "request": workID, "status": "stored"})
	return true, fmt.Sprintf("%s (%d bytes, sha256 %s) stored in %s", fp.Name, len(fp.Content), digest, dir)
}

// writeInRoot writes data under a temporary name, syncs it, and renames it
// to name: a reader never sees half a file, and the rename replaces a
// link at name rather than writing through it.
func writeInRoot(root *os.Root, name string, data []byte) error {
	tmp := ".tmp-" + newTransferID()
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		root.Remove(tmp)
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

// signedNamed is what the vendor signs for a named file or script: the
// name, a zero byte, the content.
func signedNamed(name string, content []byte) []byte {
	m := make([]byte, 0, len(name)+1+len(content))
	m = append(m, name...)
	m = append(m, 0)
	return append(m, content...)
}

// SignNamed signs a file or script for the device (the backend's side;
// domain is policy.DomainFile or policy.DomainScript).
func SignNamed(signer crypto.Signer, domain, name string, content []byte) ([]byte, error) {
	return policy.Sign(signer, domain, signedNamed(name, content))
}

func validFileName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
