package api

import "net/http"

// GET /v1/uploads/{id}: a staged upload as POST /v1/uploads answered it —
// its file name, header and first data rows — so that a page showing the
// columns (the console's 定制发送) can be opened again without uploading
// the file again. Visibility is the uploads' (visibleTo): another user's or
// enterprise's upload, a sent, deleted or expired one is 404 not_found.
func (s *Server) showUpload(c *caller, w http.ResponseWriter, r *http.Request) {
	su := s.jobs.staged.get(r.PathValue("id"), visibleTo(c))
	if su == nil {
		writeUploadNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, su.answer())
}
