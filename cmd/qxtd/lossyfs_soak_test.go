//go:build soak

package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// lossyFS is a filesystem held in memory and mounted with FUSE that, cut
// like a machine losing power, keeps only what a disk must have kept: what
// was written to a file and fsync'd or fdatasync'd, and names (a file
// created, renamed or removed; a directory made) up to the last fsync of a
// directory. Of what came after, a cut keeps a random part, as a disk's
// writeback and a filesystem's journal may have: each 4 KiB block written
// since its file's last sync independently, a file's new size or its old
// one, and a prefix of the names' changes in their order (sometimes none,
// as strict POSIX allows: a new file whose directory was never fsync'd
// may be gone, its data with it).
//
// It is the power-loss soak's disk (TestSoakPowerLoss): the daemon's store
// directory is mounted here, and at a cut the daemon is killed and the
// filesystem mounted again from what the cut kept. One lock serialises
// everything: the daemon's I/O is slow enough through FUSE anyway, and it
// keeps the model simple.
type lossyFS struct {
	mu      sync.Mutex
	root    *lossyDir
	durable map[string]*lossyFile // the names as last made durable: path → file (nil: a directory)
	pending []nameChange          // names changed since
	stats   lossyStats
	cut     bool // cut: every operation fails with EIO
	// failing: a file's fsync fails with EIO and, as Linux's writeback
	// does after such an error, its blocks are no longer dirty: reads
	// see what was written, but it never reaches the disk unless written
	// again (TestSoakDiskErrors).
	failing bool
}

type lossyStats struct {
	Writes, FileSyncs, DirSyncs, NameChanges, FailedSyncs int
}

// fail starts (on) or ends a stretch of failing fsyncs.
func (l *lossyFS) fail(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failing = on
}

// failedSyncs is how many fsyncs failed on l.
func (l *lossyFS) failedSyncs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats.FailedSyncs
}

// nameChange is one change of the names: a file or directory made
// (file nil), renamed or removed.
type nameChange struct {
	op       string // add, rename, remove
	from, to string
	file     *lossyFile
}

// apply makes c in names.
func (c nameChange) apply(names map[string]*lossyFile) {
	switch c.op {
	case "add":
		names[c.to] = c.file
	case "remove":
		delete(names, c.from)
	case "rename":
		moved := map[string]*lossyFile{}
		for p, f := range names {
			if p == c.from || strings.HasPrefix(p, c.from+"/") {
				moved[c.to+strings.TrimPrefix(p, c.from)] = f
				delete(names, p)
			}
		}
		// The target and whatever was under it are replaced.
		for p := range names {
			if p == c.to || strings.HasPrefix(p, c.to+"/") {
				delete(names, p)
			}
		}
		maps.Copy(names, moved)
	}
}

const lossyBlock = 4096

type lossyFile struct {
	fs.Inode
	l       *lossyFS
	data    []byte             // what reads see
	synced  []byte             // as of the last fsync
	dirty   map[int64]struct{} // blocks written since the last fsync
	resized bool               // the size changed since the last fsync
	mode    uint32
}

type lossyDir struct {
	fs.Inode
	l     *lossyFS
	mode  uint32
	onAdd func(context.Context) // the root's: builds the tree of an image
}

// OnAdd builds the root's tree, which FUSE serves from memory.
func (d *lossyDir) OnAdd(ctx context.Context) {
	if d.onAdd != nil {
		d.onAdd(ctx)
	}
}

// lossyImage is what a cut kept: each path's contents (nil: a directory).
type lossyImage map[string][]byte

