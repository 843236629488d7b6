package queue

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// The write-ahead log (OpenWAL) puts one sequential write and one
// fdatasync in front of each of bbolt's commits, where bbolt alone pays
// two fdatasyncs and a write per dirty page scattered over the file
// (RESULTS.md, *What a commit's I/O costs*). It is physical: a commit's
// record is every page bbolt writes in it, meta page last, exactly as
// bbolt would write them to the file. The file gets those writes only
// after the record is on disk, and is fdatasync'd only at checkpoints.
//
// Why that is enough after a power loss: the file as it was at the last
// checkpoint is on disk; every write to it since is in a record that was
// on disk before the write was made; so writing the records again, in
// order, over whatever subset of those writes reached the disk gives back
// the file as it was after the last record — the last commit whose caller
// may have been answered. A record cut short by the crash belongs to a
// commit whose caller was not answered and whose writes never reached the
// file; it is dropped. This needs no knowledge of bbolt's tree, only that
// every write bbolt makes to the file passes through the log, which
// hookWrites makes sure of.
//
// A checkpoint starts a new segment, fdatasyncs the file (everything
// written before the switch is then on disk) and retires the older
// segments. A retired segment is kept as the spare that the next
// checkpoint starts from: overwriting blocks a file already has is about
// half the cost of appending to it (an append's fdatasync must also
// commit the file's new size: ~175 against ~260-500 µs of CPU a commit
// here), so records from an earlier use of the file follow the live
// ones. Each segment's header draws a random nonce that its records
// repeat, so that a replay stops at the first record that is not of this
// use; a segment that was switched from ends with an end record, so that
// damage in it is told from its end.
//
//	segment header: "QXTDWAL2" | seq u64 | nonce u64 | page size u32 | crc32c u32 (of the 28 bytes before)
//	record:         walRecMagic u32 | payload length u32 | nonce u64 | chunks u32 | crc32c u32 (of the 20 bytes before and the payload) | payload
//	payload:        chunks × (file offset u64 | length u32 | bytes)
//	end record:     a record of no payload and walEndChunks chunks
//
// All integers little-endian.

const (
	walSegMagic   = "QXTDWAL2"
	walSegHeader  = 32
	walRecMagic   = 0x32524c57 // "WLR2"
	walRecHeader  = 24
	walChunkHead  = 12
	walEndChunks  = 0xffffffff
	walSuffix     = "-wal."
	walSpare      = "-wal.spare"
	walMaxPayload = 1 << 30 // a record longer than this is damage, not a commit
)

var walCRC = crc32.MakeTable(crc32.Castagnoli)

// ErrWALDamaged is a log segment that cannot be replayed: a damaged
// record that is not the last thing written (the tail a crash cut short
// is expected and dropped), or a header that is not a log's.
var ErrWALDamaged = errors.New("write-ahead log damaged")

// WAL is a state file's write-ahead log, from OpenWAL. Its methods are
// safe for concurrent use; bbolt calls its hook under its writer lock.
type WAL struct {
	path     string // the state file; segments are path-wal.NNNNNNNN
	pageSize int
	file     *os.File // the state file, for the writes the log releases and checkpoints
	log      *slog.Logger
	maxSeg   int64
	every    time.Duration

	// Under bbolt's writer lock only (the hook's state for the commit
	// being written).
	rec     []byte     // the record being built
	pending []walWrite // its chunks, to write to the file after the record

	ckMu sync.Mutex // one checkpoint at a time

	mu       sync.Mutex // the segment being appended to, and the checkpoint's switch
	seg      *os.File
	segSeq   uint64
	segNonce uint64
	segLen   int64    // bytes of the header and the whole records in seg
	old      []string // segments the next checkpoint retires
	closed   bool
	failed   error // a write or fdatasync of seg failed and its tail could not be cut

	kick chan struct{} // a segment passed maxSeg
	stop chan struct{}
	done chan struct{}

	// testing hooks: onFileWrite sees every write released to the file,
	// onCheckpoint runs after a checkpoint's fdatasync of the file.
	onFileWrite  func(b []byte, off int64)
	onCheckpoint func()
}

