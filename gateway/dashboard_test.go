package gateway_test

// The operator's Grafana dashboard and Prometheus alerting rules in
// configs/ must only query series qxtd really exports: a renamed metric
// would otherwise leave a panel empty or an alert that can never fire, and
// nobody would notice until the night it mattered. These tests read both
// files, pull every metric name out of every PromQL expression, and look
// each one up in the registry of a running gateway (after real traffic) or
// in a registry with the Go and process collectors the daemon registers.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

const (
	dashboardFile = "../configs/grafana-dashboard.json"
	alertsFile    = "../configs/alerts.yml"
)

// dashForeignMetrics are the only names from other exporters the configs
// may use, each with where it comes from.
var dashForeignMetrics = map[string]string{
	"up":                          "Prometheus (scrape health of the qxtd target)",
	"node_filesystem_avail_bytes": "node_exporter (DiskFilling, DiskAlmostFull)",
	"node_filesystem_size_bytes":  "node_exporter (DiskFilling, DiskAlmostFull)",
	"node_filesystem_readonly":    "node_exporter (DiskFilling, DiskAlmostFull)",
}

// dashClusterMetrics are the cluster node's own metrics (cluster mode only,
// cluster.Node.RegisterMetrics on the daemon's registry) the configs may
// use, each with the cluster test that shows it exported: the gateway's
// rig runs no cluster (this package's tests do not embed etcd).
var dashClusterMetrics = map[string]string{
	"qxtd_cluster_config_differs": "cluster: TestDiffering (ClusterConfigDiffers)",
}

// dashRequiredAlerts are the conditions the operator on call must be woken for.
var dashRequiredAlerts = []string{
	"QxtdDown", "UpstreamDown", "QueueBacklogGrowing", "DLRSuccessFalling",
	"HighRefusalRate", "UpstreamThrottling", "DiskFilling",
}

// dashQuery is one PromQL expression and where it was found.
type dashQuery struct {
	where string
	expr  string
}

func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	dashJSON, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dashQueries, problems := parseDashboard(dashJSON)
	for _, p := range problems {
		t.Errorf("%s: %s", dashboardFile, p)
	}
	alertsYAML, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	ruleQueries, problems := parseAlertRules(alertsYAML)
	for _, p := range problems {
		t.Errorf("%s: %s", alertsFile, p)
	}
	// Guard the parsers themselves: finding nothing would check nothing.
	if len(dashQueries) < 20 || len(ruleQueries) < len(dashRequiredAlerts) {
		t.Fatalf("found %d dashboard and %d rule expressions: the parsers miss them", len(dashQueries), len(ruleQueries))
	}

	c := newMetricChecker(t)
	checkAll := func(t *testing.T, file string, qs []dashQuery) map[string]bool {
		used := map[string]bool{}
		for _, q := range qs {
			names, problems := c.check(q.expr)
			for _, p := range problems {
				t.Errorf("%s %s: %s\n\texpr: %s", file, q.where, p, q.expr)
			}
			for _, n := range names {
				used[n] = true
			}
		}
		return used
	}
	var onDashboard map[string]bool
	t.Run("dashboard", func(t *testing.T) { onDashboard = checkAll(t, dashboardFile, dashQueries) })
	t.Run("alerts", func(t *testing.T) { checkAll(t, alertsFile, ruleQueries) })

	t.Run("checker reports what does not exist", func(t *testing.T) {
		for _, tc := range []struct{ expr, want string }{
			{`rate(qxtd_nonexistent_total[5m])`, "qxtd_nonexistent_total"},
			{`sum(rate(qxtd_segments_relayed_totl{upstream=~"$upstream"}[$__rate_interval]))`, "qxtd_segments_relayed_totl"},
			{`rate(qxtd_messages_accepted_total_bucket[5m])`, "qxtd_messages_accepted_total_bucket"}, // a counter has no buckets
			{`histogram_quantile(0.9, rate(go_goroutines_bucket[5m]))`, "go_goroutines_bucket"},
			{`process_nonexistent_bytes`, "process_nonexistent_bytes"},
			{`node_load1 > 4`, "node_load1"}, // another exporter, not allow-listed
			{`histogram_quantil(0.5, qxtd_upstream_submit_seconds_bucket)`, "histogram_quantil"},
		} {
			_, problems := c.check(tc.expr)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("check(%q) = %q, want a problem naming %s", tc.expr, problems, tc.want)
			}
		}
		if names, problems := c.check(`rate(qxtd_segments_relayed_total[5m])`); len(problems) > 0 || len(names) != 1 {
			t.Errorf("a real metric: names %q, problems %q", names, problems)
		}
	})

	// Not enforced (the store will export more): say what the operator
	// cannot see.
	var missing []string
	for name := range c.qxtd {
		if !slices.ContainsFunc([]string{"", "_bucket", "_sum", "_count"}, func(s string) bool { return onDashboard[name+s] }) {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Logf("qxtd families exported but on no dashboard panel: %s", strings.Join(missing, ", "))
	}
}

func TestDashboardPromQLMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		want    []string
		wantErr string
	}{
		{expr: `sum by (le, upstream) (rate(qxtd_upstream_submit_seconds_bucket{upstream=~"$upstream",instance=~"${instance}"}[$__rate_interval]))`,
			want: []string{"qxtd_upstream_submit_seconds_bucket"}},
		{expr: `up{job="qxtd"} == 0 or absent(up{job="qxtd"})`, want: []string{"up"}},
		{expr: `a / on(instance) group_left(version, le) b offset -5m`, want: []string{"a", "b"}},
		{expr: `sum(rate(x[5m])) without (pod) > bool 1e-3 unless y:recorded:rate5m`, want: []string{"x", "y:recorded:rate5m"}},
		{expr: `{__name__="foo", job="a,b}"}`, want: []string{"foo"}},
		{expr: `max_over_time(m[1h:5m]) @ start() + Inf - NaN`, want: []string{"m"}},
		{expr: `label_replace(z, "dst", "$1", 'src', "(.*)")`, want: []string{"z"}},
		{expr: "count(q) by (le) # not_a_metric here\n + count(r)", want: []string{"q", "r"}},
		{expr: `topk(5, sum by (kind, outcome) (rate(qxtd_esme_binds_total{outcome!="ok"}[1h])))`, want: []string{"qxtd_esme_binds_total"}},
		{expr: `deriv(s{state="accepted"}[10m]) > 0 and s > 10000`, want: []string{"s"}},
		{expr: `predict_linear(node_filesystem_avail_bytes{mountpoint="/"}[6h], 24 * 3600) < 0x10`, want: []string{"node_filesystem_avail_bytes"}},
		{expr: `histogram_quantil(0.5, x)`, wantErr: "unknown function histogram_quantil"},
		{expr: `{__name__=~"qxtd_.*"}`, wantErr: "__name__"},
		{expr: `x{a="unterminated}`, wantErr: "unterminated"},
		{expr: `rate(x[5m)`, wantErr: "unterminated"},
	} {
		got, err := promqlMetricNames(tc.expr)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("promqlMetricNames(%q) error %v, want %q", tc.expr, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("promqlMetricNames(%q) = %q, %v; want %q", tc.expr, got, err, tc.want)
		}
	}
	for q, want := range map[string]string{
		`label_values(qxtd_upstream_binds_up{instance=~"$instance", job="a,b"}, upstream)`: `qxtd_upstream_binds_up{instance=~"$instance", job="a,b"}`,
		`label_values(qxtd_upstream_binds_up, instance)`:                                   `qxtd_upstream_binds_up`,
		`label_values(upstream)`:                 ``,
		`query_result(topk(3, qxtd_esme_bound))`: `topk(3, qxtd_esme_bound)`,
	} {
		if got, err := grafanaVariableExpr(q); err != nil || got != want {
			t.Errorf("grafanaVariableExpr(%q) = %q, %v; want %q", q, got, err, want)
		}
	}
	if _, err := grafanaVariableExpr(`metrics(qxtd_.*)`); err == nil {
		t.Error("grafanaVariableExpr accepted metrics(): its names cannot be checked")
	}
}

// ---------------------------------------------------------------- checker

// metricChecker knows the metric families a running gateway exports.
type metricChecker struct {
	qxtd    map[string]dto.MetricType // gathered from the gateway's registry after traffic
	runtime map[string]dto.MetricType // Go and process collectors, as cmd/qxtd registers them
}