// mountLossy mounts at dir a lossyFS holding img (nil: empty), all of it
// durable.
func mountLossy(t *testing.T, dir string, img lossyImage) (*lossyFS, *fuse.Server) {
	t.Helper()
	l := &lossyFS{durable: map[string]*lossyFile{}}
	l.root = &lossyDir{l: l, mode: 0o755}
	// Parents before children: sorted paths put "a" before "a/b".
	paths := slices.Sorted(maps.Keys(img))
	l.root.onAdd = func(ctx context.Context) {
		nodes := map[string]*fs.Inode{".": &l.root.Inode}
		for _, p := range paths {
			parent := nodes[path.Dir(p)]
			var ch *fs.Inode
			if b := img[p]; b == nil {
				ch = parent.NewPersistentInode(ctx, &lossyDir{l: l, mode: 0o755}, fs.StableAttr{Mode: syscall.S_IFDIR})
				l.durable[p] = nil
			} else {
				f := &lossyFile{l: l, data: b, synced: slices.Clone(b), dirty: map[int64]struct{}{}, mode: 0o600}
				ch = parent.NewPersistentInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG})
				l.durable[p] = f
			}
			parent.AddChild(path.Base(p), ch, true)
			nodes[p] = ch
		}
	}
	sec := time.Second
	srv, err := fs.Mount(dir, l.root, &fs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "lossyfs", Name: "lossyfs", DisableXAttrs: true},
		EntryTimeout: &sec, AttrTimeout: &sec, NegativeTimeout: new(time.Duration),
	})
	if err != nil {
		t.Fatalf("mount lossyfs at %s (needs /dev/fuse and the right to mount): %v", dir, err)
	}
	return l, srv
}

// unmountLossy unmounts srv, detaching it if a dead process's files are
// still being closed.
func unmountLossy(t *testing.T, dir string, srv *fuse.Server) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Unmount() }()
	tm := time.NewTimer(10 * time.Second)
	defer tm.Stop()
	select {
	case err := <-done:
		if err == nil {
			srv.Wait()
			return
		}
		t.Logf("lossyfs unmount: %v; detaching", err)
	case <-tm.C:
		t.Logf("lossyfs unmount took over 10 s; detaching")
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		t.Fatalf("detach lossyfs at %s: %v", dir, err)
	}
}

// cutPower ends l as a power loss would and returns what it kept, drawn
// from rng, and a line saying how it was drawn. Every operation on l
// fails from here on.
func (l *lossyFS) cutPower(rng *rand.Rand) (lossyImage, string) {
	// A prefix of the changes since the last directory fsync: none a
	// quarter of the time (strict POSIX), all of them another quarter.
	names := func(n int) int {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return n
		}
		return rng.IntN(n + 1)
	}
	// Blocks written since a file's last sync: none, all or each by a coin.
	return l.cutKeeping(names, []float64{0, 0.5, 1}[rng.IntN(3)], rng)
}

// cutKeeping is cutPower keeping names(n) of the n changes of the names
// since the last directory fsync and each unsynced block with
// probability keep.
func (l *lossyFS) cutKeeping(names func(n int) int, keep float64, rng *rand.Rand) (lossyImage, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	kept := maps.Clone(l.durable)
	k := names(len(l.pending))
	for _, c := range l.pending[:k] {
		c.apply(kept)
	}
	// A name whose directory's own name was lost is lost with it.
	for p := range kept {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if f, ok := kept[d]; !ok || f != nil {
				delete(kept, p)
				break
			}
		}
	}
	img := lossyImage{}
	var unsyncedKept, unsyncedLost int
	for p, f := range kept {
		if f == nil {
			img[p] = nil
			continue
		}
		b := slices.Clone(f.synced)
		if f.resized && (keep == 1 || keep > 0 && rng.IntN(2) == 0) {
			b = resize(b, len(f.data))
		}
		for _, blk := range slices.Sorted(maps.Keys(f.dirty)) {
			if keep == 0 || keep < 1 && rng.Float64() >= keep {
				unsyncedLost++
				continue
			}
			unsyncedKept++
			from, to := blk*lossyBlock, min((blk+1)*lossyBlock, int64(len(f.data)))
			if from >= to || from >= int64(len(b)) {
				continue // past the size kept
			}
			copy(b[from:min(to, int64(len(b)))], f.data[from:to])
		}
		if b == nil {
			b = []byte{}
		}
		img[p] = b
	}
	// Which names and files had something unsynced, for the log.
	var changes, files []string
	for _, c := range l.pending {
		changes = append(changes, c.op+" "+strings.TrimSpace(c.from+" "+c.to))
	}
	for p, f := range l.current() {
		if f != nil && (len(f.dirty) > 0 || f.resized) {
			files = append(files, fmt.Sprintf("%s (%d blocks)", p, len(f.dirty)))
		}
	}
	slices.Sort(files)
	return img, fmt.Sprintf("kept %d of %d name changes since the last directory fsync %q, %d unsynced blocks of %d (%v each) in %q; %+v",
		k, len(l.pending), changes, unsyncedKept, unsyncedKept+unsyncedLost, keep, files, l.stats)
}