type walWrite struct {
	off        int64
	start, end int // in rec
}

// WALOptions tune OpenWAL; the zero value is the default.
type WALOptions struct {
	// SegmentBytes starts a checkpoint once a segment holds this much
	// (default 64 MiB): it bounds the log's disk (two segments) and a
	// replay's work.
	SegmentBytes int64
	// Interval starts a checkpoint at least this often while commits come
	// (default 10 s), so that the file is never far behind on disk.
	Interval time.Duration
}

// OpenWAL opens the state file at path, as OpenDB does, with its
// write-ahead log: every commit is made durable by one write to the log
// and one fdatasync of it instead of bbolt's own two fdatasyncs of the
// file. A log left by a crash is replayed first (OpenDB replays it too).
// Close it with (*WAL).Close, which closes db: CloseDB must not be used.
func OpenWAL(path string, opt Options, wopt WALOptions) (*bolt.DB, *WAL, error) {
	if opt.NoSync {
		return nil, nil, fmt.Errorf("queue: open %s: a write-ahead log with NoSync is pointless", path)
	}
	db, err := OpenDB(path, opt) // replays what a crash left
	if err != nil {
		return nil, nil, err
	}
	w, err := startWAL(db, opt.withDefaults().Logger, wopt)
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	return db, w, nil
}

