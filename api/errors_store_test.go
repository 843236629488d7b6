package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/queue"
)

// TestWriteErrStoreFailures: a settings change that met a failing store
// is answered 503 store_error with Retry-After, never 500, and its
// message says whether the change may stand: written but not confirmed
// (queue.ErrNotSynced), not written (queue.ErrWrite), or not known
// (a cluster write that timed out: etcd slow, or this node's disk
// refusing the change etcd holds).
func TestWriteErrStoreFailures(t *testing.T) {
	for _, c := range []struct {
		err   error
		stand string // in the message when it may stand
	}{
		{fmt.Errorf("policy: commit: %w: eio", queue.ErrNotSynced), "in effect"},
		{fmt.Errorf("policy: %w: eio", queue.ErrWrite), ""},
		{fmt.Errorf("cluster: replica write: %w", context.DeadlineExceeded), "may be in effect"},
	} {
		rec := httptest.NewRecorder()
		writeErr(rec, c.err)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusServiceUnavailable || body.Error.Reason != "store_error" || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%v: %d %s (Retry-After %q), want 503 store_error with Retry-After", c.err, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
		}
		if says := strings.Contains(body.Error.Message, "in effect"); says != (c.stand != "") || !strings.Contains(body.Error.Message, c.stand) {
			t.Errorf("%v: message %q, want it to say %q", c.err, body.Error.Message, c.stand)
		}
	}
}