// current is the names as they are now (the durable ones with every
// change since).
func (l *lossyFS) current() map[string]*lossyFile {
	names := maps.Clone(l.durable)
	for _, c := range l.pending {
		c.apply(names)
	}
	return names
}

func resize(b []byte, n int) []byte {
	if n <= len(b) {
		return b[:n]
	}
	return append(b, make([]byte, n-len(b))...)
}

// pathOf is the path of n below the root ("" for the root).
func (l *lossyFS) pathOf(n *fs.Inode, name string) string {
	p := n.Path(&l.root.Inode)
	if p == "" || p == "." {
		return name
	}
	return p + "/" + name
}

func (l *lossyFS) change(c nameChange) {
	l.pending = append(l.pending, c)
	l.stats.NameChanges++
}

// lock takes l's lock, or fails once the power is cut.
func (l *lossyFS) lock() syscall.Errno {
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		return syscall.EIO
	}
	return 0
}

var (
	_ fs.NodeCreater   = (*lossyDir)(nil)
	_ fs.NodeMkdirer   = (*lossyDir)(nil)
	_ fs.NodeUnlinker  = (*lossyDir)(nil)
	_ fs.NodeRmdirer   = (*lossyDir)(nil)
	_ fs.NodeRenamer   = (*lossyDir)(nil)
	_ fs.NodeFsyncer   = (*lossyDir)(nil)
	_ fs.NodeStatfser  = (*lossyDir)(nil)
	_ fs.NodeGetattrer = (*lossyDir)(nil)

	_ fs.NodeOpener    = (*lossyFile)(nil)
	_ fs.NodeReader    = (*lossyFile)(nil)
	_ fs.NodeWriter    = (*lossyFile)(nil)
	_ fs.NodeFsyncer   = (*lossyFile)(nil)
	_ fs.NodeFlusher   = (*lossyFile)(nil)
	_ fs.NodeGetattrer = (*lossyFile)(nil)
	_ fs.NodeSetattrer = (*lossyFile)(nil)
	_ fs.NodeAllocater = (*lossyFile)(nil)
)

func (d *lossyDir) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | d.mode
	out.Nlink = 2
	return 0
}

// Statfs says the disk is large and empty: the daemon watches its free space.
func (d *lossyDir) Statfs(_ context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize, out.Frsize = lossyBlock, lossyBlock
	out.Blocks, out.Bfree, out.Bavail = 1<<24, 1<<23, 1<<23
	out.Files, out.Ffree = 1<<20, 1<<19
	out.NameLen = 255
	return 0
}

func (d *lossyDir) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := d.l.lock(); e != 0 {
		return nil, nil, 0, e
	}
	defer d.l.mu.Unlock()
	f := &lossyFile{l: d.l, dirty: map[int64]struct{}{}, mode: mode & 0o7777}
	ch := d.NewPersistentInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG})
	d.l.change(nameChange{op: "add", to: d.l.pathOf(&d.Inode, name), file: f})
	out.Mode = syscall.S_IFREG | f.mode
	return ch, nil, 0, 0
}

func (d *lossyDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := d.l.lock(); e != 0 {
		return nil, e
	}
	defer d.l.mu.Unlock()
	ch := d.NewPersistentInode(ctx, &lossyDir{l: d.l, mode: mode & 0o7777}, fs.StableAttr{Mode: syscall.S_IFDIR})
	d.l.change(nameChange{op: "add", to: d.l.pathOf(&d.Inode, name)})
	out.Mode = syscall.S_IFDIR | mode&0o7777
	return ch, 0
}

