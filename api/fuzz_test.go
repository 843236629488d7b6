package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The user API reads JSON bodies, query strings, path ids and a few
// headers from anyone who can reach it, so the routes that take them are
// fuzzed as a client calls them: the real handler over a real store
// (newBulkRig: bbolt in a temporary directory, the gateway, the
// reminders), built once per target and reused by every input, each input
// sent as a real enterprise user (or, on the public routes, as anyone).
// Whatever the input, the answer must be:
//
//   - no panic, and no 5xx but a 503 that the route documents for a reason
//     that is no fault of the request (fuzzRoute.ok503);
//   - for a 4xx, the error shape of errors.go: JSON {"error": {"reason",
//     "message"}} (a refusal adds "code"), with a reason and a message,
//     never an empty or a plain-text body;
//   - for any answer said to be JSON, valid JSON.
//
// The rate limits of the public routes and of password changes are
// opened up: a target calls them thousands of times a second from one
// address, and a route that answered every later call 429 would not be
// fuzzed past its limiter. The body limits are no rate limit and stay
// (TestUserBodiesBounded checks them).

// fuzzParam says where a route puts the fuzzed string.
type fuzzParam int

const (
	paramNone   fuzzParam = iota // not used
	paramPath                    // the path's "{}" segment, escaped as a client escapes it
	paramQuery                   // the query string: name=value pairs (split on & and =), each escaped
	paramHeader                  // the value of fuzzRoute.header
)

// fuzzRoute is one request shape of a fuzz target.
type fuzzRoute struct {
	method, path string // "{}" in path stands for the fuzzed segment
	param        fuzzParam
	header       string // paramHeader: which header
	contentType  string // sent unless the fuzzed string is the Content-Type
	// ok503 is the reason of a 503 the route documents for a state of the
	// server that no input causes (10,000 applications waiting); "" none.
	ok503 string
	// newSource sends each request from a new source address.
	newSource bool
}

// fuzzTarget is the server a fuzz target sends every input to.
type fuzzTarget struct {
	h      http.Handler
	token  string // the caller's API key; "" sends no Authorization
	routes []fuzzRoute
	n      uint32 // requests sent from a new source address
}

func newFuzzTarget(f *testing.F, token string, r *userRig, routes []fuzzRoute) *fuzzTarget {
	if len(routes) > 256 {
		f.Fatal("a route is chosen by one byte")
	}
	return &fuzzTarget{h: r.srv.Handler(), token: token, routes: routes}
}

// newFuzzRig is the in-process daemon of the fuzz targets.
func newFuzzRig(f *testing.F) *userRig {
	return newBulkRig(f, rigOptions{noSync: true})
}

