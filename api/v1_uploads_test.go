package api

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// stagedCSV is a templated send's sheet: six data rows, 李四's amount empty.
const stagedCSV = "姓名,手机号码,金额\n张三,13712345678,100\n李四,13712345679,\n王五,13800138000,3.5\n赵六,13923412345,7\n钱七,13712345670,8\n孙八,13712345671,9\n"

// stage uploads a file to POST /v1/uploads and wants 201.
func (r *userRig) stage(key, name string, file []byte) Upload {
	r.t.Helper()
	ct, body := multipartBody(r.t, name, file, nil)
	var up Upload
	if code, b := r.c().upload("POST", "/v1/uploads", key, ct, body, &up); code != http.StatusCreated {
		r.t.Fatalf("POST /v1/uploads: %d %s", code, b)
	}
	return up
}

func previewPath(id, template, numberColumn string) string {
	v := url.Values{"template": {template}}
	if numberColumn != "" {
		v.Set("number_column", numberColumn)
	}
	return "/v1/uploads/" + id + "/preview?" + v.Encode()
}

// TestStagedUpload walks the templated send in steps: upload, columns and
// first rows, preview, a refused send that leaves the upload staged, the
// send, and the upload consumed.
func TestStagedUpload(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
	key := r.keys["erin"]
	up := r.stage(key, "话费.csv", []byte(stagedCSV))
	if !strings.HasPrefix(up.ID, stagedPrefix) || up.File != "话费.csv" ||
		fmt.Sprint(up.Columns) != "[姓名 手机号码 金额]" || len(up.Rows) != 5 ||
		fmt.Sprint(up.Rows[0]) != "[张三 13712345678 100]" || fmt.Sprint(up.Rows[1]) != "[李四 13712345679 ]" {
		t.Fatalf("upload %+v", up)
	}
	// An XLSX file: cells as Excel shows them.
	x := r.stage(key, "x.xlsx", xlsxFile(t, [][]any{{"号码", "金额"}, {"13712345678", 3.5}}))
	if fmt.Sprint(x.Columns, x.Rows) != "[号码 金额] [[13712345678 3.5]]" {
		t.Fatalf("xlsx %+v", x)
	}
	r.must(http.StatusNoContent, "DELETE", "/v1/uploads/"+x.ID, key, nil, nil)

	const tmpl = "{姓名}您好，本月话费{金额}元。"
	var pv UploadPreview
	r.must(http.StatusOK, "GET", previewPath(up.ID, tmpl, "手机号码"), key, nil, &pv)
	if len(pv.Rows) != 5 {
		t.Fatalf("preview %+v", pv)
	}
	want := UploadPreviewRow{Row: 2, Number: "13712345678", Text: "【戊公司】张三您好，本月话费100元。", Chars: 19, Segments: 1}
	if pv.Rows[0] != want {
		t.Fatalf("row 2: %+v, want %+v", pv.Rows[0], want)
	}
	if rf := pv.Rows[1].Refusal; pv.Rows[1].Row != 3 || pv.Rows[1].Text != "" || rf == nil || rf.Reason != policy.RowEmptyField ||
		rf.MessageZH != policy.RowReasonZH(policy.RowEmptyField) || rf.Message == "" {
		t.Fatalf("row 3: %+v %+v", pv.Rows[1], rf)
	}
	if pv.Rows[4].Row != 6 || pv.Rows[4].Number != "13712345670" {
		t.Fatalf("row 6: %+v", pv.Rows[4])
	}
	// The counts are POST /v1/messages/preview's.
	var p PreviewResponse
	r.must(http.StatusOK, "POST", "/v1/messages/preview", key, PreviewRequest{Text: "张三您好，本月话费100元。"}, &p)
	if p.Signed != want.Text || p.Chars != want.Chars || p.Segments != want.Segments {
		t.Fatalf("message preview %+v", p)
	}
	// A text too long is refused per row, counted in full.
	r.must(http.StatusOK, "GET", previewPath(up.ID, strings.Repeat("长", 495)+"{金额}", ""), key, nil, &pv)
	if rf := pv.Rows[0].Refusal; rf == nil || rf.Reason != "too_long" || pv.Rows[0].Chars != 503 {
		t.Fatalf("too long: %+v", pv.Rows[0])
	}
	// A number the send would refuse is its row's refusal, with the counts.
	bad := r.stage(key, "bad.csv", []byte("号码,金额\n12345,1\n"))
	r.must(http.StatusOK, "GET", previewPath(bad.ID, "话费{金额}元", "号码"), key, nil, &pv)
	if rf := pv.Rows[0].Refusal; len(pv.Rows) != 1 || rf == nil || rf.Reason != "invalid_number" || pv.Rows[0].Segments != 1 {
		t.Fatalf("an invalid number: %+v", pv.Rows)
	}
	r.must(http.StatusNoContent, "DELETE", "/v1/uploads/"+bad.ID, key, nil, nil)
	r.wantError(http.StatusBadRequest, "unknown_field", "GET", previewPath(up.ID, "{年龄}", "手机号码"), key, nil)
	r.wantError(http.StatusBadRequest, "unknown_field", "GET", previewPath(up.ID, tmpl, "电话号"), key, nil)
	r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/uploads/"+up.ID+"/preview", key, nil)

	// A send refused at the door leaves the upload staged.
	r.wantError(http.StatusBadRequest, "unknown_field", "POST", "/v1/batches", key,
		StagedBatchRequest{Upload: up.ID, Template: "{年龄}", NumberColumn: "手机号码"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/batches", key, StagedBatchRequest{Upload: up.ID})
	r.must(http.StatusOK, "GET", previewPath(up.ID, tmpl, ""), key, nil, nil)

	// The send: every data row accounted for, the upload consumed.
	var created BatchCreated
	r.must(http.StatusAccepted, "POST", "/v1/batches", key,
		StagedBatchRequest{Upload: up.ID, Template: tmpl, NumberColumn: "手机号码"}, &created)
	j := r.c().waitJob(key, created.JobID, 20*time.Second, nil)
	if j.State != JobDone || j.Kind != "template" || j.File != "话费.csv" || j.Accepted != 5 || j.Refused != 1 ||
		j.Errors[0].Row != 3 || j.Errors[0].Reason != policy.RowEmptyField {
		t.Fatalf("job %+v", j)
	}
	r.waitReceived("13712345678", want.Text, 10*time.Second)
	r.wantError(http.StatusNotFound, "not_found", "POST", "/v1/batches", key,
		StagedBatchRequest{Upload: up.ID, Template: tmpl, NumberColumn: "手机号码"})
	r.wantError(http.StatusNotFound, "not_found", "GET", previewPath(up.ID, tmpl, ""), key, nil)
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/uploads/"+up.ID, key, nil)

	// The multipart form: the field upload instead of a file.
	up = r.stage(key, "b.csv", []byte(stagedCSV))
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("upload", up.ID)
	_ = mw.WriteField("template", "{姓名}：{金额}")
	_ = mw.Close()
	id := r.c().startBatch(key, "/v1/batches", mw.FormDataContentType(), buf.Bytes())
	if j := r.c().waitJob(key, id, 20*time.Second, nil); j.Accepted != 5 {
		t.Fatalf("multipart job %+v", j)
	}
	// A file and an upload together are refused, the upload stays.
	up = r.stage(key, "c.csv", []byte(stagedCSV))
	ct, body := multipartBody(t, "d.csv", []byte(stagedCSV), map[string]string{"upload": up.ID, "template": "{姓名}"})
	if code, b := r.c().upload("POST", "/v1/batches", key, ct, body, nil); code != http.StatusBadRequest {
		t.Fatalf("file and upload: %d %s", code, b)
	}
	// An upload takes only the file.
	ct, body = multipartBody(t, "e.csv", []byte(stagedCSV), map[string]string{"template": "{姓名}"})
	if code, b := r.c().upload("POST", "/v1/uploads", key, ct, body, nil); code != http.StatusBadRequest {
		t.Fatalf("upload with a template: %d %s", code, b)
	}
	if code, b := r.c().upload("POST", "/v1/uploads", key, "text/csv", []byte("姓名\n"), nil); code != http.StatusCreated {
		t.Fatalf("header only: %d %s", code, b)
	}
	if code, b := r.c().upload("POST", "/v1/uploads", key, "text/csv", nil, nil); code != http.StatusBadRequest {
		t.Fatalf("empty file: %d %s", code, b)
	}
	// The staged files are removed by Close (the rig checks the directory).
}

// TestStagedUploadIsolation: as batches, another user's upload (for a
// non-admin) and another enterprise's are unknown ids.
func TestStagedUploadIsolation(t *testing.T) {
	r := newUserRig(t)
	up := r.stage(r.keys["alice"], "a.csv", []byte(stagedCSV))
	pv := previewPath(up.ID, "{姓名}", "手机号码")
	for _, who := range []string{"al2", "bob"} {
		r.wantError(http.StatusNotFound, "not_found", "GET", pv, r.keys[who], nil)
		r.wantError(http.StatusNotFound, "not_found", "POST", "/v1/batches", r.keys[who], StagedBatchRequest{Upload: up.ID, Template: "{姓名}"})
		r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/uploads/"+up.ID, r.keys[who], nil)
	}
	r.must(http.StatusOK, "GET", pv, r.keys["alice"], nil, nil)
	r.must(http.StatusOK, "GET", pv, r.keys["amy"], nil, nil) // the enterprise's admin
	r.must(http.StatusNoContent, "DELETE", "/v1/uploads/"+up.ID, r.keys["amy"], nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "GET", pv, r.keys["alice"], nil)
}

// TestStagedUploadBounds: at most MaxStagedPerEnterprise uploads of an
// enterprise are staged, and at most MaxStaged in all (lowered here to 6:
// the rig has five enterprises).
func TestStagedUploadBounds(t *testing.T) {
	r := newUserRig(t)
	file := []byte(stagedCSV)
	var ids []string
	for range MaxStagedPerEnterprise {
		ids = append(ids, r.stage(r.keys["alice"], "a.csv", file).ID)
	}
	ct, body := multipartBody(t, "a.csv", file, nil)
	code, b := r.c().upload("POST", "/v1/uploads", r.keys["al2"], ct, body, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), "too_many_uploads") {
		t.Fatalf("the enterprise's 5th upload: %d %s", code, b)
	}
	r.stage(r.keys["bob"], "b.csv", file) // another enterprise is not held back
	r.must(http.StatusNoContent, "DELETE", "/v1/uploads/"+ids[0], r.keys["alice"], nil, nil)
	ids[0] = r.stage(r.keys["al2"], "a.csv", file).ID

	r.srv.jobs.staged.setLimits(0, 6) // 4 of A and 1 of B staged
	r.stage(r.keys["carl"], "c.csv", file)
	code, b = r.c().upload("POST", "/v1/uploads", r.keys["dave"], ct, body, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), "too_many_uploads") {
		t.Fatalf("the 7th upload in all: %d %s", code, b)
	}
	// A send frees a place.
	var created BatchCreated
	r.must(http.StatusAccepted, "POST", "/v1/batches", r.keys["alice"], StagedBatchRequest{Upload: ids[1], Template: "{姓名}"}, &created)
	r.stage(r.keys["dave"], "d.csv", file)
	r.c().waitJob(r.keys["alice"], created.JobID, 20*time.Second, nil)
}

