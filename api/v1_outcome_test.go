package api

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestOutboxOutcome: GET /v1/messages?outcome= lists a group of states,
// as the console's 发件箱 tabs show them — received (delivered), failed
// (the final failures) and pending (no outcome yet); a cancelled message
// is in none of them, and an unknown group is refused.
func TestOutboxOutcome(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true,
		Faults: smpp.Faults{UndelivPrefix: uNumA2[:4]}}})
	key := r.keys["alice"]
	ok := r.send(key, SendRequest{To: []string{uNumA1}, Text: "收到"}).Results[0]
	bad := r.send(key, SendRequest{To: []string{uNumA2}, Text: "收不到"}).Results[0]
	gone := r.send(key, SendRequest{To: []string{uNumA3}, Text: "取消", SendAt: time.Now().Add(time.Hour).Format(time.RFC3339)}).Results[0]
	r.waitState(key, ok.ID, "delivered", 10*time.Second)
	r.waitState(key, bad.ID, "undeliverable", 10*time.Second)
	r.must(http.StatusOK, "DELETE", "/v1/messages/"+gone.ID, key, nil, nil)
	// From now on the SMSC answers nothing: the next message stays in flight.
	r.sim.SetFaults(smpp.Faults{NoResponse: 1})
	wait := r.send(key, SendRequest{To: []string{uNumA3}, Text: "等待"}).Results[0]

	ids := func(q string) []string {
		t.Helper()
		var page MessagePage
		r.must(http.StatusOK, "GET", "/v1/messages?"+q, key, nil, &page)
		var out []string
		for _, m := range page.Messages {
			out = append(out, m.ID)
		}
		return out
	}
	for q, want := range map[string][]string{
		"outcome=received":                   {ok.ID},
		"outcome=failed":                     {bad.ID},
		"outcome=pending":                    {wait.ID},
		"outcome=failed&state=expired":       nil,
		"outcome=failed&state=undeliverable": {bad.ID},
		"":                                   {wait.ID, gone.ID, bad.ID, ok.ID},
	} {
		if got := ids(q); !slices.Equal(got, want) {
			t.Errorf("GET /v1/messages?%s: %v, want %v", q, got, want)
		}
	}
	// bob (enterprise B) sees none of A's in any group.
	var page MessagePage
	r.must(http.StatusOK, "GET", "/v1/messages?outcome=received", r.keys["bob"], nil, &page)
	if len(page.Messages) != 0 {
		t.Errorf("bob sees %+v", page.Messages)
	}
	for _, bad := range []string{"outcome=bogus", "outcome=Received", "outcome=delivered"} {
		r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/messages?"+bad, key, nil)
	}
}
