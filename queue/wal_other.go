//go:build !linux

package queue

import (
	"errors"
	"os"
	"time"
)

// The write-ahead log is built for Linux (wal_linux.go). Elsewhere these
// stand-ins keep the package building; OpenWAL's fdatasync is a full
// fsync and a replay does not take the file's lock.

func fdatasync(f *os.File) error { return f.Sync() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func lockFile(*os.File, time.Duration) error { return errors.ErrUnsupported }
