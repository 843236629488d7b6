package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// TestMessagePreview: the preview signs and counts as the send path does,
// answers a text it would refuse with its counts and a refusal, and
// counts an empty text as the signatures alone.
func TestMessagePreview(t *testing.T) {
	r := newUserRig(t)
	preview := func(key, text string) PreviewResponse {
		t.Helper()
		var p PreviewResponse
		r.must(http.StatusOK, "POST", "/v1/messages/preview", key, PreviewRequest{Text: text}, &p)
		return p
	}
	p := preview(r.keys["alice"], "您好")
	if p != (PreviewResponse{Signed: "【甲公司】您好", Chars: 7, Segments: 1, SegmentsMax: 1, Encoding: "ucs2", MaxChars: 500}) {
		t.Fatalf("preview %+v", p)
	}
	// al2 shows its name: the user signature after the text, as sent.
	p = preview(r.keys["al2"], "您好")
	out := r.send(r.keys["al2"], SendRequest{To: []string{uNumA1}, Text: "您好"})
	r.waitReceived(uNumA1, p.Signed, 10*time.Second)
	if !strings.HasPrefix(p.Signed, "【甲公司】您好") || p.Signed == "【甲公司】您好" || out.Accepted != 1 {
		t.Fatalf("al2: %+v", p)
	}
	// 70 characters with the signature: one segment; 71: two.
	if p := preview(r.keys["alice"], strings.Repeat("好", 65)); p.Chars != 70 || p.Segments != 1 {
		t.Fatalf("70: %+v", p)
	}
	if p := preview(r.keys["alice"], strings.Repeat("好", 66)); p.Chars != 71 || p.Segments != 2 {
		t.Fatalf("71: %+v", p)
	}
	// Too long: 200 OK with the whole count and the refusal.
	p = preview(r.keys["alice"], strings.Repeat("好", 500))
	if p.Chars != 505 || p.Segments != 8 || p.Refusal == nil || p.Refusal.Reason != "too_long" ||
		p.Refusal.MessageZH != policy.ReasonTooLong.MessageZH() || p.Refusal.Message == "" || p.Refusal.DetailZH != "共 505 个字（含签名），最多 500 个字" {
		t.Fatalf("too long: %+v %+v", p, p.Refusal)
	}
	r.wantError(http.StatusUnprocessableEntity, "too_long", "POST", "/v1/messages", r.keys["alice"],
		SendRequest{To: []string{uNumA1}, Text: strings.Repeat("好", 500)})
	// For a recipient: counted as for it; a number the send would refuse
	// is the refusal, with the counts.
	var to PreviewResponse
	r.must(http.StatusOK, "POST", "/v1/messages/preview", r.keys["alice"], PreviewRequest{Text: "您好", To: uNumA1}, &to)
	if to != (PreviewResponse{Signed: "【甲公司】您好", Chars: 7, Segments: 1, SegmentsMax: 1, Encoding: "ucs2", MaxChars: 500}) {
		t.Fatalf("to %s: %+v", uNumA1, to)
	}
	r.must(http.StatusOK, "POST", "/v1/messages/preview", r.keys["alice"], PreviewRequest{Text: "您好", To: "12345"}, &to)
	if to.Segments != 1 || to.Refusal == nil || to.Refusal.Reason != "invalid_number" ||
		to.Refusal.MessageZH != policy.ReasonInvalidNumber.MessageZH() {
		t.Fatalf("to an invalid number: %+v %+v", to, to.Refusal)
	}
	// Empty: the signature alone.
	if p := preview(r.keys["alice"], ""); p.Signed != "【甲公司】" || p.Chars != 5 || p.Segments != 1 || p.Refusal != nil {
		t.Fatalf("empty: %+v", p)
	}
	// A preview is no submission: carl (1 per second) previews at will
	// and still sends.
	for range 5 {
		preview(r.keys["carl"], "x")
	}
	if out := r.send(r.keys["carl"], SendRequest{To: []string{uNumA1}, Text: "x"}); out.Accepted != 1 {
		t.Fatalf("carl after previews: %+v", out)
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/messages/preview", "", PreviewRequest{Text: "x"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages/preview", r.keys["alice"], map[string]any{"txt": "x"})
}
