package queue

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// writeAtFunc is the type of bbolt's write to its file.
type writeAtFunc = func([]byte, int64) (int, error)

// hookBoltWrites puts wrap around every write bbolt makes to db's file.
// bbolt has no option for it: it writes through an unexported function
// field (DB.ops.writeAt, set to the file's WriteAt by Open), found here by
// name and type, so that a bbolt that moved it fails the test instead of
// leaving it blind.
func hookBoltWrites(t *testing.T, db *bolt.DB, wrap func(orig writeAtFunc) writeAtFunc) {
	t.Helper()
	ops := reflect.ValueOf(db).Elem().FieldByName("ops")
	if !ops.IsValid() || ops.Kind() != reflect.Struct {
		t.Fatal("this bbolt has no DB.ops: the power-loss test cannot see its writes")
	}
	f := ops.FieldByName("writeAt")
	if !f.IsValid() || f.Type() != reflect.TypeFor[writeAtFunc]() {
		t.Fatal("this bbolt has no DB.ops.writeAt of the known type: the power-loss test cannot see its writes")
	}
	p := (*writeAtFunc)(unsafe.Pointer(f.UnsafeAddr()))
	*p = wrap(*p)
}

// crashPoint is one commit the test can cut power in: the file as the
// commit before it left it (on disk: every commit fdatasyncs its pages
// and then its meta page), the writes of the commit, and the store's
// contents before and after it.
type crashPoint struct {
	base          []byte
	pages         []fileWrite // data pages, in bbolt's order
	meta          *fileWrite  // the meta page, written once the pages are on disk
	before, after map[string]string
	freelistSync  bool // the commit wrote the list of free pages (syncFreelistIfShort)
}

