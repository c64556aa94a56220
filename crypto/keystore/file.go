package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

func init() { Register("file", openFile) }

// fileStore keeps the key as a PKCS#8 PEM file. It exists so that a
// developer can run the agent on a laptop; a device never should, since
// anyone who copies the file becomes the device.
type fileStore struct {
	path string
}

func openFile(ctx context.Context, uri string, opts Options) (Store, error) {
	u, err := ParseFileURI(uri)
	if err != nil {
		return nil, err
	}
	path := u.Resolve(opts.StateDir)
	opts.logger().Warn("keystore: the device key is a plain file: for development only, never on a device (anyone who copies it becomes this device); use a tpm: or pkcs11: key URI", "path", path)
	return &fileStore{path: path}, nil
}

func (s *fileStore) Describe() string {
	return "software key in the file " + s.path + " (development only: a copy of the file is a copy of the device)"
}

func (s *fileStore) Close() error { return nil }

func (s *fileStore) Signer(ctx context.Context) (crypto.Signer, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keystore: file %s: %w (make one with dcagent key generate)", s.path, ErrNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("keystore: file %s holds no PKCS#8 PEM private key", s.path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keystore: file %s: %w", s.path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keystore: file %s: %T cannot sign", s.path, k)
	}
	return signer, nil
}

func (s *fileStore) Generate(ctx context.Context, alg Algorithm) (crypto.Signer, error) {
	if _, err := os.Stat(s.path); err == nil {
		return nil, fmt.Errorf("keystore: file %s: %w", s.path, ErrKeyExists)
	}
	var (
		key crypto.Signer
		err error
	)
	switch alg {
	case ECCP256, "":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("keystore: unknown algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := WriteFileAtomic(s.path, data, 0o600); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return key, nil
}

// WriteFileAtomic writes data to path so that a crash leaves either the
// old file or the new one, never a part: a temporary file in the same
// directory, fsync, rename, fsync of the directory. The directory is made
// (0700) when missing. A file that exists is replaced.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
