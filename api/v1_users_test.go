package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// The enterprise admin's users: add within the operator's cap, change,
// turn the user signature off (seen on the air), disable, reset a
// password; users cannot, and another enterprise's users are not found.
func TestEnterpriseUsers(t *testing.T) {
	r := newUserRig(t)
	const tok = "op-token"
	adm := &userRig{t: t, url: r.adminServer(tok)}
	amy, alice, al2 := r.keys["amy"], r.keys["alice"], r.keys["al2"]

	r.wantError(http.StatusForbidden, "forbidden", "GET", "/v1/users", alice, nil)
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/users", alice, NewUser{SystemID: "x1", Password: "abc12345", Name: "x"})
	r.wantError(http.StatusForbidden, "forbidden", "PATCH", "/v1/users/al2", alice, UserPatch{ShowSignature: new(bool)})
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/users/al2/password-reset", alice, nil)
	var list UserList
	r.must(http.StatusOK, "GET", "/v1/users", amy, nil, &list)
	if len(list.Users) != 3 {
		t.Fatalf("A's users: %+v", list.Users)
	}

	// The operator caps A at 4 users: one more fits.
	var ent Enterprise
	adm.must(http.StatusOK, "PATCH", "/admin/v1/enterprises/A", tok, EnterprisePatch{MaxUsers: ptr(4)}, &ent)
	if ent.MaxUsers != 4 {
		t.Fatalf("max_users: %+v", ent)
	}
	adm.wantError(http.StatusBadRequest, "invalid", "PATCH", "/admin/v1/enterprises/A", tok, EnterprisePatch{MaxUsers: ptr(-1)})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/users", amy,
		NewUser{SystemID: "a_new", Password: "123456789", Name: "甲三"}) // SMPP passwords are at most 8 characters
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/users", amy,
		NewUser{SystemID: "a_new", Password: "abc12345", Name: "甲三", Mobile: "12345"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/users", amy,
		NewUser{SystemID: "a_new", Password: "abc12345", Name: "甲三", Role: "boss"})
	r.wantError(http.StatusConflict, "exists", "POST", "/v1/users", amy,
		NewUser{SystemID: "bob", Password: "abc12345", Name: "甲三"})
	e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/users", amy,
		NewUser{SystemID: "a_new", Password: "abc12345", Name: "甲三", LongReplies: "udh7"})
	if !strings.Contains(e.Error.Message, `long_replies "udh7"`) || !strings.Contains(e.Error.Message, "payload, udh8, udh16 or sar") {
		t.Errorf("long_replies refusal: %q", e.Error.Message)
	}
	var u User
	r.must(http.StatusCreated, "POST", "/v1/users", amy,
		NewUser{SystemID: "a_new", Password: "abc12345", Name: "甲三", Mobile: "13712340001", LongReplies: "UDH8"}, &u)
	if u.Enterprise != "A" || u.Role != "user" || u.Mobile != "+8613712340001" || u.LongReplies != "udh8" {
		t.Fatalf("created: %+v", u)
	}
	if pu, err := r.pol.User(policy.OperatorActor("t"), "a_new"); err != nil || pu.LongReplies != "udh8" {
		t.Fatalf("a_new as stored: %+v %v", pu, err)
	}
	e = r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/users", amy,
		NewUser{SystemID: "a_more", Password: "abc12345", Name: "甲四"})
	if !strings.Contains(e.Error.Message, "cap") {
		t.Errorf("cap refusal: %q", e.Error.Message)
	}

	// Another enterprise's user, or none: not found.
	r.wantError(http.StatusNotFound, "not_found", "PATCH", "/v1/users/bob", amy, UserPatch{Disabled: ptr(true)})
	r.wantError(http.StatusNotFound, "not_found", "PATCH", "/v1/users/nobody", amy, UserPatch{Disabled: ptr(true)})
	r.wantError(http.StatusNotFound, "not_found", "POST", "/v1/users/bob/password-reset", amy, nil)
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/users/amy", amy, UserPatch{Disabled: ptr(true)})
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/users/amy", amy, UserPatch{Role: ptr("user")})
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/users/al2", amy, UserPatch{})

	// How long replies reach al2's binds: sar, then back to the default
	// (shown as payload); udh7 is refused and changes nothing.
	r.must(http.StatusOK, "PATCH", "/v1/users/al2", amy, UserPatch{LongReplies: ptr("sar")}, &u)
	if u.LongReplies != "sar" {
		t.Fatalf("long_replies sar: %+v", u)
	}
	e = r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/users/al2", amy, UserPatch{LongReplies: ptr("udh7")})
	if !strings.Contains(e.Error.Message, "long_replies") {
		t.Errorf("long_replies refusal: %q", e.Error.Message)
	}
	r.must(http.StatusOK, "GET", "/v1/users", amy, nil, &list)
	for _, lu := range list.Users {
		if want := map[string]string{"al2": "sar", "a_new": "udh8"}[lu.SystemID]; want != "" && lu.LongReplies != want ||
			want == "" && lu.LongReplies != "payload" {
			t.Errorf("listed %s: long_replies %q", lu.SystemID, lu.LongReplies)
		}
	}
	r.must(http.StatusOK, "PATCH", "/v1/users/al2", amy, UserPatch{LongReplies: ptr("payload")}, &u)
	if pu, err := r.pol.User(policy.OperatorActor("t"), "al2"); err != nil || u.LongReplies != "payload" || pu.LongReplies != "" {
		t.Fatalf("long_replies payload: %+v, stored %+v %v", u, pu, err)
	}
	r.wantError(http.StatusNotFound, "not_found", "PATCH", "/v1/users/bob", amy, UserPatch{LongReplies: ptr("udh8")})

	// The user signature: on for al2, then turned off by the admin.
	r.send(al2, SendRequest{To: []string{uNumA2}, Text: "签名开"})
	r.waitReceived(uNumA2, "【甲公司】签名开——甲二", 10*time.Second)
	r.must(http.StatusOK, "PATCH", "/v1/users/al2", amy, UserPatch{ShowSignature: ptr(false), Mobile: ptr("13712340002")}, &u)
	if u.ShowSignature || u.Mobile != "+8613712340002" {
		t.Fatalf("patched: %+v", u)
	}
	r.send(al2, SendRequest{To: []string{uNumA2}, Text: "签名关"})
	r.waitReceived(uNumA2, "【甲公司】签名关", 10*time.Second)

	// A password reset: 8 characters, shown once, and it logs in.
	var pr UserPasswordReset
	r.must(http.StatusOK, "POST", "/v1/users/a_new/password-reset", amy, nil, &pr)
	if pr.SystemID != "a_new" || len(pr.Password) != 8 {
		t.Fatalf("reset: %+v", pr)
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/login", "", LoginRequest{SystemID: "a_new", Password: "abc12345"})
	var lr LoginResponse
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "a_new", Password: pr.Password}, &lr)
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, nil)

	// Disabled: the session stops at once, and it cannot log in.
	r.must(http.StatusOK, "PATCH", "/v1/users/a_new", amy, UserPatch{Disabled: ptr(true)}, &u)
	if !u.Disabled {
		t.Fatalf("disabled: %+v", u)
	}
	r.wantError(http.StatusForbidden, "account_disabled", "GET", "/v1/me", lr.Token, nil)
	code, _ := r.call("POST", "/v1/login", "", LoginRequest{SystemID: "a_new", Password: pr.Password}, nil)
	if code/100 == 2 {
		t.Errorf("a disabled user logged in: %d", code)
	}
	if _, _, err := r.pol.Authenticate("a_new", pr.Password); err == nil {
		t.Errorf("a disabled user binds")
	}
	r.must(http.StatusOK, "PATCH", "/v1/users/a_new", amy, UserPatch{Disabled: ptr(false)}, &u)
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "a_new", Password: pr.Password}, &lr)
}

