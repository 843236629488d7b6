package gateway_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The dashboard's job and instance variables: every query names them in
// every selector, so that a Prometheus scraping other targets too (and
// several qxtd daemons) shows only the qxtd daemons chosen. Without them
// an "up" panel counts every target Prometheus has.
const (
	jobMatcher      = `job=~"$job"`
	instanceMatcher = `instance=~"$instance"`
)

// unfiltered returns the selectors of expr that lack one of matchers.
func unfiltered(expr string, matchers ...string) ([]string, error) {
	var bad []string
	err := walkPromQLSelectors(expr, func(name, m string) {
		for _, want := range matchers {
			if !strings.Contains(m, want) {
				bad = append(bad, fmt.Sprintf("%s{%s} lacks %s", name, m, want))
			}
		}
	})
	return bad, err
}

func TestDashboardFiltersByJobAndInstance(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name     string          `json:"name"`
				Type     string          `json:"type"`
				AllValue *string         `json:"allValue"`
				Query    json.RawMessage `json:"query"` // a string, or {"query": …}
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	queries, problems := parseDashboard(data)
	for _, p := range problems {
		t.Errorf("%s: %s", dashboardFile, p)
	}

	// The variables: job from qxtd's own series (only qxtd exports
	// qxtd_*), instance within the jobs chosen, upstream within both.
	want := map[string][]string{"job": nil, "instance": {jobMatcher}, "upstream": {jobMatcher, instanceMatcher}}
	seen := map[string]bool{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		seen[v.Name] = true
		ms, ok := want[v.Name]
		if !ok {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			continue
		}
		expr, err := grafanaVariableExpr(q.Query)
		if err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
			continue
		}
		if !strings.HasPrefix(expr, "qxtd_") {
			t.Errorf("variable %s: %q is not over a qxtd_ series (it would list other exporters' targets)", v.Name, q.Query)
		}
		bad, err := unfiltered(expr, ms...)
		if err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
		}
		for _, b := range bad {
			t.Errorf("variable %s: %s", v.Name, b)
		}
		// "All" jobs must mean all qxtd jobs (Grafana joins the values),
		// not ".*", which would let up{} and go_* of every target in.
		if v.Name == "job" && v.AllValue != nil && *v.AllValue != "" {
			t.Errorf("variable job: allValue %q; leave it unset so All is the qxtd jobs found", *v.AllValue)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no %s template variable", name)
		}
	}

	// Every expression on the dashboard (panel targets, annotations).
	n := 0
	for _, q := range queries {
		if strings.HasPrefix(q.where, "templating.") {
			continue // checked above, each with its own matchers
		}
		n++
		bad, err := unfiltered(q.expr, jobMatcher, instanceMatcher)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
		}
		for _, b := range bad {
			t.Errorf("%s: %s\n\texpr: %s", q.where, b, q.expr)
		}
	}
	if n < 20 {
		t.Fatalf("only %d panel expressions found: the parser misses them", n)
	}

	// The check itself finds a selector without the filters, wherever it is.
	for expr, want := range map[string]string{
		`sum(rate(qxtd_x_total{job=~"$job"}[5m]))`:                                                         instanceMatcher,
		`a{job=~"$job",instance=~"$instance"} / b{instance=~"$instance"}`:                                  jobMatcher,
		`sum(rate(qxtd_x_total[5m])) by (le)`:                                                              jobMatcher,
		`histogram_quantile(0.9, sum by (le) (rate(h_bucket{job=~"$job",instance=~"$instance"}[5m]))) + c`: instanceMatcher,
	} {
		bad, err := unfiltered(expr, jobMatcher, instanceMatcher)
		if err != nil || !strings.Contains(strings.Join(bad, "\n"), want) {
			t.Errorf("unfiltered(%q) = %q, %v; want a selector lacking %s", expr, bad, err, want)
		}
	}
	if bad, err := unfiltered(`sum by (le) (rate(h_bucket{job=~"$job", instance=~"$instance"}[5m]))`, jobMatcher, instanceMatcher); err != nil || len(bad) > 0 {
		t.Errorf("a filtered expression: %q, %v", bad, err)
	}
}
