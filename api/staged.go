package api

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"sync"
	"time"
)

// Staged uploads (定制发送 in steps): POST /v1/uploads keeps a templated
// send's file spooled so that a page can show its columns, let the user
// pick the number column and compose the template, preview the first rows
// (GET /v1/uploads/{id}/preview) and start the send (POST /v1/batches
// {"upload": …}) without uploading the file again. v1_uploads.go has the
// handlers; this file the table.
//
// A staged file lives in the jobs' temporary directory until a batch
// takes it (the job then owns it and removes it when it ends), until it
// is deleted, or until StagedKeep after its upload: expired files are
// removed at the next request that touches the table, and every staged
// file at Close. The table is bounded — MaxStagedPerEnterprise per
// enterprise, MaxStaged in all, counting the uploads still being received
// — because each entry is a file of up to 50 MiB on the daemon's disk.
//
// In memory an entry keeps what batch.Head returns and the file's name
// (batch.MaxFileName bytes): at most 1,024 columns (package sheet) and
// batch.HeadMaxBytes (256 KiB) of cells in all, plus a string header of
// 16 bytes for each of the 6 × 1,024 cells: 0.36 MiB measured at worst,
// 23 MiB at MaxStaged (before those bounds a 1 MiB header of commas made
// a million columns, each data row padded to them: 97 MiB an upload).

// Limits of staged uploads.
const (
	StagedKeep             = 30 * time.Minute
	MaxStagedPerEnterprise = 4
	MaxStaged              = 64
	stagedHeadRows         = 5 // data rows shown after an upload and in a preview
	stagedPrefix           = "upl_"
)

// stagedUpload is one staged file.
type stagedUpload struct {
	id, ent, owner string
	up             *upload
	columns        []string   // the header, cells trimmed (batch.Head: cut short)
	rows           [][]string // the first data rows (GET /v1/uploads/{id})
	cut            bool       // batch.Head cut a cell or left out rows
	created        time.Time
}

// stagedStore is the table of staged uploads (a field of jobState).
type stagedStore struct {
	mu     sync.Mutex
	now    func() time.Time // Config.Clock
	maxPer int              // 0: MaxStagedPerEnterprise
	maxAll int              // 0: MaxStaged
	byID   map[string]*stagedUpload
	// Counted per enterprise and in all: the staged uploads and those
	// being received (reserve), so that concurrent uploads cannot pass a
	// bound.
	perEnt map[string]int
	all    int
	closed bool
}

// setLimits changes the bounds (tests).
func (st *stagedStore) setLimits(per, all int) {
	st.mu.Lock()
	st.maxPer, st.maxAll = per, all
	st.mu.Unlock()
}

// reserve counts an upload of ent about to be received; false past a
// bound. Call add or unreserve after.
func (st *stagedStore) reserve(ent string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire()
	per, all := st.maxPer, st.maxAll
	if per <= 0 {
		per = MaxStagedPerEnterprise
	}
	if all <= 0 {
		all = MaxStaged
	}
	if st.closed || st.perEnt[ent] >= per || st.all >= all {
		return false
	}
	st.count(ent, 1)
	return true
}

func (st *stagedStore) unreserve(ent string) {
	st.mu.Lock()
	st.count(ent, -1)
	st.mu.Unlock()
}

// count adds d to ent's count and the total (st.mu held).
func (st *stagedStore) count(ent string, d int) {
	if st.perEnt == nil {
		st.perEnt = map[string]int{}
	}
	st.all += d
	if st.perEnt[ent] += d; st.perEnt[ent] <= 0 {
		delete(st.perEnt, ent)
	}
}

// add stages a received upload (reserved before) under a new id; after
// an error the reservation is given back and the file is the caller's.
func (st *stagedStore) add(su *stagedUpload) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	su.id = stagedPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed { // Close ran while the file was received
		st.count(su.ent, -1)
		return errors.New("the daemon is stopping")
	}
	su.created = st.now()
	if st.byID == nil {
		st.byID = map[string]*stagedUpload{}
	}
	st.byID[su.id] = su
	return nil
}

// get is the staged upload id if visible(it) and not expired.
func (st *stagedStore) get(id string, visible func(*stagedUpload) bool) *stagedUpload {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire()
	su := st.byID[id]
	if su == nil || !visible(su) {
		return nil
	}
	return su
}

// take removes the staged upload id (if visible) from the table and
// returns it: its file is the caller's now (put it back with restore).
func (st *stagedStore) take(id string, visible func(*stagedUpload) bool) *stagedUpload {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expire()
	su := st.byID[id]
	if su == nil || !visible(su) {
		return nil
	}
	delete(st.byID, id)
	st.count(su.ent, -1)
	return su
}

// restore puts back an upload taken for a request that failed before its
// job started: the request can be corrected and sent again. It keeps its
// expiry; the bounds are not checked (it held its place a moment ago).
func (st *stagedStore) restore(su *stagedUpload) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		_ = os.Remove(su.up.path)
		return
	}
	st.byID[su.id] = su
	st.count(su.ent, 1)
}

// remove deletes the staged upload id (if visible) and its file.
func (st *stagedStore) remove(id string, visible func(*stagedUpload) bool) bool {
	su := st.take(id, visible)
	if su != nil {
		_ = os.Remove(su.up.path)
	}
	return su != nil
}

// expire removes the uploads staged StagedKeep ago or earlier, with their
// files (st.mu held; the table is small).
func (st *stagedStore) expire() {
	now := st.now()
	for id, su := range st.byID {
		if now.Sub(su.created) >= StagedKeep {
			delete(st.byID, id)
			st.count(su.ent, -1)
			_ = os.Remove(su.up.path)
		}
	}
}

// close removes every staged file; nothing is staged after.
func (st *stagedStore) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for id, su := range st.byID {
		delete(st.byID, id)
		st.count(su.ent, -1)
		_ = os.Remove(su.up.path)
	}
}
