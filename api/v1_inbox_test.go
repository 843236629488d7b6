package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// serviceNumbers gives enterprise A the service number 106575001 with
// extensions of 2 digits, alice the extension 12 (her replies go to
// 10657500112), and B the number 106575002.
func (r *userRig) serviceNumbers() {
	r.t.Helper()
	op := policy.OperatorActor("test")
	if _, err := r.pol.UpdateEnterprise(op, "A", func(e *policy.Enterprise) error {
		e.ServiceNumber, e.ExtLen = "106575001", 2
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.pol.UpdateEnterprise(op, "B", func(e *policy.Enterprise) error {
		e.ServiceNumber = "106575002"
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	ext := "12"
	if _, err := r.pol.UpdateUser(op, "alice", policy.UserUpdate{Extension: &ext}); err != nil {
		r.t.Fatal(err)
	}
}

// TestServiceNumberAndInboxOverHTTP: over HTTP, a source not of the
// enterprise's service number is refused bad_source, an empty one goes
// out as the number plus the user's extension; replies to it are listed
// in the inbox, all to the admin, a user's own to the user.
func TestServiceNumberAndInboxOverHTTP(t *testing.T) {
	r := newUserRig(t)
	r.serviceNumbers()
	e := r.wantError(http.StatusUnprocessableEntity, "bad_source", "POST", "/v1/messages", r.keys["alice"],
		SendRequest{To: []string{uNumA1}, Text: "冒充", Source: "106575002"})
	if e.Error.Code != "0x00000409" {
		t.Errorf("bad_source code %q", e.Error.Code)
	}
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "来自接入号"})
	r.waitReceived(uNumA1, "【甲公司】来自接入号", 10*time.Second)
	for _, m := range r.sim.Received() {
		if m.Dest == uNumA1 && m.Source != "10657500112" {
			t.Errorf("the SMSC got source %q, want the service number + alice's extension", m.Source)
		}
	}

	// The message above reached the SMSC: an upstream bind is up to
	// carry the replies.
	inject := func(dst, text string) {
		t.Helper()
		if err := r.sim.InjectMO(uNumA2, dst, text); err != nil {
			t.Fatalf("inject: %v", err)
		}
	}
	inject("10657500112", "给alice")
	inject("106575001", "给企业")
	var page InboxPage
	r.must(http.StatusOK, "GET", "/v1/inbox?limit=1", r.keys["amy"], nil, &page)
	if len(page.Replies) != 1 || page.Replies[0].Text != "给企业" || page.Next == "" {
		t.Fatalf("amy page 1: %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/inbox?limit=1&before="+page.Next, r.keys["amy"], nil, &page)
	if len(page.Replies) != 1 || page.Replies[0].Text != "给alice" || page.Replies[0].Account != "alice" || page.Replies[0].From != uNumA2 {
		t.Fatalf("amy page 2: %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/inbox", r.keys["alice"], nil, &page)
	if len(page.Replies) != 1 || page.Replies[0].Text != "给alice" {
		t.Fatalf("alice: %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/inbox", r.keys["al2"], nil, &page)
	if len(page.Replies) != 0 {
		t.Fatalf("al2 sees %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/inbox", r.keys["bob"], nil, &page)
	if len(page.Replies) != 0 {
		t.Fatalf("bob sees %+v", page)
	}

	// Narrowed to a handset's number, in any form, and to a time range.
	if err := r.sim.InjectMO(uNumA1, "106575001", "另一个号码"); err != nil {
		t.Fatalf("inject: %v", err)
	}
	texts := func(q string) []string {
		t.Helper()
		var page InboxPage
		r.must(http.StatusOK, "GET", "/v1/inbox?"+q, r.keys["amy"], nil, &page)
		var out []string
		for _, rp := range page.Replies {
			out = append(out, rp.Text)
		}
		return out
	}
	plus86 := url.QueryEscape("+86 " + uNumA2[:3] + " " + uNumA2[3:7] + " " + uNumA2[7:])
	for q, want := range map[string][]string{
		"number=" + uNumA2:   {"给企业", "给alice"},
		"number=" + plus86:   {"给企业", "给alice"},
		"number=" + uNumA1:   {"另一个号码"},
		"number=10000000000": nil,
		"from=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)):                     nil,
		"to=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)) + "&number=" + uNumA1: {"另一个号码"},
	} {
		if got := texts(q); !slices.Equal(got, want) {
			t.Errorf("inbox?%s: %q, want %q", q, got, want)
		}
	}
	for _, bad := range []string{"number=abc", "number=" + strings.Repeat("1", 33), "from=yesterday"} {
		r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/inbox?"+bad, r.keys["amy"], nil)
	}
}

// TestInboxPartsMissing: a long reply stored without all its parts (the
// reassembly timeout) says how many are missing in GET /v1/inbox; a whole
// reply has no parts_missing.
func TestInboxPartsMissing(t *testing.T) {
	r := newUserRig(t)
	ctx := context.Background()
	for _, m := range []*queue.MO{
		{Enterprise: "A", Source: uNumA2, Dest: "106575001", Text: "the start, the end", Upstream: "sim", PartsMissing: 1},
		{Enterprise: "A", Source: uNumA2, Dest: "106575001", Text: "whole", Upstream: "sim"},
	} {
		if err := r.store.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	b := r.must(http.StatusOK, "GET", "/v1/inbox", r.keys["amy"], nil, nil)
	var page struct {
		Replies []map[string]any `json:"replies"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Replies) != 2 || page.Replies[1]["parts_missing"] != 1.0 || page.Replies[0]["parts_missing"] != nil {
		t.Fatalf("inbox %s", b)
	}
}
