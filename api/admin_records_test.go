package api

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"github.com/qxtd/qxtd/policy"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestAdminRecords: the operator reads an enterprise's sent outbox (every
// user's, narrowed by number as the enterprise's own), a message with its
// parts, and its inbox, without logging in as the enterprise; another
// enterprise's message is 404 under this one, as an unknown enterprise is.
func TestAdminRecords(t *testing.T) {
	r := newUserRig(t)
	r.serviceNumbers()
	_, url0 := operatorServer(t, r, adminToken, nil)
	op := &userRig{t: t, url: url0}
	a1 := r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "给一号"}).Results[0].ID
	a2 := r.send(r.keys["al2"], SendRequest{To: []string{uNumA2}, Text: "给二号"}).Results[0].ID
	b1 := r.send(r.keys["bob"], SendRequest{To: []string{uNumA1}, Text: "乙的"}).Results[0].ID
	r.waitState(r.keys["alice"], a1, "delivered", 10*time.Second)

	var page MessagePage
	op.must(http.StatusOK, "GET", "/admin/v1/enterprises/A/messages", adminToken, nil, &page)
	var ids []string
	for _, m := range page.Messages {
		ids = append(ids, m.ID)
	}
	if len(ids) != 2 || ids[0] != a2 || ids[1] != a1 {
		t.Fatalf("A's outbox: %v, want [%s %s] (every user's, newest first)", ids, a2, a1)
	}
	op.must(http.StatusOK, "GET", "/admin/v1/enterprises/A/messages?number="+url.QueryEscape("+86 "+uNumA1), adminToken, nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != a1 {
		t.Fatalf("A's messages to %s: %+v", uNumA1, page.Messages)
	}
	op.must(http.StatusOK, "GET", "/admin/v1/enterprises/A/messages?account=al2", adminToken, nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != a2 {
		t.Fatalf("al2's: %+v", page.Messages)
	}
	var m Message
	op.must(http.StatusOK, "GET", "/admin/v1/enterprises/A/messages/"+a1, adminToken, nil, &m)
	if m.ID != a1 || m.State != "delivered" || len(m.Parts) != 1 || m.Parts[0].SMSCID == "" {
		t.Fatalf("message %s: %+v", a1, m)
	}
	op.wantError(http.StatusNotFound, "not_found", "GET", "/admin/v1/enterprises/A/messages/"+b1, adminToken, nil)
	op.wantError(http.StatusNotFound, "not_found", "GET", "/admin/v1/enterprises/NOPE/messages", adminToken, nil)
	op.wantError(http.StatusBadRequest, "invalid", "GET", "/admin/v1/enterprises/A/messages?number=abc", adminToken, nil)
	op.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/enterprises/A/messages", "", nil)
	op.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/enterprises/A/messages", r.keys["amy"], nil)

	// The trace of a number: every enterprise's messages to it, each
	// naming its enterprise; without a number, 400.
	op.must(http.StatusOK, "GET", "/admin/v1/messages?number="+url.QueryEscape("+86 "+uNumA1), adminToken, nil, &page)
	if len(page.Messages) != 2 || page.Messages[0].ID != b1 || page.Messages[0].Enterprise != "B" || page.Messages[1].ID != a1 || page.Messages[1].Enterprise != "A" {
		t.Fatalf("the trace of %s: %+v", uNumA1, page.Messages)
	}
	op.must(http.StatusOK, "GET", "/admin/v1/messages?number="+uNumA2+"&account=al2", adminToken, nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != a2 {
		t.Fatalf("the trace of %s, al2's: %+v", uNumA2, page.Messages)
	}
	for _, bad := range []string{"", "?number=", "?number=abc", "?number=1&from=yesterday"} {
		op.wantError(http.StatusBadRequest, "invalid", "GET", "/admin/v1/messages"+bad, adminToken, nil)
	}
	op.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/messages?number=1", r.keys["amy"], nil)
	// An enterprise's own list never names the enterprise.
	var own MessagePage
	r.must(http.StatusOK, "GET", "/v1/messages", r.keys["amy"], nil, &own)
	if len(own.Messages) == 0 || own.Messages[0].Enterprise != "" {
		t.Fatalf("amy's outbox: %+v", own.Messages)
	}

	// The inbox, every extension's.
	for _, dst := range []string{"10657500112", "106575001"} {
		if err := r.sim.InjectMO(uNumA2, dst, "回复到"+dst); err != nil {
			t.Fatal(err)
		}
	}
	var in InboxPage
	op.must(http.StatusOK, "GET", "/admin/v1/enterprises/A/inbox?number="+uNumA2, adminToken, nil, &in)
	if len(in.Replies) != 2 || in.Replies[0].Text != "回复到106575001" || in.Replies[1].Account != "alice" {
		t.Fatalf("A's inbox: %+v", in.Replies)
	}
	op.must(http.StatusOK, "GET", "/admin/v1/enterprises/B/inbox", adminToken, nil, &in)
	if len(in.Replies) != 0 {
		t.Fatalf("B's inbox: %+v", in.Replies)
	}

	// The trace of a handset's replies: every enterprise's, each naming
	// its enterprise; with the number's opt-outs.
	if err := r.sim.InjectMO(uNumA2, "106575002", "TD"); err != nil { // to B: an opt-out
		t.Fatal(err)
	}
	cl0 := &Client{Base: url0, Token: adminToken}
	var trace *InboxPage
	waitUntil(t, func() (bool, string) {
		var err error
		trace, err = cl0.TraceReplies(RecordQuery{Number: "+86 " + uNumA2})
		return err == nil && len(trace.Replies) == 3, fmt.Sprintf("the trace of %s's replies: %+v %v", uNumA2, trace, err)
	})
	if trace.Replies[0].Enterprise != "B" || trace.Replies[0].Text != "TD" || trace.Replies[1].Enterprise != "A" || trace.Replies[2].Enterprise != "A" {
		t.Fatalf("the trace of %s's replies: %+v", uNumA2, trace.Replies)
	}
	var outs []policy.OptOutEntry
	waitUntil(t, func() (bool, string) {
		var err error
		outs, err = cl0.OptOutsOf(uNumA2)
		return err == nil && len(outs) == 1, fmt.Sprintf("the opt-outs of %s: %+v %v", uNumA2, outs, err)
	})
	if outs[0].Enterprise != "B" || outs[0].Number != "+86"+uNumA2 {
		t.Fatalf("the opt-outs of %s: %+v", uNumA2, outs)
	}
	op.wantError(http.StatusBadRequest, "invalid", "GET", "/admin/v1/inbox", adminToken, nil)
	op.wantError(http.StatusUnprocessableEntity, "invalid_number", "GET", "/admin/v1/optouts?number=5678", adminToken, nil)
	op.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/inbox?number=1", r.keys["amy"], nil)

	// The exports, through the Client, as A's own exports write them: its
	// outbox narrowed to a number, its replies for people.
	cl := &Client{Base: url0, Token: adminToken}
	var buf bytes.Buffer
	n, err := cl.ExportEnterpriseMessages(t.Context(), "A", RecordQuery{Number: uNumA1}, RecordExport{}, &buf)
	rows, cerr := csv.NewReader(&buf).ReadAll()
	if err != nil || cerr != nil || n != 1 || len(rows) != 2 || rows[0][0] != "id" || rows[1][0] != a1 {
		t.Fatalf("A's outbox to %s exported: %d rows (%v, %v) %q", uNumA1, n, err, cerr, rows)
	}
	buf.Reset()
	n, err = cl.ExportEnterpriseInbox(t.Context(), "A", RecordQuery{Number: uNumA2}, RecordExport{Lang: "zh"}, &buf)
	rows, cerr = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(buf.Bytes(), []byte("\uFEFF")))).ReadAll()
	if err != nil || cerr != nil || n != 2 || len(rows) != 3 || rows[0][1] != "来自" || rows[1][5] != "回复到106575001" {
		t.Fatalf("A's replies exported: %d rows (%v, %v) %q", n, err, cerr, rows)
	}
	var ae *APIError
	if _, err := cl.ExportEnterpriseInbox(t.Context(), "NOPE", RecordQuery{}, RecordExport{}, io.Discard); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("an unknown enterprise's export: %v", err)
	}
	op.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/enterprises/A/messages/export", r.keys["amy"], nil)
	op.wantError(http.StatusBadRequest, "invalid", "GET", "/admin/v1/enterprises/A/inbox/export?number=abc", adminToken, nil)
}
