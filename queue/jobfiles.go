package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The files of batch jobs running at a backup travel in the backup's own
// file, so that restoring that one file resumes them (qxtd backup):
//
//	jobfiles  id (a bucket of its own) → "name" → the file's base name
//	                                  → chunk number (4 bytes) → up to 1 MiB of it
//
// Only a backup's copy has the bucket (AddJobFiles); a store opened on it
// writes the files back into the spool directory and drops the bucket
// (RestoreJobFiles). A release that does not know the bucket ignores it.

var bucketJobFiles = []byte("jobfiles")

const (
	jobFileChunk = 1 << 20
	// jobFileTxBytes is what one transaction of AddJobFiles writes at
	// most: bbolt holds a transaction's pages in memory until it commits.
	jobFileTxBytes = 8 << 20
)

var jobFileName = []byte("name")

// AddJobFiles puts, into the backup at path (a copy Backup wrote, held by
// nothing else), the file of each job whose record file says is still
// read (batch.RunningFile), and returns how many files and bytes it added.
// A job whose file is gone is left out: restored, it ends failed
// (file_gone) as it would have here. The copy is written without fsync:
// whoever keeps it syncs it (qxtd backup does, and verifies it).
func AddJobFiles(path string, file func(record []byte) (string, bool)) (files int, bytes int64, err error) {
	fail := func(err error) (int, int64, error) {
		return files, bytes, fmt.Errorf("queue: backup's job files: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			files, bytes, err = fail(cerr)
		}
	}()
	type job struct{ id, path string }
	var jobs []job
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if p, ok := file(v); ok {
				jobs = append(jobs, job{string(k), p})
			}
			return nil
		})
	})
	if err != nil {
		return fail(err)
	}
	for _, j := range jobs {
		n, err := addJobFile(db, j.id, j.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return fail(fmt.Errorf("job %s: %w", j.id, err))
		}
		files++
		bytes += n
	}
	return files, bytes, nil
}

// addJobFile copies the file at path into db as job id's, a few chunks a
// transaction.
func addJobFile(db *bolt.DB, id, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		all, err := tx.CreateBucketIfNotExists(bucketJobFiles)
		if err != nil {
			return err
		}
		b, err := all.CreateBucket([]byte(id))
		if err != nil {
			return err
		}
		return b.Put(jobFileName, []byte(filepath.Base(path)))
	})
	if err != nil {
		return 0, err
	}
	var n int64
	for chunk, done := uint32(0), false; !done; {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketJobFiles).Bucket([]byte(id))
			for w := 0; w < jobFileTxBytes; chunk++ {
				// A buffer a chunk: bbolt keeps a value's slice, not a
				// copy, until the transaction commits.
				buf := make([]byte, jobFileChunk)
				m, err := io.ReadFull(f, buf)
				if m > 0 {
					if err := b.Put(binary.BigEndian.AppendUint32(nil, chunk), buf[:m]); err != nil {
						return err
					}
					n += int64(m)
					w += m
				}
				switch {
				case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
					done = true
					return nil
				case err != nil:
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// RestoreJobFiles writes the job files a backup carried (AddJobFiles) into
// dir, each under its name unless a file of that name is there, and then
// drops them from the store (kept if one could not be written, for the
// next start to try again); it returns the paths it wrote. Call it at
// start, before the jobs resume: a store that is no restored backup has
// none, and this costs a lookup.
func (s *Store) RestoreJobFiles(ctx context.Context, dir string) (written []string, err error) {
	var bad []error // a file that cannot be written does not keep the others back
	err = s.view(func(tx *bolt.Tx) error {
		all := tx.Bucket(bucketJobFiles)
		if all == nil {
			return nil
		}
		return all.ForEach(func(id, v []byte) error {
			b := all.Bucket(id)
			if v != nil || b == nil {
				return nil
			}
			name := string(b.Get(jobFileName))
			if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
				bad = append(bad, fmt.Errorf("%w: job %q: a file named %q", ErrCorrupt, id, name))
				return nil
			}
			to := filepath.Join(dir, name)
			if _, err := os.Lstat(to); err == nil {
				return nil // the spool's own copy (the directory restored too)
			}
			if err := writeJobFile(to, b); err != nil {
				bad = append(bad, fmt.Errorf("job %q: %w", id, err))
				return nil
			}
			written = append(written, to)
			return nil
		})
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		// Kept: the next start tries again (a full disk, say).
		return written, fmt.Errorf("queue: restore job files: %w", err)
	}
	err = s.exec(ctx, func(t *txn) error {
		err := t.tx.DeleteBucket(bucketJobFiles)
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return written, fmt.Errorf("queue: restore job files: %w", err)
	}
	return written, nil
}

// writeJobFile writes b's chunks, in order, to a new file at to: synced,
// then renamed into place, and the directory synced.
func writeJobFile(to string, b *bolt.Bucket) error {
	tmp, err := os.CreateTemp(filepath.Dir(to), ".restoring-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	next := uint32(0)
	err = b.ForEach(func(k, v []byte) error {
		if string(k) == string(jobFileName) {
			return nil
		}
		if len(k) != 4 || binary.BigEndian.Uint32(k) != next {
			return fmt.Errorf("%w: chunk %x out of order", ErrCorrupt, k)
		}
		next++
		_, err := tmp.Write(v)
		return err
	})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), to)
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(to))
}