// newMetricChecker runs traffic through a rig so that every series that
// appears only after its first event (counter vectors) is there: a message
// with its receipt, a refusal, a throttled submit_sm, a lost upstream bind.
func newMetricChecker(t *testing.T) *metricChecker {
	t.Helper()
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	id, err := e.submit(ctx, submitSM("10690001", "13800138000", "dashboard check"))
	if err != nil {
		t.Fatal(err)
	}
	if rc, ok := e.waitReceipts(t, 1, 10*time.Second)[id]; !ok || rc.State != smpp.StateDelivered {
		t.Fatalf("receipt for %s: %+v", id, rc)
	}

	// A refusal (invalid_number).
	if _, err := e.submit(ctx, submitSM("10690001", "not-a-number", "refused")); err == nil {
		t.Fatal("a message to a destination that is not a number was accepted")
	}

	// The SMSC throttles every submit_sm until the counter shows it.
	r.sim.SetFaults(smpp.Faults{Throttle: 1})
	id2, err := e.submit(ctx, submitSM("10690001", "13800138001", "throttled first"))
	if err != nil {
		t.Fatal(err)
	}
	waitForSeries(ctx, t, r.reg, "qxtd_upstream_submit_errors_total")
	r.sim.SetFaults(smpp.Faults{})
	if _, ok := e.waitReceipts(t, 2, 10*time.Second)[id2]; !ok {
		t.Fatalf("no receipt for %s after throttling ended", id2)
	}

	// A network failure between qxtd and the SMSC.
	r.sim.DropConnections()
	waitForSeries(ctx, t, r.reg, "qxtd_upstream_disconnects_total")

	// The receipt webhooks' metrics are the daemon's too (cmd/qxtd
	// registers its webhook.Sender on the same registry); one receipt to
	// an endpoint that refuses it makes the failing enterprise's series.
	// So are the batch jobs' (cmd/qxtd passes its registry to the API's
	// job runner); their series exist from the start.
	jobs := batch.New(batch.Config{Registerer: r.reg})
	defer jobs.Close()
	snd, err := webhook.New(webhook.Config{Store: r.store, Registerer: r.reg, AllowPrivate: true, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer refusing.Close()
	// Scheduled an hour ahead, so that the rig's gateway does not send it
	// before it is failed here.
	m := &queue.Message{Account: "esme", Enterprise: "E", Dest: "13800138002", Upstream: "sim", ReceiptURL: refusing.URL,
		SendAt: time.Now().Add(time.Hour), Parts: []queue.Part{{Body: []byte("hi")}}}
	if err := r.store.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := r.store.Fail(ctx, queue.Key{ID: m.ID}, queue.StateRejected, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	// A reply (MO) of E to the same endpoint: its failure makes the reply
	// endpoint's failing series.
	if err := r.store.StoreMO(ctx, &queue.MO{Enterprise: "E", Source: "13712345678", Dest: "10690001", Text: "收到",
		Upstream: "sim", ReceivedAt: time.Now(), ReplyURL: refusing.URL}); err != nil {
		t.Fatal(err)
	}
	hooksCtx, stopHooks := context.WithCancel(ctx)
	hooksDone := make(chan struct{})
	go func() { defer close(hooksDone); snd.Run(hooksCtx) }()
	waitForSeries(ctx, t, r.reg, "qxtd_receipt_webhook_failing_since_seconds")
	waitForSeries(ctx, t, r.reg, "qxtd_reply_webhook_failing_since_seconds")
	stopHooks()
	<-hooksDone
	c := &metricChecker{qxtd: gatherTypes(t, r.reg)}
	rt := prometheus.NewRegistry()
	rt.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.runtime = gatherTypes(t, rt)
	return c
}

func gatherTypes(t *testing.T, g prometheus.Gatherer) map[string]dto.MetricType {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Logf("gather: %v", err) // partial results still count
	}
	out := make(map[string]dto.MetricType, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f.GetType()
	}
	return out
}

func waitForSeries(ctx context.Context, t *testing.T, g prometheus.Gatherer, name string) {
	t.Helper()
	for {
		fams, _ := g.Gather()
		if slices.ContainsFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == name && len(f.GetMetric()) > 0 }) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no %s series appeared", name)
		}
		waitABit(ctx)
	}
}

// check returns the metric names expr uses and what is wrong with them.
func (c *metricChecker) check(expr string) (names, problems []string) {
	names, err := promqlMetricNames(expr)
	if err != nil {
		return names, []string{err.Error()}
	}
	for _, name := range names {
		var p string
		switch {
		case dashClusterMetrics[name] != "":
		case strings.HasPrefix(name, "qxtd_"):
			p = c.resolve(name, c.qxtd, "the gateway's registry after the test traffic")
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			p = c.resolve(name, c.runtime, "the Go and process collectors")
		default:
			if _, ok := dashForeignMetrics[name]; !ok {
				p = fmt.Sprintf("%s is not a qxtd, Go or process metric and not in the allow-list of other exporters' metrics", name)
			}
		}
		if p != "" {
			problems = append(problems, p)
		}
	}
	return names, problems
}

