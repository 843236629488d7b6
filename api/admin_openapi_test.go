package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/qxtd/qxtd/policy"
)

// daemonAdminRoutes are the /admin/v1 routes the daemon registers itself
// (cmd/qxtd/serve.go) on its own mux, outside this package; the daemon's
// tests check that it serves them (cmd/qxtd).
var daemonAdminRoutes = []string{"PUT /admin/v1/log-level"}

func loadAdminOpenAPI(t *testing.T) openAPISpec {
	t.Helper()
	return parseOpenAPI(t, "admin.openapi.yaml", adminOpenAPIDoc)
}

// documentedOp reports whether method+path (a concrete request path) is an
// operation of the document, and which template it matched.
func (d openAPISpec) documentedOp(method, path string) (string, bool) {
	// Of the templates that match, the most specific (the fewest
	// parameters: /messages/export before /messages/{id}), as the
	// server's mux picks its route; not the first of a map's random order.
	best, found := "", false
	for tmpl, item := range d.Paths {
		if _, ok := item[strings.ToLower(method)]; !ok || !pathMatches(tmpl, path) {
			continue
		}
		if n, bn := strings.Count(tmpl, "{"), strings.Count(best, "{"); !found || n < bn || n == bn && tmpl < best {
			best, found = tmpl, true
		}
	}
	return best, found
}

