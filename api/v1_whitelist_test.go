package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/qxtd/qxtd/policy"
)

// adminAPI serves the rig's daemon's admin API with an operator token.
func (r *userRig) adminAPI(token string) string {
	r.t.Helper()
	adm := New(Config{AdminToken: token, Store: r.store, Policy: r.pol, Gateway: r.gw})
	hs := httptest.NewServer(adm.Handler())
	r.t.Cleanup(func() {
		hs.Close()
		adm.Close()
	})
	return hs.URL
}

func (r *userRig) importWhitelist(token, name string, file []byte) policy.ImportResult {
	r.t.Helper()
	var res policy.ImportResult
	ct, body := multipartBody(r.t, name, file, nil)
	if code, b := r.c().upload("POST", "/v1/whitelist/import", token, ct, body, &res); code != http.StatusOK {
		r.t.Fatalf("import %s: %d %s", name, code, b)
	}
	return res
}

func (r *userRig) sendOne(token, to string) RecipientResult {
	r.t.Helper()
	res := r.send(token, SendRequest{To: []string{to}, Text: "白名单测试"})
	if len(res.Results) != 1 {
		r.t.Fatalf("send to %s: %+v", to, res)
	}
	return res.Results[0]
}

// TestWhitelistRequests walks FAQ 4 over real HTTP: the enterprise asks for
// numbers (one, a GBK CSV, an XLSX), a send to a pending number is refused
// saying it awaits approval, the account manager's queue lists them oldest
// first across enterprises and decides in bulk, a rejection's reason reaches
// the enterprise, and another enterprise cannot see or remove them.
func TestWhitelistRequests(t *testing.T) {
	r := newUserRig(t)
	amy, alice, bob := r.keys["amy"], r.keys["alice"], r.keys["bob"]
	const n1, n2 = "13712345001", "13712345002"
	adminURL := r.adminAPI("op-token")
	// onAdmin runs fn with the rig's helpers pointed at the admin API.
	onAdmin := func(fn func()) {
		t.Helper()
		saved := r.url
		r.url = adminURL
		defer func() { r.url = saved }()
		fn()
	}
	opCall := func(want int, method, path string, body, out any) {
		t.Helper()
		onAdmin(func() { r.must(want, method, path, "op-token", body, out) })
	}

	// Ask for one number: pending. Again: already_listed. A plain user may
	// ask too (pending all the same).
	var added policy.ImportResult
	r.must(http.StatusCreated, "POST", "/v1/whitelist", amy, WhitelistAdd{Number: n1}, &added)
	if added.Added != 1 || added.Rows != 1 {
		t.Errorf("add: %+v", added)
	}
	e := r.wantError(http.StatusConflict, policy.RowAlreadyListed, "POST", "/v1/whitelist", amy, WhitelistAdd{Number: "+86 137-1234-5001"})
	if !strings.Contains(e.Error.Message, "awaiting the account manager's approval") {
		t.Errorf("already listed: %+v", e)
	}
	r.wantError(http.StatusUnprocessableEntity, "invalid_number", "POST", "/v1/whitelist", amy, WhitelistAdd{Number: "02088888888"})
	var byUser policy.ImportResult
	r.must(http.StatusCreated, "POST", "/v1/whitelist", alice, WhitelistAdd{Number: "13712345099"}, &byUser)
	if byUser.Added != 1 {
		t.Errorf("a plain user's request: %+v", byUser)
	}
	// Removing is the enterprise admin's: a plain user may not, amy may.
	r.wantError(http.StatusForbidden, "forbidden", "DELETE", "/v1/whitelist/13712345099", alice, nil)
	r.must(http.StatusNoContent, "DELETE", "/v1/whitelist/13712345099", amy, nil, nil)
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/whitelist", amy, WhitelistAdd{Number: n2, Numbers: []string{n2}})

	// A send to it: refused, awaiting approval.
	res := r.sendOne(alice, n1)
	if res.Status != "refused" || res.Reason != "not_whitelisted" || res.Code != "0x00000400" ||
		!strings.Contains(res.Message, "awaits the account manager's approval") {
		t.Errorf("send to pending: %+v", res)
	}

	// Everyone of the enterprise sees the entry and its state.
	var page WhitelistPage
	r.must(http.StatusOK, "GET", "/v1/whitelist?state=pending", alice, nil, &page)
	var pending []string
	for _, e := range page.Entries {
		if e.State != policy.WhitelistPending {
			t.Errorf("state filter: %+v", e)
		}
		pending = append(pending, e.Number)
		if e.Number == "+86"+n1 && e.AddedBy != "amy" {
			t.Errorf("added_by: %+v", e)
		}
	}
	if want := []string{"+86" + n1, "+86" + uNumPending}; !reflect.DeepEqual(pending, want) {
		t.Errorf("pending %v, want %v", pending, want)
	}
	r.must(http.StatusOK, "GET", "/v1/whitelist?limit=1", alice, nil, &page)
	if len(page.Entries) != 1 || page.Next == "" {
		t.Errorf("page of 1: %+v", page)
	}
	r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/whitelist?state=maybe", alice, nil)

	// Another enterprise: neither sees nor removes them.
	r.must(http.StatusOK, "GET", "/v1/whitelist", bob, nil, &page)
	for _, e := range page.Entries {
		if e.Number == "+86"+n1 || e.Number == "+86"+uNumPending {
			t.Errorf("B sees A's entry %+v", e)
		}
	}
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/whitelist/"+n1, bob, nil)

	// The account manager's queue: oldest first, across enterprises.
	var bAdded policy.ImportResult
	r.must(http.StatusOK, "POST", "/v1/whitelist", bob, WhitelistAdd{Numbers: []string{n2, n2}}, &bAdded)
	if bAdded.Added != 1 || bAdded.Duplicates != 1 || len(bAdded.Listed) != 1 || bAdded.Listed[0].Reason != policy.RowAlreadyListed {
		t.Errorf("B's list: %+v", bAdded)
	}
	var q PendingPage
	opCall(http.StatusOK, "GET", "/admin/v1/whitelist/pending", nil, &q)
	var queue []string
	for _, e := range q.Entries {
		queue = append(queue, e.Enterprise+" "+e.Number)
	}
	// Times are whole seconds: A's two may share one (then by number).
	want1 := []string{"A +86" + uNumPending, "A +86" + n1, "B +86" + n2}
	want2 := []string{"A +86" + n1, "A +86" + uNumPending, "B +86" + n2}
	if !reflect.DeepEqual(queue, want1) && !reflect.DeepEqual(queue, want2) {
		t.Errorf("queue %v, want %v", queue, want1)
	}
	var q1 PendingPage
	opCall(http.StatusOK, "GET", "/admin/v1/whitelist/pending?limit=2", nil, &q1)
	var q2 PendingPage
	opCall(http.StatusOK, "GET", "/admin/v1/whitelist/pending?limit=2&after="+q1.Next, nil, &q2)
	if len(q1.Entries) != 2 || len(q2.Entries) != 1 || q2.Next != "" || q2.Entries[0].Number != "+86"+n2 {
		t.Errorf("queue pages %+v / %+v", q1, q2)
	}
	if code, _ := (client{t, adminURL}).upload("GET", "/admin/v1/whitelist/pending", amy, "", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("an API key on the admin API: %d", code)
	}

	// Bulk approve across enterprises.
	var dr policy.DecideResult
	opCall(http.StatusOK, "POST", "/admin/v1/whitelist/approve", EntryDecision{Entries: []policy.EntryRef{
		{Enterprise: "A", Number: n1}, {Enterprise: "A", Number: uNumPending}, {Enterprise: "B", Number: n1}, {Enterprise: "A", Number: "x"},
	}}, &dr)
	if dr.Changed != 2 || len(dr.NotFound) != 1 || dr.NotFound[0] != (policy.EntryRef{Enterprise: "B", Number: "+86" + n1}) || len(dr.Errors) != 1 {
		t.Errorf("approve: %+v", dr)
	}
	if res := r.sendOne(alice, n1); res.Status != "accepted" {
		t.Errorf("send after approval: %+v", res)
	}
	r.waitReceived(n1, "【甲公司】白名单测试", 10*time.Second)

	// Reject with a reason: the enterprise sees it, in the list and in a refusal.
	onAdmin(func() {
		r.wantError(http.StatusBadRequest, "invalid", "POST", "/admin/v1/whitelist/reject", "op-token",
			EntryDecision{Entries: []policy.EntryRef{{Enterprise: "B", Number: n2}}})
	})
	opCall(http.StatusOK, "POST", "/admin/v1/whitelist/reject", EntryDecision{Entries: []policy.EntryRef{{Enterprise: "B", Number: n2}}, Reason: "号码不属于贵公司客户"}, &dr)
	if dr.Changed != 1 {
		t.Errorf("reject: %+v", dr)
	}
	r.must(http.StatusOK, "GET", "/v1/whitelist?state=rejected", bob, nil, &page)
	if len(page.Entries) != 1 || page.Entries[0].Reason != "号码不属于贵公司客户" || page.Entries[0].DecidedBy != OperatorName || page.Entries[0].DecidedAt.IsZero() {
		t.Errorf("rejected entries: %+v", page.Entries)
	}
	if res := r.sendOne(bob, n2); res.Reason != "not_whitelisted" || !strings.Contains(res.Message, "rejected by the account manager: 号码不属于贵公司客户") {
		t.Errorf("send to rejected: %+v", res)
	}
	if n, _ := r.pol.PendingStats(); n != 0 {
		t.Errorf("pending after the decisions: %d", n)
	}

	// Import a GBK CSV (Excel on Chinese Windows) and an XLSX: per-row reasons.
	csv, err := simplifiedchinese.GBK.NewEncoder().String("号码,备注\n" +
		"13712345003,张三\n" + // 2: added
		n1 + ",已批准\n" + // 3: already listed (approved)
		"abc,坏号\n" + // 4: invalid
		",无号码\n" + // 5: empty
		"13712345003,重复\n") // 6: repeats row 2
	if err != nil {
		t.Fatal(err)
	}
	ir := r.importWhitelist(amy, "白名单.csv", []byte(csv))
	if ir.Rows != 5 || ir.Added != 1 || ir.Duplicates != 2 || ir.HeaderRow != 1 || len(ir.Errors) != 2 || len(ir.Listed) != 2 ||
		ir.Errors[0].Row != 4 || ir.Errors[1].Row != 5 || ir.Listed[0].Row != 3 || ir.Listed[1].Row != 6 ||
		!strings.Contains(ir.Listed[0].Detail, "approved") || !strings.Contains(ir.Listed[1].Detail, "repeats row 2") ||
		!strings.Contains(ir.Listed[0].DetailZH, "已在白名单中，已通过审批") || !strings.Contains(ir.Listed[1].DetailZH, "与第 2 行重复") {
		t.Errorf("CSV import: %+v", ir)
	}
	x := excelize.NewFile()
	for cell, v := range map[string]any{"A1": "号码", "A2": 13712345004, "A3": "13712345003", "A4": "1.38001E+10", "A5": "13712345005"} {
		if err := x.SetCellValue("Sheet1", cell, v); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := x.Write(&buf); err != nil {
		t.Fatal(err)
	}
	ir = r.importWhitelist(amy, "白名单.xlsx", buf.Bytes())
	if ir.Rows != 4 || ir.Added != 2 || len(ir.Listed) != 1 || ir.Listed[0].Row != 3 ||
		!strings.Contains(ir.Listed[0].Detail, "awaiting") || len(ir.Errors) != 1 || ir.Errors[0].Reason != policy.RowNumberTruncated {
		t.Errorf("XLSX import: %+v", ir)
	}
	// A plain user imports too: the same file again adds nothing new.
	ct, body := multipartBody(t, "w.csv", []byte(csv), nil)
	if code, b := r.c().upload("POST", "/v1/whitelist/import", alice, ct, body, nil); code != http.StatusOK || !strings.Contains(string(b), `"added":0`) {
		t.Errorf("a user imports: %d %s", code, b)
	}
	if n, _ := r.pol.PendingStats(); n != 3 {
		t.Errorf("pending after imports: %d", n)
	}

	// Remove its own; gone is 404.
	r.must(http.StatusNoContent, "DELETE", "/v1/whitelist/"+n1, amy, nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/whitelist/86"+n1, amy, nil)
	r.wantError(http.StatusForbidden, "forbidden", "DELETE", "/v1/whitelist/13712345003", alice, nil)
	if res := r.sendOne(alice, n1); res.Reason != "not_whitelisted" || !strings.Contains(res.Message, "not on the whitelist") ||
		res.DetailZH != "+86"+n1+"：不在白名单中" {
		t.Errorf("send after removal: %+v", res)
	}

	// The template.
	for _, p := range []string{"/v1/whitelist/template.csv", "/v1/whitelist/template.xlsx"} {
		if b := r.must(http.StatusOK, "GET", p, alice, nil, nil); len(b) == 0 {
			t.Errorf("%s: empty", p)
		}
	}
}

// TestWhitelistBoundsOverHTTP: with whitelists of at most 8 entries, 3 of
// them pending, a plain user's request past the pending bound is answered
// 422 pending_limit, an import across it adds its rows up to the bound and
// refuses the others with their row numbers, the operator is held to the
// whole bound (whitelist_limit), another enterprise asks on, and a
// decision or a removal makes room.
func TestWhitelistBoundsOverHTTP(t *testing.T) {
	r := newBulkRig(t, rigOptions{maxWhitelist: 8, maxPending: 3})
	amy, alice, bob := r.keys["amy"], r.keys["alice"], r.keys["bob"]
	adminURL := r.adminAPI("op-token")
	opCall := func(want int, method, path string, body, out any) {
		t.Helper()
		saved := r.url
		r.url = adminURL
		defer func() { r.url = saved }()
		r.must(want, method, path, "op-token", body, out)
	}
	const n1, n2, n3, n4, n5 = "13712346001", "13712346002", "13712346003", "13712346004", "13712346005"

	// A: 3 approved numbers and uNumPending. Two more pending, then the bound.
	r.must(http.StatusCreated, "POST", "/v1/whitelist", alice, WhitelistAdd{Number: n1}, nil)
	r.must(http.StatusCreated, "POST", "/v1/whitelist", alice, WhitelistAdd{Number: n2}, nil)
	e := r.wantError(http.StatusUnprocessableEntity, policy.RowPendingLimit, "POST", "/v1/whitelist", alice, WhitelistAdd{Number: n3})
	if !strings.Contains(e.Error.Message, "+86"+n3) || !strings.Contains(e.Error.Message, "at most 3 numbers") {
		t.Errorf("pending bound: %+v", e)
	}
	// B is not concerned.
	r.must(http.StatusCreated, "POST", "/v1/whitelist", bob, WhitelistAdd{Number: n3}, nil)

	// An approval frees one place: a file of three gets one in.
	opCall(http.StatusOK, "POST", "/admin/v1/whitelist/approve", EntryDecision{Entries: []policy.EntryRef{{Enterprise: "A", Number: n1}}}, nil)
	res := r.importWhitelist(alice, "wl.csv", []byte("号码\n"+n3+"\n"+n4+"\n"+n5+"\n"))
	if res.Rows != 3 || res.Added != 1 || len(res.Errors) != 2 ||
		res.Errors[0].Row != 3 || res.Errors[0].Reason != policy.RowPendingLimit ||
		res.Errors[1].Row != 4 || res.Errors[1].Reason != policy.RowPendingLimit {
		t.Errorf("import across the pending bound: %+v", res)
	}

	// A holds 7: the operator's list (approved at once) fills the eighth.
	var opRes policy.ImportResult
	opCall(http.StatusOK, "POST", "/admin/v1/enterprises/A/whitelist", Numbers{Numbers: []string{n4, n5}}, &opRes)
	if opRes.Added != 1 || len(opRes.Errors) != 1 || opRes.Errors[0].Row != 2 || opRes.Errors[0].Reason != policy.RowWhitelistLimit {
		t.Errorf("operator past the bound: %+v", opRes)
	}
	r.wantError(http.StatusUnprocessableEntity, policy.RowWhitelistLimit, "POST", "/v1/whitelist", amy, WhitelistAdd{Number: n5})

	// A removal makes room.
	r.must(http.StatusNoContent, "DELETE", "/v1/whitelist/"+n4, amy, nil, nil)
	opCall(http.StatusOK, "POST", "/admin/v1/enterprises/A/whitelist", Numbers{Numbers: []string{n5}}, &opRes)
	if opRes.Added != 1 || len(opRes.Errors) != 0 {
		t.Errorf("after a removal: %+v", opRes)
	}
	if res := r.sendOne(alice, n5); res.Status != "accepted" {
		t.Errorf("send to the operator's number: %+v", res)
	}
}