// request is the request a client would send for route rt with the
// fuzzed string param and body.
func (ft *fuzzTarget) request(rt fuzzRoute, param string, body []byte) *http.Request {
	target := rt.path
	switch rt.param {
	case paramPath:
		target = strings.Replace(target, "{}", url.PathEscape(param), 1)
	case paramQuery:
		var q []string
		for _, kv := range strings.Split(param, "&") {
			k, v, _ := strings.Cut(kv, "=")
			q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
		target += "?" + strings.Join(q, "&")
	}
	req := httptest.NewRequest(rt.method, target, bytes.NewReader(body))
	if rt.newSource {
		ft.n++
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:40000", byte(ft.n>>16), byte(ft.n>>8), byte(ft.n))
	}
	if ft.token != "" {
		req.Header.Set("Authorization", "Bearer "+ft.token)
	}
	if rt.contentType != "" {
		req.Header.Set("Content-Type", rt.contentType)
	}
	if rt.param == paramHeader {
		// What a header can carry over HTTP/1.1: the server drops the
		// spaces around a value and refuses control characters.
		if v := strings.Trim(param, " \t"); validHeaderValue(v) {
			req.Header.Set(rt.header, v)
		}
	}
	return req
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// serve sends one request straight to the handler: a panic reaches the
// fuzzer as a crash instead of being swallowed by net/http's recovery.
func (ft *fuzzTarget) serve(rt fuzzRoute, param string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	ft.h.ServeHTTP(rec, ft.request(rt, param, body))
	return rec
}

// must sends a request of the target's setup and fails unless it is
// answered want; it returns the body.
func (ft *fuzzTarget) must(tb testing.TB, want int, method, path, body string) []byte {
	tb.Helper()
	rec := ft.serve(fuzzRoute{method: method, path: path, contentType: "application/json"}, "", []byte(body))
	if rec.Code != want {
		tb.Fatalf("%s %s: %d %s, want %d", method, path, rec.Code, rec.Body, want)
	}
	return rec.Body.Bytes()
}

// add adds a seed for the route of method and path.
func (ft *fuzzTarget) add(f *testing.F, method, path, param, body string) {
	f.Helper()
	for i, rt := range ft.routes {
		if rt.method == method && rt.path == path {
			f.Add(uint8(i), param, []byte(body))
			return
		}
	}
	f.Fatalf("no route %s %s", method, path)
}

// addEdges adds to every route that reads a body the bodies none should
// take: none, not an object, malformed, nested past the decoder's depth,
// numbers past any field's type, invalid UTF-8, a duplicate key, an
// unknown field; and to every route that takes the fuzzed string one that
// no id, query or header is.
func (ft *fuzzTarget) addEdges(f *testing.F) {
	deep := strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000)
	edges := []string{
		"", "null", "true", "[]", "{}", `""`, "{", `{"a":1}{}`, "{} trailing", deep,
		`{"to":` + deep + `}`,
		`{"count":1e999,"package":99999999999999999999,"month_day":-9223372036854775809}`,
		"{\"text\":\"\xff\xfe\xc0\x80\",\"name\":\"\xed\xa0\x80\"}",
		`{"text":"a","text":"b"}`,
		`{"unknown_field":1}`,
		"\xef\xbb\xbf{}", // a byte order mark
	}
	for i, rt := range ft.routes {
		if rt.method == "POST" || rt.method == "PUT" || rt.method == "PATCH" {
			for _, e := range edges {
				f.Add(uint8(i), "", []byte(e))
			}
		}
		if rt.param != paramNone {
			f.Add(uint8(i), "\x00\xff/../?#%zz&=", []byte("{}"))
		}
	}
}

// run fuzzes the target: every input is one request of one route.
func (ft *fuzzTarget) run(f *testing.F) {
	f.Fuzz(func(t *testing.T, route uint8, param string, body []byte) {
		rt := ft.routes[int(route)%len(ft.routes)]
		checkAnswer(t, rt, param, body, ft.serve(rt, param, body))
	})
}

// checkAnswer asserts the properties every answer has (the file's
// comment).
func checkAnswer(t *testing.T, rt fuzzRoute, param string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	code, b := rec.Code, rec.Body.Bytes()
	ct := rec.Header().Get("Content-Type")
	what := func() string {
		if len(body) > 512 {
			body = append(body[:512:512], "…"...)
		}
		return fmt.Sprintf("%s %s (param %q, body %q): %d %s %q", rt.method, rt.path, param, body, code, ct, clipAnswer(b))
	}
	isJSON := strings.HasPrefix(ct, "application/json")
	if isJSON && !json.Valid(b) {
		t.Fatalf("%s: not valid JSON", what())
	}
	if code < 400 {
		return
	}
	var e errorBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if !isJSON || dec.Decode(&e) != nil || dec.More() || e.Error.Reason == "" || e.Error.Message == "" {
		t.Fatalf("%s: not the error shape {\"error\": {\"reason\", \"message\"}}", what())
	}
	if code >= 500 && (code != http.StatusServiceUnavailable || rt.ok503 == "" || e.Error.Reason != rt.ok503) {
		t.Fatalf("%s: a server error for a client's input", what())
	}
}

func clipAnswer(b []byte) []byte {
	if len(b) > 1024 {
		return append(b[:1024:1024], "…"...)
	}
	return b
}

// openLimits lifts the rate limits of the public routes and of password
// changes (the file's comment); before the target serves.
func openLimits(s *Server) {
	st := s.selfService()
	st.applyAddr = newSourceLimiter(time.Nanosecond, 1<<30, maxLimiterKeys)
	st.resetAddr = newSourceLimiter(time.Nanosecond, 1<<30, maxLimiterKeys)
	st.resetAcct = newKeyLimiter(time.Nanosecond, 1<<30, maxLimiterKeys)
	st.passAcct = newKeyLimiter(time.Nanosecond, 1<<30, maxLimiterKeys)
	s.admin.resetLimiter = rate.NewLimiter(rate.Inf, 1)
	// Resets do their work after the answer; the notifier keeps nothing.
	s.SetPasswordNotifier(func(context.Context, string, string) error { return nil })
}

// manyNumbers is a JSON array of n distinct mobile numbers.
func manyNumbers(n int) string {
	ns := make([]string, n)
	for i := range ns {
		ns[i] = fmt.Sprintf(`"1380013%04d"`, i)
	}
	return "[" + strings.Join(ns, ",") + "]"
}

// FuzzSendBodies: sending (POST /v1/messages with an Idempotency-Key,
// personalized sends, the preview), changing a scheduled message, a staged
// batch, and the outboxes' query strings, as erin (enterprise E: no
// whitelist, national and off-net grants, 100,000 submissions a second, so
// that a send goes through policy to the store instead of stopping at
// not_whitelisted or rate_limited).
func FuzzSendBodies(f *testing.F) {
	r := newFuzzRig(f)
	ft := newFuzzTarget(f, r.keys["erin"], r, []fuzzRoute{
		{method: "POST", path: "/v1/messages", param: paramHeader, header: "Idempotency-Key", contentType: "application/json"},
		{method: "POST", path: "/v1/messages/personalized", param: paramHeader, header: "Idempotency-Key", contentType: "application/json"},
		{method: "POST", path: "/v1/messages/preview", contentType: "application/json"},
		{method: "PATCH", path: "/v1/messages/{}", param: paramPath, contentType: "application/json"},
		{method: "POST", path: "/v1/batches", contentType: "application/json"},
		{method: "GET", path: "/v1/messages", param: paramQuery},
		{method: "GET", path: "/v1/scheduled", param: paramQuery},
		{method: "GET", path: "/v1/inbox", param: paramQuery},
	})
	// A group of erin's personal book, and a scheduled message to change.
	ft.must(f, http.StatusCreated, "POST", "/v1/contacts", `{"name":"张三","number":"13800138000","groups":["销售部"]}`)
	ft.must(f, http.StatusCreated, "POST", "/v1/contacts", `{"name":"李四","number":"13800138001","groups":["销售部","市场部"]}`)
	later := time.Now().Add(time.Hour).Format(time.RFC3339)
	var sent SendResponse
	if err := json.Unmarshal(ft.must(f, http.StatusOK, "POST", "/v1/messages",
		`{"to":["13800138002"],"text":"明天开会","send_at":"`+later+`"}`), &sent); err != nil || sent.Accepted != 1 {
		f.Fatalf("scheduled send: %+v %v", sent, err)
	}
	id := sent.Results[0].ID

	ft.add(f, "POST", "/v1/messages", "", `{"to":["13800138000","13800138009"],"text":"会议改到下午三点"}`)
	ft.add(f, "POST", "/v1/messages", "key-1", `{"to":["13800138000"],"text":"验证码 384921","source":"12","receipt":true,"receipt_url":"https://example.com/dlr"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":["13800138003"],"groups":["销售部"],"book":"personal","text":"周会"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"groups":["销售部","无此组"],"book":"enterprise","text":"x"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":["13800138000"],"text":"稍后","send_at":"`+later+`","valid_until":"2099-01-02T15:04:05+08:00"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":["13800138000"],"text":"过去","send_at":"1970-01-01T00:00:00Z","valid_until":"0001-01-01T00:00:00Z"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":["13800138000"],"text":"x","send_at":"9999-12-31T23:59:59+14:00"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":["+86 138 0013 8000","abc","","１３８００１３８０００","00000000000000000000000000"],"text":"`+strings.Repeat("长", 600)+`"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":`+manyNumbers(MaxRecipients)+`,"text":"一千个"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":`+manyNumbers(MaxRecipients+1)+`,"text":"一千零一个"}`)
	ft.add(f, "POST", "/v1/messages", "", `{"to":["13800138000"],"text":"x","receipt_url":"ftp://user:pw@[::1"}`)
	ft.add(f, "POST", "/v1/messages", strings.Repeat("k", maxIdempotencyKey+1), `{"to":["13800138000"],"text":"x"}`)
	ft.add(f, "POST", "/v1/messages/personalized", "", `{"messages":[{"to":"13800138000","text":"张三您好，验证码 384921"},{"to":"13800138001","text":"李四您好"}]}`)
	ft.add(f, "POST", "/v1/messages/personalized", "key-2", `{"messages":[{"to":"13800138000","text":"`+strings.Repeat("a", 2000)+`"},{"to":"x","text":"\u0000"}],"source":"99999999999999999999"}`)
	ft.add(f, "POST", "/v1/messages/personalized", "", `{"messages":[{"to":"","text":"a"}]}`)
	ft.add(f, "POST", "/v1/messages/personalized", "", `{"messages":[]}`)
	ft.add(f, "POST", "/v1/messages/preview", "", `{"text":"会议改到下午三点"}`)
	ft.add(f, "POST", "/v1/messages/preview", "", `{"text":"`+strings.Repeat("€", 400)+`"}`)
	ft.add(f, "POST", "/v1/messages/preview", "", `{"text":"\ud83d\ude00\ud800"}`)
	ft.add(f, "PATCH", "/v1/messages/{}", id, `{"send_at":"`+later+`"}`)
	ft.add(f, "PATCH", "/v1/messages/{}", id, `{"text":"改过的"}`)
	ft.add(f, "PATCH", "/v1/messages/{}", id, `{"send_at":"","text":""}`)
	ft.add(f, "PATCH", "/v1/messages/{}", "18446744073709551616", `{"text":"x"}`)
	ft.add(f, "POST", "/v1/batches", "", `{"upload":"upl_0000000000000000000000000","template":"{姓名}您好"}`)
	ft.add(f, "GET", "/v1/messages", "state=delivered&to=13800138000&after=5&limit=1000", "")
	ft.add(f, "GET", "/v1/messages", "from=2026-01-02T15:04:05Z&limit=0", "")
	ft.add(f, "GET", "/v1/scheduled", "after=-1", "")
	ft.add(f, "GET", "/v1/inbox", "before=99999999999999999999999&limit=20", "")
	ft.addEdges(f)
	ft.run(f)
}

// FuzzReminderBodies: reminders created, changed and deleted, one
// occurrence changed, and the week listing's query string, as erin.
func FuzzReminderBodies(f *testing.F) {
	r := newFuzzRig(f)
	ft := newFuzzTarget(f, r.keys["erin"], r, nil)
	start := time.Now().Add(48 * time.Hour).In(time.FixedZone("CST", 8*3600)).Truncate(time.Minute)
	var rem Reminder
	if err := json.Unmarshal(ft.must(f, http.StatusCreated, "POST", "/v1/reminders",
		`{"text":"周一例会 9:30 三楼","to":["13800138000"],"freq":"daily","start":"`+start.Format(time.RFC3339)+`","count":10,"before":15}`), &rem); err != nil {
		f.Fatal(err)
	}
	ft.routes = []fuzzRoute{
		{method: "POST", path: "/v1/reminders", contentType: "application/json"},
		{method: "PATCH", path: "/v1/reminders/{}", param: paramPath, contentType: "application/json"},
		// Its occurrences: the date is fuzzed, the series is the one above.
		{method: "PATCH", path: "/v1/reminders/" + rem.ID + "/occurrences/{}", param: paramPath, contentType: "application/json"},
		// So that the fuzzer can free what a user may keep (100 series).
		{method: "DELETE", path: "/v1/reminders/{}", param: paramPath},
		{method: "GET", path: "/v1/reminders", param: paramQuery},
	}
	st := start.Format(time.RFC3339)
	day := start.Format("2006-01-02")
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"周一例会 9:30 三楼","to":["13800138000"],"freq":"weekly","weekdays":["mon"],"start":"`+st+`","count":10,"before":15}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"月报","to":["13800138000"],"freq":"monthly","month_day":31,"start":"`+st+`","until":"2099-12-31"}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"工作日","groups":["销售部"],"book":"enterprise","freq":"workdays","start":"`+st+`","count":2147483647}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"一次","to":["13800138000"],"freq":"once","start":"`+st+`","before":10080}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"x","to":["13800138000"],"freq":"weekly","weekdays":[],"start":"`+st+`"}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"x","to":["13800138000"],"freq":"monthly","month_day":31,"start":"`+st+`","until":"`+day+`"}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"x","to":["13800138000"],"freq":"daily","start":"0001-01-01T00:00:00Z","until":"9999-12-31","count":-1,"before":-1,"month_day":0}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"x","to":["13800138000"],"freq":"yearly","start":"`+st+`","weekdays":["MON","xyz"],"source":"a1"}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":"`+strings.Repeat("长", 600)+`","to":`+manyNumbers(MaxRecipients+1)+`,"freq":"once","start":"`+st+`"}`)
	ft.add(f, "POST", "/v1/reminders", "", `{"text":null,"to":null,"groups":null,"freq":null,"start":null}`)
	ft.add(f, "PATCH", "/v1/reminders/{}", rem.ID, `{"text":"改到十点","before":0}`)
	ft.add(f, "PATCH", "/v1/reminders/{}", rem.ID, `{"freq":"monthly","month_day":29,"until":"2027-02-28"}`)
	ft.add(f, "PATCH", "/v1/reminders/{}", rem.ID, `{"start":"`+start.AddDate(2, 0, 0).Format(time.RFC3339)+`"}`)
	ft.add(f, "PATCH", "/v1/reminders/{}", "99999999999999999999", `{"text":"x"}`)
	ft.add(f, "PATCH", "/v1/reminders/"+rem.ID+"/occurrences/{}", day, `{"text":"例会改到周二"}`)
	ft.add(f, "PATCH", "/v1/reminders/"+rem.ID+"/occurrences/{}", day, `{"at":"`+start.Add(3*time.Hour).Format(time.RFC3339)+`"}`)
	ft.add(f, "PATCH", "/v1/reminders/"+rem.ID+"/occurrences/{}", "2026-02-30", `{"at":"2026-02-30T09:00:00+08:00"}`)
	ft.add(f, "DELETE", "/v1/reminders/{}", "0", "")
	ft.add(f, "GET", "/v1/reminders", "week=2026-W49", "")
	ft.add(f, "GET", "/v1/reminders", "week=2026-W53", "")
	ft.add(f, "GET", "/v1/reminders", "week=9999-W51", "") // the last week whose end has a 4-digit year
	ft.add(f, "GET", "/v1/reminders", "week=-292277022657-W01", "")
	ft.addEdges(f)
	ft.run(f)
}

