package gateway_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qxtd/qxtd/smpp"
)

// scrape reads /metrics over HTTP into series → value, keyed exactly as
// the text format prints them (labels in promhttp's sorted order).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsExactCounts drives known traffic — delivered, undeliverable,
// refused by policy, throttled by the SMSC — and checks the exact counter
// values on /metrics, scraped over HTTP.
func TestMetricsExactCounts(t *testing.T) {
	r, _ := policyRig(t, smpp.SimOptions{DLRDelay: 20 * time.Millisecond,
		Faults: smpp.Faults{ThrottleFirst: 2, UndelivPrefix: "139"}})
	hs := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	send := func(dst string, n int) {
		for range n {
			if _, err := alice.submit(ctx, submitSM("1069", dst, "metrics")); err != nil {
				t.Fatalf("submit to %s: %v", dst, err)
			}
		}
	}
	send("13712345678", 3) // delivered (the package allows 5 segments)
	send("13923412345", 2) // undeliverable
	if _, err := alice.submit(ctx, submitSM("1069", "13712345679", "pending")); err == nil {
		t.Fatal("pending whitelist entry accepted")
	}
	alice.waitReceipts(t, 5, 15*time.Second)

	want := map[string]float64{
		`qxtd_messages_accepted_total{ingress="smpp"}`:                       5,
		`qxtd_messages_accepted_total{ingress="http"}`:                       0,
		`qxtd_messages_refused_total{reason="not_whitelisted"}`:              1,
		`qxtd_messages_refused_total{reason="quota_exceeded"}`:               0,
		`qxtd_segments_relayed_total{upstream="sim"}`:                        5,
		`qxtd_upstream_submit_errors_total{kind="throttled",upstream="sim"}`: 2,
		`qxtd_dlrs_forwarded_total{outcome="ok"}`:                            5,
		`qxtd_esme_binds_total{kind="transceiver",outcome="ok"}`:             1,
		`qxtd_esme_bound{kind="transceiver"}`:                                1,
		`qxtd_queue_segments{state="delivered"}`:                             3,
		`qxtd_queue_segments{state="undeliverable"}`:                         2,
		`qxtd_queue_segments{state="accepted"}`:                              0,
		`qxtd_queue_segments{state="submitted"}`:                             0,
		"qxtd_esme_submit_seconds_count":                                     5, // accepted ones only
	}
	// The last receipt's forwarded counter moves after the ESME answered,
	// and a receipt's received counter after its commit, which the ESME's
	// deliver_sm can overtake (the forwarder is woken by the commit, the
	// counter by the SMSC reader's return from it): scrape until both
	// settle, within the deadline.
	received := func(got map[string]float64) (n float64) {
		for k, v := range got {
			if strings.HasPrefix(k, "qxtd_dlrs_received_total{") {
				n += v
			}
		}
		return n
	}
	var got map[string]float64
	for {
		got = scrape(t, hs.URL)
		if got[`qxtd_dlrs_forwarded_total{outcome="ok"}`] == 5 && received(got) >= 5 || ctx.Err() != nil {
			break
		}
		waitABit(ctx)
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	// The same accepted count, by enterprise (the status's top senders):
	// the refused one is not in it.
	if by := r.gw.AcceptedByEnterprise(); len(by) != 1 || by["E1"] != 5 {
		t.Errorf("accepted by enterprise %v, want E1: 5", by)
	}
	// And the upstream's counters, read where the metrics keep them.
	ups := r.gw.UpstreamCounts()
	if len(ups) != 1 || ups[0].Name != "sim" || ups[0].Relayed != 5 || ups[0].Throttled != 2 || ups[0].Failed != 0 ||
		ups[0].RespCount != 7 || ups[0].RespSeconds <= 0 || ups[0].InFlight != 0 || ups[0].Slots <= 0 {
		t.Errorf("upstream counts %+v, want sim: 5 relayed, 2 throttled, 7 answers", ups)
	}
	if n := got[`qxtd_dlr_delay_seconds_count{upstream="sim"}`]; n < 1 || n > 5 {
		t.Errorf("receipt delays observed: %v, want 1 to 5 (matched receipts)", n)
	}
	if got["qxtd_store_commit_seconds_count"] < 1 {
		t.Error("no store commit observed")
	}
	// A receipt is "matched" or, when it beat its submit_sm_resp to the
	// store, "orphaned" then applied: by state the totals are exact.
	byState := map[string]float64{}
	for k, v := range got {
		if strings.HasPrefix(k, "qxtd_dlrs_received_total{") {
			st := k[strings.Index(k, `state="`)+7:]
			byState[st[:strings.IndexByte(st, '"')]] += v
		}
	}
	if byState["delivered"] != 3 || byState["undeliverable"] != 2 {
		t.Errorf("receipts by state %v, want delivered 3, undeliverable 2", byState)
	}
}
