package queue

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestBackupBypassesPageCache takes a backup of a store whose file is not
// in the page cache, and checks that the copy did not bring it there: the
// backup reads with direct I/O (directReads). Read through the cache, the
// whole file would be resident afterwards, cached by readahead in large
// folios that make every later commit's page write count as the whole
// folio (directio_linux.go says what that cost).
func TestBackupBypassesPageCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 70 { // over 500 pages in use
		batch := make([]*Message, 100)
		for j := range batch {
			batch[j] = msg("alice", fmt.Sprintf("1380000%04d", i*100+j), 1+j%3)
		}
		if err := s.Enqueue(bg, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !directReads(path) {
		t.Fatalf("the file system of %s refuses direct reads: put TMPDIR on a disk file system", path)
	}
	evict(t, path) // no process maps the file now: every page can go

	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pages, before := resident(t, path)
	n, err := s.Backup(discard{})
	if err != nil {
		t.Fatal(err)
	}
	_, after := resident(t, path)
	copied := int(n) / os.Getpagesize() // the file's pages in use (the rest is room bbolt grew into)
	t.Logf("backup of %d pages; %d of the file's %d pages were cached before it, %d after", copied, before, pages, after)
	if copied < 500 {
		t.Fatalf("the backup copied %d pages: too few to tell", copied)
	}
	if after-before > copied/10 {
		t.Errorf("the backup of %d pages left %d more of them in the page cache", copied, after-before)
	}
}

// evict writes out the file's dirty pages and drops its pages from the
// page cache.
func evict(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// resident returns the file's pages and how many of them are in the page
// cache (mincore over a fresh read-only map, which touches none).
func resident(t *testing.T, path string) (pages, cached int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	ps := os.Getpagesize()
	vec := make([]byte, (len(m)+ps-1)/ps)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		cached += int(v & 1)
	}
	return len(vec), cached
}

// TestCommitsCountWhatTheyWrite checks that what the process is counted
// for writing (/proc/self/io write_bytes) is what the store's commits
// write (Stats.Written), on a new file and on the same file opened again:
// bbolt's meta pages, which every commit writes, must not sit in the
// page cache inside a larger folio (smallMetaPages), where each 4 KiB
// write counted the whole folio (+12 KiB a commit on Linux 6.18 and ext4).
func TestCommitsCountWhatTheyWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	for _, round := range []string{"new file", "opened again after a cp"} {
		if round != "new file" {
			// What cp (or a backup through the cache) leaves: the file
			// cached by readahead, in large folios.
			evict(t, path)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(io.Discard, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		w0, st0 := writeBytes(t), s.Stats().Written
		for i := range 200 { // one commit each: fsync'd, so every commit dirties its pages again
			if err := s.Enqueue(bg, msg("alice", fmt.Sprintf("1390000%04d", i), 1)); err != nil {
				t.Fatal(err)
			}
		}
		counted, written := writeBytes(t)-w0, int64(s.Stats().Written-st0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: 200 commits wrote %d KiB, counted %d KiB", round, written>>10, counted>>10)
		if written == 0 || float64(counted) > 1.1*float64(written) {
			t.Errorf("%s: the process was counted %d bytes for %d written", round, counted, written)
		}
	}
}

func writeBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no write_bytes in /proc/self/io")
	return 0
}