// FuzzAccountBodies: what an enterprise admin writes about its account —
// the address books (and their imports, with a fuzzed Content-Type), the
// whitelist requests (and import), opt-outs, the signature change, users,
// the receipt webhook, its own password — and the listings' query
// strings, as amy (enterprise A's admin).
func FuzzAccountBodies(f *testing.F) {
	r := newFuzzRig(f)
	openLimits(r.srv)
	ft := newFuzzTarget(f, r.keys["amy"], r, []fuzzRoute{
		{method: "POST", path: "/v1/contacts", contentType: "application/json"},
		{method: "POST", path: "/v1/enterprise-contacts", contentType: "application/json"},
		{method: "DELETE", path: "/v1/contacts/{}", param: paramPath},
		{method: "GET", path: "/v1/contacts", param: paramQuery},
		{method: "POST", path: "/v1/contacts/import", param: paramHeader, header: "Content-Type"},
		{method: "POST", path: "/v1/whitelist", contentType: "application/json"},
		{method: "DELETE", path: "/v1/whitelist/{}", param: paramPath},
		{method: "GET", path: "/v1/whitelist", param: paramQuery},
		{method: "POST", path: "/v1/whitelist/import", param: paramHeader, header: "Content-Type"},
		{method: "DELETE", path: "/v1/optouts/{}", param: paramPath},
		{method: "POST", path: "/v1/optouts", contentType: "application/json"},
		{method: "POST", path: "/v1/optouts/import", param: paramHeader, header: "Content-Type"},
		{method: "GET", path: "/v1/optouts", param: paramQuery},
		{method: "POST", path: "/v1/signature/requests", contentType: "application/json"},
		{method: "GET", path: "/v1/signature/requests", param: paramQuery},
		{method: "POST", path: "/v1/users", contentType: "application/json"},
		{method: "PATCH", path: "/v1/users/{}", param: paramPath, contentType: "application/json"},
		{method: "PATCH", path: "/v1/receipt-webhook", contentType: "application/json"},
		{method: "PUT", path: "/v1/me/password", contentType: "application/json"},
		{method: "GET", path: "/v1/usage", param: paramQuery},
		{method: "GET", path: "/v1/bills", param: paramQuery},
	})
	ft.add(f, "POST", "/v1/contacts", "", `{"name":"张三","number":"13800138000","groups":["销售部"]}`)
	ft.add(f, "POST", "/v1/contacts", "", `{"name":"","number":"+86 138-0013-8001","groups":["",";","`+strings.Repeat("组", 200)+`"]}`)
	ft.add(f, "POST", "/v1/enterprise-contacts", "", `{"name":"李四","number":"13800138001","groups":["销售部","市场部"]}`)
	ft.add(f, "DELETE", "/v1/contacts/{}", "13800138000", "")
	ft.add(f, "DELETE", "/v1/contacts/{}", "+8613800138000", "")
	ft.add(f, "GET", "/v1/contacts", "group=销售部", "")
	ft.add(f, "POST", "/v1/contacts/import", "text/csv", "姓名,号码,分组\n张三,13800138000,销售部\n李四,13800138001,销售部;市场部\n")
	ft.add(f, "POST", "/v1/contacts/import", "multipart/form-data; boundary=XX",
		"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n姓名,号码\n张三,13800138000\n\r\n--XX--\r\n")
	ft.add(f, "POST", "/v1/contacts/import", "multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"template\"\r\n\r\nx\r\n--XX--\r\n")
	ft.add(f, "POST", "/v1/contacts/import", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "PK\x03\x04")
	ft.add(f, "POST", "/v1/whitelist", "", `{"number":"13800138005"}`)
	ft.add(f, "POST", "/v1/whitelist", "", `{"numbers":["13800138006","13800138006","x",""]}`)
	ft.add(f, "POST", "/v1/whitelist", "", `{"number":"13800138007","numbers":["13800138008"]}`)
	ft.add(f, "POST", "/v1/whitelist", "", `{"numbers":`+manyNumbers(MaxRecipients+1)+`}`)
	ft.add(f, "DELETE", "/v1/whitelist/{}", uNumA1, "")
	ft.add(f, "GET", "/v1/whitelist", "state=pending&limit=2&after=+8613800138000", "")
	ft.add(f, "GET", "/v1/whitelist", "state=nonsense&limit=-1", "")
	ft.add(f, "POST", "/v1/whitelist/import", "text/csv", "号码,备注\n13800138000,张三\n")
	ft.add(f, "DELETE", "/v1/optouts/{}", "13712345678", "")
	ft.add(f, "POST", "/v1/optouts", "", `{"number":"13800138009"}`)
	ft.add(f, "POST", "/v1/optouts", "", `{"numbers":["13800138010","13800138010","x",""]}`)
	ft.add(f, "POST", "/v1/optouts/import", "text/csv", "号码\n13800138011\n1.38001E+10\n")
	ft.add(f, "GET", "/v1/optouts", "after=+8613712345678&limit=99999999999999999999", "")
	ft.add(f, "POST", "/v1/signature/requests", "", `{"signature":"【新名称】"}`)
	ft.add(f, "POST", "/v1/signature/requests", "", `{"signature":"新名称"}`)
	ft.add(f, "POST", "/v1/signature/requests", "", `{"signature":"【`+strings.Repeat("长", 100)+`】"}`)
	ft.add(f, "GET", "/v1/signature/requests", "state=pending", "")
	ft.add(f, "POST", "/v1/users", "", `{"system_id":"acme02","password":"Pw123456","name":"李四","mobile":"13712345678"}`)
	ft.add(f, "POST", "/v1/users", "", `{"system_id":"acme03","password":"Pw123456","name":"王五","role":"admin","extension":"12","long_replies":"udh16","show_signature":true}`)
	ft.add(f, "POST", "/v1/users", "", `{"system_id":"`+strings.Repeat("x", 100)+`","password":"中文密码","name":"","role":"root"}`)
	ft.add(f, "PATCH", "/v1/users/{}", "alice", `{"show_signature":true}`)
	ft.add(f, "PATCH", "/v1/users/{}", "alice", `{"name":"甲","mobile":"","role":"admin","disabled":false,"extension":"","long_replies":"UDH7"}`)
	ft.add(f, "PATCH", "/v1/users/{}", "bob", `{"disabled":true}`)
	ft.add(f, "PATCH", "/v1/receipt-webhook", "", `{"receipt_url":"https://example.com/dlr","receipt_batch":100}`)
	ft.add(f, "PATCH", "/v1/receipt-webhook", "", `{"receipt_url":"","receipt_batch":-1}`)
	ft.add(f, "PATCH", "/v1/receipt-webhook", "", `{"receipt_batch":9223372036854775807}`)
	ft.add(f, "PUT", "/v1/me/password", "", `{"old_password":"secret1","new_password":"n3wpass8"}`)
	ft.add(f, "PUT", "/v1/me/password", "", `{"old_password":"wrong","new_password":"n3w pass"}`)
	ft.add(f, "GET", "/v1/usage", "month=2026-13", "")
	ft.add(f, "GET", "/v1/bills", "month=2026-11", "")
	ft.add(f, "GET", "/v1/bills", "month=0000-00", "")
	ft.addEdges(f)
	ft.run(f)
}