func startWAL(db *bolt.DB, log *slog.Logger, wopt WALOptions) (*WAL, error) {
	if wopt.SegmentBytes <= 0 {
		wopt.SegmentBytes = 64 << 20
	}
	if wopt.Interval <= 0 {
		wopt.Interval = 10 * time.Second
	}
	f, err := os.OpenFile(db.Path(), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("write-ahead log: %w", err)
	}
	w := &WAL{
		path:     db.Path(),
		pageSize: db.Info().PageSize,
		file:     f,
		log:      log,
		maxSeg:   wopt.SegmentBytes,
		every:    wopt.Interval,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	// Numbers only grow, across restarts too: the spare's old header
	// must never name the segment it becomes (see replaySegment).
	first := spareSeq(w.path) + 1
	if w.seg, w.segNonce, err = w.newSegment(first); err != nil {
		_ = f.Close()
		return nil, err
	}
	w.segSeq, w.segLen = first, walSegHeader
	if err := hookWrites(db, w.writeAt); err != nil {
		_ = w.seg.Close()
		_ = os.Remove(w.seg.Name())
		_ = f.Close()
		return nil, err
	}
	// Only now: every commit from here on goes through the log.
	db.NoSync = true
	go w.checkpoints()
	return w, nil
}

// hookWrites routes every write bbolt makes to db's file through hook.
// bbolt has no option for it: it writes through an unexported function
// field (DB.ops.writeAt, set to the file's WriteAt by Open), which is set
// here. The field is looked up by name and type, so a bbolt that moved it
// fails here, at open, rather than leaving commits unlogged; go.mod pins
// bbolt, and TestWALSeesEveryWrite checks that the hook sees every write.
func hookWrites(db *bolt.DB, hook func([]byte, int64) (int, error)) error {
	ops := reflect.ValueOf(db).Elem().FieldByName("ops")
	if !ops.IsValid() || ops.Kind() != reflect.Struct {
		return errors.New("write-ahead log: this bbolt has no DB.ops: the log cannot see its writes")
	}
	f := ops.FieldByName("writeAt")
	if !f.IsValid() || f.Type() != reflect.TypeOf(hook) {
		return errors.New("write-ahead log: this bbolt has no DB.ops.writeAt of the known type: the log cannot see its writes")
	}
	*(*func([]byte, int64) (int, error))(unsafe.Pointer(f.UnsafeAddr())) = hook
	return nil
}

// writeAt is bbolt's write to the file. Pages are kept for the commit's
// record; the meta page, which bbolt writes last, makes the record whole:
// it is written to the log and fdatasync'd, and only then are the pages
// and the meta page written to the file (its page cache: bbolt reads them
// back through its map). bbolt holds its writer lock, and its meta lock
// for the meta page, meanwhile.
func (w *WAL) writeAt(b []byte, off int64) (int, error) {
	if len(w.rec) == 0 {
		w.rec = append(w.rec, make([]byte, walRecHeader)...)
	}
	var head [walChunkHead]byte
	binary.LittleEndian.PutUint64(head[0:], uint64(off))
	binary.LittleEndian.PutUint32(head[8:], uint32(len(b)))
	w.rec = append(w.rec, head[:]...)
	start := len(w.rec)
	w.rec = append(w.rec, b...) // bbolt reuses b once this returns
	w.pending = append(w.pending, walWrite{off: off, start: start, end: len(w.rec)})
	if off >= 2*int64(w.pageSize) {
		return len(b), nil // a page: the meta page comes last
	}
	err := w.commit()
	w.rec, w.pending = w.rec[:0], w.pending[:0]
	if cap(w.rec) > 4<<20 {
		w.rec = nil // a bulk commit's record: do not keep its size around
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// sealRecord fills in the header of rec (header and payload) for a
// segment of nonce.
func sealRecord(rec []byte, nonce uint64, chunks uint32) {
	binary.LittleEndian.PutUint32(rec[0:], walRecMagic)
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(rec)-walRecHeader))
	binary.LittleEndian.PutUint64(rec[8:], nonce)
	binary.LittleEndian.PutUint32(rec[16:], chunks)
	c := crc32.Update(crc32.Checksum(rec[:20], walCRC), walCRC, rec[walRecHeader:])
	binary.LittleEndian.PutUint32(rec[20:], c)
}

// commit writes the record in w.rec to the log, makes it durable, and
// writes its chunks to the file.
func (w *WAL) commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("write-ahead log: closed")
	}
	if w.failed != nil {
		if err := w.cutTail(); err != nil {
			return fmt.Errorf("write-ahead log: %w", w.failed)
		}
	}
	sealRecord(w.rec, w.segNonce, uint32(len(w.pending)))
	if err := w.append(w.rec); err != nil {
		return err
	}
	// The record is durable: the file may have its writes now, in order.
	// A failure here leaves the commit in the log (a replay redoes it) and
	// bbolt rolls it back in memory; its pages were free ones, and the
	// next commit rewrites the meta page it failed on.
	for _, p := range w.pending {
		if _, err := w.file.WriteAt(w.rec[p.start:p.end], p.off); err != nil {
			return fmt.Errorf("write-ahead log: write the state file: %w", err)
		}
		if w.onFileWrite != nil {
			w.onFileWrite(w.rec[p.start:p.end], p.off)
		}
	}
	if w.segLen >= w.maxSeg {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// append writes rec at the end of seg's records and fdatasyncs it; w.mu
// is held.
func (w *WAL) append(rec []byte) error {
	if _, err := w.seg.WriteAt(rec, w.segLen); err != nil {
		return w.fail(fmt.Errorf("write-ahead log: append: %w", err))
	}
	if err := fdatasync(w.seg); err != nil {
		return w.fail(fmt.Errorf("write-ahead log: fdatasync: %w", err))
	}
	w.segLen += int64(len(rec))
	return nil
}

// fail records a failed append or fdatasync, tries to cut what it may
// have left after the segment's records (a replay would stop at it, and
// miss the records after), and returns err. Until that is cut, commits
// fail.
func (w *WAL) fail(err error) error {
	w.failed = err
	if cerr := w.cutTail(); cerr != nil && w.log != nil {
		w.log.Error("write-ahead log: cannot cut a failed append; commits fail until it can", "err", cerr)
	}
	return err
}

// cutTail truncates the segment to its whole records and syncs that.
func (w *WAL) cutTail() error {
	if err := w.seg.Truncate(w.segLen); err != nil {
		return err
	}
	if err := fdatasync(w.seg); err != nil {
		return err
	}
	w.failed = nil
	return nil
}

// checkpoints runs a checkpoint every Interval while commits come, and
// when a segment is full.
func (w *WAL) checkpoints() {
	defer close(w.done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
		}
		if err := w.Checkpoint(); err != nil && w.log != nil {
			w.log.Warn("write-ahead log: checkpoint failed; the log keeps growing until one succeeds", "err", err)
		}
	}
}

