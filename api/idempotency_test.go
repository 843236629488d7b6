package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestIdempotencyKey: the same POST /v1/messages sent again with the same
// Idempotency-Key (a retry after a lost answer) gets the first answer and
// sends nothing more; another key sends again.
func TestIdempotencyKey(t *testing.T) {
	r := newUserRig(t)
	post := func(key string) (SendResponse, http.Header) {
		t.Helper()
		b, _ := json.Marshal(SendRequest{To: []string{uNumA1}, Text: "once only"})
		req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/messages", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+r.keys["alice"])
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out SendResponse
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Results) != 1 {
			t.Fatalf("POST with key %q: %d", key, resp.StatusCode)
		}
		return out, resp.Header
	}
	first, _ := post("order-1")
	again, hdr := post("order-1")
	if again.Results[0].ID != first.Results[0].ID || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry got id %s (replayed %q), want the first answer's %s", again.Results[0].ID, hdr.Get("Idempotent-Replayed"), first.Results[0].ID)
	}
	other, _ := post("order-2")
	if other.Results[0].ID == first.Results[0].ID {
		t.Fatal("another key got the same message")
	}
	r.waitState(r.keys["alice"], other.Results[0].ID, "delivered", 10*time.Second)
	r.waitState(r.keys["alice"], first.Results[0].ID, "delivered", 10*time.Second)
	if n := len(r.received(uNumA1)); n != 2 {
		t.Fatalf("the SMSC got %d messages for two keys, want 2", n)
	}
}
