//go:build !linux

package queue

// Direct I/O is used on Linux only (see directio_linux.go): elsewhere a
// backup reads through the page cache.

const oDirect = 0

func alignedBuffer(n int) []byte { return make([]byte, n) }

func directReads(string) bool { return false }

func smallMetaPages(string) {}
