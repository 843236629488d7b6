package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestPasswordChange(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "Acme", Signature: "【阿克米】", Package: 1})).get(t)
	adminMust(e.c.CreateUser("ACME", NewUser{SystemID: "acme_u1", Password: "old12345", Name: "Alice"})).get(t)
	tok, code := e.login(t, "acme_u1", "old12345")
	if code != http.StatusOK {
		t.Fatalf("login %d", code)
	}
	other, code := e.login(t, "acme_u1", "old12345") // another browser
	if code != http.StatusOK {
		t.Fatalf("login %d", code)
	}
	put := func(old, pw string) (int, []byte) {
		return e.selfCall(t, "PUT", "/v1/me/password", tok, PasswordChange{OldPassword: old, NewPassword: pw}, nil)
	}
	c, b := put("wrong123", "new12345")
	wantReason(t, c, b, http.StatusForbidden, "wrong_password")
	for _, pw := range []string{"new123456", "short", "has space", ""} { // SMPP: 6–8 characters
		c, b := put("old12345", pw)
		wantReason(t, c, b, http.StatusBadRequest, "invalid_password")
	}
	if c, b := put("old12345", "new12345"); c != http.StatusNoContent {
		t.Fatalf("change: %d %s", c, b)
	}
	// The change ends the user's other sessions, not the one it came from.
	if c, b := e.selfCall(t, "GET", "/v1/me", other, nil, nil); c != http.StatusUnauthorized {
		t.Errorf("the other session after a password change: %d %s", c, b)
	}
	if c, b := e.selfCall(t, "GET", "/v1/me", tok, nil, nil); c != http.StatusOK {
		t.Errorf("the changing session after a password change: %d %s", c, b)
	}
	if _, code := e.login(t, "acme_u1", "old12345"); code != http.StatusUnauthorized {
		t.Fatalf("old password still logs in: %d", code)
	}
	if _, code := e.login(t, "acme_u1", "new12345"); code != http.StatusOK {
		t.Fatalf("new password: %d", code)
	}
	code, b = e.selfCall(t, "PUT", "/v1/me/password", "", PasswordChange{OldPassword: "new12345", NewPassword: "x1234567"}, nil)
	wantReason(t, code, b, http.StatusUnauthorized, "unauthorized")

	// Guessing the old password through a stolen session is limited.
	for range passwordBurst - 2 { // two attempts so far: the wrong one and the change
		c, b := put("guess123", "new12345")
		wantReason(t, c, b, http.StatusForbidden, "wrong_password")
	}
	c, b = put("new12345", "new22345")
	wantReason(t, c, b, http.StatusTooManyRequests, "rate_limited")
}

// blockingNotifier holds every SMS until released.
type blockingNotifier struct {
	entered chan sentSMS
	release chan struct{}
}

