package console

import (
	"net/http"
	"net/url"

	"github.com/qxtd/qxtd/api"
)

// A list page of the API reads a bounded number of stored records
// (queue.MaxListScan, 20,000), so a narrow search — one number, one day
// — over a large store comes back empty with a next more often than
// not, and a person would click 下一页 through page after empty page:
// over a million messages, fifty. The console asks on from next itself,
// up to walkPages pages a request, and shows the first that holds
// anything (or the last asked, with its next). BenchmarkListNumber reads
// 100,000 records of a number's trace in about 7 ms (the store peeks at
// each record's owner and recipient, decoding only the number's), so ten
// pages of the outboxes are about 15 ms of the store's time; the inbox's
// replies are peeked at likewise (BenchmarkInboxNumber: 20,000 in 2 ms).
const walkPages = 10

// walkList asks for the list at path (its query v, its cursor parameter
// cursor) until a page holds rows or has no next, walkPages times at
// most; call is the API call (the user's or the operator's), rows the
// page's rows and next.
func walkList[P any](call func(path string, out any) error, path string, v url.Values, cursor string, rows func(*P) (int, string)) (*P, error) {
	for i := 1; ; i++ {
		pg := new(P)
		if err := call(path+"?"+v.Encode(), pg); err != nil {
			return nil, err
		}
		n, next := rows(pg)
		if n > 0 || next == "" || i == walkPages {
			return pg, nil
		}
		v.Set(cursor, next)
	}
}

func messageRows(p *api.MessagePage) (int, string) { return len(p.Messages), p.Next }
func replyRows(p *api.InboxPage) (int, string)     { return len(p.Replies), p.Next }

// userCall is a GET of the API as the logged-in user, for walkList.
func (s *Server) userCall(q *req) func(string, any) error {
	return func(path string, out any) error { return s.call(q.r, http.MethodGet, path, nil, out) }
}

// opsCallOf is a GET of the admin API as the operator, for walkList.
func (s *Server) opsCallOf(q *req) func(string, any) error {
	return func(path string, out any) error { return s.opsCall(q.r, http.MethodGet, path, nil, out) }
}