// FuzzPublicBodies: the routes anyone may call — applications, the
// password reset, the login — and the Authorization header of an
// authenticated one.
func FuzzPublicBodies(f *testing.F) {
	r := newFuzzRig(f)
	openLimits(r.srv)
	ft := newFuzzTarget(f, "", r, []fuzzRoute{
		// 503 too_many_applications: 10,000 applications are waiting for
		// an account manager, which a fuzzer that submits valid ones for a
		// minute reaches; it is the server's state, documented, not a
		// fault of the request.
		{method: "POST", path: "/v1/applications", contentType: "application/json", ok503: "too_many_applications"},
		{method: "GET", path: "/v1/applications/{}", param: paramPath},
		{method: "POST", path: "/v1/password-reset", contentType: "application/json"},
		// A failed login is answered after a delay that doubles with each
		// failure of its source, up to 5 s (loginThrottle): each comes
		// from a new address, as in a flood from many, and waits the
		// first delay only (100 ms; past 10,000 addresses, a new one is
		// not remembered and waits the first delay too).
		{method: "POST", path: "/v1/login", contentType: "application/json", newSource: true},
		{method: "GET", path: "/v1/me", param: paramHeader, header: "Authorization"},
	})
	ft.add(f, "POST", "/v1/applications", "", `{"group_code":"GD0769001","name":"东莞某某有限公司","contact_mobile":"13712345678","package":1,"signature":"【某某公司】"}`)
	ft.add(f, "POST", "/v1/applications", "", `{"group_code":"GD0769001","name":"x","contact_mobile":"13712345678","package":13,"signature":"某某"}`)
	ft.add(f, "POST", "/v1/applications", "", `{"group_code":" ","name":"x","contact_mobile":"abc","package":-1,"signature":"【】"}`)
	ft.add(f, "POST", "/v1/applications", "", `{"group_code":"`+strings.Repeat("G", 4000)+`","name":"x","contact_mobile":"13712345678","package":1,"signature":"【x】"}`)
	ft.add(f, "POST", "/v1/applications", "", `{"group_code":"A","name":"x","contact_mobile":"13712345678","package":1,"signature":"【x】"}`+strings.Repeat(" ", maxPublicBody))
	ft.add(f, "GET", "/v1/applications/{}", "app_00000000000000000000000000", "")
	ft.add(f, "GET", "/v1/applications/{}", "../admin", "")
	ft.add(f, "POST", "/v1/password-reset", "", `{"group_code":"A","user_name":"甲","mobile":"13712345678"}`)
	ft.add(f, "POST", "/v1/password-reset", "", `{"group_code":"","user_name":"","mobile":""}`)
	ft.add(f, "POST", "/v1/login", "", `{"system_id":"alice","password":"secret1"}`)
	ft.add(f, "POST", "/v1/login", "", `{"system_id":"alice","password":"wrong"}`)
	ft.add(f, "POST", "/v1/login", "", `{"system_id":"`+strings.Repeat("a", 1000)+`","password":"`+strings.Repeat("p", 1000)+`"}`)
	ft.add(f, "GET", "/v1/me", "Bearer "+r.keys["alice"], "")
	ft.add(f, "GET", "/v1/me", "Bearer qxs_AAAA", "")
	ft.add(f, "GET", "/v1/me", "Bearer ", "")
	ft.add(f, "GET", "/v1/me", "Basic YWxpY2U6c2VjcmV0MQ==", "")
	ft.addEdges(f)
	ft.run(f)
}

