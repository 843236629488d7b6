package queue

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oDirect opens a file for reads that bypass the page cache.
const oDirect = syscall.O_DIRECT

// directAlign is the alignment of a direct read's memory, offset and
// length: 4 KiB covers every logical block size in use. bbolt's pages are
// a multiple of it, so its page copy is aligned once the buffer is.
const directAlign = 4096

// alignedBuffer returns n bytes starting at a multiple of directAlign.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	return b[off : off+n : off+n]
}

// directReads reports whether the file at path can be read with direct
// I/O: an open with O_DIRECT and an aligned read of its first page.
// Some file systems refuse the open (tmpfs before Linux 6.6) or the read;
// then a backup reads through the page cache as before.
//
// Why it matters, measured on Linux 6.18 and ext4 (a throwaway program:
// an 80 MB bbolt file evicted from the cache, one WriteTo, then 1,000
// commits of one record each, in three pairs of runs): after a WriteTo
// through the page cache, each commit counted 2.5–3.7 MiB in
// /proc/self/io write_bytes; after none, or one with direct reads, 40 KiB.
// The device wrote 28 KiB a commit every time: readahead had cached the
// file in large folios, and a 4 KiB write dirties, and is counted as, a
// whole folio. The CPU a commit moved with it in one set of runs (208–297
// µs against 181–190) and not clearly in another.
func directReads(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|oDirect, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.ReadAt(alignedBuffer(directAlign), 0)
	return err == nil
}

// metaDropLen is how much of the file's start smallMetaPages drops from
// the page cache: the largest folio readahead builds (2 MiB), since a
// folio that reaches past the range is not dropped.
const metaDropLen = 2 << 20

// smallMetaPages makes the page cache hold the file's first two pages,
// bbolt's meta pages, which every commit writes, each on its own.
//
// Opening a file, bbolt reads its first page with a buffered read, and on
// Linux 6.x readahead caches it in a large folio with its neighbours (and
// creating one, bbolt writes its first four pages in one 16 KiB write,
// cached as one folio). A 4 KiB write dirties the whole folio, and the
// kernel counts the folio in the process's write_bytes: each commit
// counted 12 KiB more than it wrote, 20–30 % of qxtd's write_bytes at
// 200–1,000 msg/s while the device wrote what the store did (measured
// with bin/qxtd-bench and /sys/block/*/stat). So before bbolt opens the
// file: drop its start from the cache (clean pages no process maps; a
// crash's last commits were fsync'd) and read the two pages back one by
// one, without readahead, where bbolt's open finds them.
//
// Best effort: what fails here only leaves the counters as they were.
func smallMetaPages(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	fd := int(f.Fd())
	_ = unix.Fadvise(fd, 0, metaDropLen, unix.FADV_DONTNEED)
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
	page := make([]byte, os.Getpagesize())
	for off := range int64(2) {
		if _, err := f.ReadAt(page, off*int64(len(page))); err != nil {
			return
		}
	}
}
