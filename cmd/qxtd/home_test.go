package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestRestartWithAnotherHomeProvince: a message scheduled by an
// enterprise without 全网发送 to a number of the home province (广东) is
// waiting when the daemon is restarted with another policy.home_province
// (浙江): at its time it is not sent but failed rejected scope_national,
// as a new message to the number is refused. The SMSC never gets it.
func TestRestartWithAnotherHomeProvince(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sim, simAddr := startSim(t, smpp.SimOptions{})
	path := rewriteConfig(t, writeConfig(t, dir, simAddr, ""), "national: true", "national: false")
	d := startDaemon(t, path)
	base := "http://" + d.httpAddr
	key := issueAPIKey(t, base, "esme")
	const guangdong = "13712345678"
	at := time.Now().Add(4 * time.Second).UTC().Format(time.RFC3339)
	code, body := postJSON(t, http.MethodPost, base+"/v1/messages", key, `{"to":["`+guangdong+`"],"text":"明天开会","send_at":"`+at+`"}`)
	var sent struct{ Results []struct{ ID, Status string } }
	if err := json.Unmarshal([]byte(body), &sent); code != http.StatusOK || err != nil || len(sent.Results) != 1 || sent.Results[0].ID == "" {
		t.Fatalf("schedule under 广东: %d %s", code, body)
	}
	id := sent.Results[0].ID
	d.stop(t)

	rewriteConfig(t, path, "policy: { bcrypt_cost: 4 }", "policy: { bcrypt_cost: 4, home_province: 浙江 }")
	d = startDaemon(t, path)
	base = "http://" + d.httpAddr
	var m struct {
		State     string `json:"state"`
		ErrorCode string `json:"error_code"`
	}
	waitCond(t, 30*time.Second, "the waiting message's turn", func() bool {
		code, body := postJSON(t, http.MethodGet, base+"/v1/messages/"+id, key, "")
		if err := json.Unmarshal([]byte(body), &m); code != http.StatusOK || err != nil {
			t.Fatalf("message %s: %d %s", id, code, body)
		}
		return m.State != "scheduled" && m.State != "accepted"
	})
	if m.State != "rejected" || !strings.Contains(m.ErrorCode, "scope_national") {
		t.Errorf("the waiting message under 浙江: %s %q, want rejected scope_national", m.State, m.ErrorCode)
	}
	for _, r := range sim.Received() {
		if r.Dest == guangdong || strings.HasSuffix(r.Dest, guangdong) {
			t.Errorf("the SMSC got the message to %s", r.Dest)
		}
	}
	// A new message to the number is refused the same way.
	code, body = postJSON(t, http.MethodPost, base+"/v1/messages", key, `{"to":["`+guangdong+`"],"text":"再发一次"}`)
	if code != http.StatusOK || !strings.Contains(body, `"reason":"scope_national"`) {
		t.Errorf("a new message under 浙江: %d %s, want refused scope_national", code, body)
	}
}