// Checkpoint makes the file on disk hold every commit so far, and retires
// the log segments that held them. Commits go on meanwhile, into a new
// segment. It does nothing if the log holds no record.
func (w *WAL) Checkpoint() error {
	w.ckMu.Lock()
	defer w.ckMu.Unlock()
	w.mu.Lock()
	if w.closed || w.segLen == walSegHeader && len(w.old) == 0 {
		w.mu.Unlock()
		return nil
	}
	seq := w.segSeq + 1
	w.mu.Unlock()
	// The next segment is made durable (its name too) before any record
	// goes into it.
	next, nonce, err := w.newSegment(seq)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		_ = next.Close()
		_ = os.Remove(next.Name())
		return nil
	}
	// The end record tells a replay that the records of this segment end
	// here and the next segment's follow: without it, what follows the
	// last record that checks is damage, if the next segment has records.
	end := make([]byte, walRecHeader)
	sealRecord(end, w.segNonce, walEndChunks)
	if err := w.append(end); err != nil {
		w.mu.Unlock()
		_ = next.Close()
		_ = os.Remove(next.Name())
		return err
	}
	prev := w.seg
	w.old = append(w.old, prev.Name())
	w.seg, w.segSeq, w.segNonce, w.segLen = next, seq, nonce, walSegHeader
	w.mu.Unlock()
	_ = prev.Close()
	return w.syncAndRetire()
}

// syncAndRetire fdatasyncs the file, which then holds every write
// released to it before (each after its record), and retires the old
// segments: the first becomes the spare, the others are removed.
func (w *WAL) syncAndRetire() error {
	w.mu.Lock()
	old := slices.Clone(w.old)
	w.mu.Unlock()
	if err := fdatasync(w.file); err != nil {
		return fmt.Errorf("write-ahead log: checkpoint: fdatasync the state file: %w", err)
	}
	if w.onCheckpoint != nil {
		w.onCheckpoint()
	}
	spare := w.path + walSpare
	for _, name := range old {
		if _, err := os.Stat(spare); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(name, spare); err == nil {
				continue
			}
		}
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("write-ahead log: checkpoint: %w", err)
		}
	}
	w.mu.Lock()
	w.old = slices.DeleteFunc(w.old, func(n string) bool { return slices.Contains(old, n) })
	w.mu.Unlock()
	// A retirement that a crash undoes only makes the replay longer.
	_ = syncDir(filepath.Dir(w.path))
	return nil
}

// newSegment makes segment seq, from the spare if there is one, with its
// header and a fresh nonce, durably.
func (w *WAL) newSegment(seq uint64) (*os.File, uint64, error) {
	name := walSegmentName(w.path, seq)
	if err := os.Rename(w.path+walSpare, name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("write-ahead log: %w", err)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("write-ahead log: %w", err)
	}
	nonce := rand.Uint64()
	h := segHeader(seq, nonce, w.pageSize)
	if _, err = f.WriteAt(h[:], 0); err == nil {
		err = fdatasync(f)
	}
	if err == nil {
		err = syncDir(filepath.Dir(name))
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(name)
		return nil, 0, fmt.Errorf("write-ahead log: new segment: %w", err)
	}
	return f, nonce, nil
}

// spareSeq is the number in the spare's header (0 if none): the number
// it had when it was retired.
func spareSeq(path string) uint64 {
	f, err := os.Open(path + walSpare)
	if err != nil {
		return 0
	}
	defer f.Close()
	var h [walSegHeader]byte
	if n, _ := f.ReadAt(h[:], 0); n < walSegHeader || string(h[:8]) != walSegMagic {
		return 0
	}
	return binary.LittleEndian.Uint64(h[8:])
}