func ptr[T any](v T) *T { return &v }

// The user wire types are their openapi.yaml schemas.
func TestOpenAPIUserSchemas(t *testing.T) {
	checkSchemas(t, loadOpenAPI(t), map[string]any{
		"User":              User{},
		"UserIn":            NewUser{},
		"UserPatch":         UserPatch{},
		"UserPasswordReset": UserPasswordReset{},
	})
}

// TestInvalidFieldAnswer: a value the rules refuse is answered invalid
// with the field it is about and the rule in Chinese (field, detail_zh),
// through the user API and the admin API and back in the Go client's
// APIError; the English message is as before.
func TestInvalidFieldAnswer(t *testing.T) {
	r := newUserRig(t)
	const tok = "op-token"
	url := r.adminServer(tok)
	amy := r.keys["amy"]
	code, b := r.call("POST", "/v1/users", amy, NewUser{SystemID: "a new", Password: "abc12345", Name: "甲三"}, nil)
	var eb errorBody
	if err := json.Unmarshal(b, &eb); err != nil || code != http.StatusBadRequest || eb.Error.Reason != "invalid" {
		t.Fatalf("a system_id with a space: %d %s", code, b)
	}
	if eb.Error.Field != "system_id" || !strings.Contains(eb.Error.DetailZH, "登录账号") || !strings.Contains(eb.Error.Message, "printable ASCII without spaces") {
		t.Errorf("a system_id with a space: %+v, want field system_id, its rule in Chinese and in English", eb.Error)
	}
	// The API's own checks of a send's fields too.
	for _, tc := range []struct {
		req       SendRequest
		field, zh string
	}{
		{SendRequest{To: []string{"13800138000"}}, "text", "请填写短信内容"},
		{SendRequest{Text: "x"}, "to", "请填写接收号码"},
		{SendRequest{To: []string{"13800138000"}, Text: "x", SendAt: "明天"}, "send_at", "发送时间格式有误"},
	} {
		code, b := r.call("POST", "/v1/messages", amy, tc.req, nil)
		var eb errorBody
		if err := json.Unmarshal(b, &eb); err != nil || code != http.StatusBadRequest || eb.Error.Field != tc.field || !strings.Contains(eb.Error.DetailZH, tc.zh) {
			t.Errorf("send %+v: %d %s, want 400 invalid about %s with %q", tc.req, code, b, tc.field, tc.zh)
		}
	}
	c := &Client{Base: url, Token: tok}
	for _, tc := range []struct {
		patch     EnterprisePatch
		field, zh string
	}{
		{EnterprisePatch{TPS: ptr(-1)}, "tps", "每秒条数"},
		{EnterprisePatch{CapYuan: ptr("1.234")}, "cap_yuan", "金额"},
		{EnterprisePatch{ServiceNumber: ptr("10a")}, "service_number", "接入号"},
	} {
		err := c.Do("PATCH", "/admin/v1/enterprises/A", tc.patch, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Reason != "invalid" {
			t.Fatalf("%s: %v, want 400 invalid", tc.field, err)
		}
		if ae.Field != tc.field || !strings.Contains(ae.DetailZH, tc.zh) {
			t.Errorf("%s: field %q, detail_zh %q, want %s and %q in it", tc.field, ae.Field, ae.DetailZH, tc.field, tc.zh)
		}
	}
	// An invalid answer about no field of the rules' names none.
	err := c.Do("PATCH", "/admin/v1/enterprises/A", EnterprisePatch{}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Reason != "invalid" || ae.Field != "" {
		t.Errorf("an empty patch: %#v, want invalid without a field", err)
	}
}
