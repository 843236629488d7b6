package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Forgotten passwords: a new password goes by SMS to the user's
// registered mobile, through the notifier the daemon sets.

// PasswordResetAnswer is the one answer of POST /admin/v1/password-reset,
// whether or not the details matched.
const PasswordResetAnswer = "if the details match, a new password is sent by SMS"

// PasswordNotifier sends text by SMS to mobile (E.164).
type PasswordNotifier func(ctx context.Context, mobile, text string) error

// SetPasswordNotifier sets how password resets reach the user's registered
// mobile; nil removes it. Until it is set, POST /admin/v1/password-reset
// answers 503 notifier_unavailable without looking anything up.
//
// TODO(internal-submit): qxtd cannot send an SMS of its own yet. What is
// missing is an internal submit path: an operator-owned system account
// (exempt from the whitelist, with its own signature) whose messages the
// daemon enqueues through the gateway like any other, so that serve.go can
// pass a notifier here. Until then resets are refused with 503.
func (s *Server) SetPasswordNotifier(f func(ctx context.Context, mobile, text string) error) {
	if f == nil {
		s.admin.notify.Store(nil)
		return
	}
	n := PasswordNotifier(f)
	s.admin.notify.Store(&n)
}

// PasswordReset is the body of POST /admin/v1/password-reset.
type PasswordReset struct {
	GroupCode string `json:"group_code"`
	UserName  string `json:"user_name"`
	Mobile    string `json:"mobile"`
}

// resetText is the SMS carrying a new password.
func resetText(u *policy.User, pw string) string {
	return fmt.Sprintf("您的企信通账号 %s（%s）密码已重置，新密码：%s。请登录后尽快修改。", u.SystemID, u.Name, pw)
}

// passwordReset is the forgotten-password flow (group code + user name + registered mobile). The answer is the
// same whether or not the details matched; the new password goes only to
// the user's registered mobile, never into the answer or a log.
func (s *Server) passwordReset(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	np := s.admin.notify.Load()
	if np == nil {
		writeError(w, http.StatusServiceUnavailable, "notifier_unavailable",
			"password resets need an SMS notifier, which this daemon does not have yet")
		return
	}
	var in PasswordReset
	if !s.readJSON(w, r, &in) {
		return
	}
	if !s.admin.resetLimiter.Allow() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, policy.ReasonRateLimited.String(), "too many password resets, retry later")
		return
	}
	pw, u, err := s.cfg.Policy.ResetPassword(in.GroupCode, in.UserName, in.Mobile)
	switch {
	case errors.Is(err, policy.ErrAuth):
		s.log.Info("password reset: details do not match", "group_code", in.GroupCode)
	case err != nil:
		writeErr(w, err)
		return
	default:
		s.log.Info("password reset", "enterprise", u.Enterprise, "system_id", u.SystemID)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
		err := (*np)(ctx, u.Mobile, resetText(u, pw))
		cancel()
		if err != nil {
			// The password has changed but did not reach the user: the
			// operator sees it here and resets again. The answer stays the
			// same so that it never tells whether the details matched.
			s.log.Error("password reset: sending the new password failed", "enterprise", u.Enterprise,
				"system_id", u.SystemID, "err", err)
		}
	}
	writeJSON(w, http.StatusAccepted, Status{Status: PasswordResetAnswer})
}
