package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// adminServer serves the admin API over the rig's store and policy (the
// user rig's own server has no operator token).
func (r *userRig) adminServer(token string) string {
	r.t.Helper()
	hs := httptest.NewServer(New(Config{AdminToken: token, Store: r.store, Policy: r.pol}).Handler())
	r.t.Cleanup(hs.Close)
	return hs.URL
}

// FAQ 7: the enterprise asks for a new signature, the account manager
// approves it; until then the old one goes on the air, after it the new one.
func TestSignatureChange(t *testing.T) {
	r := newUserRig(t)
	const tok = "op-token"
	adm := &userRig{t: t, url: r.adminServer(tok)}
	amy, alice, bob := r.keys["amy"], r.keys["alice"], r.keys["bob"]

	for _, bad := range []string{"", "甲新公司", "【】", "【" + strings.Repeat("甲", 40) + "】", "【甲【新】", " 【甲新】", "【甲公司】"} {
		r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/signature/requests", amy, SignatureRequestIn{Signature: bad})
	}
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/signature/requests", alice, SignatureRequestIn{Signature: "【甲新公司】"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/signature/requests", amy, map[string]string{"sig": "【甲新公司】"})

	var first, req policy.SignatureRequest
	r.must(http.StatusAccepted, "POST", "/v1/signature/requests", amy, SignatureRequestIn{Signature: "【甲旧】"}, &first)
	r.must(http.StatusAccepted, "POST", "/v1/signature/requests", amy, SignatureRequestIn{Signature: "【甲新公司】"}, &req)
	if req.State != policy.SignaturePending || req.Previous != "【甲公司】" || req.RequestedBy != "amy" || req.ID == first.ID {
		t.Fatalf("request: %+v", req)
	}
	var st SignatureState
	r.must(http.StatusOK, "GET", "/v1/signature", alice, nil, &st)
	if st.Signature != "【甲公司】" || st.Pending == nil || st.Pending.ID != req.ID {
		t.Fatalf("signature while pending: %+v", st)
	}
	var list SignatureRequestList
	r.must(http.StatusOK, "GET", "/v1/signature/requests", amy, nil, &list)
	if len(list.Requests) != 2 || list.Requests[1].State != policy.SignatureSuperseded {
		t.Fatalf("A's requests: %+v", list.Requests)
	}
	r.must(http.StatusOK, "GET", "/v1/signature/requests", bob, nil, &list) // B sees none of A's
	if len(list.Requests) != 0 {
		t.Fatalf("B sees %+v", list.Requests)
	}

	// Pending: the old signature stays on the air.
	r.send(alice, SendRequest{To: []string{uNumA1}, Text: "审批前"})
	r.waitReceived(uNumA1, "【甲公司】审批前", 10*time.Second)

	// The account manager's queue holds the pending request only.
	adm.must(http.StatusOK, "GET", "/admin/v1/signature-requests?state=pending", tok, nil, &list)
	if len(list.Requests) != 1 || list.Requests[0].ID != req.ID || list.Requests[0].Enterprise != "A" {
		t.Fatalf("pending queue: %+v", list.Requests)
	}
	adm.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/signature-requests", amy, nil)
	adm.wantError(http.StatusBadRequest, "invalid", "POST", "/admin/v1/signature-requests/"+first.ID+"/approve", tok, nil) // superseded
	adm.wantError(http.StatusBadRequest, "invalid", "POST", "/admin/v1/signature-requests/"+req.ID+"/reject", tok, SignatureDecision{})
	adm.wantError(http.StatusNotFound, "not_found", "POST", "/admin/v1/signature-requests/999/approve", tok, nil)
	adm.wantError(http.StatusNotFound, "not_found", "POST", "/admin/v1/signature-requests/x1/approve", tok, nil)
	var done policy.SignatureRequest
	adm.must(http.StatusOK, "POST", "/admin/v1/signature-requests/"+req.ID+"/approve", tok, nil, &done)
	if done.State != policy.SignatureApproved || done.DecidedBy != OperatorName {
		t.Fatalf("approved: %+v", done)
	}
	adm.wantError(http.StatusBadRequest, "invalid", "POST", "/admin/v1/signature-requests/"+req.ID+"/approve", tok, nil)

	// Approved: the new signature goes on the air at once.
	r.send(alice, SendRequest{To: []string{uNumA1}, Text: "审批后"})
	r.waitReceived(uNumA1, "【甲新公司】审批后", 10*time.Second)

	// A rejected request changes nothing and says why.
	var rej policy.SignatureRequest
	r.must(http.StatusAccepted, "POST", "/v1/signature/requests", amy, SignatureRequestIn{Signature: "【甲假冒】"}, &rej)
	adm.must(http.StatusOK, "POST", "/admin/v1/signature-requests/"+rej.ID+"/reject", tok, SignatureDecision{Reason: "名称与营业执照不符"}, &rej)
	r.must(http.StatusOK, "GET", "/v1/signature", amy, nil, &st)
	if st.Signature != "【甲新公司】" || st.Pending != nil {
		t.Fatalf("after a rejection: %+v", st)
	}
	r.must(http.StatusOK, "GET", "/v1/signature/requests?state=rejected", alice, nil, &list)
	if len(list.Requests) != 1 || list.Requests[0].Reason != "名称与营业执照不符" {
		t.Fatalf("rejected: %+v", list.Requests)
	}
	r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/signature/requests?state=odd", alice, nil)
}

// The signature wire types are their openapi.yaml schemas.
func TestOpenAPISignatureSchemas(t *testing.T) {
	checkSchemas(t, loadOpenAPI(t), map[string]any{
		"SignatureState":   SignatureState{},
		"SignatureRequest": policy.SignatureRequest{},
		"BillList":         BillList{},
	})
}
