package console

import (
	"net/http"

	"github.com/qxtd/qxtd/api"
)

// The account manager's desk (/ops/): the health summary.

var deskRoutes = []route{
	{"GET /ops/{$}", (*Server).opsHome},
}

func (s *Server) opsHome(q *req) {
	var st api.SystemStatus
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/status", nil, &st); err != nil {
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "ops_home", q.view(st))
}