func segHeader(seq, nonce uint64, pageSize int) [walSegHeader]byte {
	var h [walSegHeader]byte
	copy(h[:], walSegMagic)
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint64(h[16:], nonce)
	binary.LittleEndian.PutUint32(h[24:], uint32(pageSize))
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], walCRC))
	return h
}

// Close ends the log after the last commit: it stops the checkpoints,
// fdatasyncs the file, retires every segment and closes db, after the
// commit that writes the file's free-page list (CloseDB). A commit after
// Close fails.
func (w *WAL) Close(db *bolt.DB, log *slog.Logger) error {
	if !db.IsReadOnly() {
		if err := db.Update(func(tx *bolt.Tx) error {
			tx.DB().NoFreelistSync = false
			return nil
		}); err != nil && log != nil {
			log.Warn("queue: free-page list not written: the next start walks the whole file first", "err", err)
		}
	}
	close(w.stop)
	<-w.done
	w.ckMu.Lock()
	defer w.ckMu.Unlock()
	w.mu.Lock()
	w.closed = true
	w.old = append(w.old, w.seg.Name())
	_ = w.seg.Close()
	w.mu.Unlock()
	err := w.syncAndRetire()
	if cerr := w.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write-ahead log: %w", cerr)
	}
	if cerr := db.Close(); cerr != nil {
		return fmt.Errorf("queue: close: %w", cerr)
	}
	return err
}

func walSegmentName(path string, seq uint64) string {
	return fmt.Sprintf("%s%s%08d", path, walSuffix, seq)
}

// walSegments lists the log segments of the file at path, oldest first.
func walSegments(path string) ([]string, error) {
	names, err := filepath.Glob(globEscape(path) + walSuffix + "*")
	if err != nil {
		return nil, err
	}
	type seg struct {
		name string
		seq  uint64
	}
	var segs []seg
	for _, n := range names {
		seq, err := strconv.ParseUint(strings.TrimPrefix(n, path+walSuffix), 10, 64)
		if err != nil {
			continue // the spare, or not ours
		}
		segs = append(segs, seg{n, seq})
	}
	slices.SortFunc(segs, func(a, b seg) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.name
	}
	return out, nil
}

// globEscape quotes the glob metacharacters of a path.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// replayWAL writes the records of the log segments left beside path (by
// a crash: Close retires them) into the file, in order, fdatasyncs it and
// removes them. It holds the file's lock meanwhile, so that it never
// writes under a daemon that has the file open. It returns the records
// replayed.
func replayWAL(path string, timeout time.Duration) (int, error) {
	segs, err := walSegments(path)
	if err != nil || len(segs) == 0 {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("write-ahead log: replay: %w", err)
	}
	defer f.Close()
	if err := lockFile(f, timeout); err != nil {
		return 0, fmt.Errorf("write-ahead log: replay: %w", err)
	}
	// Listed again under the lock: a daemon that held it may have closed
	// and retired them meanwhile.
	if segs, err = walSegments(path); err != nil || len(segs) == 0 {
		return 0, err
	}
	// Checked before anything is written: a segment that ends without its
	// end record, followed by one that has records, is damage.
	ends := make([]bool, len(segs))
	counts := make([]int, len(segs))
	for i, name := range segs {
		if counts[i], ends[i], err = scanSegmentFile(name, nil); err != nil {
			return 0, fmt.Errorf("write-ahead log: replay %s: %w", name, err)
		}
	}
	for i := range segs {
		if !ends[i] && slices.ContainsFunc(counts[i+1:], func(n int) bool { return n > 0 }) {
			return 0, fmt.Errorf("write-ahead log: replay %s: %w: its records end before its end record, and later segments hold records (move them and this one away to open the file as it is, losing what they hold)", segs[i], ErrWALDamaged)
		}
	}
	n := 0
	for _, name := range segs {
		k, _, err := scanSegmentFile(name, f)
		n += k
		if err != nil {
			return n, fmt.Errorf("write-ahead log: replay %s: %w", name, err)
		}
	}
	if err := fdatasync(f); err != nil {
		return n, fmt.Errorf("write-ahead log: replay: fdatasync: %w", err)
	}
	for _, name := range segs {
		if err := os.Remove(name); err != nil {
			return n, fmt.Errorf("write-ahead log: replay: %w", err)
		}
	}
	_ = syncDir(filepath.Dir(path))
	return n, nil
}