// adminCall sends method path with a JSON body (nil: none) and the token
// ("" = none); it returns the status and the body.
func adminCall(t *testing.T, base, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// adminPlaceholders stand for the path parameters when every documented
// operation is called: none exists, so a served route answers a JSON
// not_found (or a validation error), which the mux's own 404 is not.
var adminPlaceholders = strings.NewReplacer(
	"{code}", "NOPE", "{system_id}", "nope", "{prefix}", "13712345678",
	"{id}", "999", "{number}", "app_nope")

// TestAdminOpenAPIRoutes keeps admin.openapi.yaml and the registered admin
// routes equal in both directions, checks that each documented operation
// is served, and that exactly the operations documented without security
// are reachable without the operator token.
func TestAdminOpenAPIRoutes(t *testing.T) {
	doc := loadAdminOpenAPI(t)
	env := newAdminEnv(t)
	registered := append(env.s.adminRoutePatterns(), daemonAdminRoutes...)
	sort.Strings(registered)
	if i := slices.IndexFunc(registered, func(p string) bool { return !strings.Contains(p, " /admin/v1/") }); i >= 0 {
		t.Errorf("route %q is not under /admin/v1/", registered[i])
	}
	documented := doc.documented()
	for _, op := range registered {
		if !slices.Contains(documented, op) {
			t.Errorf("route %s is not in admin.openapi.yaml", op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(registered, op) {
			t.Errorf("admin.openapi.yaml documents %s, which is not registered", op)
		}
	}
	checkPathParams(t, doc)

	// Which operations the document says need no token.
	open := map[string]bool{}
	for path, item := range doc.Paths {
		for m, node := range item {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			var op struct {
				Security *[]any `yaml:"security"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", m, path, err)
			}
			open[strings.ToUpper(m)+" "+path] = op.Security != nil && len(*op.Security) == 0
		}
	}

	for _, op := range documented {
		if slices.Contains(daemonAdminRoutes, op) {
			continue // not on this package's mux
		}
		method, tmpl, _ := strings.Cut(op, " ")
		path := adminPlaceholders.Replace(tmpl)
		var body any
		switch method {
		case "POST", "PUT", "PATCH":
			body = map[string]any{}
		}
		code, b := adminCall(t, env.url, method, path, adminToken, body)
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if code == http.StatusMethodNotAllowed || code == http.StatusNotFound && e.Error.Reason != "not_found" {
			t.Errorf("%s: not served: %d %s", op, code, b)
		}
		// Without a token: the operator check refuses it unless the
		// document says no security (the login's own 401 is not the check's).
		code, b = adminCall(t, env.url, method, path, "", body)
		e = errorBody{}
		_ = json.Unmarshal(b, &e)
		checked := code == http.StatusUnauthorized && e.Error.Message == operatorRefused
		if checked == open[op] {
			t.Errorf("%s without a token: %d %.80s; documented without security: %v", op, code, b, open[op])
		}
	}
}

// TestAdminOpenAPISchemas: each wire type's JSON fields are exactly the
// properties of its schema, and required fields exist.
func TestAdminOpenAPISchemas(t *testing.T) {
	doc := loadAdminOpenAPI(t)
	types := map[string]any{
		"Status":                Status{},
		"OperatorLoginRequest":  OperatorLoginRequest{},
		"OperatorLoginResponse": OperatorLoginResponse{},
		"OperatorSession":       OperatorSession{},
		"SystemStatus":          SystemStatus{},
		"FailingWebhook":        FailingWebhook{},
		"UpstreamStatus":        UpstreamStatus{},
		"ClusterStatus":         ClusterStatus{},
		"ClusterLoad":           ClusterLoad{},
		"LoadStatus":            LoadStatus{},
		"EnterpriseLoad":        EnterpriseLoad{},
		"UpstreamLoad":          UpstreamLoad{},
		"ClusterMember":         ClusterMember{},
		"RefusalStatus":         RefusalStatus{},
		"Package":               policy.Package{},
		"PackageOut":            PackageOut{},
		"PackageList":           PackageList{},
		"NewEnterprise":         NewEnterprise{},
		"EnterprisePatch":       EnterprisePatch{},
		"Enterprise":            Enterprise{},
		"EnterpriseList":        EnterpriseList{},
		"EnterpriseDetail":      EnterpriseDetail{},
		"WhitelistCounts":       WhitelistCounts{},
		"Usage":                 Usage{},
		"ReceiptSecretRequest":  ReceiptSecretRequest{},
		"ReceiptSecret":         ReceiptSecret{},
		"ReceiptWebhookTestIn":  ReceiptWebhookTestIn{},
		"ReceiptWebhookTest":    ReceiptWebhookTest{},
		"ReceiptStatus":         ReceiptStatus{},
		"ReceiptPost":           ReceiptPost{},
		"ReceiptWebhookRetry":   ReceiptWebhookRetry{},
		"ReceiptWebhookRetryIn": ReceiptWebhookRetryIn{},
		"NodeReceiptStatus":     NodeReceiptStatus{},
		"NodeReceiptRetry":      NodeReceiptRetry{},
		"NewUser":               NewUser{},
		"UserPatch":             UserPatch{},
		"User":                  User{},
		"UserList":              UserList{},
		"PasswordSet":           PasswordSet{},
		"APIKey":                APIKey{},
		"Numbers":               Numbers{},
		"Decision":              Decision{},
		"RowError":              policy.RowError{},
		"ImportResult":          policy.ImportResult{},
		"BulkResult":            policy.BulkResult{},
		"WhitelistEntry":        policy.WhitelistEntry{},
		"WhitelistPage":         WhitelistPage{},
		"PendingEntry":          policy.PendingEntry{},
		"PendingPage":           PendingPage{},
		"EntryRef":              policy.EntryRef{},
		"EntryDecision":         EntryDecision{},
		"DecideResult":          policy.DecideResult{},
		"OptOutEntry":           policy.OptOutEntry{},
		"Override":              policy.Override{},
		"OverrideList":          OverrideList{},
		"OverrideSet":           OverrideSet{},
		"PasswordReset":         PasswordReset{},
		"SignatureRequest":      policy.SignatureRequest{},
		"SignatureRequestList":  SignatureRequestList{},
		"SignatureDecision":     SignatureDecision{},
		"Application":           Application{},
		// listApplications answers a map with this one key.
		"ApplicationList": struct {
			Applications []Application `json:"applications"`
		}{},
		"ApplicationApproval":  ApplicationApproval{},
		"ApplicationApproved":  ApplicationApproved{},
		"ApplicationRejection": ApplicationRejection{},
		"BillLine":             BillLine{},
	}
	checkSchemas(t, doc, types)
	// Every schema of the document is checked (none drifts unnoticed), the
	// error schema below.
	for name := range doc.Comps.Schemas {
		if _, ok := types[name]; !ok && name != "Error" {
			t.Errorf("schema %s has no Go type in the test", name)
		}
	}
	var props []string
	for p := range doc.Comps.Schemas["Error"].Properties["error"].Properties {
		props = append(props, p)
	}
	sort.Strings(props)
	if want := errorFields(); !slices.Equal(props, want) {
		t.Errorf("Error schema %v, errorBody %v", props, want)
	}
}

func TestAdminOpenAPIRefs(t *testing.T) { checkRefs(t, adminOpenAPIDoc) }

// TestAdminOpenAPIServed: the document is served as embedded, without the
// operator token, and with the token too.
func TestAdminOpenAPIServed(t *testing.T) {
	env := newAdminEnv(t)
	for _, tok := range []string{"", adminToken} {
		code, b := adminCall(t, env.url, "GET", "/admin/v1/openapi.yaml", tok, nil)
		if code != http.StatusOK || !bytes.Equal(b, adminOpenAPIDoc) {
			t.Fatalf("GET /admin/v1/openapi.yaml (token %q): %d, %d bytes", tok, code, len(b))
		}
	}
}

// clientNotCalling are the admin operations no Client method calls, each
// with why (`qxtd admin` cannot reach them but through curl).
var clientNotCalling = map[string]string{
	"GET /admin/v1/openapi.yaml": "the document itself, read by people and generators",
}

// TestClientRoutesDocumented calls every exported method of Client with
// placeholder arguments against a recorder: each request it makes must be
// a documented operation (admin.openapi.yaml for /admin/v1, openapi.yaml
// for /v1), so `qxtd admin` (built on Client) cannot call an undocumented
// route; and every admin operation is called by some method, except those
// listed in clientNotCalling.
func TestClientRoutesDocumented(t *testing.T) {
	adminDoc, userDoc := loadAdminOpenAPI(t), loadOpenAPI(t)
	var mu sync.Mutex
	var seen []string // "METHOD /path" as requested
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(ts.Close)
	c := &Client{Base: ts.URL, Token: "t", HTTP: ts.Client()}

	// Do, DoContext and Upload take the path from their caller.
	generic := []string{"Do", "DoContext", "Upload"}
	called := map[string]bool{} // documented admin operations reached
	cv := reflect.ValueOf(c)
	for i := range cv.NumMethod() {
		m := cv.Type().Method(i)
		if slices.Contains(generic, m.Name) {
			continue
		}
		// Both values of every bool argument (approve or reject, …).
		for _, flag := range []bool{false, true} {
			mu.Lock()
			seen = nil
			mu.Unlock()
			args, err := placeholderArgs(cv.Method(i).Type(), flag)
			if err != nil {
				t.Fatalf("Client.%s: %v", m.Name, err)
			}
			cv.Method(i).Call(args)
			mu.Lock()
			reqs := slices.Clone(seen)
			mu.Unlock()
			if len(reqs) == 0 {
				t.Errorf("Client.%s made no request", m.Name)
			}
			for _, req := range reqs {
				method, path, _ := strings.Cut(req, " ")
				doc, name := userDoc, "openapi.yaml"
				if strings.HasPrefix(path, "/admin/") {
					doc, name = adminDoc, "admin.openapi.yaml"
				}
				tmpl, ok := doc.documentedOp(method, path)
				if !ok {
					t.Errorf("Client.%s calls %s, which is not in %s", m.Name, req, name)
					continue
				}
				called[method+" "+tmpl] = true
			}
		}
	}
	for _, op := range adminDoc.documented() {
		_, listed := clientNotCalling[op]
		if called[op] == listed {
			t.Errorf("%s: called by a Client method %v, listed in clientNotCalling %v", op, called[op], listed)
		}
	}
}

// placeholderArgs builds arguments for a Client method: real values for
// the interfaces the methods take, one element for a slice, flag for
// every bool, non-empty strings, the zero value otherwise.
func placeholderArgs(ft reflect.Type, flag bool) ([]reflect.Value, error) {
	var args []reflect.Value
	for i := range ft.NumIn() {
		at := ft.In(i)
		var v reflect.Value
		switch {
		case at == reflect.TypeFor[context.Context]():
			v = reflect.ValueOf(context.Background())
		case at == reflect.TypeFor[io.Writer]():
			v = reflect.ValueOf(io.Discard)
		case at == reflect.TypeFor[io.Reader]():
			v = reflect.ValueOf(strings.NewReader("x"))
		case at.Kind() == reflect.Interface:
			return nil, fmt.Errorf("argument %d: no placeholder for %s", i, at)
		case at.Kind() == reflect.String:
			v = reflect.New(at).Elem()
			v.SetString("x")
		case at.Kind() == reflect.Bool:
			v = reflect.New(at).Elem()
			v.SetBool(flag)
		case at.Kind() == reflect.Int:
			v = reflect.New(at).Elem()
			v.SetInt(1)
		case at.Kind() == reflect.Slice:
			v = reflect.MakeSlice(at, 1, 1)
		default:
			v = reflect.Zero(at)
		}
		args = append(args, v)
	}
	return args, nil
}
