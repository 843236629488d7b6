package api

import (
	"fmt"
	"net/http"
	"testing"
)

// TestShowUpload: GET /v1/uploads/{id} answers what POST /v1/uploads did,
// to its owner and the enterprise's admin only, until the upload is gone.
func TestShowUpload(t *testing.T) {
	r := newUserRig(t)
	up := r.stage(r.keys["alice"], "a.csv", []byte(stagedCSV))
	for _, who := range []string{"alice", "amy"} {
		var got Upload
		r.must(http.StatusOK, "GET", "/v1/uploads/"+up.ID, r.keys[who], nil, &got)
		if fmt.Sprint(got) != fmt.Sprint(up) {
			t.Errorf("%s: GET %+v, want the upload's answer %+v", who, got, up)
		}
	}
	for _, who := range []string{"al2", "bob"} {
		r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/uploads/"+up.ID, r.keys[who], nil)
	}
	r.must(http.StatusNoContent, "DELETE", "/v1/uploads/"+up.ID, r.keys["alice"], nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/uploads/"+up.ID, r.keys["alice"], nil)
}