func (d *lossyDir) Unlink(_ context.Context, name string) syscall.Errno {
	if e := d.l.lock(); e != 0 {
		return e
	}
	defer d.l.mu.Unlock()
	d.l.change(nameChange{op: "remove", from: d.l.pathOf(&d.Inode, name)})
	return 0
}

func (d *lossyDir) Rmdir(_ context.Context, name string) syscall.Errno {
	if e := d.l.lock(); e != 0 {
		return e
	}
	defer d.l.mu.Unlock()
	if ch := d.GetChild(name); ch != nil && len(ch.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	d.l.change(nameChange{op: "remove", from: d.l.pathOf(&d.Inode, name)})
	return 0
}

func (d *lossyDir) Rename(_ context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if e := d.l.lock(); e != 0 {
		return e
	}
	defer d.l.mu.Unlock()
	if flags != 0 {
		return syscall.EINVAL // no RENAME_EXCHANGE or NOREPLACE: the daemon uses neither
	}
	d.l.change(nameChange{op: "rename", from: d.l.pathOf(&d.Inode, name), to: d.l.pathOf(newParent.EmbeddedInode(), newName)})
	return 0
}

// Fsync of a directory makes durable the changes of the names in it (a
// name added to it, removed from it, renamed into or out of it), and no
// other: POSIX promises no more, and a new directory's own name is its
// parent's to sync.
func (d *lossyDir) Fsync(context.Context, fs.FileHandle, uint32) syscall.Errno {
	if e := d.l.lock(); e != 0 {
		return e
	}
	defer d.l.mu.Unlock()
	dir := d.Path(&d.l.root.Inode)
	if dir == "" {
		dir = "."
	}
	in := func(p string) bool { return p != "" && path.Dir(p) == dir }
	rest := d.l.pending[:0]
	for _, c := range d.l.pending {
		if in(c.from) || in(c.to) {
			c.apply(d.l.durable)
		} else {
			rest = append(rest, c)
		}
	}
	d.l.pending = rest
	d.l.stats.DirSyncs++
	return 0
}

func (f *lossyFile) Open(_ context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := f.l.lock(); e != 0 {
		return nil, 0, e
	}
	defer f.l.mu.Unlock()
	if flags&syscall.O_TRUNC != 0 {
		f.truncate(0)
	}
	return nil, 0, 0
}

func (f *lossyFile) truncate(n int) {
	if n == len(f.data) {
		return
	}
	old := len(f.data)
	f.data = resize(f.data, n)
	f.resized = true
	// The blocks the new size cuts into or adds differ from the synced ones.
	for blk := int64(min(old, n)) / lossyBlock; blk*lossyBlock < int64(max(old, n)); blk++ {
		f.dirty[blk] = struct{}{}
	}
}

func (f *lossyFile) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := f.l.lock(); e != 0 {
		return nil, e
	}
	defer f.l.mu.Unlock()
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	n := copy(dest, f.data[off:])
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *lossyFile) Write(_ context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if e := f.l.lock(); e != 0 {
		return 0, e
	}
	defer f.l.mu.Unlock()
	if end := off + int64(len(data)); end > int64(len(f.data)) {
		f.truncate(int(end))
	}
	copy(f.data[off:], data)
	for blk := off / lossyBlock; blk*lossyBlock < off+int64(len(data)); blk++ {
		f.dirty[blk] = struct{}{}
	}
	f.l.stats.Writes++
	return uint32(len(data)), 0
}

// Fsync (and fdatasync) makes the file's data and size durable; not its
// name (a directory's fsync does that).
func (f *lossyFile) Fsync(context.Context, fs.FileHandle, uint32) syscall.Errno {
	if e := f.l.lock(); e != 0 {
		return e
	}
	defer f.l.mu.Unlock()
	if f.l.failing {
		clear(f.dirty) // lost: Linux marks the pages clean after a failed writeback
		f.l.stats.FailedSyncs++
		return syscall.EIO
	}
	if f.resized {
		f.synced = resize(f.synced, len(f.data))
	}
	for blk := range f.dirty {
		from, to := blk*lossyBlock, min((blk+1)*lossyBlock, int64(len(f.data)))
		if from < to {
			copy(f.synced[from:to], f.data[from:to])
		}
	}
	clear(f.dirty)
	f.resized = false
	f.l.stats.FileSyncs++
	return 0
}