func scanSegmentFile(name string, f io.WriterAt) (int, bool, error) {
	seq, err := strconv.ParseUint(name[strings.LastIndex(name, walSuffix)+len(walSuffix):], 10, 64)
	if err != nil {
		return 0, false, err
	}
	sf, err := os.Open(name)
	if err != nil {
		return 0, false, err
	}
	defer sf.Close()
	return replaySegment(sf, seq, f)
}

// replaySegment writes the records of segment seq, r, into f (nil: only
// counts them), up to the first that is not whole, not of this segment's
// use, or its end record (ended). err is a header that is not a log
// segment's, a whole record of this use that is malformed, or a failed
// write.
func replaySegment(r io.ReaderAt, seq uint64, f io.WriterAt) (records int, ended bool, err error) {
	var h [walSegHeader]byte
	if n, _ := r.ReadAt(h[:], 0); n < walSegHeader {
		// Created but its header not yet durable: it held no record.
		return 0, false, nil
	}
	if string(h[:8]) != walSegMagic || binary.LittleEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], walCRC) {
		return 0, false, fmt.Errorf("%w: not a log segment header", ErrWALDamaged)
	}
	if binary.LittleEndian.Uint64(h[8:]) != seq {
		// The spare, renamed, whose new header did not reach the disk:
		// no record was written to it, and those of its last use were
		// in the file before it was retired.
		return 0, false, nil
	}
	nonce := binary.LittleEndian.Uint64(h[16:])
	off := int64(walSegHeader)
	var rh [walRecHeader]byte
	for {
		if n, _ := r.ReadAt(rh[:], off); n < walRecHeader {
			return records, false, nil
		}
		size := binary.LittleEndian.Uint32(rh[4:])
		if binary.LittleEndian.Uint32(rh[0:]) != walRecMagic || binary.LittleEndian.Uint64(rh[8:]) != nonce || size > walMaxPayload {
			return records, false, nil // the end of this use's records
		}
		payload := make([]byte, size)
		if n, _ := r.ReadAt(payload, off+walRecHeader); n < int(size) {
			return records, false, nil
		}
		if crc32.Update(crc32.Checksum(rh[:20], walCRC), walCRC, payload) != binary.LittleEndian.Uint32(rh[20:]) {
			return records, false, nil
		}
		chunks := binary.LittleEndian.Uint32(rh[16:])
		if chunks == walEndChunks && size == 0 {
			return records, true, nil
		}
		writes, err := walChunks(payload, chunks)
		if err != nil {
			// Whole and checksummed, yet malformed: not a crash's doing.
			return records, false, fmt.Errorf("%w: record at %d: %v", ErrWALDamaged, off, err)
		}
		if f != nil {
			for _, c := range writes {
				if _, err := f.WriteAt(payload[c.start:c.end], c.off); err != nil {
					return records, false, err
				}
			}
		}
		records++
		off += walRecHeader + int64(size)
	}
}

// walChunks parses a record's payload into its writes.
func walChunks(payload []byte, chunks uint32) ([]walWrite, error) {
	var out []walWrite
	p := 0
	for range chunks {
		if len(payload)-p < walChunkHead {
			return nil, errors.New("chunk header past the payload")
		}
		off := binary.LittleEndian.Uint64(payload[p:])
		n := int(binary.LittleEndian.Uint32(payload[p+8:]))
		p += walChunkHead
		if off > 1<<48 || n > len(payload)-p {
			return nil, fmt.Errorf("chunk of %d bytes at offset %d out of range", n, off)
		}
		out = append(out, walWrite{off: int64(off), start: p, end: p + n})
		p += n
	}
	if p != len(payload) {
		return nil, fmt.Errorf("%d bytes after the last chunk", len(payload)-p)
	}
	return out, nil
}
