package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestIdempotencyKeyAcrossKill: the real daemon answers a send with an
// Idempotency-Key and is killed (kill -9) before the client could have
// heard the answer; the client's retry to the daemon started again gets
// the first answer, and the SMSC gets the message once. A new key sends
// again.
func TestIdempotencyKeyAcrossKill(t *testing.T) {
	dir := t.TempDir()
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)
	key := issueAPIKey(t, "http://"+d.httpAddr, "esme")
	code, first, _ := keyedSend(t, "http://"+d.httpAddr, key, "order-1", "13800138000")
	if code != http.StatusOK || !strings.Contains(first, `"id"`) {
		t.Fatalf("send: %d %s", code, first)
	}
	// Delivered before the kill, so that the count at the SMSC shows a
	// retry sent again, not a submit the crash left unrecorded (sent
	// again after a restart by design: README, Guarantees).
	var res struct{ Results []struct{ ID string } }
	if err := json.Unmarshal([]byte(first), &res); err != nil || len(res.Results) != 1 {
		t.Fatalf("answer %s: %v", first, err)
	}
	waitCond(t, 20*time.Second, "delivered", func() bool {
		code, body := postJSON(t, http.MethodGet, "http://"+d.httpAddr+"/v1/messages/"+res.Results[0].ID, key, "")
		return code == http.StatusOK && strings.Contains(body, `"state":"delivered"`)
	})
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d = startDaemon(t, cfg)
	base := "http://" + d.httpAddr
	code, again, hdr := keyedSend(t, base, key, "order-1", "13800138000")
	if code != http.StatusOK || again != first || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after kill -9: %d %s (replayed %q), want the first answer %s", code, again, hdr.Get("Idempotent-Replayed"), first)
	}
	if code, other, _ := keyedSend(t, base, key, "order-2", "13800138001"); code != http.StatusOK || other == first {
		t.Fatalf("a new key: %d %s", code, other)
	}
	// The new key's message went out after the retry: a second copy of
	// the keyed one would have gone before it.
	waitReceived(t, sim, "13800138001", 20*time.Second)
	if n := len(waitReceived(t, sim, "13800138000", 20*time.Second)); n != 1 {
		t.Fatalf("the SMSC got the keyed message %d times, want once", n)
	}
}

// issueAPIKey has the operator issue user systemID an API key (API keys
// outlive restarts; console tokens do not).
func issueAPIKey(t *testing.T, base, systemID string) string {
	t.Helper()
	code, body := postJSON(t, http.MethodPost, base+"/admin/v1/users/"+systemID+"/apikey", "test-token", "")
	var key struct {
		APIKey string `json:"api_key"`
	}
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &key) != nil || key.APIKey == "" {
		t.Fatalf("api key: %d %s", code, body)
	}
	return key.APIKey
}

// keyedSend sends a text to numbers (comma-separated) with API key
// apiKey and the Idempotency-Key idem ("": none): the status, body and
// headers.
func keyedSend(t *testing.T, base, apiKey, idem, to string) (int, string, http.Header) {
	t.Helper()
	numbers := `"` + strings.ReplaceAll(to, ",", `","`) + `"`
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/messages", strings.NewReader(`{"to":[`+numbers+`],"text":"只发一次"}`))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}
