package batch

import (
	"errors"
	"os"
	"path/filepath"
)

// A backup copies the files of the jobs running in its snapshot (qxtd
// backup carries them in the backup's own file, so that a restore resumes
// those jobs). A job that ends removes its file; while a backup is
// between its snapshot and its copies, that removal waits (HoldFiles),
// so every job running in the snapshot still has its file to copy.

// HoldFiles defers the removal of ended jobs' files until release is
// called (once; several holds may overlap). Take it before the snapshot:
// a job that ends after it keeps its file until the copy is done.
func (r *Runner) HoldFiles() (release func()) {
	r.mu.Lock()
	r.holds++
	r.mu.Unlock()
	var done bool
	return func() {
		r.mu.Lock()
		if done {
			r.mu.Unlock()
			return
		}
		done = true
		r.holds--
		var run []func()
		if r.holds == 0 {
			run, r.held = r.held, nil
		}
		r.mu.Unlock()
		for _, f := range run {
			f()
		}
	}
}

// afterHolds runs remove (an ended job's file removal) now, or once no
// backup holds the files.
func (r *Runner) afterHolds(remove func()) {
	if remove == nil {
		return
	}
	r.mu.Lock()
	if r.holds > 0 {
		r.held = append(r.held, remove)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	remove()
}

// RunningFile is the file a stored job record still reads, for a job that
// has not ended (nor been cancelled, which ends it at the next start
// without reading): what a backup must carry for the job to resume after
// a restore. ok is false for any other record, or one that does not
// decode.
func RunningFile(record []byte) (path string, ok bool) {
	rec, err := decodeJobRecord(record)
	if err != nil || rec.Final != nil || rec.Cancelled {
		return "", false
	}
	return rec.Path, true
}

// openJobFile opens a resumed job's file: at its stored path or, if that
// is gone, by its name in dir, where a restore put the backup's copy (the
// store restored to another path, or on another machine).
func openJobFile(path, dir string) (*os.File, error) {
	f, err := os.Open(path)
	if err == nil || dir == "" || !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	alt := filepath.Join(dir, filepath.Base(path))
	if alt == filepath.Clean(path) {
		return nil, err
	}
	if f, err2 := os.Open(alt); err2 == nil {
		return f, nil
	}
	return nil, err
}
