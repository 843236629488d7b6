package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestPeerCancelReplace(t *testing.T) {
	srv, b := newPeerServer(t)
	b.outcomes = map[uint64]PeerOutcome{
		7: {Result: "ok"},
		8: {Result: "not_scheduled", Message: "queue: not scheduled: message 8"},
		9: {Result: "refused", Reason: "quota_exceeded"},
	}
	c := NewPeerClient(2, secret, srv.Client())
	acct := PeerAccount{SystemID: "u1", Enterprise: "ent", Signature: "【某某】", ExtLen: 2}
	at := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		do   func() (PeerOutcome, error)
		want PeerOutcome
		rec  string
	}{
		{"cancel ok", func() (PeerOutcome, error) { return c.Cancel(t.Context(), srv.URL, 7, acct) },
			PeerOutcome{Result: "ok"}, "cancel 7 u1/ent"},
		{"cancel unknown", func() (PeerOutcome, error) { return c.Cancel(t.Context(), srv.URL, 1, acct) },
			PeerOutcome{Result: "not_found"}, "cancel 1 u1/ent"},
		{"cancel not scheduled", func() (PeerOutcome, error) { return c.Cancel(t.Context(), srv.URL, 8, acct) },
			b.outcomes[8], "cancel 8 u1/ent"},
		{"replace refused", func() (PeerOutcome, error) {
			return c.Replace(t.Context(), srv.URL+"/", 9, PeerReplace{Account: acct, SendAt: at, Text: "新"})
		}, b.outcomes[9], `replace 9 u1/ent 2027-01-02T03:04:05Z "新"`},
		{"replace text only", func() (PeerOutcome, error) {
			return c.Replace(t.Context(), srv.URL, 7, PeerReplace{Account: acct, Text: "x"})
		}, PeerOutcome{Result: "ok"}, `replace 7 u1/ent 0001-01-01T00:00:00Z "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b.mu.Lock()
			b.changes = nil
			b.mu.Unlock()
			out, err := tc.do()
			if err != nil || out != tc.want {
				t.Fatalf("outcome %+v, %v; want %+v", out, err, tc.want)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.changes) != 1 || b.changes[0] != tc.rec {
				t.Errorf("backend saw %q, want %q", b.changes, tc.rec)
			}
		})
	}
}

func TestPeerCancelRefusals(t *testing.T) {
	srv, b := newPeerServer(t)
	now := time.Now().Unix()
	body := []byte(`{"account":{"system_id":"u1","enterprise":"ent"}}`)
	const uri = "/peer/v1/messages/7/cancel"
	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"ok", signed(t, secret, "POST", srv.URL, uri, now, body, body), http.StatusOK},
		{"wrong secret", signed(t, []byte("guess"), "POST", srv.URL, uri, now, body, body), http.StatusUnauthorized},
		{"tampered account", signed(t, secret, "POST", srv.URL, uri, now, body, bytes.Replace(body, []byte("ent"), []byte("evil"), 1)), http.StatusUnauthorized},
		{"replayed on another id", func() *http.Request {
			r := signed(t, secret, "POST", srv.URL, uri, now, body, body)
			r.URL.Path = "/peer/v1/messages/8/cancel"
			return r
		}(), http.StatusUnauthorized},
		{"unknown field", signed(t, secret, "POST", srv.URL, uri, now, []byte(`{"acct":{}}`), []byte(`{"acct":{}}`)), http.StatusBadRequest},
		{"bad id", signed(t, secret, "POST", srv.URL, "/peer/v1/messages/x/cancel", now, body, body), http.StatusBadRequest},
		{"GET", signed(t, secret, "GET", srv.URL, uri, now, nil, nil), http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := srv.Client().Do(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if fmt.Sprint(b.changes) != "[cancel 7 u1/ent]" {
		t.Errorf("backend reached with %q, want only the signed request", b.changes)
	}
}

func TestPeerCancelBackendError(t *testing.T) {
	srv, b := newPeerServer(t)
	b.fail = errors.New("store closed")
	c := NewPeerClient(2, secret, srv.Client())
	if _, err := c.Cancel(t.Context(), srv.URL, 7, PeerAccount{}); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("cancel, backend failure: %v", err)
	}
	if _, err := c.Replace(t.Context(), srv.URL, 7, PeerReplace{}); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("replace, backend failure: %v", err)
	}
	srv.Close()
	if _, err := c.Cancel(t.Context(), srv.URL, 7, PeerAccount{}); err == nil {
		t.Error("cancel at a closed server: no error")
	}
}