// endlessBody is a request body that never ends (an object whose first
// string goes on), counting the bytes read from it. It ends after
// endlessCap bytes so that a route that reads it all fails the test
// instead of hanging it.
type endlessBody struct{ n int64 }

const endlessCap = 64 << 20

func (e *endlessBody) Read(p []byte) (int, error) {
	if e.n >= endlessCap {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), endlessCap-e.n)]
	for i := range p {
		p[i] = 'a'
	}
	if e.n == 0 {
		copy(p, `{"text":"`)
	}
	e.n += int64(len(p))
	return len(p), nil
}

// A request body is read up to its route's limit and no further: every
// route that decodes JSON answers an endless body 413 too_large after at
// most its limit and one byte (1 MiB, 8 KiB on the public routes and the
// password change), and no route that takes a body reads more than the
// user API's limit of an endless JSON one, whatever it answers.
func TestUserBodiesBounded(t *testing.T) {
	t.Parallel()
	r := newBulkRig(t, rigOptions{noSync: true})
	openLimits(r.srv)
	limits := map[string]int64{}
	for _, route := range []string{"POST /v1/login", "POST /v1/messages", "POST /v1/messages/personalized",
		"POST /v1/messages/preview", "PATCH /v1/messages/{id}", "POST /v1/batches", "POST /v1/contacts",
		"POST /v1/enterprise-contacts", "POST /v1/reminders", "PATCH /v1/reminders/{id}",
		"PATCH /v1/reminders/{id}/occurrences/{date}", "POST /v1/signature/requests",
		"PATCH /v1/receipt-webhook", "POST /v1/users", "PATCH /v1/users/{system_id}", "POST /v1/whitelist"} {
		limits[route] = maxUserBody
	}
	for _, route := range []string{"POST /v1/applications", "POST /v1/password-reset", "PUT /v1/me/password"} {
		limits[route] = maxPublicBody
	}
	// Ids that pass each route's own checks before it reads the body.
	ids := strings.NewReplacer("{id}", "1", "{date}", "2026-01-01", "{system_id}", "alice")
	h := r.srv.Handler()
	seen := 0
	for _, rt := range r.srv.userRouteList() {
		if rt.Method == "GET" || rt.Method == "DELETE" {
			continue
		}
		route := rt.Method + " " + rt.Path
		body := &endlessBody{}
		req := httptest.NewRequest(rt.Method, ids.Replace(rt.Path), body)
		req.Header.Set("Content-Type", "application/json")
		if rt.Auth {
			req.Header.Set("Authorization", "Bearer "+r.keys["amy"])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		limit, decodes := limits[route]
		if !decodes {
			if body.n > maxUserBody+1 {
				t.Errorf("%s: read %d bytes of an endless body, answered %d %s", route, body.n, rec.Code, clipAnswer(rec.Body.Bytes()))
			}
			continue
		}
		seen++
		var e errorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != http.StatusRequestEntityTooLarge || e.Error.Reason != "too_large" || body.n > limit+1 {
			t.Errorf("%s: %d %s after %d bytes; want 413 too_large after at most %d", route, rec.Code, clipAnswer(rec.Body.Bytes()), body.n, limit+1)
		}
	}
	if seen != len(limits) {
		t.Errorf("only %d of the %d routes listed as decoding JSON are served", seen, len(limits))
	}
}