func (n *blockingNotifier) notify(ctx context.Context, mobile, text string) error {
	n.entered <- sentSMS{mobile, text}
	select {
	case <-n.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestPublicPasswordReset(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "Acme", Signature: "【阿克米】", Package: 1})).get(t)
	adminMust(e.c.CreateUser("ACME", NewUser{SystemID: "acme_u1", Password: "old12345", Name: "Alice", Mobile: "13712345678"})).get(t)
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "OTHER", Name: "Other", Signature: "【其他】", Package: 1})).get(t)
	adminMust(e.c.CreateUser("OTHER", NewUser{SystemID: "oth_u1", Password: "old12345", Name: "Alice", Mobile: "13923412345"})).get(t)
	post := func(in PasswordReset) (int, []byte, http.Header) {
		req, err := http.NewRequest("POST", e.url+"/v1/password-reset", bytes.NewReader(mustJSON(t, in)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes(), resp.Header
	}
	match := PasswordReset{GroupCode: "ACME", UserName: "Alice", Mobile: "13712345678"}

	code, b, _ := post(match)
	wantReason(t, code, b, http.StatusServiceUnavailable, "notifier_unavailable")

	// A match is answered while its SMS is still being sent (the write is
	// done by then, the answer did not wait for it): the answer cannot
	// depend on the details.
	n := &blockingNotifier{entered: make(chan sentSMS, 1), release: make(chan struct{})}
	e.s.SetPasswordNotifier(n.notify)
	code, matched, hdr := post(match)
	if code != http.StatusAccepted {
		t.Fatalf("match: %d %s", code, matched)
	}
	var sms sentSMS
	select {
	case sms = <-n.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no SMS")
	}
	close(n.release)
	e.s.self.wg.Wait()
	m := newPasswordRE.FindStringSubmatch(sms.text)
	if sms.mobile != "+8613712345678" || m == nil {
		t.Fatalf("SMS %+v", sms)
	}
	if _, _, err := e.pol.Authenticate("acme_u1", m[1]); err != nil {
		t.Fatalf("new password: %v", err)
	}

	// Mismatches — including another enterprise's user of the same name
	// with its own mobile — get the very same answer and no SMS.
	for _, in := range []PasswordReset{
		{GroupCode: "ACME", UserName: "Alice", Mobile: "13923412345"},
		{GroupCode: "OTHER", UserName: "Alice", Mobile: "13712345678"},
		{GroupCode: "NOPE", UserName: "Alice", Mobile: "13712345678"},
		{GroupCode: "ACME", UserName: "Bob", Mobile: "13712345678"},
	} {
		code, got, h := post(in)
		if code != http.StatusAccepted || !bytes.Equal(got, matched) || h.Get("Content-Type") != hdr.Get("Content-Type") ||
			h.Get("Content-Length") != hdr.Get("Content-Length") {
			t.Fatalf("%+v: %d %s, want the answer of a match %s", in, code, got, matched)
		}
	}
	e.s.self.wg.Wait()
	select {
	case s := <-n.entered:
		t.Fatalf("SMS for non-matching details: %+v", s)
	default:
	}
	for sid, pw := range map[string]string{"acme_u1": m[1], "oth_u1": "old12345"} {
		if _, _, err := e.pol.Authenticate(sid, pw); err != nil {
			t.Fatalf("%s: a non-matching reset changed the password: %v", sid, err)
		}
	}
	// Five from this address so far: the next is limited, matched or not.
	code, b, _ = post(match)
	wantReason(t, code, b, http.StatusTooManyRequests, "rate_limited")
}

// TestPasswordResetPerAccount: the operator's route (no per-address limit)
// still meets the per-account one.
func TestPasswordResetPerAccount(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	e.s.SetPasswordNotifier((&smsRecorder{}).notify)
	in := PasswordReset{GroupCode: "ACME", UserName: "Alice", Mobile: "13712345678"}
	for range resetAcctBurst {
		if _, err := e.c.ResetPassword(in); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.c.ResetPassword(in)
	wantAPIError(t, err, http.StatusTooManyRequests, "rate_limited")
	in.UserName = "Bob"
	if _, err := e.c.ResetPassword(in); err != nil {
		t.Fatalf("another account: %v", err)
	}
	e.s.self.wg.Wait()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPasswordResetRateLimitPrefix: public resets from the addresses of
// one /24 (real connections from 127.0.3.x) together get prefixBurstTimes
// addresses' burst, each for another account (the per-account limit is
// not what refuses them); another /24 is another network.
func TestPasswordResetRateLimitPrefix(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, func(s *Server) { s.admin.resetLimiter = rate.NewLimiter(rate.Inf, 1) })
	e.s.SetPasswordNotifier((&smsRecorder{}).notify)
	defer e.s.self.wg.Wait()
	reset := func(i int) PasswordReset {
		return PasswordReset{GroupCode: "ACME", UserName: fmt.Sprintf("user%d", i), Mobile: "13712345678"}
	}
	netBurst := prefixBurstTimes * resetAddrBurst
	for i := range 30 {
		src := fmt.Sprintf("127.0.3.%d", 1+i)
		code, b, h := e.postFrom(t, src, "/v1/password-reset", reset(i))
		if i < netBurst {
			if code != http.StatusAccepted {
				t.Fatalf("%s (the network's reset %d): %d %s", src, i, code, b)
			}
			continue
		}
		if msg := wantReason(t, code, b, http.StatusTooManyRequests, "rate_limited"); !strings.Contains(msg, "network") {
			t.Errorf("%s: message %q, want the per-network limit's", src, msg)
		}
		if h.Get("Retry-After") != "60" {
			t.Fatalf("Retry-After %q, want 60", h.Get("Retry-After"))
		}
	}
	if code, b, _ := e.postFrom(t, "127.0.4.1", "/v1/password-reset", reset(99)); code != http.StatusAccepted {
		t.Errorf("another /24: %d %s, want 202", code, b)
	}
}