func (f *lossyFile) Flush(context.Context, fs.FileHandle) syscall.Errno { return 0 }

func (f *lossyFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.l.mu.Lock() // attributes stay readable after the cut: the daemon is dead by then
	defer f.l.mu.Unlock()
	out.Mode = syscall.S_IFREG | f.mode
	out.Size = uint64(len(f.data))
	out.Blocks = (out.Size + 511) / 512
	out.Nlink = 1
	return 0
}

func (f *lossyFile) Setattr(_ context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := f.l.lock(); e != 0 {
		return e
	}
	defer f.l.mu.Unlock()
	if sz, ok := in.GetSize(); ok {
		f.truncate(int(sz))
	}
	if m, ok := in.GetMode(); ok {
		f.mode = m & 0o7777
	}
	out.Mode = syscall.S_IFREG | f.mode
	out.Size = uint64(len(f.data))
	out.Nlink = 1
	return 0
}

func (f *lossyFile) Allocate(_ context.Context, _ fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	if e := f.l.lock(); e != 0 {
		return e
	}
	defer f.l.mu.Unlock()
	if mode&0x01 == 0 && int(off+size) > len(f.data) { // not FALLOC_FL_KEEP_SIZE
		f.truncate(int(off + size))
	}
	return 0
}

// TestSoakLossyFS checks the power-loss soak's disk: what was synced stays,
// what was not may go, and a cut with nothing kept keeps exactly the
// synced state.
func TestSoakLossyFS(t *testing.T) {
	mnt := t.TempDir()
	l, srv := mountLossy(t, mnt, nil)
	write := func(name, s string) *os.File {
		f, err := os.OpenFile(mnt+"/"+name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		return f
	}
	syncDir := func(dir string) {
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"d", "gone"} {
		if err := os.Mkdir(mnt+"/"+d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	syncDir(mnt) // d and gone named durably
	if err := os.Mkdir(mnt+"/gone/sub", 0o700); err != nil {
		t.Fatal(err)
	}
	g := write("gone/sub/file", "in a directory never named durably")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	g.Close()
	syncDir(mnt + "/gone/sub") // file named in sub; sub itself not in gone
	a := write("d/a", "synced")
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	syncDir(mnt + "/d")
	if _, err := a.WriteAt([]byte("SYN"), 0); err != nil { // not synced
		t.Fatal(err)
	}
	a.Close()
	b := write("d/b", "never named durably")
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := os.Rename(mnt+"/d/a", mnt+"/d/c"); err != nil { // not durable either
		t.Fatal(err)
	}
	// Read back through the kernel, which serves mmap'd and read pages.
	if got, err := os.ReadFile(mnt + "/d/c"); err != nil || string(got) != "SYNced" {
		t.Fatalf("read back %q, %v", got, err)
	}

	// Nothing unsynced kept: the synced state alone.
	img, line := l.cutKeeping(func(int) int { return 0 }, 0, rand.New(rand.NewPCG(1, 1)))
	t.Log(line)
	if _, err := os.ReadFile(mnt + "/d/c"); err == nil {
		t.Fatal("read after the cut: want an error")
	}
	unmountLossy(t, mnt, srv)
	want := lossyImage{"d": nil, "gone": nil, "d/a": []byte("synced")}
	if len(img) != len(want) || img["d"] != nil || img["gone"] != nil || string(img["d/a"]) != "synced" {
		t.Fatalf("image %q, want %q", img, want)
	}

	// Mounted again, the image is what the files hold, and it is durable.
	_, srv = mountLossy(t, mnt, img)
	defer unmountLossy(t, mnt, srv)
	if got, err := os.ReadFile(mnt + "/d/a"); err != nil || string(got) != "synced" {
		t.Fatalf("after the cut: %q, %v", got, err)
	}
	if _, err := os.Stat(mnt + "/d/b"); !os.IsNotExist(err) {
		t.Fatalf("d/b, never named durably: %v", err)
	}
}
