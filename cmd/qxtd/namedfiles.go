package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Files the configuration names: secrets (*_file), certificates and keys
// (smpp.tls_*, http.tls_*) and CA bundles (upstreams[].tls_ca_file). Each
// is read whole, at start and again at every SIGHUP, so each kind has a
// bound far above any real file of its kind: a path to something else (a
// log, a disk image) is refused naming the file and the bound instead of
// being read until memory runs out. Only a regular file is read, through
// any symlinks (Kubernetes mounts secrets as symlinks, Debian's
// /etc/ssl/certs is one): a FIFO would hold the start, or a reload, until
// something wrote to it, and a device such as /dev/zero never ends.
//
// Every reader of such a file is in this package, so the helper is here
// too, beside the configuration it serves (the configuration file itself
// is read by readConfigFile, yamlbounds.go).

// fileKind is a kind of file the configuration names, with its bound.
type fileKind struct {
	what  string // for errors: "a CA bundle"
	limit int64  // bytes
}

var (
	// kindCABundle: Debian's whole ca-certificates bundle, 144 CAs, is
	// 215 KiB (/etc/ssl/certs/ca-certificates.crt, 2026); 4 MiB holds
	// some 2,600 CAs.
	kindCABundle = fileKind{"a CA bundle", 4 << 20}
	// kindKeyPair: an RSA-4096 certificate is 1.8 KiB of PEM, a chain of
	// four some 7 KiB, an RSA-8192 key 6.2 KiB; 1 MiB still takes a
	// certificate, its key and the whole system bundle pasted into one.
	kindKeyPair = fileKind{"a certificate or key file", 1 << 20}
	// kindSecret: a password or token is a few dozen bytes.
	kindSecret = fileKind{"a secret", 64 << 10}
)

// The errors of readNamedFile, under the path and the bound it names.
var (
	errFileTooLarge   = errors.New("too large")
	errNotRegularFile = errors.New("not a regular file")
)

// readNamedFile reads the regular file at path whole, at most k.limit
// bytes, and returns its content and its mode. Errors name path, not the
// key that named it (callers add the key): past the bound one wraps
// errFileTooLarge, for a FIFO, device, directory or socket
// errNotRegularFile.
func readNamedFile(path string, k fileKind) ([]byte, fs.FileMode, error) {
	// O_NONBLOCK: opening a FIFO to read waits for a writer without it.
	// It changes nothing for a regular file, and the type is checked on
	// what was opened, so a path swapped after a check cannot slip by.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err // *PathError: "open PATH: …"
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: %w (%s); %s is read from a file", path, errNotRegularFile, fileType(fi.Mode()), k.what)
	}
	b, err := io.ReadAll(io.LimitReader(f, k.limit+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > k.limit {
		return nil, 0, fmt.Errorf("%s: %w: more than %s, the bound of %s", path, errFileTooLarge, byteSize(k.limit), k.what)
	}
	return b, fi.Mode(), nil
}

// fileType names the type of a file that is not a regular one.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "type " + m.Type().String()
}

// byteSize writes a bound: "4 MiB", "64 KiB", "100 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
