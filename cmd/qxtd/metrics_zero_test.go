package main

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// series is one expected time series: a name and its labels.
type series struct {
	name   string
	labels map[string]string
}

func (s series) String() string {
	var ls []string
	for k, v := range s.labels {
		ls = append(ls, k+"="+`"`+v+`"`)
	}
	sort.Strings(ls)
	return s.name + "{" + strings.Join(ls, ",") + "}"
}

// zeroSeries are the series with a known label set that must exist at 0
// as soon as the daemon starts, so that rate(), increase() and alerts see
// them before their first event (writeConfig's one upstream is "sim").
func zeroSeries() []series {
	var out []series
	add := func(name string, kv ...string) {
		l := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		out = append(out, series{name, l})
	}
	for _, k := range []string{"timeout", "throttled", "queue_full", "system_error", "rejected", "connection", "late_ok", "bind_lost"} {
		add("qxtd_upstream_submit_errors_total", "upstream", "sim", "kind", k)
	}
	add("qxtd_upstream_disconnects_total", "upstream", "sim")
	add("qxtd_upstream_record_retries_total", "upstream", "sim")
	add("qxtd_segments_relayed_total", "upstream", "sim")
	add("qxtd_upstream_window_in_use", "upstream", "sim")
	add("qxtd_upstream_submit_seconds_count", "upstream", "sim")
	add("qxtd_dlr_delay_seconds_count", "upstream", "sim")
	add("qxtd_esme_submit_seconds_count")
	for _, in := range []string{"smpp", "http", "batch"} {
		add("qxtd_messages_accepted_total", "ingress", in)
	}
	for _, r := range policy.Reasons() {
		add("qxtd_messages_refused_total", "reason", r.String())
	}
	add("qxtd_messages_refused_total", "reason", "other")
	for _, st := range []string{"delivered", "expired", "undeliverable", "rejected", "unknown"} {
		for _, r := range []string{"matched", "duplicate", "orphaned"} {
			add("qxtd_dlrs_received_total", "state", st, "result", r)
		}
	}
	for _, o := range []string{"ok", "error"} {
		add("qxtd_dlrs_forwarded_total", "outcome", o)
		add("qxtd_mo_forwarded_total", "outcome", o)
	}
	add("qxtd_dlrs_forwarded_total", "outcome", "refused")
	add("qxtd_dlrs_received_total", "state", "unknown", "result", "unreadable")
	add("qxtd_mo_forwarded_total", "outcome", "refused")
	for _, r := range []string{"matched", "unmatched", "store_error"} {
		add("qxtd_mo_received_total", "result", r)
	}
	for _, o := range []string{"stored", "alone", "again", "forwarded", "forward_failed"} {
		add("qxtd_mo_parts_total", "outcome", o)
	}
	for _, h := range []string{"complete", "timeout"} {
		add("qxtd_mo_joined_total", "how", h)
	}
	for _, k := range []string{"transmitter", "receiver", "transceiver"} {
		add("qxtd_esme_bound", "kind", k)
		for _, o := range []string{"ok", "refused", "over_cap"} {
			add("qxtd_esme_binds_total", "kind", k, "outcome", o)
		}
	}
	for _, r := range smpp.RejectReasons {
		add("qxtd_smpp_connections_rejected_total", "reason", r)
	}
	for _, c := range connCaps {
		add("qxtd_http_connections_refused_total", "cap", c)
	}
	for _, o := range []string{"delivered", "failed", "gave_up"} {
		add("qxtd_receipt_webhooks_total", "outcome", o)
		add("qxtd_reply_webhooks_total", "outcome", o)
	}
	add("qxtd_log_suppressed_total", "reason", "other")
	add("qxtd_store_commit_failures_total")
	add("qxtd_optouts_total")
	add("qxtd_optout_errors_total")
	add("qxtd_optout_stopped_total")
	for _, r := range []policy.Reason{policy.ReasonScopeNational, policy.ReasonScopeOffNet, policy.ReasonOptedOut, policy.ReasonNotWhitelisted, policy.ReasonAccountDisabled} {
		add("qxtd_stopped_total", "reason", r.String())
	}
	add("qxtd_held_dropped_total")
	add("qxtd_held_expired_total")
	add("qxtd_batch_jobs_running")
	add("qxtd_batch_jobs_resumed_total")
	for _, st := range []string{batch.JobDone, batch.JobCancelled, batch.JobFailed} {
		add("qxtd_batch_jobs_ended_total", "state", st)
	}
	for _, o := range batch.RowOutcomes {
		add("qxtd_batch_rows_total", "outcome", o)
	}
	return out
}

// A freshly started daemon exports every series of zeroSeries, at 0.
func TestMetricsStartAtZero(t *testing.T) {
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, ""))
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	// The exposition's histograms are families of their base name; index
	// every sample under the name it has in the text (_count for those).
	got := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				got[series{name + "_count", l}.String()] = float64(m.GetHistogram().GetSampleCount())
			case dto.MetricType_COUNTER:
				got[series{name, l}.String()] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				got[series{name, l}.String()] = m.GetGauge().GetValue()
			}
		}
	}
	for _, s := range zeroSeries() {
		v, ok := got[s.String()]
		switch {
		case !ok:
			t.Errorf("%s: not exported at start", s)
		case v != 0:
			t.Errorf("%s = %v at start, want 0", s, v)
		}
	}
}
