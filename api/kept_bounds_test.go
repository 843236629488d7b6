package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/sheet"
)

// longName is a file name of some 64 KiB (Go's multipart reader takes
// names of megabytes).
var longName = strings.Repeat("名", 64<<10/3) + ".csv"

// wantClipped fails unless got is want cut short: at most n bytes, UTF-8,
// a prefix of want ending in "…".
func wantClipped(t *testing.T, what, got, want string, n int) {
	t.Helper()
	if len(got) > n || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") ||
		!strings.HasPrefix(want, strings.TrimSuffix(got, "…")) {
		t.Errorf("%s: %d bytes %.40q…, want %s cut to %d bytes", what, len(got), got, what, n)
	}
}

// TestBatchKeptErrorsBounded: a finished job keeps its refused rows as
// short copies within batch.MaxJobErrorBytes, counts the rest, says so,
// and keeps its file's name cut short: 1,500 rows each refused with a
// 1 KiB number and a 1 KiB message (an empty field whose name is long)
// answer in about 256 KiB (before: 1,000 of them in 2 MiB, each holding
// its whole row).
func TestBatchKeptErrorsBounded(t *testing.T) {
	r := newBulkRig(t, rigOptions{})
	key := r.keys["erin"]
	field := strings.Repeat("名", 330) // a column name of ~1 KiB
	var file strings.Builder
	file.WriteString("号码," + field + "\n")
	const rows = 1500
	for i := range rows {
		fmt.Fprintf(&file, "138%08d%s,\n", i, strings.Repeat("9", 1<<10))
	}
	ct, body := multipartBody(t, longName, []byte(file.String()), map[string]string{"template": "{" + field + "}"})
	id := r.c().startBatch(key, "/v1/batches", ct, body)
	j := r.c().waitJob(key, id, 20*time.Second, nil)
	_, answer := r.c().upload("GET", "/v1/batches/"+id, key, "", nil, nil)
	if j.State != JobDone || j.Refused != rows || j.ErrorCount != rows || !j.ErrorsCut || len(j.Errors) == 0 {
		t.Fatalf("job %s: refused %d, %d errors, %d listed, truncated %v", j.State, j.Refused, j.ErrorCount, len(j.Errors), j.ErrorsCut)
	}
	checkAccounted(t, j)
	if len(answer) > batch.MaxJobErrorBytes+4<<10 {
		t.Errorf("GET /v1/batches/%s: %d bytes for %d errors listed", id, len(answer), len(j.Errors))
	}
	for _, e := range j.Errors {
		number := fmt.Sprintf("138%08d%s", e.Row-2, strings.Repeat("9", 1<<10))
		if e.Reason != "empty_field" {
			t.Fatalf("row %d: %+v", e.Row, e)
		}
		wantClipped(t, "number", e.Number, number, 32)
		wantClipped(t, "message", e.Message, "empty field {"+field+"}", 300)
	}
	wantClipped(t, "file", j.File, longName, batch.MaxFileName)

	// Below the bounds: nothing cut, nothing said.
	id = r.c().startBatch(key, "/v1/batches", "text/csv", []byte("13800138000,\n"))
	if j := r.c().waitJob(key, id, 20*time.Second, nil); j.ErrorsCut || len(j.Errors) != 1 || j.Errors[0].Number != "13800138000" {
		t.Fatalf("job %+v", j)
	}
}

// TestBatchJobExpiry: a finished job is gone batch.JobKeep after it ended
// (Config.Clock), from its page and the list, though no job started since.
func TestBatchJobExpiry(t *testing.T) {
	clock := &uClock{now: time.Now()}
	r := newBulkRig(t, rigOptions{clock: clock.Now})
	key := r.keys["erin"]
	id := r.c().startBatch(key, "/v1/batches", "text/csv", []byte("13800138000,你好\n"))
	if j := r.c().waitJob(key, id, 20*time.Second, nil); j.State != JobDone {
		t.Fatalf("job %+v", j)
	}
	list := func() int {
		var l BatchJobList
		r.must(http.StatusOK, "GET", "/v1/batches", key, nil, &l)
		return len(l.Jobs)
	}
	clock.Add(batch.JobKeep - time.Second)
	if r.must(http.StatusOK, "GET", "/v1/batches/"+id, key, nil, nil); list() != 1 {
		t.Fatal("the job is not listed a second before its expiry")
	}
	clock.Add(time.Second)
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/batches/"+id, key, nil)
	if n := list(); n != 0 {
		t.Fatalf("%d jobs listed after the expiry", n)
	}
}

// TestStagedUploadBounded: a staged upload keeps at most sheet.MaxColumns
// columns (a CSV header of a million commas is 422 file_limit, as an
// XLSX row of more cells is), cells cut to batch.HeadCellBytes, rows
// within batch.HeadMaxBytes, and its file's name cut short: what it keeps
// for half an hour, and what each GET of it answers (before: 97 MiB held
// and an 18 MB answer for the header of commas).
func TestStagedUploadBounded(t *testing.T) {
	r := newBulkRig(t, rigOptions{})
	key := r.keys["erin"]
	refused := func(file string) {
		t.Helper()
		ct, body := multipartBody(t, "a.csv", []byte(file), nil)
		code, b := r.c().upload("POST", "/v1/uploads", key, ct, body, nil)
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if code != http.StatusUnprocessableEntity || e.Error.Reason != "file_limit" || !strings.Contains(e.Error.Message, "row 1:") {
			t.Fatalf("%d %.200s", code, b)
		}
	}
	refused("号码,金额" + strings.Repeat(",", 1<<20-64) + "\n13800138000,1\n")
	refused(strings.Repeat("x,", sheet.MaxColumns) + "号码\n13800138000\n")

	// 1,024 columns, each header name and cell 1 KiB: the answer is bounded,
	// and says it was cut.
	var file strings.Builder
	cell := strings.Repeat("长", 340)
	for row := range 6 {
		for c := range sheet.MaxColumns {
			if c > 0 {
				file.WriteByte(',')
			}
			if row == 0 {
				fmt.Fprintf(&file, "%d", c)
			}
			file.WriteString(cell)
		}
		file.WriteByte('\n')
	}
	up := r.stage(key, longName, []byte(file.String()))
	_, answer := r.c().upload("GET", "/v1/uploads/"+up.ID, key, "", nil, nil)
	// The cells, and a quoted string with its comma for each cell of the
	// header and 5 rows.
	if limit := batch.HeadMaxBytes + 6*sheet.MaxColumns*3 + 1<<10; len(answer) > limit {
		t.Errorf("GET /v1/uploads/%s: %d bytes (at most %d)", up.ID, len(answer), limit)
	}
	if len(up.Columns) != sheet.MaxColumns || !up.Cut || len(up.Rows) > 5 {
		t.Fatalf("%d columns, %d rows, truncated %v", len(up.Columns), len(up.Rows), up.Cut)
	}
	for c, name := range up.Columns {
		wantClipped(t, "column", name, fmt.Sprintf("%d%s", c, cell), batch.HeadCellBytes)
	}
	wantClipped(t, "file", up.File, longName, batch.MaxFileName)
	var shown Upload
	r.must(http.StatusOK, "GET", "/v1/uploads/"+up.ID, key, nil, &shown)
	if shown.File != up.File || !shown.Cut {
		t.Errorf("GET: file %q, truncated %v", shown.File, shown.Cut)
	}
}
