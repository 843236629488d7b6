package api

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/sheet/sheettest"
)

// uploadBombs are XLSX files of a few hundred KB that inflate to hundreds
// of MB in one cell, one shared string or one part (sizes: the unpacked
// bomb).
func uploadBombs(size int) []struct {
	name string
	file []byte
} {
	return []struct {
		name string
		file []byte
	}{
		{"cell", sheettest.HugeCell(size)},
		{"shared string", sheettest.HugeSharedString(size)},
		{"picture", sheettest.HugePart(size)},
		{"shared strings", sheettest.ManySharedStrings(size / 16)},
	}
}

// bombRequests are the four ways to upload a sheet.
var bombRequests = []struct {
	name, path, who string
}{
	{"batch", "/v1/batches", "alice"},
	{"template", "/v1/batches?template=%7B%E5%86%85%E5%AE%B9%7D", "alice"},
	{"personal book", "/v1/contacts/import", "alice"},
	{"enterprise book", "/v1/enterprise-contacts/import", "amy"},
}

// Every upload route refuses an XLSX bomb with 422 file_limit, the heap
// allocating a bounded amount whatever the bomb inflates to.
func TestUploadBombs(t *testing.T) {
	r := newBulkRig(t, rigOptions{})
	for _, bomb := range uploadBombs(16 << 20) { // make soak: 900 MB (TestSoakUploadBombs)
		for _, rq := range bombRequests {
			t.Run(bomb.name+"/"+rq.name, func(t *testing.T) {
				ct, body := multipartBody(t, "名单.xlsx", bomb.file, nil)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				code, b := r.c().upload("POST", rq.path, r.keys[rq.who], ct, body, nil)
				runtime.ReadMemStats(&after)
				var e errorBody
				_ = json.Unmarshal(b, &e)
				if code != http.StatusUnprocessableEntity || e.Error.Reason != "file_limit" {
					t.Fatalf("%d bytes: %d %s", len(bomb.file), code, b)
				}
				// TotalAlloc counts every byte allocated during the request,
				// freed or not: a bound of the heap's peak growth.
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
					t.Errorf("%d bytes of XLSX: %d MiB allocated", len(bomb.file), grew>>20)
				}
			})
		}
	}
}

// The whitelist import (admin API) reads through the same guard.
func TestWhitelistImportBomb(t *testing.T) {
	e := newAdminEnv(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, b, _ := adminRaw(t, "POST", e.url+"/admin/v1/enterprises/GD0755001/whitelist/import", "Bearer "+adminToken,
		XLSXContentType, strings.NewReader(string(sheettest.HugeCell(16<<20))))
	runtime.ReadMemStats(&after)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"file_limit"`) || !strings.Contains(string(b), "row 2") {
		t.Fatalf("%d %s", code, b)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("%d MiB allocated", grew>>20)
	}
}

// One limiter for every upload: past PerEnterprise files of one
// enterprise being read, its next upload is 429 too_many_imports while
// another enterprise's goes through; past Total, everyone's is.
func TestUploadLimiter(t *testing.T) {
	r := newBulkRig(t, rigOptions{})
	r.srv.SetUploadLimits(UploadLimits{Total: 3, PerEnterprise: 2})
	file := []byte("姓名,号码\n张三,13800138000\n")
	post := func(who, path string) (int, string) {
		ct, body := multipartBody(t, "通讯录.csv", file, nil)
		code, b := r.c().upload("POST", path, r.keys[who], ct, body, nil)
		var e errorBody
		_ = json.Unmarshal(b, &e)
		return code, e.Error.Reason
	}
	var held []func()
	for range 2 {
		release, ok := r.srv.jobs.imports.acquire("A") // enterprise A, as if two uploads were being read
		if !ok {
			t.Fatal("no slot")
		}
		held = append(held, release)
	}
	for _, path := range []string{"/v1/contacts/import", "/v1/batches"} {
		if code, reason := post("alice", path); code != http.StatusTooManyRequests || reason != "too_many_imports" {
			t.Errorf("A, %s: %d %s", path, code, reason)
		}
	}
	if code, reason := post("bob", "/v1/contacts/import"); code != http.StatusOK {
		t.Errorf("B: %d %s", code, reason)
	}
	release, ok := r.srv.jobs.imports.acquire("other") // the third in all
	if !ok {
		t.Fatal("no slot")
	}
	if code, reason := post("bob", "/v1/contacts/import"); code != http.StatusTooManyRequests || reason != "too_many_imports" {
		t.Errorf("B past the total: %d %s", code, reason)
	}
	release()
	held[0]()
	held[0]() // a second release is a no-op
	if code, reason := post("alice", "/v1/contacts/import"); code != http.StatusOK {
		t.Errorf("A after a release: %d %s", code, reason)
	}
	held[1]()
}
