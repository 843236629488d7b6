package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/qxtd/qxtd/queue"
)

// openAPISpec is the part of an OpenAPI 3.0 document the test reads.
type openAPISpec struct {
	OpenAPI string                                 `yaml:"openapi"`
	Paths   map[string]map[string]yaml.Node        `yaml:"paths"`
	Comps   struct{ Schemas map[string]apiSchema } `yaml:"components"`
}

type apiSchema struct {
	Type       string               `yaml:"type"`
	Required   []string             `yaml:"required"`
	Properties map[string]apiSchema `yaml:"properties"`
	Ref        string               `yaml:"$ref"`
	Enum       []string             `yaml:"enum"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T) openAPISpec {
	t.Helper()
	return parseOpenAPI(t, "openapi.yaml", openAPIDoc)
}

// parseOpenAPI reads an OpenAPI 3.0 document (name is for messages).
func parseOpenAPI(t *testing.T, name string, b []byte) openAPISpec {
	t.Helper()
	var doc openAPISpec
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("%s: openapi %q, want 3.0.x", name, doc.OpenAPI)
	}
	return doc
}

// documented lists "METHOD /path" for every operation in the document.
func (d openAPISpec) documented() []string {
	var out []string
	for path, item := range d.Paths {
		for m := range item {
			if slices.Contains(httpMethods, m) {
				out = append(out, strings.ToUpper(m)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIRoutes keeps openapi.yaml and the server equal in both
// directions: every /v1 route registered is documented with its method,
// and every documented operation is served (the mux neither 404s nor 405s
// it).
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	r := newUserRig(t)
	var registered []string
	for _, rt := range r.srv.userRouteList() {
		registered = append(registered, rt.Method+" "+rt.Path)
	}
	sort.Strings(registered)
	documented := doc.documented()
	for _, op := range registered {
		if !slices.Contains(documented, op) {
			t.Errorf("route %s is not in openapi.yaml", op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(registered, op) {
			t.Errorf("openapi.yaml documents %s, which is not registered", op)
		}
	}

	// Every documented operation reaches a handler. The mux's own answers
	// are the catch-all's unknown_route / method_not_allowed (or a plain-text
	// 404/405 outside /v1/); a handler's 404 is a JSON not_found.
	id := r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "x"}).Results[0].ID
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		path = strings.ReplaceAll(path, "{id}", id)
		var body any
		switch method {
		case "POST", "PATCH":
			body = map[string]any{}
		}
		code, b := r.call(method, path, r.keys["alice"], body, nil)
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if code == http.StatusMethodNotAllowed || code == http.StatusNotFound && e.Error.Reason != "not_found" {
			t.Errorf("%s: not served: %d %s", op, code, b)
		}
	}

	checkPathParams(t, doc)
}

// checkPathParams: the document declares every {param} of its paths.
func checkPathParams(t *testing.T, doc openAPISpec) {
	t.Helper()
	for path, item := range doc.Paths {
		if strings.Contains(path, "{") {
			raw, _ := yaml.Marshal(item)
			for _, seg := range strings.Split(path, "/") {
				name, ok := strings.CutPrefix(seg, "{")
				name = strings.TrimSuffix(name, "}")
				if ok && !strings.Contains(string(raw), "#/components/parameters/"+name) {
					t.Errorf("%s: path parameter %s not declared", path, name)
				}
			}
		}
	}
}

// jsonFields lists the JSON names of a struct's fields; the fields of an
// embedded struct without a JSON name are its own, as encoding/json
// promotes them.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPISchemas checks that each wire type's JSON fields are exactly
// the properties of its schema, and that required fields exist.
func TestOpenAPISchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]any{
		"LoginRequest":        LoginRequest{},
		"LoginResponse":       LoginResponse{},
		"Me":                  Me{},
		"SendRequest":         SendRequest{},
		"PersonalizedRequest": PersonalizedRequest{},
		"PersonalMessage":     PersonalMessage{},
		"SendResponse":        SendResponse{},
		"RecipientResult":     RecipientResult{},
		"Message":             Message{},
		"Part":                Part{},
		"MessagePage":         MessagePage{},
		"MessagePatch":        MessagePatch{},
		// The console's additions.
		"PreviewRequest":     PreviewRequest{},
		"PreviewResponse":    PreviewResponse{},
		"PreviewRefusal":     PreviewRefusal{},
		"Upload":             Upload{},
		"UploadPreview":      UploadPreview{},
		"UploadPreviewRow":   UploadPreviewRow{},
		"StagedBatchRequest": StagedBatchRequest{},
		// The receipt webhook.
		"ReceiptWebhook":        ReceiptWebhook{},
		"ReceiptWebhookPatch":   ReceiptWebhookPatch{},
		"ReceiptWebhookSecret":  ReceiptWebhookSecret{},
		"ReceiptWebhookTestIn":  ReceiptWebhookTestIn{},
		"ReceiptWebhookTest":    ReceiptWebhookTest{},
		"ReceiptStatus":         ReceiptStatus{},
		"ReceiptPost":           ReceiptPost{},
		"ReceiptWebhookRetry":   ReceiptWebhookRetry{},
		"ReceiptWebhookRetryIn": ReceiptWebhookRetryIn{},
		"NodeReceiptStatus":     NodeReceiptStatus{},
		"NodeReceiptRetry":      NodeReceiptRetry{},
	}
	checkSchemas(t, doc, types)
	// The error schema matches both error bodies.
	inner := doc.Comps.Schemas["Error"].Properties["error"]
	var props []string
	for p := range inner.Properties {
		props = append(props, p)
	}
	sort.Strings(props)
	if want := errorFields(); !slices.Equal(props, want) {
		t.Errorf("Error schema %v, errorBody %v", props, want)
	}
	// The State enum is exactly the store's states, each with its Chinese name.
	enum := doc.Comps.Schemas["State"].Enum
	var states []string
	for _, st := range queue.States {
		states = append(states, st.String())
		if stateZH[st] == "" {
			t.Errorf("state %s has no state_zh", st)
		}
	}
	if !slices.Equal(enum, states) {
		t.Errorf("State enum %v, store states %v", enum, states)
	}
}

// TestOpenAPIRefs: every $ref resolves, and every operation has a unique
// operationId and responses.
func TestOpenAPIRefs(t *testing.T) { checkRefs(t, openAPIDoc) }

// checkRefs: every $ref of the document resolves, and every operation has a
// unique operationId and responses.
func checkRefs(t *testing.T, doc []byte) {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	resolve := func(ref string) bool {
		var cur any = raw
		for _, seg := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			if cur, ok = m[seg]; !ok {
				return false
			}
		}
		return true
	}
	var walk func(n *yaml.Node)
	refs := 0
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "$ref" {
					refs++
					if ref := n.Content[i+1].Value; !strings.HasPrefix(ref, "#/components/") || !resolve(ref) {
						t.Errorf("line %d: $ref %q does not resolve", n.Content[i+1].Line, ref)
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if refs == 0 {
		t.Fatal("no $ref found")
	}
	ids := map[string]bool{}
	for path, item := range raw["paths"].(map[string]any) {
		for m, op := range item.(map[string]any) {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			o := op.(map[string]any)
			id, _ := o["operationId"].(string)
			if id == "" || ids[id] {
				t.Errorf("%s %s: operationId %q missing or repeated", m, path, id)
			}
			ids[id] = true
			if resp, _ := o["responses"].(map[string]any); len(resp) == 0 {
				t.Errorf("%s %s: no responses", m, path)
			}
		}
	}
}

// TestOpenAPIServed: the document is served as it is embedded.
func TestOpenAPIServed(t *testing.T) {
	r := newUserRig(t)
	code, b := r.call("GET", "/v1/openapi.yaml", "", nil, nil)
	if code != http.StatusOK || string(b) != string(openAPIDoc) {
		t.Fatalf("GET /v1/openapi.yaml: %d, %d bytes", code, len(b))
	}
}

// checkSchemas compares each named schema of the document with the JSON
// fields of its Go type, both ways, and checks its required list.
func checkSchemas(t *testing.T, doc openAPISpec, types map[string]any) {
	t.Helper()
	for name, v := range types {
		sc, ok := doc.Comps.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		var props []string
		for p := range sc.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if fields := jsonFields(reflect.TypeOf(v)); !slices.Equal(fields, props) {
			t.Errorf("schema %s: properties %v, struct fields %v", name, props, fields)
		}
		for _, req := range sc.Required {
			if _, ok := sc.Properties[req]; !ok {
				t.Errorf("schema %s: required %q is not a property", name, req)
			}
		}
	}
}

// errorFields are the JSON fields of the error body, sorted: what the
// Error schema must list.
func errorFields() []string {
	out := jsonFields(reflect.TypeOf(errorBody{}.Error))
	sort.Strings(out)
	return out
}