// resolve finds name in fams, directly or as the _bucket / _sum / _count
// series of a histogram or summary, and returns "" or the problem.
func (c *metricChecker) resolve(name string, fams map[string]dto.MetricType, in string) string {
	if _, ok := fams[name]; ok {
		return ""
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		typ, ok := fams[base]
		if !ok {
			break
		}
		switch {
		case typ == dto.MetricType_HISTOGRAM, typ == dto.MetricType_GAUGE_HISTOGRAM:
			return ""
		case typ == dto.MetricType_SUMMARY && suffix != "_bucket":
			return ""
		}
		return fmt.Sprintf("%s: %s is a %s, it has no %s series", name, base, typ, suffix)
	}
	return fmt.Sprintf("%s is not exported by %s", name, in)
}

// ---------------------------------------------------------------- dashboard

var grafanaVarRef = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)(?::[^}]*)?\}|([A-Za-z0-9_]+))`)

// parseDashboard returns every PromQL expression of a Grafana dashboard
// (panel targets, annotations, template variables) and what is wrong with
// the dashboard's structure.
func parseDashboard(data []byte) ([]dashQuery, []string) {
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, []string{"not valid JSON: " + err.Error()}
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	for _, k := range []string{"title", "uid"} {
		if s, _ := d[k].(string); s == "" {
			bad("no %s", k)
		}
	}
	if v, _ := d["schemaVersion"].(float64); v < 36 || v > 41 {
		bad("schemaVersion %v, want about 39", d["schemaVersion"])
	}

	// Template variables: the data source and the upstream selector.
	vars := map[string]bool{}
	var queries []dashQuery
	templating, _ := d["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for i, x := range list {
		v, _ := x.(map[string]any)
		name, _ := v["name"].(string)
		vars[name] = true
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		qs, _ := q.(string)
		expr, err := grafanaVariableExpr(qs)
		if err != nil {
			bad("variable %s: %v", name, err)
			continue
		}
		if expr != "" {
			queries = append(queries, dashQuery{where: fmt.Sprintf("templating.list[%d %q]", i, name), expr: expr})
		}
		if name == "upstream" && !strings.HasPrefix(qs, "label_values(qxtd_upstream_binds_up") {
			bad("variable upstream: query %q, want label_values(qxtd_upstream_binds_up…, upstream)", qs)
		}
	}
	if !vars["upstream"] {
		bad("no upstream template variable")
	}
	if !vars["DS_PROMETHEUS"] {
		bad("no DS_PROMETHEUS data source variable")
	}

	// Panels, rows' nested panels included.
	ids := map[float64]string{}
	var checkPanels func([]any)
	checkPanels = func(ps []any) {
		for _, x := range ps {
			p, _ := x.(map[string]any)
			title, _ := p["title"].(string)
			typ, _ := p["type"].(string)
			if title == "" || typ == "" {
				bad("panel %v without title or type", p["id"])
			}
			id, ok := p["id"].(float64)
			if other, dup := ids[id]; !ok || dup {
				bad("panel %q: id %v missing or also used by %q", title, p["id"], other)
			}
			ids[id] = title
			gp, _ := p["gridPos"].(map[string]any)
			x, _ := gp["x"].(float64)
			w, _ := gp["w"].(float64)
			if h, _ := gp["h"].(float64); w <= 0 || h <= 0 || x+w > 24 {
				bad("panel %q: gridPos %v outside the 24-column grid", title, gp)
			}
			if typ == "row" {
				nested, _ := p["panels"].([]any)
				checkPanels(nested)
				continue
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				bad("panel %q has no query", title)
			}
			refs := map[string]bool{}
			for _, y := range targets {
				tg, _ := y.(map[string]any)
				ref, _ := tg["refId"].(string)
				if ref == "" || refs[ref] {
					bad("panel %q: refId %q empty or repeated", title, ref)
				}
				refs[ref] = true
				if expr, _ := tg["expr"].(string); strings.TrimSpace(expr) == "" {
					bad("panel %q target %s: empty expr", title, ref)
				}
				ds, _ := tg["datasource"].(map[string]any)
				if ds == nil {
					ds, _ = p["datasource"].(map[string]any)
				}
				if ds["uid"] != "${DS_PROMETHEUS}" {
					bad("panel %q target %s: datasource %v, want uid ${DS_PROMETHEUS}", title, ref, ds)
				}
			}
		}
	}
	panels, _ := d["panels"].([]any)
	checkPanels(panels)

	// Every "expr" anywhere (targets, annotations, nested rows).
	collectExprs(d, "", &queries)
	for _, q := range queries {
		reported := map[string]bool{}
		for _, m := range grafanaVarRef.FindAllStringSubmatch(q.expr, -1) {
			name := m[1] + m[2]
			// $__rate_interval and friends are Grafana's; $1 is a regexp group.
			if !vars[name] && !reported[name] && !strings.HasPrefix(name, "__") && !('0' <= name[0] && name[0] <= '9') {
				reported[name] = true
				bad("%s: unknown variable $%s", q.where, name)
			}
		}
	}
	return queries, problems
}

func collectExprs(v any, path string, out *[]dashQuery) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := v[k].(string); ok && k == "expr" {
				*out = append(*out, dashQuery{where: path, expr: s})
				continue
			}
			collectExprs(v[k], strings.TrimPrefix(path+"."+k, "."), out)
		}
	case []any:
		for i, x := range v {
			label := strconv.Itoa(i)
			if m, ok := x.(map[string]any); ok {
				for _, k := range []string{"title", "name", "refId"} {
					if s, _ := m[k].(string); s != "" {
						label += " " + strconv.Quote(s)
						break
					}
				}
			}
			collectExprs(x, path+"["+label+"]", out)
		}
	}
}

var (
	labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
	queryResultQuery = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
	labelNamesQuery  = regexp.MustCompile(`^\s*label_names\(\s*\)\s*$`)
)

// grafanaVariableExpr returns the PromQL inside a Grafana Prometheus
// variable query ("" if it has none).
func grafanaVariableExpr(q string) (string, error) {
	if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
		return m[1], nil
	}
	if m := queryResultQuery.FindStringSubmatch(q); m != nil {
		return m[1], nil
	}
	if labelNamesQuery.MatchString(q) {
		return "", nil
	}
	return "", fmt.Errorf("variable query %q: only label_values, label_names and query_result can be checked", q)
}

// ---------------------------------------------------------------- alerts

type promRuleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// parseAlertRules returns every rule expression of a Prometheus rules file
// and what is wrong with the rules as the operator will read them.
func parseAlertRules(data []byte) ([]dashQuery, []string) {
	var f promRuleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, []string{"not a rules file: " + err.Error()}
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	var queries []dashQuery
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			bad("group %q: no name or no rules", g.Name)
		}
		for i, r := range g.Rules {
			where := fmt.Sprintf("group %q rule %d %s%s", g.Name, i, r.Alert, r.Record)
			if (r.Alert == "") == (r.Record == "") {
				bad("%s: needs exactly one of alert and record", where)
			}
			if strings.TrimSpace(r.Expr) == "" {
				bad("%s: no expr", where)
			}
			queries = append(queries, dashQuery{where: where, expr: r.Expr})
			for _, d := range []string{r.For, r.KeepFiringFor} {
				if _, err := model.ParseDuration(d); d != "" && err != nil {
					bad("%s: %v", where, err)
				}
			}
			if r.Alert == "" {
				continue
			}
			if alerts[r.Alert] {
				bad("%s: alert name used twice", where)
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				bad("%s: severity %q, want critical or warning", where, s)
			}
			if strings.TrimSpace(r.Annotations["summary"]) == "" {
				bad("%s: no summary", where)
			}
			// The operator reads this at night: it must say where to look.
			if desc := r.Annotations["description"]; !strings.Contains(desc, "README") {
				bad("%s: description does not point to the README", where)
			}
		}
	}
	for _, name := range dashRequiredAlerts {
		if !alerts[name] {
			bad("no alert %s", name)
		}
	}
	return queries, problems
}

// ---------------------------------------------------------------- PromQL

func dashSet(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

var (
	// Keywords that take a parenthesised list of label names.
	promqlLabelLists = dashSet("by", "without", "on", "ignoring", "group_left", "group_right")
	// Other keywords: operators, aggregations, literals (case-insensitive).
	promqlKeywords = dashSet("and", "or", "unless", "atan2", "bool", "offset",
		"sum", "avg", "min", "max", "count", "count_values", "stddev", "stdvar",
		"topk", "bottomk", "quantile", "group", "limitk", "limit_ratio", "inf", "nan")
	promqlFunctions = dashSet("abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh",
		"atan", "atanh", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
		"cos", "cosh", "count_over_time", "day_of_month", "day_of_week", "day_of_year",
		"days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "end", "exp",
		"floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
		"histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
		"increase", "info", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10",
		"log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
		"predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
		"round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
		"sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
		"tan", "tanh", "time", "timestamp", "vector", "year")
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

// promqlMetricNames returns the metric names an expression selects, in
// order of first use. It is a tokenizer, not a parser: it skips strings,
// comments, Grafana variables, range and subquery brackets, label
// matchers and label lists (by, without, on, ignoring, group_*), keywords
// and function calls (an identifier followed by "("), and takes every other
// identifier for a metric name. It fails on unknown functions and on
// __name__ matchers it cannot follow.
func promqlMetricNames(expr string) ([]string, error) {
	var names []string
	err := walkPromQLSelectors(expr, func(n, _ string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	})
	return names, err
}

// walkPromQLSelectors calls visit with each vector or range selector of
// expr: its metric name (from __name__ if in braces) and the text between
// its braces ("" without).
func walkPromQLSelectors(expr string, visit func(name, matchers string)) error {
	n := len(expr)
	skipSpace := func(i int) int {
		for i < n && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	// closing returns the index just after the first close outside a string.
	closing := func(i int, close byte) (int, error) {
		for i < n {
			switch c := expr[i]; {
			case c == close:
				return i + 1, nil
			case c == '"' || c == '\'' || c == '`':
				j, err := skipPromQLString(expr, i)
				if err != nil {
					return 0, err
				}
				i = j
			default:
				i++
			}
		}
		return 0, fmt.Errorf("unterminated %q in %q", close, expr)
	}
	for i := 0; i < n; {
		c := expr[i]
		switch {
		case c == '#':
			for i < n && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipPromQLString(expr, i)
			if err != nil {
				return err
			}
			i = j
		case c == '$': // Grafana variable: $name, ${name}, ${name:format}
			i++
			if i < n && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return fmt.Errorf("unterminated ${ in %q", expr)
				}
				i += j + 1
			}
			for i < n && isIdentChar(expr[i]) {
				i++
			}
		case c == '[': // [5m], [$__rate_interval], [1h:5m]
			j, err := closing(i+1, ']')
			if err != nil {
				return err
			}
			i = j
		case c == '{':
			j, err := closing(i+1, '}')
			if err != nil {
				return err
			}
			name, err := nameMatcher(expr[i+1 : j-1])
			if err != nil {
				return err
			}
			visit(name, expr[i+1:j-1])
			i = j
		case '0' <= c && c <= '9' || c == '.': // numbers, durations, hex
			for i < n && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < n && isIdentChar(expr[j]) {
				j++
			}
			word := expr[i:j]
			i = j
			k := skipSpace(i)
			lower := strings.ToLower(word)
			switch {
			case promqlLabelLists[lower]:
				if k < n && expr[k] == '(' {
					j, err := closing(k+1, ')')
					if err != nil {
						return err
					}
					i = j
				}
			case promqlKeywords[lower]:
			case k < n && expr[k] == '(':
				if !promqlFunctions[word] {
					return fmt.Errorf("unknown function %s in %q", word, expr)
				}
			default:
				// A name and its braces are one selector.
				matchers := ""
				if k < n && expr[k] == '{' {
					j, err := closing(k+1, '}')
					if err != nil {
						return err
					}
					matchers = expr[k+1 : j-1]
					if _, err := nameMatcher(matchers); err != nil {
						return err
					}
					i = j
				}
				visit(word, matchers)
			}
		default:
			i++
		}
	}
	return nil
}

// skipPromQLString returns the index just after the string starting at i.
func skipPromQLString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string in %q", s)
}

var nameMatcherRE = regexp.MustCompile(`(?:^|,)\s*__name__\s*(=~|!=|!~|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `)`)

// nameMatcher returns the metric name of a __name__="…" matcher inside
// braces, "" if there is none, and an error for one it cannot follow.
func nameMatcher(matchers string) (string, error) {
	if !strings.Contains(matchers, "__name__") {
		return "", nil
	}
	m := nameMatcherRE.FindStringSubmatch(matchers)
	if m == nil || m[1] != "=" {
		return "", fmt.Errorf("__name__ matcher in {%s}: only __name__=\"name\" can be checked", matchers)
	}
	v := m[2]
	if v[0] == '\'' {
		v = `"` + strings.ReplaceAll(v[1:len(v)-1], `"`, `\"`) + `"`
	}
	name, err := strconv.Unquote(v)
	if err != nil {
		return "", fmt.Errorf("__name__ matcher %s: %v", m[2], err)
	}
	return name, nil
}
