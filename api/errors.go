package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// Error answers. Every error is JSON {"error": {"reason", "message"}}; a
// refusal also carries the SMPP command_status as "code". Refusal reasons
// come from policy's reason table (policy.Refusal, policy.ReasonTable), so
// HTTP, SMPP and the metrics name a refusal alike.

// errorBody is every error answer.
type errorBody struct {
	Error struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
		// Code: the SMPP command_status of a refusal (writeRefusal).
		Code string `json:"code,omitempty"`
		// DetailZH: a refusal's detail, or an invalid field's rule, in
		// Chinese, as the consoles show it (the number, the count, the
		// limit), when it has one.
		DetailZH string `json:"detail_zh,omitempty"`
		// Field: the request's field an invalid answer is about
		// (policy.FieldError), when one is.
		Field string `json:"field,omitempty"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	var b errorBody
	b.Error.Reason, b.Error.Message = reason, msg
	writeJSON(w, code, b)
}

// writeInvalid answers 400 invalid about one field of the request, with
// its rule in Chinese (field and zh "" when the answer has neither: the
// request's shape, not one field's value).
func writeInvalid(w http.ResponseWriter, field, zh, msg string) {
	var b errorBody
	b.Error.Reason, b.Error.Message, b.Error.Field, b.Error.DetailZH = "invalid", msg, field, zh
	writeJSON(w, http.StatusBadRequest, b)
}

// Chinese rules that several invalid answers share.
const (
	// pageCursorZH: a list's after= or before= that is not a next.
	pageCursorZH = "翻页参数无效：请使用上一页返回的 next"
	// monthZH: a month= that is not YYYY-MM (ParseMonth).
	monthZH = "月份格式须为 YYYY-MM，如 2026-01"
)

// writeErr maps store and policy errors to HTTP answers.
func writeErr(w http.ResponseWriter, err error) {
	if r, ok := policy.ReasonOf(err); ok {
		var b errorBody
		b.Error.Reason, b.Error.Message, b.Error.DetailZH = r.String(), err.Error(), policy.DetailZH(err)
		writeJSON(w, http.StatusUnprocessableEntity, b)
		return
	}
	switch {
	case errors.Is(err, policy.ErrNotFound), errors.Is(err, queue.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, policy.ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, policy.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, policy.ErrInvalid), errors.Is(err, queue.ErrInvalid):
		writeInvalid(w, policy.FieldOf(err), policy.DetailZH(err), err.Error())
	case errors.Is(err, queue.ErrNotSynced):
		// The change stands in the file (it is what every read sees)
		// though the disk did not confirm it: look before trying again.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(),
			"the change was written but the disk did not confirm it: it is in effect; read it back before trying again")
	case errors.Is(err, queue.ErrWrite):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(), policy.ReasonStoreError.Message())
	case errors.Is(err, context.DeadlineExceeded):
		// In a cluster: etcd did not answer in time, or this node's
		// disk has not taken the change that etcd holds already.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(),
			"the change did not complete in time: it may be in effect; read it back before trying again")
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// refusalStatus is the HTTP status of a request-level refusal.
func refusalStatus(reason string) int {
	switch reason {
	case policy.ReasonRateLimited.String():
		return http.StatusTooManyRequests
	case policy.ReasonAccountDisabled.String(), policy.ReasonNoSignature.String():
		return http.StatusForbidden
	case "internal":
		return http.StatusInternalServerError
	}
	return http.StatusUnprocessableEntity
}

// writeRefusal answers a request-level refusal (the whole request, not one
// recipient) or a store failure.
func writeRefusal(w http.ResponseWriter, err error) {
	if errors.Is(err, gateway.ErrStore) {
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(), policy.ReasonStoreError.Message())
		return
	}
	var b errorBody
	b.Error.Reason, b.Error.Code, b.Error.Message = policy.Describe(err)
	b.Error.DetailZH = policy.DetailZH(err)
	if b.Error.Reason == "internal" {
		b.Error.Code = ""
	}
	code := refusalStatus(b.Error.Reason)
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, b)
}
