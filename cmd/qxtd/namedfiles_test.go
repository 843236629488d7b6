package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// namedFiles is a configuration that names a file of every kind
// readNamedFile bounds: a secret, a certificate and its key, a CA bundle.
type namedFiles struct {
	token, cert, key, ca string
}

// newNamedFiles writes good files of every kind in dir.
func newNamedFiles(t *testing.T, dir string) namedFiles {
	t.Helper()
	ca := newTestCA(t, dir, "ca")
	f := namedFiles{token: filepath.Join(dir, "admin_token"), cert: filepath.Join(dir, "http.crt"), key: filepath.Join(dir, "http.key"), ca: ca.file}
	writeSecret(t, f.token, "admin-token-1\n", 0o600)
	ca.issueFiles(t, 7, f.cert, f.key, "127.0.0.1")
	return f
}

func (f namedFiles) config() []byte {
	return fmt.Appendf(nil, `http:
  admin_token_file: %q
  tls_cert_file: %q
  tls_key_file: %q
upstreams:
  - name: smsc
    addr: 127.0.0.1:2776
    system_id: qxtd
    password: qxtd
    tls: true
    tls_ca_file: %q
`, f.token, f.cert, f.key, f.ca)
}

// namedFileKeys are the keys of namedFiles, with the field each sets and
// the kind of its file.
var namedFileKeys = []struct {
	key  string
	file func(*namedFiles) *string
	kind fileKind
}{
	{"http.admin_token_file", func(f *namedFiles) *string { return &f.token }, kindSecret},
	{"http.tls_cert_file", func(f *namedFiles) *string { return &f.cert }, kindKeyPair},
	{"http.tls_key_file", func(f *namedFiles) *string { return &f.key }, kindKeyPair},
	{"upstreams[0].tls_ca_file", func(f *namedFiles) *string { return &f.ca }, kindCABundle},
}

// loadWithin loads doc as the daemon does at start and at SIGHUP, and
// fails the test if that takes more than 10 s: a FIFO must not hold it.
func loadWithin(t *testing.T, doc []byte) (*Config, error) {
	t.Helper()
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := parseConfig("named.yaml", doc, nil)
		done <- result{cfg, err}
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-timer.C:
		t.Fatal("loading the configuration still runs after 10 s")
		return nil, nil
	}
}

