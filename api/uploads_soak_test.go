//go:build soak

package api

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/qxtd/qxtd/sheet/sheettest"
)

// procKB is a field of /proc/self/status in KiB (VmRSS, VmHWM).
func procKB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// peakGrowth runs fn and returns how much the process's peak RSS and its
// allocations grew: memory is handed back to the system first and the
// peak reset (writing 5 to /proc/self/clear_refs), so that the peak is
// fn's.
func peakGrowth(t *testing.T, fn func()) (rss, alloc uint64) {
	t.Helper()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	base := procKB(t, "VmRSS")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return uint64(max(0, procKB(t, "VmHWM")-base)) << 10, after.TotalAlloc - before.TotalAlloc
}

// The bombs at full size, through the HTTP API: a 900 MB cell on
// /v1/batches and /v1/contacts/import, a 900 MB shared string, 50 million
// shared strings, and four uploads of the 900 MB cell at once. Each
// grows the daemon's peak RSS by less than 128 MiB (without the race
// detector, whose shadow memory inflates RSS; with it, the allocations
// are held to the bound).
func TestSoakUploadBombs(t *testing.T) {
	r := newBulkRig(t, rigOptions{})
	cell := sheettest.HugeCell(900 << 20)
	for _, tc := range []struct {
		name  string
		file  []byte
		paths []string // one upload per path, at once
		who   []string
	}{
		{"900 MB cell, batch", cell, []string{"/v1/batches"}, []string{"alice"}},
		{"900 MB cell, contacts", cell, []string{"/v1/contacts/import"}, []string{"alice"}},
		{"900 MB shared string, contacts", sheettest.HugeSharedString(900 << 20), []string{"/v1/contacts/import"}, []string{"alice"}},
		{"50M shared strings, batch", sheettest.ManySharedStrings(50_000_000), []string{"/v1/batches"}, []string{"alice"}},
		{"900 MB cell, four at once", cell,
			[]string{"/v1/contacts/import", "/v1/contacts/import", "/v1/batches", "/v1/contacts/import"},
			[]string{"alice", "bob", "carl", "dave"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := multipartBody(t, "名单.xlsx", tc.file, nil)
			codes := make([]int, len(tc.paths))
			rss, alloc := peakGrowth(t, func() {
				var wg sync.WaitGroup
				for i, p := range tc.paths {
					wg.Add(1)
					go func() {
						defer wg.Done()
						codes[i], _ = client{t, r.url}.upload("POST", p, r.keys[tc.who[i]], ct, body, nil)
					}()
				}
				wg.Wait()
			})
			t.Logf("%s: %d KiB of XLSX, %d upload(s): peak RSS +%d MiB, allocated %d MiB, answers %v",
				tc.name, len(tc.file)>>10, len(tc.paths), rss>>20, alloc>>20, codes)
			for _, c := range codes {
				if c != http.StatusUnprocessableEntity {
					t.Errorf("answers %v, want 422", codes)
				}
			}
			if !raceOn && rss >= 128<<20 {
				t.Errorf("peak RSS +%d MiB", rss>>20)
			}
			if alloc >= 128<<20*uint64(len(tc.paths)) {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
		})
	}
}
