package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// A file's data is made durable by its own fsync, but its name is an entry
// of its directory, and a new directory's name an entry of its parent: a
// power loss can take either, and everything below a lost directory, unless
// that directory was fsync'd after the name changed. POSIX promises no
// more, and cmd/qxtd's TestSoakPowerLoss runs the daemon on a disk that
// holds it to that.

// SyncDir fsyncs the directory dir, making durable the names created,
// renamed or removed in it. A filesystem that cannot sync a directory
// (EINVAL, ENOTSUP: some network and FUSE filesystems) is not an error:
// there is nothing more to do on it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// MkdirAll is os.MkdirAll that makes durable each directory it creates, by
// an fsync of its parent.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	var made []string // missing before, deepest first
	for d := dir; ; {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		made = append(made, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for _, d := range made {
		if err := SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("queue: make %s durable: %w", d, err)
		}
	}
	return nil
}