// TestNamedFileSizeBounds: a file of every kind the configuration names
// loads at exactly its bound and is refused one byte past it, the error
// naming the key, the file and the bound.
func TestNamedFileSizeBounds(t *testing.T) {
	t.Parallel()
	for _, k := range namedFileKeys {
		t.Run(k.key, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			f := newNamedFiles(t, dir)
			p := k.file(&f)
			good, err := os.ReadFile(*p)
			if err != nil {
				t.Fatal(err)
			}
			// n bytes of the good file: a token of n bytes, or the PEM
			// after a line of padding, which PEM readers skip.
			sized := func(n int64) string {
				var b []byte
				if k.kind == kindSecret {
					b = bytes.Repeat([]byte("t"), int(n))
				} else {
					b = append(bytes.Repeat([]byte("#"), int(n)-len(good)-1), '\n')
					b = append(b, good...)
				}
				path := filepath.Join(dir, fmt.Sprintf("%d-%s", n, filepath.Base(*p)))
				writeSecret(t, path, string(b), 0o600)
				return path
			}
			*p = sized(k.kind.limit)
			cfg, err := loadWithin(t, f.config())
			if err != nil {
				t.Fatalf("a file of %d bytes, the bound: %v", k.kind.limit, err)
			}
			if k.kind == kindSecret && len(cfg.HTTP.AdminToken) != int(k.kind.limit) {
				t.Errorf("http.admin_token: %d bytes, want %d", len(cfg.HTTP.AdminToken), k.kind.limit)
			}

			*p = sized(k.kind.limit + 1)
			_, err = loadWithin(t, f.config())
			if !errors.Is(err, errFileTooLarge) {
				t.Fatalf("a file of %d bytes: error %v; want errFileTooLarge", k.kind.limit+1, err)
			}
			want := fmt.Sprintf("%s: %s: too large: more than %s", k.key, *p, byteSize(k.kind.limit))
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

// TestNamedFileNotRegular: a FIFO, a device, a directory, or a symlink to
// a device, named where a file of any kind belongs, is refused at once
// with an error naming the key and the path: a FIFO no one writes held the
// start forever, /dev/zero read until memory ran out.
func TestNamedFileNotRegular(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zeroLink := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zeroLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ path, what string }{
		{fifo, "a FIFO"},
		{"/dev/zero", "a character device"},
		{zeroLink, "a character device"},
		{dir, "a directory"},
	} {
		for _, k := range namedFileKeys {
			t.Run(filepath.Base(p.path)+"/"+k.key, func(t *testing.T) {
				t.Parallel()
				f := newNamedFiles(t, t.TempDir())
				*k.file(&f) = p.path
				_, err := loadWithin(t, f.config())
				if !errors.Is(err, errNotRegularFile) {
					t.Fatalf("error %v; want errNotRegularFile", err)
				}
				want := fmt.Sprintf("%s: %s: not a regular file (%s)", k.key, p.path, p.what)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
				}
			})
		}
	}
}

// TestNamedFileSymlinks: files reached through symlinks load, as
// Kubernetes mounts a secret (name -> ..data/name, ..data -> a dated
// directory) and Debian links /etc/ssl/certs.
func TestNamedFileSymlinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dated := filepath.Join(dir, "..2026_12_05_10_00_00.1")
	if err := os.Mkdir(dated, 0o700); err != nil {
		t.Fatal(err)
	}
	real := newNamedFiles(t, dated)
	if err := os.Symlink(filepath.Base(dated), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	var f namedFiles
	for _, k := range namedFileKeys {
		name := filepath.Base(*k.file(&real))
		link := filepath.Join(dir, name)
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
		*k.file(&f) = link
	}
	// One more hop, absolute, as /etc/ssl/certs/ca-certificates.crt.
	ca := filepath.Join(dir, "ca-certificates.crt")
	if err := os.Symlink(f.ca, ca); err != nil {
		t.Fatal(err)
	}
	f.ca = ca
	cfg, err := loadWithin(t, f.config())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.AdminToken != "admin-token-1" {
		t.Errorf("http.admin_token %q through symlinks", cfg.HTTP.AdminToken)
	}
}

// TestNamedFileReload: at SIGHUP the certificate, key and CA bundle are
// read again under the same bounds: one that became too large or a FIFO
// is refused at once, naming the key, and what was loaded stays.
func TestNamedFileReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newNamedFiles(t, dir)
	certs, err := newCertReloader("http", "http.tls_cert_file", f.cert, "http.tls_key_file", f.key)
	if err != nil {
		t.Fatal(err)
	}
	served := certs.cert.Load()
	up, err := newUpstreamTLS(0, UpstreamConfig{Name: "smsc", TLS: true, TLSCAFile: f.ca})
	if err != nil {
		t.Fatal(err)
	}
	pool := up.cfg.Load()

	writeSecret(t, f.cert, strings.Repeat("#", int(kindKeyPair.limit)+1), 0o600)
	if err := os.Remove(f.ca); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(f.ca, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan [2]error, 1)
	go func() {
		_, _, certErr := certs.reload()
		done <- [2]error{certErr, up.reload()}
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	var errs [2]error
	select {
	case errs = <-done:
	case <-timer.C:
		t.Fatal("reload still runs after 10 s")
	}
	if want := "http.tls_cert_file: " + f.cert + ": too large: more than 1 MiB"; !errors.Is(errs[0], errFileTooLarge) || !strings.Contains(errs[0].Error(), want) {
		t.Errorf("certificate reload: %v; want %q", errs[0], want)
	}
	if want := "upstreams[0].tls_ca_file: " + f.ca + ": not a regular file (a FIFO)"; !errors.Is(errs[1], errNotRegularFile) || !strings.Contains(errs[1].Error(), want) {
		t.Errorf("CA bundle reload: %v; want %q", errs[1], want)
	}
	if certs.cert.Load() != served || up.cfg.Load() != pool {
		t.Error("a refused reload replaced what was loaded")
	}
}