// TestStorePowerLoss cuts the power, in simulation, in the middle of the
// store's commits: the file on disk is the last finished commit plus any
// subset of the pages the next one wrote (each 4 KiB block on its own),
// and its meta page whole, torn or missing. A commit's meta page is
// written only after its pages were fdatasync'd, so a whole new meta page
// comes with all of them. Each image must open (OpenDB, then New, which
// loads the counters) to exactly the commit before, or, with the new meta
// page whole, the commit itself — nothing acknowledged lost, nothing half
// done — and pass Check. The workload runs the store's hot operations,
// then a purge and a freed scratch bucket (freeManyPages): more free
// pages than a commit writes the list of, so that the commits after them
// leave the list out and an open after a crash walks the file. The test also checks that no commit runs with
// NoSync, the flag that would skip bbolt's fdatasyncs.
func TestStorePowerLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var (
		mu        sync.Mutex
		capturing *crashPoint
		points    []*crashPoint
		nosync    int
	)
	ts := newStore(t, Options{})
	db := ts.db
	wantPoint := func() bool { return rng.IntN(6) == 0 }
	// shadow is the file as bbolt wrote it (every write since the hook,
	// over the file before): its page cache, which each finished commit
	// has fdatasync'd. (The file itself is longer: bbolt grows it 16 MiB
	// at a time, and reads no page it did not write.)
	shadow, err := os.ReadFile(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	// Past the last page written, the file is the zeros of bbolt's growth.
	for len(shadow) >= 4096 && bytes.Count(shadow[len(shadow)-4096:], []byte{0}) == 4096 {
		shadow = shadow[:len(shadow)-4096]
	}
	snapshot := func() (map[string]string, []byte) {
		mu.Lock()
		defer mu.Unlock()
		return dumpDB(t, db), bytes.Clone(shadow)
	}
	hookBoltWrites(t, db, func(orig writeAtFunc) writeAtFunc {
		pageSize := int64(db.Info().PageSize)
		return func(b []byte, off int64) (int, error) {
			mu.Lock()
			if c := capturing; c != nil {
				w := fileWrite{off, bytes.Clone(b)}
				if off < 2*pageSize {
					c.meta = &w
					c.freelistSync = !db.NoFreelistSync
				} else {
					c.pages = append(c.pages, w)
				}
			}
			if off < 2*pageSize && db.NoSync {
				nosync++
			}
			if need := int(off) + len(b); need > len(shadow) {
				shadow = append(shadow, make([]byte, need-len(shadow))...)
			}
			copy(shadow[off:], b)
			mu.Unlock()
			return orig(b, off)
		}
	})
	// Every commit of the workload is one operation called from here, so
	// between two calls the file is the last commit, on disk.
	step := func(op func()) {
		t.Helper()
		if !wantPoint() {
			op()
			return
		}
		before, base := snapshot()
		c := &crashPoint{base: base, before: before}
		st := db.Stats()
		writes := st.TxStats.GetWrite()
		mu.Lock()
		capturing = c
		mu.Unlock()
		op()
		mu.Lock()
		capturing = nil
		mu.Unlock()
		if c.meta == nil {
			return // the operation committed nothing
		}
		// The hook saw every write bbolt made (it counts each).
		st = db.Stats()
		if n := st.TxStats.GetWrite() - writes; n != int64(len(c.pages)+1) {
			t.Fatalf("bbolt made %d writes; the test saw %d pages and a meta page", n, len(c.pages))
		}
		c.after, _ = snapshot()
		points = append(points, c)
	}

	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	var all []*Message
	for i := range 8 {
		ms := make([]*Message, 15)
		for j := range ms {
			ms[j] = exportMsg("G1", fmt.Sprintf("acct%d", j%3), at.Add(time.Duration(i)*time.Minute), 1+j%2)
		}
		step(func() {
			if err := ts.Enqueue(bg, ms...); err != nil {
				t.Fatal(err)
			}
		})
		all = append(all, ms...)
	}
	for i, m := range all {
		for p := range m.Parts {
			k := Key{m.ID, uint16(p)}
			id := fmt.Sprintf("s%d-%d", m.ID, p)
			step(func() {
				if err := ts.Submitted(bg, k, id, at.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			})
			if i%3 == 0 {
				continue // left submitted
			}
			step(func() {
				if _, err := ts.ApplyDLR(bg, DLR{Upstream: m.Upstream, SMSCID: id, State: StateDelivered, DoneAt: at.Add(2 * time.Hour)}); err != nil {
					t.Fatal(err)
				}
			})
		}
		if i%30 == 29 {
			for _, acct := range []string{"acct0", "acct1", "acct2"} {
				pending, err := ts.PendingDLRs(acct, 1000, nil)
				if err != nil {
					t.Fatal(err)
				}
				ids := make([]uint64, len(pending))
				for j, m := range pending {
					ids[j] = m.ID
				}
				if len(ids) > 0 {
					step(func() {
						if err := ts.AckDLRs(bg, acct, ids); err != nil {
							t.Fatal(err)
						}
					})
				}
			}
		}
		if i == 70 {
			// Finished messages go, and a scratch bucket: more free pages
			// than a commit writes the list of, so the commits after it
			// leave the list out.
			if _, err := ts.Purge(bg, at.Add(3*time.Hour), 1<<20); err != nil {
				t.Fatal(err)
			}
			freeManyPages(t, db)
		}
	}
	if nosync > 0 {
		t.Fatalf("%d commits ran with NoSync: bbolt skipped their fdatasyncs", nosync)
	}
	withList, withoutList := 0, 0
	for _, c := range points {
		if c.freelistSync {
			withList++
		} else {
			withoutList++
		}
	}
	if withList == 0 || withoutList == 0 {
		t.Fatalf("crash points in commits that wrote the free-page list: %d, that left it out: %d; want both", withList, withoutList)
	}

	images := 0
	for _, c := range points {
		for variant := range 3 {
			img := bytes.Clone(c.base)
			put := func(w fileWrite, upTo int) {
				if need := int(w.off) + upTo; need > len(img) {
					img = append(img, make([]byte, need-len(img))...)
				}
				copy(img[w.off:], w.data[:upTo])
			}
			want := c.before
			switch variant {
			case 0: // some of the pages, no meta page
				for _, w := range c.pages {
					for o := 0; o < len(w.data); o += 4096 {
						if rng.IntN(2) == 0 {
							put(fileWrite{w.off + int64(o), w.data[o:]}, min(4096, len(w.data)-o))
						}
					}
				}
			case 1: // every page, the meta page torn
				for _, w := range c.pages {
					put(w, len(w.data))
				}
				put(*c.meta, 1+rng.IntN(100))
				// Its checksum (the last of its fields, bytes 72-80 of the
				// page) decides: a tear before it leaves the last commit.
				if got := img[c.meta.off : c.meta.off+80]; bytes.Equal(got, c.meta.data[:80]) {
					want = c.after
				}
			case 2: // every page and the meta page
				for _, w := range c.pages {
					put(w, len(w.data))
				}
				put(*c.meta, len(c.meta.data))
				want = c.after
			}
			path := filepath.Join(t.TempDir(), "state.db")
			writeSparse(t, path, img)
			got := openAfterPowerLoss(t, path)
			if !maps.Equal(got, want) {
				t.Fatalf("variant %d: the store opened with %d keys, want %d (the commit %s); first difference: %s",
					variant, len(got), len(want), map[bool]string{true: "after", false: "before"}[maps.Equal(want, c.after)], firstDiff(got, want))
			}
			images++
		}
	}
	t.Logf("%d images from %d crash points (%d in commits that wrote the free-page list, %d that left it out)", images, len(points), withList, withoutList)
}

// writeSparse writes img to path, leaving its blocks of zeros as holes
// (most of a freed scratch bucket): the same bytes to a reader, a fraction
// of the writes.
func writeSparse(t *testing.T, path string, img []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(img))); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 4096)
	for o := 0; o < len(img); o += 4096 {
		block := img[o:min(o+4096, len(img))]
		if bytes.Equal(block, zero[:len(block)]) {
			continue
		}
		if _, err := f.WriteAt(block, int64(o)); err != nil {
			t.Fatal(err)
		}
	}
}

// openAfterPowerLoss opens the file as the daemon would after the crash
// (OpenDB, New), dumps it and checks the store.
func openAfterPowerLoss(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := OpenDB(path, Options{})
	if err != nil {
		t.Fatalf("open after the power loss: %v", err)
	}
	defer db.Close()
	got := dumpDB(t, db)
	s, err := New(db, Options{})
	if err != nil {
		t.Fatalf("store after the power loss: %v", err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("check after the power loss: %v", err)
	}
	return got
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

type fileWrite struct {
	off  int64
	data []byte
}

func firstDiff(got, want map[string]string) string {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			return fmt.Sprintf("%q missing", k)
		} else if g != want[k] {
			return fmt.Sprintf("%q differs", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("%q should not be there", k)
		}
	}
	return "none"
}
