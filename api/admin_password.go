package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/qxtd/qxtd/policy"
)

// Forgotten passwords: a new password goes by SMS to the user's
// registered mobile, through the notifier the daemon sets.

// PasswordResetAnswer is the one answer of POST /admin/v1/password-reset
// and POST /v1/password-reset, whether or not the details matched.
const PasswordResetAnswer = "if the details match, a new password is sent by SMS"

// PasswordNotifier sends text by SMS to mobile (E.164).
type PasswordNotifier func(ctx context.Context, mobile, text string) error

// SetPasswordNotifier sets how new passwords (resets, and the first
// password of an approved application) reach the user's registered mobile;
// nil removes it. Until it is set, password resets and approvals answer 503
// notifier_unavailable without looking anything up. The daemon sets it when
// policy.notify_enterprise names the enterprise whose account sends them.
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

// passwordReset: POST /admin/v1/password-reset, the operator's route to
// the one reset flow (resetPassword, v1_password.go).
func (s *Server) passwordReset(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	s.resetPassword(false, w, r)
}
