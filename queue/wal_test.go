package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// walRecorder follows a WAL under test: every write it releases to the
// state file, and what each commit left behind.
type walRecorder struct {
	mu     sync.Mutex
	writes []fileWrite // released to the file since the store was opened
}

type fileWrite struct {
	off  int64
	data []byte
}

func (r *walRecorder) attach(w *WAL) {
	w.onFileWrite = func(b []byte, off int64) {
		r.mu.Lock()
		r.writes = append(r.writes, fileWrite{off, bytes.Clone(b)})
		r.mu.Unlock()
	}
}

func (r *walRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes)
}

// dumpDB returns every bucket's keys, values and sequence, nested
// buckets included, as one map.
func dumpDB(t testing.TB, db *bolt.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string, b *bolt.Bucket) error
	walk = func(prefix string, b *bolt.Bucket) error {
		out[prefix+"#seq"] = fmt.Sprint(b.Sequence())
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+"/"+string(k), b.Bucket(k))
			}
			out[prefix+"/"+string(k)] = string(v)
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// randomCommit makes one transaction of random writes: puts of small and
// page-overflowing values, deletes, a nested bucket now and then, a
// sequence bump.
func randomCommit(t testing.TB, db *bolt.DB, rng *rand.Rand) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		for range 1 + rng.IntN(20) {
			name := fmt.Sprintf("b%d", rng.IntN(3))
			b, err := tx.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			key := fmt.Appendf(nil, "k%04d", rng.IntN(400))
			switch n := rng.IntN(10); {
			case n < 6:
				size := 10 + rng.IntN(300)
				if rng.IntN(20) == 0 {
					size = 5000 + rng.IntN(20000) // overflow pages
				}
				v := make([]byte, size)
				for i := range v {
					v[i] = byte(rng.IntN(256))
				}
				err = b.Put(key, v)
			case n < 9:
				err = b.Delete(key)
			default:
				nb, cerr := b.CreateBucketIfNotExists([]byte("nested"))
				if cerr != nil {
					return cerr
				}
				if _, err = nb.NextSequence(); err == nil {
					err = nb.Put(key, []byte("x"))
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// walCommit is what the test knows after one commit: enough to build
// the disk a power loss could leave at that point.
type walCommit struct {
	epoch  int // checkpoints before it
	segLen int64
	writes int // writes released to the file up to and including it
	dump   map[string]string
}

// walEpoch is the log between two checkpoints: one segment's use.
type walEpoch struct {
	base    []byte // the file on disk at the checkpoint that began it
	writes  int    // writes released before that checkpoint
	segSeq  uint64
	initial []byte // the segment as the checkpoint made it: its header, then a spare's old records
	final   []byte // the segment when it was retired, end record included
}

// TestWALPowerLoss runs random commits through the write-ahead log,
// with checkpoints between some, and then builds what a power loss could
// have left on disk at many points: the file as of the last checkpoint,
// with any subset (in order) of the 4 KiB blocks written to it since; the
// log segment as far as it was fdatasync'd, or with the last record cut
// short, over what the segment held before (a spare's records of an
// earlier use); now and then the segment before it, whose retirement had
// not reached the disk. Opening each must give back exactly the last
// commit whose record was whole, and pass bbolt's page check.
func TestWALPowerLoss(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	db, w, err := OpenWAL(path, Options{}, WALOptions{SegmentBytes: 1 << 40, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rec := &walRecorder{}
	rec.attach(w)
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	segNow := func() (uint64, int64) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.segSeq, w.segLen
	}
	seq, _ := segNow()
	epochs := []*walEpoch{{base: read(path), segSeq: seq, initial: read(walSegmentName(path, seq))}}
	w.onCheckpoint = func() {
		// Runs after the file's fdatasync: this is the file on disk.
		b, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
		}
		epochs = append(epochs, &walEpoch{base: b, writes: rec.count()})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	commits := []walCommit{{epoch: 0, segLen: walSegHeader, dump: dumpDB(t, db)}}
	for i := range 160 {
		randomCommit(t, db, rng)
		_, segLen := segNow()
		commits = append(commits, walCommit{epoch: len(epochs) - 1, segLen: segLen, writes: rec.count(), dump: dumpDB(t, db)})
		if i%40 == 39 {
			if err := w.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			prev, e := epochs[len(epochs)-2], epochs[len(epochs)-1]
			prev.final = read(path + walSpare) // retired, end record and all
			e.segSeq, _ = segNow()
			e.initial = read(walSegmentName(path, e.segSeq))
		}
	}
	last := epochs[len(epochs)-1]
	last.final = read(walSegmentName(path, last.segSeq))
	if len(epochs) != 5 {
		t.Fatalf("%d epochs, want 5", len(epochs))
	}
	if len(epochs[2].initial) <= walSegHeader {
		t.Fatal("the third segment was not made from the spare")
	}
	final := commits[len(commits)-1].dump
	if err := w.Close(db, nil); err != nil {
		t.Fatal(err)
	}
	if segs, _ := walSegments(path); len(segs) != 0 {
		t.Fatalf("Close left segments %v", segs)
	}
	// seg is the segment on disk with its first n bytes written.
	seg := func(e *walEpoch, n int64) []byte {
		img := bytes.Clone(e.final[:n])
		if int64(len(e.initial)) > n {
			img = append(img, e.initial[n:]...)
		}
		return img
	}

	// A sample of the crash points (each costs a file's write, open and
	// page check), of every variant, in every epoch.
	trials := 0
	for range 60 {
		k := 1 + rng.IntN(len(commits)-1)
		c, prev := commits[k], commits[k-1]
		e := epochs[c.epoch]
		crash := t.TempDir()
		cpath := filepath.Join(crash, "state.db")
		segImg := seg(e, c.segLen)
		writes := rec.writes[e.writes:c.writes]
		want := c.dump
		switch variant := rng.IntN(3); {
		case variant == 1 && prev.epoch == c.epoch: // commit k's record cut short: none of its writes released
			segImg = seg(e, prev.segLen+1+rng.Int64N(c.segLen-prev.segLen-1))
			writes = rec.writes[e.writes:prev.writes]
			want = prev.dump
		case variant == 2 && prev.epoch == c.epoch: // the power failed while commit k's writes were released
			writes = rec.writes[e.writes : prev.writes+rng.IntN(c.writes-prev.writes+1)]
		}
		// Any subset of the 4 KiB blocks written since the checkpoint,
		// in order, over the file as the checkpoint left it.
		img := bytes.Clone(e.base)
		for _, fw := range writes {
			for o := 0; o < len(fw.data); o += 4096 {
				if rng.IntN(2) == 0 {
					continue
				}
				end := min(o+4096, len(fw.data))
				at := int(fw.off) + o
				if need := at + end - o; need > len(img) {
					img = append(img, make([]byte, need-len(img))...)
				}
				copy(img[at:], fw.data[o:end])
			}
		}
		if err := os.WriteFile(cpath, img, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(walSegmentName(cpath, e.segSeq), segImg, 0o600); err != nil {
			t.Fatal(err)
		}
		if c.epoch > 0 && rng.IntN(2) == 0 {
			// The checkpoint's retirement of the segment before may not
			// have reached the disk.
			old := epochs[c.epoch-1]
			if err := os.WriteFile(walSegmentName(cpath, old.segSeq), old.final, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got := reopenDump(t, cpath)
		if !maps.Equal(got, want) {
			t.Fatalf("commit %d: after replay the file holds %d keys, want %d; first difference: %s",
				k, len(got), len(want), firstDiff(got, want))
		}
		trials++
	}
	if !maps.Equal(reopenDump(t, path), final) {
		t.Fatal("the file closed cleanly does not hold the last commit")
	}
	t.Logf("%d power-loss images checked", trials)
}

// reopenDump opens path as the daemon would after a crash (OpenDB replays
// the log), checks its pages and the log's removal, and dumps it.
func reopenDump(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := OpenDB(path, Options{})
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	defer db.Close()
	if segs, _ := walSegments(path); len(segs) != 0 {
		t.Fatalf("the replay left segments %v", segs)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("page check after replay: %v", err)
	}
	return dumpDB(t, db)
}

func firstDiff(got, want map[string]string) string {
	keys := slices.Sorted(maps.Keys(want))
	for _, k := range keys {
		if g, ok := got[k]; !ok {
			return k + " missing"
		} else if g != want[k] {
			return k + " differs"
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			return k + " should not be there"
		}
	}
	return "none"
}

// TestWALSeesEveryWrite checks that bbolt writes nothing to the file but
// through the log: the writes bbolt counts are the writes the log
// released, the log holds a record per commit, and the file has not been
// fdatasync'd by bbolt (NoSync) — the log is what makes commits durable.
func TestWALSeesEveryWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, w, err := OpenWAL(path, Options{}, WALOptions{Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(db, nil)
	rec := &walRecorder{}
	rec.attach(w)
	st := db.Stats()
	before := st.TxStats.GetWrite()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		randomCommit(t, db, rng)
	}
	st = db.Stats()
	bboltWrites := st.TxStats.GetWrite() - before
	if got := int64(rec.count()); got != bboltWrites || got == 0 {
		t.Fatalf("the log released %d writes to the file; bbolt made %d", got, bboltWrites)
	}
	seg, err := os.ReadFile(walSegmentName(path, 1))
	if err != nil {
		t.Fatal(err)
	}
	n, ended, err := replaySegment(bytes.NewReader(seg), 1, discardWriterAt{})
	if err != nil || ended || n != 20 {
		t.Fatalf("the segment holds %d whole records (ended %v, err %v), want 20", n, ended, err)
	}
	if !db.NoSync {
		t.Fatal("bbolt still fdatasyncs its commits")
	}
}

type discardWriterAt struct{}

func (discardWriterAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// TestWALFailedAppend: a commit whose record cannot be made durable
// fails, leaves nothing in the file or the log, and the next commit works.
func TestWALFailedAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, w, err := OpenWAL(path, Options{}, WALOptions{Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	put := func(k string) error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put([]byte(k), []byte("v"))
		})
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}
	// The segment is made read-only under the log: its append fails.
	w.mu.Lock()
	good := w.seg
	ro, err := os.Open(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	w.seg = ro
	w.mu.Unlock()
	if err := put("lost"); err == nil {
		t.Fatal("a commit whose record could not be appended succeeded")
	}
	w.mu.Lock()
	w.seg = good
	w.mu.Unlock()
	_ = ro.Close()
	if err := put("after"); err != nil {
		t.Fatalf("the commit after a failed append: %v", err)
	}
	got := dumpDB(t, db)
	if err := w.Close(db, nil); err != nil {
		t.Fatal(err)
	}
	if got["b/lost"] != "" || got["b/before"] != "v" || got["b/after"] != "v" {
		t.Fatalf("after a failed append the file holds %v", got)
	}
	if after := reopenDump(t, path); !maps.Equal(after, got) {
		t.Fatalf("reopened: %v, want %v", after, got)
	}
}

// TestWALReplayRefusesDamage: a segment whose records stop before its
// end record, followed by a segment with records, is damage, not a
// crash's torn tail: the open fails and says so, and the file is left as
// it was. Without records after it, it is the torn tail, and opens.
func TestWALReplayRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	db, err := OpenDB(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	w := &WAL{path: path, pageSize: 4096}
	appendRecord := func(seq, nonce uint64, payload []byte, chunks uint32, crcBroken bool) {
		t.Helper()
		rec := append(make([]byte, walRecHeader), payload...)
		sealRecord(rec, nonce, chunks)
		if crcBroken {
			rec[20] ^= 0xff
		}
		f, err := os.OpenFile(walSegmentName(path, seq), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	chunk := func(off uint64, data string) []byte {
		c := make([]byte, walChunkHead)
		binary.LittleEndian.PutUint64(c, off)
		binary.LittleEndian.PutUint32(c[8:], uint32(len(data)))
		return append(c, data...)
	}
	var nonces [3]uint64
	for seq := uint64(1); seq <= 2; seq++ {
		f, nonce, err := w.newSegment(seq)
		if err != nil {
			t.Fatal(err)
		}
		nonces[seq] = nonce
		_ = f.Close()
	}
	fi, _ := os.Stat(path)
	far := uint64(fi.Size() + 1<<20)
	appendRecord(1, nonces[1], chunk(far, "damaged"), 1, true)
	appendRecord(2, nonces[2], chunk(far, "whole"), 1, false)
	before, _ := os.ReadFile(path)
	_, err = OpenDB(path, Options{})
	if !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "later segments hold records") {
		t.Fatalf("open over a damaged log: %v, want ErrWALDamaged naming the later segments", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("a refused replay changed the file")
	}
	// The same damage at the end of the last segment is a torn tail.
	if err := os.Remove(walSegmentName(path, 2)); err != nil {
		t.Fatal(err)
	}
	db, err = OpenDB(path, Options{})
	if err != nil {
		t.Fatalf("open over a torn tail: %v", err)
	}
	_ = db.Close()
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the torn record was written to the file")
	}
}

// FuzzWALSegment: replaying any bytes as a log segment ends in records
// replayed, its end, or ErrWALDamaged, never a panic, and writes only
// what whole records carry.
func FuzzWALSegment(f *testing.F) {
	const nonce = 0x0123456789abcdef
	h := segHeader(1, nonce, 4096)
	valid := bytes.Clone(h[:])
	for i := range 2 {
		payload := make([]byte, walChunkHead, walChunkHead+16)
		binary.LittleEndian.PutUint64(payload[0:], uint64(8192+i*4096))
		binary.LittleEndian.PutUint32(payload[8:], 16)
		payload = append(payload, "sixteen bytes!!!"...)
		rec := append(make([]byte, walRecHeader), payload...)
		sealRecord(rec, nonce, 1)
		valid = append(valid, rec...)
	}
	end := make([]byte, walRecHeader)
	sealRecord(end, nonce, walEndChunks)
	f.Add(append(bytes.Clone(valid), end...))
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add(h[:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var w boundedWriterAt
		n, _, err := replaySegment(bytes.NewReader(data), 1, &w)
		if err != nil && !errors.Is(err, ErrWALDamaged) {
			t.Fatalf("error not ErrWALDamaged: %v", err)
		}
		if n == 0 && w.bytes > 0 {
			t.Fatal("wrote bytes without a whole record")
		}
		if w.bytes > len(data) {
			t.Fatalf("wrote %d bytes from a %d-byte segment", w.bytes, len(data))
		}
	})
}

type boundedWriterAt struct{ bytes int }

func (w *boundedWriterAt) WriteAt(p []byte, _ int64) (int, error) {
	w.bytes += len(p)
	return len(p), nil
}
