package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// TestOptOutOverHTTP: a handset replies "TD" to A's service number →
// A's send to it over POST /v1/messages is refused opted_out, B's is not;
// A lists it, a user cannot remove it, A's admin can (then a second time
// is 404), and A sends again; the operator exports the lists.
func TestOptOutOverHTTP(t *testing.T) {
	r := newUserRig(t)
	op := policy.OperatorActor("test")
	for code, svc := range map[string]string{"A": "106575001", "B": "106575002"} {
		if _, err := r.pol.UpdateEnterprise(op, code, func(e *policy.Enterprise) error {
			e.ServiceNumber = svc
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A first message brings an upstream bind up to carry the replies.
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA2}, Text: "开始"})
	r.waitReceived(uNumA2, "【甲公司】开始", 10*time.Second)
	for _, text := range []string{"请退订吧", "TD。"} {
		if err := r.sim.InjectMO(uNumA1, "106575001", text); err != nil {
			t.Fatal(err)
		}
	}

	res := r.sendOne(r.keys["alice"], uNumA1)
	if res.Status != "refused" || res.Reason != "opted_out" || res.Code != "0x0000040a" {
		t.Fatalf("A to an opted-out number: %+v", res)
	}
	if res := r.sendOne(r.keys["bob"], uNumA1); res.Status != "accepted" {
		t.Fatalf("B to A's opted-out number: %+v", res)
	}

	// The inbox says which reply opted out.
	var in InboxPage
	r.must(http.StatusOK, "GET", "/v1/inbox", r.keys["amy"], nil, &in)
	optout := map[string]bool{}
	for _, it := range in.Replies {
		optout[it.Text] = it.OptOut
	}
	if len(optout) != 2 || !optout["TD。"] || optout["请退订吧"] {
		t.Fatalf("the inbox's opt-out marks: %v", optout)
	}

	var page OptOutPage
	r.must(http.StatusOK, "GET", "/v1/optouts", r.keys["alice"], nil, &page)
	if len(page.Entries) != 1 || page.Entries[0].Number != "+86"+uNumA1 || page.Entries[0].MOID == 0 || page.Next != "" {
		t.Fatalf("A's opt-outs: %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/optouts", r.keys["bob"], nil, &page)
	if len(page.Entries) != 0 {
		t.Fatalf("B's opt-outs: %+v", page)
	}
	// One number, in any form: its entry on the caller's list, or none.
	var one OptOutPage
	r.must(http.StatusOK, "GET", "/v1/optouts?number="+url.QueryEscape("+86 "+uNumA1), r.keys["alice"], nil, &one)
	if len(one.Entries) != 1 || one.Entries[0].Number != "+86"+uNumA1 {
		t.Fatalf("A's entry of %s: %+v", uNumA1, one)
	}
	var bobs OptOutPage
	r.must(http.StatusOK, "GET", "/v1/optouts?number="+uNumA1, r.keys["bob"], nil, &bobs)
	if bobs.Entries == nil || len(bobs.Entries) != 0 {
		t.Fatalf("B's entry of %s: %+v", uNumA1, bobs)
	}
	r.wantError(http.StatusUnprocessableEntity, "invalid_number", "GET", "/v1/optouts?number=5678", r.keys["alice"], nil)
	// The whole list as a file: for a CRM, and for Excel (the number as
	// written in China, Beijing time).
	ecode, ebody, tr := exportGet(t, r.url, "/v1/optouts/export", r.keys["alice"])
	if ecode != http.StatusOK || string(ebody) != "number,at,mo_id,by\n+86"+uNumA1+","+one.Entries[0].At.UTC().Format(time.RFC3339)+","+strconv.FormatUint(one.Entries[0].MOID, 10)+",\n" ||
		tr.Get(ExportRowsTrailer) != "1" || !strings.Contains(tr.Get("Content-Disposition"), `"optouts-A.csv"`) {
		t.Fatalf("the export: %d %q %v", ecode, ebody, tr)
	}
	_, ebody, _ = exportGet(t, r.url, "/v1/optouts/export?lang=zh", r.keys["alice"])
	if !bytes.HasPrefix(ebody, []byte("\uFEFF手机号码,退订时间,退订回复编号,手工添加人\n"+uNumA1+",")) {
		t.Fatalf("the export for Excel: %q", ebody)
	}
	if _, ebody, tr = exportGet(t, r.url, "/v1/optouts/export?format=jsonl", r.keys["bob"]); len(ebody) != 0 || tr.Get(ExportRowsTrailer) != "0" {
		t.Fatalf("B's export: %q %v", ebody, tr)
	}

	// The operator's export, before the removal.
	adminURL := r.adminAPI("op-token")
	get := func(query string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", adminURL+"/admin/v1/optouts"+query, nil)
		req.Header.Set("Authorization", "Bearer op-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("?format=csv")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || err != nil || len(rows) != 2 || rows[1][0] != "A" || rows[1][1] != "+86"+uNumA1 {
		t.Fatalf("csv export: %d %q %v", code, body, err)
	}
	code, body = get("?enterprise=B")
	var none []policy.OptOutEntry
	if code != 200 || json.Unmarshal([]byte(body), &none) != nil || len(none) != 0 {
		t.Fatalf("B's json export: %d %s", code, body)
	}
	if code, body = get("?enterprise=NOPE"); code != 404 {
		t.Errorf("unknown enterprise: %d %s", code, body)
	}
	if code, body = get("?format=xml"); code != 400 {
		t.Errorf("bad format: %d %s", code, body)
	}

	r.wantError(http.StatusForbidden, "forbidden", "DELETE", "/v1/optouts/"+uNumA1, r.keys["alice"], nil)
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/optouts/"+uNumA1, r.keys["bob"], nil)
	r.must(http.StatusNoContent, "DELETE", "/v1/optouts/"+uNumA1, r.keys["amy"], nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/optouts/"+uNumA1, r.keys["amy"], nil)
	if res := r.sendOne(r.keys["alice"], uNumA1); res.Status != "accepted" {
		t.Fatalf("A after the removal: %+v", res)
	}
}

// TestOptOutsAddedByHand: any user of an enterprise puts numbers on its
// opt-out list (one: 201, 409 already there, 422 invalid; a list, a file:
// every row accounted for); sends to them are refused opted_out at once,
// another enterprise's are not; the entries and the export say who added
// them.
func TestOptOutsAddedByHand(t *testing.T) {
	r := newUserRig(t)
	var res policy.ImportResult
	r.must(http.StatusCreated, "POST", "/v1/optouts", r.keys["alice"], OptOutAdd{Number: "137 1234 5678"}, &res)
	if res.Added != 1 {
		t.Fatalf("one number: %+v", res)
	}
	r.wantError(http.StatusConflict, "already_opted_out", "POST", "/v1/optouts", r.keys["amy"], OptOutAdd{Number: uNumA1})
	r.wantError(http.StatusUnprocessableEntity, "invalid_number", "POST", "/v1/optouts", r.keys["alice"], OptOutAdd{Number: "5678"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/optouts", r.keys["alice"], OptOutAdd{Number: uNumA1, Numbers: []string{uNumA2}})
	r.must(http.StatusOK, "POST", "/v1/optouts", r.keys["alice"], OptOutAdd{Numbers: []string{uNumA2, uNumA1, "x"}}, &res)
	if res.Rows != 3 || res.Added != 1 || res.Duplicates != 1 || len(res.Errors) != 1 || res.Errors[0].Row != 3 {
		t.Fatalf("a list: %+v", res)
	}
	for _, n := range []string{uNumA1, uNumA2} {
		if got := r.sendOne(r.keys["alice"], n); got.Status != "refused" || got.Reason != "opted_out" {
			t.Errorf("A to %s, added by hand: %+v", n, got)
		}
	}
	if got := r.sendOne(r.keys["bob"], uNumA1); got.Status != "accepted" {
		t.Errorf("B to A's number: %+v", got)
	}
	ct, body := multipartBody(t, "old.csv", []byte("手机号码\n13800138000\n"+uNumA1+"\n"), nil)
	if code, b := r.c().upload("POST", "/v1/optouts/import", r.keys["alice"], ct, body, &res); code != http.StatusOK ||
		res.HeaderRow != 1 || res.Rows != 2 || res.Added != 1 || res.Duplicates != 1 {
		t.Fatalf("import: %d %s", code, b)
	}
	var page OptOutPage
	r.must(http.StatusOK, "GET", "/v1/optouts", r.keys["bob"], nil, &page)
	if len(page.Entries) != 0 {
		t.Fatalf("B's list: %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/optouts", r.keys["amy"], nil, &page)
	if len(page.Entries) != 3 {
		t.Fatalf("A's list: %+v", page)
	}
	for _, e := range page.Entries {
		if e.By == "" || e.MOID != 0 {
			t.Errorf("an entry added by hand: %+v", e)
		}
	}
	_, ebody, tr := exportGet(t, r.url, "/v1/optouts/export", r.keys["alice"])
	rows, err := csv.NewReader(bytes.NewReader(ebody)).ReadAll()
	if err != nil || len(rows) != 4 || rows[1][3] != page.Entries[0].By || tr.Get(ExportRowsTrailer) != "3" {
		t.Fatalf("the export: %q %v", ebody, err)
	}

	// A complaint that reached the operator: on A's list, said so.
	admin := &Client{Base: r.adminAPI("op-token"), Token: "op-token"}
	res2, err := admin.AddOptOuts("A", []string{"13800138001", uNumA1})
	if err != nil || res2.Added != 1 || res2.Duplicates != 1 {
		t.Fatalf("the operator's add: %+v %v", res2, err)
	}
	_, err = admin.AddOptOuts("NOPE", []string{"13800138001"})
	wantAPIError(t, err, http.StatusNotFound, "not_found")
	var mine OptOutPage
	r.must(http.StatusOK, "GET", "/v1/optouts?number=13800138001", r.keys["alice"], nil, &mine)
	if len(mine.Entries) != 1 || !mine.Entries[0].ByOperator || mine.Entries[0].By != "" {
		t.Fatalf("the operator's entry on A's list: %+v", mine)
	}
	if got := r.sendOne(r.keys["alice"], "13800138001"); got.Status != "refused" || got.Reason != "opted_out" {
		t.Errorf("A to the number the operator added: %+v", got)
	}
}