// TestStagedUploadExpiry: 30 minutes after its upload (Config.Clock) an
// upload is gone, its file removed and its place free.
func TestStagedUploadExpiry(t *testing.T) {
	clock := &uClock{now: time.Now()}
	r := newBulkRig(t, rigOptions{clock: clock.Now})
	key := r.keys["alice"]
	var ids []string
	for range MaxStagedPerEnterprise {
		ids = append(ids, r.stage(key, "a.csv", []byte(stagedCSV)).ID)
	}
	files := func() int {
		left, err := os.ReadDir(r.srv.jobs.tmpDir)
		if err != nil {
			t.Fatal(err)
		}
		return len(left)
	}
	if n := files(); n != MaxStagedPerEnterprise {
		t.Fatalf("%d files for %d uploads", n, MaxStagedPerEnterprise)
	}
	clock.Add(StagedKeep - time.Second)
	r.must(http.StatusOK, "GET", previewPath(ids[0], "{姓名}", ""), key, nil, nil)
	clock.Add(time.Second)
	r.wantError(http.StatusNotFound, "not_found", "GET", previewPath(ids[0], "{姓名}", ""), key, nil)
	if n := files(); n != 0 {
		t.Fatalf("%d files left after the expiry", n)
	}
	r.stage(key, "a.csv", []byte(stagedCSV)) // the places are free again
}
