package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

type sentSMS struct{ mobile, text string }

type smsRecorder struct {
	mu   sync.Mutex
	sent []sentSMS
	err  error
}

func (r *smsRecorder) notify(_ context.Context, mobile, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sentSMS{mobile, text})
	return r.err
}

func (r *smsRecorder) take() []sentSMS {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sent
	r.sent = nil
	return s
}

var newPasswordRE = regexp.MustCompile(`新密码：([^。]+)。`)

func TestPasswordReset(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "Acme", Signature: "【阿克米】", Package: 1})).get(t)
	adminMust(e.c.CreateUser("ACME", NewUser{SystemID: "acme_u1", Password: "old12345", Name: "Alice", Mobile: "13712345678"})).get(t)
	adminMust(e.c.CreateUser("ACME", NewUser{SystemID: "acme_u2", Password: "old12345", Name: "Bob"})).get(t) // no mobile
	post := func(body string) (int, []byte) {
		code, b, _ := adminRaw(t, "POST", e.url+"/admin/v1/password-reset", "Bearer "+adminToken, "application/json", strings.NewReader(body))
		e.s.self.wg.Wait() // the work after the answer
		return code, b
	}

	// No notifier: refused before anything is looked up.
	code, body := post(`{"group_code":"ACME","user_name":"Alice","mobile":"13712345678"}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "notifier_unavailable") {
		t.Fatalf("no notifier: %d %s", code, body)
	}
	if _, _, err := e.pol.Authenticate("acme_u1", "old12345"); err != nil {
		t.Fatal("password changed without a notifier")
	}

	rec := &smsRecorder{}
	e.s.SetPasswordNotifier(rec.notify)
	code, match := post(`{"group_code":"ACME","user_name":"Alice","mobile":"+86 137 1234 5678"}`)
	if code != http.StatusAccepted {
		t.Fatalf("match: %d %s", code, match)
	}
	calls := rec.take()
	if len(calls) != 1 || calls[0].mobile != "+8613712345678" {
		t.Fatalf("notifier calls %+v", calls)
	}
	m := newPasswordRE.FindStringSubmatch(calls[0].text)
	if m == nil {
		t.Fatalf("no password in %q", calls[0].text)
	}
	pw := m[1]
	if _, _, err := e.pol.Authenticate("acme_u1", pw); err != nil {
		t.Fatalf("new password %q: %v", pw, err)
	}
	if _, _, err := e.pol.Authenticate("acme_u1", "old12345"); err == nil {
		t.Fatal("old password still works")
	}
	if strings.Contains(string(match), pw) || strings.Contains(e.logs.String(), pw) {
		t.Fatal("the new password leaked into the answer or the log")
	}
	if !strings.Contains(e.logs.String(), "password reset") || !strings.Contains(e.logs.String(), "system_id=acme_u1") {
		t.Fatalf("reset not logged:\n%s", e.logs)
	}

	for _, body := range []string{
		`{"group_code":"ACME","user_name":"Alice","mobile":"13712345679"}`, // wrong mobile
		`{"group_code":"ACME","user_name":"alice","mobile":"13712345678"}`, // wrong name
		`{"group_code":"OTHER","user_name":"Alice","mobile":"13712345678"}`,
		`{"group_code":"ACME","user_name":"Bob","mobile":"13712345678"}`, // user without a mobile
		`{"group_code":"ACME","user_name":"Alice","mobile":"not a number"}`,
		`{}`,
	} {
		code, got := post(body)
		if code != http.StatusAccepted || !bytes.Equal(got, match) {
			t.Errorf("%s: %d %s, want the same answer as a match (%s)", body, code, got, match)
		}
	}
	if calls := rec.take(); len(calls) != 0 {
		t.Fatalf("notifier called for non-matching details: %+v", calls)
	}
	if _, _, err := e.pol.Authenticate("acme_u1", pw); err != nil {
		t.Fatal("a non-matching reset changed the password")
	}

	// A failing notifier does not change the answer (it is logged).
	rec.err = errors.New("smsc down")
	if code, got := post(`{"group_code":"ACME","user_name":"Alice","mobile":"13712345678"}`); code != http.StatusAccepted || !bytes.Equal(got, match) {
		t.Fatalf("failing notifier: %d %s", code, got)
	}
	if !strings.Contains(e.logs.String(), "smsc down") {
		t.Fatal("notifier failure not logged")
	}
	if code, body := post(`{"group_code":"ACME"`); code != http.StatusBadRequest {
		t.Fatalf("bad JSON: %d %s", code, body)
	}
}
