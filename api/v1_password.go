package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Passwords (FAQ 2), the user's half: PUT /v1/me/password (the old
// password required) and POST /v1/password-reset (public: group code, user
// name and registered mobile; the new password goes by SMS). The reset is
// one implementation, resetPassword, behind this route and the operator's
// POST /admin/v1/password-reset (admin_password.go).
//
// Equal answers. A reset is answered 202 before anything is looked up: the
// lookup, the bcrypt hash, the write (an fsync) and the SMS (an enqueue,
// another fsync) happen after the answer, in a goroutine the Server owns and
// Close waits for. So the answer and its timing cannot depend on whether the
// details matched. The other way — a mismatch committing a no-op write —
// would equalise the fsync of the write but not the SMS enqueue, and would
// let anyone make the daemon fsync for every guess; answering first costs a
// mismatch nothing on disk. What the caller can still see before the answer
// depends only on what it sent: the body's form, the rate limits (per source
// address and its network, per group code + user name, and overall), and whether at most
// maxResetsQueued resets are already in progress.

// Limits of passwords.
const (
	resetAddrEvery = time.Minute // public resets per source address: one a minute…
	resetAddrBurst = 5           // …after a burst of 5; per network, after prefixBurstTimes × 5
	resetAcctEvery = time.Hour   // resets per group code + user name: one an hour…
	resetAcctBurst = 5           // …after a burst of 5
	passwordEvery  = time.Minute // password changes per user (old-password guesses)…
	passwordBurst  = 5           // …after a burst of 5
	resetSMSTime   = 30 * time.Second
)

// PasswordChange is the body of PUT /v1/me/password.
type PasswordChange struct {
	OldPassword string `json:"old_password"`
	NewPassword string `json:"new_password"`
}

// changePassword: PUT /v1/me/password.
func (s *Server) changePassword(c *caller, w http.ResponseWriter, r *http.Request) {
	var in PasswordChange
	if !decodeJSON(w, r, &in, maxPublicBody) {
		return
	}
	if err := policy.ValidPassword(in.NewPassword); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_password",
			"new_password: 6–8 printable ASCII characters without spaces (an SMPP 3.4 password has at most 8)")
		return
	}
	if !s.selfService().passAcct.allow(c.user.SystemID) {
		writeRateLimited(w, "60", "too many password changes; retry later")
		return
	}
	u, _, err := s.cfg.Policy.Authenticate(c.user.SystemID, in.OldPassword)
	switch {
	case errors.Is(err, policy.ErrAuth):
		writeError(w, http.StatusForbidden, "wrong_password", "old_password is wrong")
		return
	case err != nil:
		writeRefusal(w, err)
		return
	}
	if err := s.cfg.Policy.SetPassword(policy.ActorFor(u), u.SystemID, in.NewPassword); err != nil {
		writeErr(w, err)
		return
	}
	s.user.sessions.endUser(u.SystemID, c.session) // the user's other console sessions end
	s.log.Info("password changed", "enterprise", u.Enterprise, "system_id", u.SystemID)
	w.WriteHeader(http.StatusNoContent)
}

// publicPasswordReset: POST /v1/password-reset.
func (s *Server) publicPasswordReset(_ *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	s.resetPassword(true, w, r)
}

// beginReset takes a slot for a reset to run after its answer; false if
// all are taken or the Server is closing.
func (st *selfState) beginReset() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	select {
	case st.resets <- struct{}{}:
		st.wg.Add(1)
		return true
	default:
		return false
	}
}

func (st *selfState) endReset() {
	<-st.resets
	st.wg.Done()
}

// close waits for the resets in progress; no reset starts after.
func (st *selfState) close() {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.wg.Wait()
}

// resetPassword is the forgotten-password flow of both routes (public: the
// caller is anyone, limited per source address too). The answer is the same
// whether or not the details matched, and comes before the work that
// depends on them (see the file's comment).
func (s *Server) resetPassword(public bool, w http.ResponseWriter, r *http.Request) {
	np := s.admin.notify.Load()
	if np == nil {
		writeError(w, http.StatusServiceUnavailable, "notifier_unavailable",
			"password resets need an SMS notifier, which this daemon does not have yet")
		return
	}
	st := s.selfService()
	if public && !st.resetAddr.allowSource(r) {
		writeRateLimited(w, "60", "too many password resets from this address or its network, retry later")
		return
	}
	var in PasswordReset
	limit := s.admin.maxJSON
	if public {
		limit = maxPublicBody
	}
	if !decodeJSON(w, r, &in, limit) {
		return
	}
	if !s.admin.resetLimiter.Allow() || !st.resetAcct.allow(in.GroupCode+"\x00"+in.UserName) {
		writeRateLimited(w, "60", "too many password resets, retry later")
		return
	}
	if !st.beginReset() {
		writeRateLimited(w, "1", "too many password resets in progress, retry later")
		return
	}
	go func() {
		defer st.endReset()
		s.finishReset(*np, in)
	}()
	writeJSON(w, http.StatusAccepted, Status{Status: PasswordResetAnswer})
}

// finishReset does a reset's work after its answer: it checks the details,
// sets the new password and sends it to the registered mobile. The
// password is never logged.
func (s *Server) finishReset(notify PasswordNotifier, in PasswordReset) {
	pw, u, err := s.cfg.Policy.ResetPassword(in.GroupCode, in.UserName, in.Mobile)
	switch {
	case errors.Is(err, policy.ErrAuth):
		s.log.Info("password reset: details do not match", "group_code", in.GroupCode)
		return
	case err != nil:
		s.log.Error("password reset", "group_code", in.GroupCode, "err", err)
		return
	}
	s.user.sessions.endUser(u.SystemID, "")
	s.log.Info("password reset", "enterprise", u.Enterprise, "system_id", u.SystemID)
	ctx, cancel := context.WithTimeout(context.Background(), resetSMSTime)
	defer cancel()
	if err := notify(ctx, u.Mobile, resetText(u, pw)); err != nil {
		// The password has changed but did not reach the user: the
		// operator sees it here and resets again.
		s.log.Error("password reset: sending the new password failed", "enterprise", u.Enterprise,
			"system_id", u.SystemID, "err", err)
	}
}
