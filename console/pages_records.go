package console

import (
	"net/http"
	"net/url"

	"github.com/qxtd/qxtd/api"
)

// 收发记录: 发件箱 (sent messages and their outcome), 定时发件箱 (FAQ 8, 9),
// 收件箱 (replies), and the home page.

var recordRoutes = []route{
	{"GET /{$}", (*Server).home},
	{"GET /outbox", (*Server).outbox},
}

func (s *Server) home(q *req) { q.redirect("/outbox", "") }

// outboxData is the 发件箱 page.
type outboxData struct {
	Messages []api.Message
	Next     string // the cursor of the next page ("" at the end)
	State    string
}

func (s *Server) outbox(q *req) {
	v := url.Values{"limit": {"50"}}
	for _, k := range []string{"state", "after"} {
		if x := q.r.URL.Query().Get(k); x != "" {
			v.Set(k, x)
		}
	}
	var pg api.MessagePage
	if err := s.call(q.r, http.MethodGet, "/v1/messages?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "outbox", q.view(outboxData{Messages: pg.Messages, Next: pg.Next, State: v.Get("state")}))
}
