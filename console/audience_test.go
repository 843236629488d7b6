package console

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// wildcard is a path wildcard of a route pattern ({code}, {$}).
var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// sample is a request that route's pattern matches.
func sample(rt route) *http.Request {
	method, path, _ := strings.Cut(rt.pattern, " ")
	path = wildcard.ReplaceAllStringFunc(path, func(w string) string {
		if w == "{$}" {
			return ""
		}
		return "x"
	})
	return httptest.NewRequest(method, path, nil)
}

// Each audience's handler routes its own pages and none of the other's:
// the daemon serves the desk on http.ops_listen and the enterprise console
// on http.listen, and a page on the wrong port must not be reachable.
func TestAudienceHandlers(t *testing.T) {
	s, err := New(Config{API: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	desk := concat(opsPublicRoutes, opsRoutes)
	ent := concat(publicRoutes, enterpriseRoutes)
	for _, c := range []struct {
		name       string
		mux        *http.ServeMux
		own, other []route
	}{
		{"desk", s.deskMux, desk, ent},
		{"enterprise", s.entMux, ent, desk},
	} {
		for _, rt := range c.own {
			if _, p := c.mux.Handler(sample(rt)); p != rt.pattern {
				t.Errorf("%s handler: %s routed to %q", c.name, rt.pattern, p)
			}
		}
		for _, rt := range c.other {
			if _, p := c.mux.Handler(sample(rt)); p != "" {
				t.Errorf("%s handler: %s (the other audience's) routed to %q", c.name, rt.pattern, p)
			}
		}
		for _, rt := range concat(desk, ent) { // the demo's one port serves both
			if _, p := s.mux.Handler(sample(rt)); p != rt.pattern {
				t.Errorf("full handler: %s routed to %q", rt.pattern, p)
			}
		}
	}

	// Through the whole handler (security headers and all): each login
	// page where it belongs, 404 elsewhere; the static files on both.
	get := func(h http.Handler, path string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code
	}
	for _, c := range []struct {
		h    http.Handler
		path string
		want int
	}{
		{s.DeskHandler(), "/ops/login", http.StatusOK},
		{s.DeskHandler(), "/login", http.StatusNotFound},
		{s.DeskHandler(), "/", http.StatusNotFound},
		{s.DeskHandler(), "/static/app.css", http.StatusOK},
		{s.EnterpriseHandler(), "/login", http.StatusOK},
		{s.EnterpriseHandler(), "/ops/login", http.StatusNotFound},
		{s.EnterpriseHandler(), "/ops/", http.StatusNotFound},
		{s.EnterpriseHandler(), "/static/app.css", http.StatusOK},
		{s.Handler(), "/login", http.StatusOK},
		{s.Handler(), "/ops/login", http.StatusOK},
	} {
		if got := get(c.h, c.path); got != c.want {
			t.Errorf("GET %s: %d, want %d", c.path, got, c.want)
		}
	}
}
