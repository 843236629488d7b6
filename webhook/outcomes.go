package webhook

import (
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// What became of an enterprise's POSTs of receipts: its last RecentPosts,
// kept in memory by the node that made them (test receipts not counted),
// for its status (GET /v1/receipt-webhook: the last one, the recent ones)
// and for qxtd_receipt_webhook_failing_since_seconds. They tell the
// enterprise what its endpoint answered and since when it fails.

// RecentPosts is how many of an enterprise's last POSTs a node keeps.
const RecentPosts = 10

// maxOutcomeErr bounds the error text kept of a POST (an http.Client
// error quotes the URL): with RecentPosts an enterprise, the memory is
// bounded by the enterprises that had receipts since the start.
const maxOutcomeErr = 300

// Outcome is how a POST of receipts ended.
type Outcome struct {
	At        time.Time // when it started
	URL       string
	Receipts  int           // the receipts it carried
	Delivered bool          // a 2xx came
	Status    int           // the endpoint's HTTP status, 0 if none came
	Duration  time.Duration // from the start to the answer or the failure
	Err       string
	// FailingSince, for a failed POST: when the failures in a row that it
	// ends began (the first failed POST since the last delivered one).
	FailingSince time.Time
}

// outcomes is every enterprise's last POSTs.
type outcomes struct {
	mu sync.Mutex
	m  map[string][]Outcome // by enterprise, oldest first, at most RecentPosts
}

// add records enterprise's POST o that ended with err.
func (oc *outcomes) add(enterprise string, o Outcome, err error) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	h := oc.m[enterprise]
	var prev *Outcome
	if len(h) > 0 {
		prev = &h[len(h)-1]
		if prev.URL == o.URL {
			o.URL = prev.URL // one copy of a URL that does not change
		}
	}
	if err != nil {
		o.Err, o.FailingSince = err.Error(), o.At
		if len(o.Err) > maxOutcomeErr {
			cut := maxOutcomeErr
			for cut > 0 && !utf8.RuneStart(o.Err[cut]) {
				cut--
			}
			o.Err = o.Err[:cut] + "…"
		}
		if prev != nil && !prev.Delivered {
			o.FailingSince = prev.FailingSince
		}
	}
	if oc.m == nil {
		oc.m = make(map[string][]Outcome)
	}
	if len(h) == RecentPosts {
		copy(h, h[1:])
		h = h[:RecentPosts-1]
	}
	oc.m[enterprise] = append(h, o)
}

// recent returns enterprise's last POSTs, newest first (a copy).
func (oc *outcomes) recent(enterprise string) []Outcome {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	h := oc.m[enterprise]
	out := make([]Outcome, len(h))
	for i, o := range h {
		out[len(h)-1-i] = o
	}
	return out
}

// Failing is an enterprise whose last POST of receipts failed.
type Failing struct {
	Enterprise string
	Last       Outcome // its last POST; Last.FailingSince, since when they fail
}

// Failing returns the enterprises whose last POST of receipts by this
// process failed, the longest failing first, at most limit of them.
func (s *Sender) Failing(limit int) []Failing {
	s.posts.mu.Lock()
	var out []Failing
	for ent, h := range s.posts.m {
		if o := h[len(h)-1]; !o.Delivered {
			out = append(out, Failing{Enterprise: ent, Last: o})
		}
	}
	s.posts.mu.Unlock()
	slices.SortFunc(out, func(a, b Failing) int {
		if c := a.Last.FailingSince.Compare(b.Last.FailingSince); c != 0 {
			return c
		}
		return strings.Compare(a.Enterprise, b.Enterprise)
	})
	return out[:min(len(out), limit)]
}

// failingCollector exports, for each enterprise whose last POST of
// receipts failed, since when its POSTs have failed in a row
// (qxtd_receipt_webhook_failing_since_seconds{enterprise}): an alert can
// then name the enterprise whose endpoint is down. Only failing
// enterprises have a series, so the labels are bounded by the enterprises
// with a broken endpoint, not by all of them.
type failingCollector struct{ oc *outcomes }

var failingDesc = prometheus.NewDesc("qxtd_receipt_webhook_failing_since_seconds",
	"For each enterprise whose last receipt webhook POST failed: the Unix time of the first failure in a row (absent once a POST is delivered).",
	[]string{"enterprise"}, nil)

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- failingDesc }

func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	c.oc.mu.Lock()
	defer c.oc.mu.Unlock()
	for ent, h := range c.oc.m {
		if o := h[len(h)-1]; !o.Delivered {
			ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue,
				float64(o.FailingSince.UnixNano())/1e9, ent)
		}
	}
}
