package main

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// TestLoadMeter: the load is measured from the oldest sample of the last
// minute to the time of the question; samples older than the span's
// start are dropped; the cost a message is left out when nothing was
// accepted, and there is no answer before the first sample.
func TestLoadMeter(t *testing.T) {
	var mu sync.Mutex
	t0 := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	cur := loadSample{at: t0}
	m := &loadMeter{read: func() loadSample { mu.Lock(); defer mu.Unlock(); return cur }}
	set := func(at time.Duration, cpu time.Duration, accepted, commits, written uint64) {
		mu.Lock()
		cur = loadSample{at: t0.Add(at), cpu: cpu, accepted: accepted, commits: commits, written: written}
		mu.Unlock()
	}
	if st := m.status(nil); st != nil {
		t.Fatalf("before any sample: %+v", st)
	}
	m.add(cur)
	set(2*time.Second, 0, 0, 4, 4096)
	st := m.status(nil)
	if st == nil || st.Seconds != 2 || st.Accepted != 0 || st.CPUMicrosPerMessage != nil || st.CommitsPerSecond != 2 || st.WrittenBytesPerSecond != 2048 {
		t.Fatalf("2 s after the start, nothing accepted: %+v", st)
	}
	// A sample every 5 s for two minutes: 1,000 messages, 0.5 s of CPU
	// and 500 commits each.
	for i := 1; i <= 24; i++ {
		d := time.Duration(i) * loadEvery
		set(d, time.Duration(i)*500*time.Millisecond, uint64(i)*1000, uint64(i)*500, uint64(i)<<20)
		m.add(cur)
	}
	if n := len(m.samples); n != 13 {
		t.Errorf("%d samples kept, want 13 (a minute and its start)", n)
	}
	set(24*loadEvery+2*time.Second, 12*time.Second+100*time.Millisecond, 24_100, 12_050, 24<<20)
	st = m.status(nil)
	// From the sample 57 s before (at 65 s: 13,000 messages, 6.5 s of CPU).
	if st == nil || st.Seconds != 57 || st.Accepted != 11_100 || st.CPUMicrosPerMessage == nil ||
		int(*st.CPUMicrosPerMessage) != 504 || st.CommitsPerSecond != 5550.0/57 || int(st.CPUCores*1000) != 98 {
		t.Fatalf("the last minute: %+v (cpu/msg %v)", st, st.CPUMicrosPerMessage)
	}
}

// TestLoadTopEnterprises: the load names the five enterprises with the
// most messages accepted in its span (not since the start), the most
// first and by code at a tie, and none that accepted nothing in it.
func TestLoadTopEnterprises(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	cur := loadSample{at: t0.Add(70 * time.Second), byEnterprise: map[string]uint64{
		"big-before": 1_000_000,                                                     // sent all of it more than a minute ago
		"a":          500, "b": 300, "c": 300, "d": 50, "e": 20, "f": 10, "new": 40, // new: not in the span's first sample
	}}
	m := &loadMeter{read: func() loadSample { return cur }}
	m.add(loadSample{at: t0, byEnterprise: map[string]uint64{"big-before": 10}})
	m.add(loadSample{at: t0.Add(10 * time.Second), byEnterprise: map[string]uint64{
		"big-before": 1_000_000, "a": 100, "b": 0, "c": 0, "d": 45, "e": 0, "f": 0,
	}})
	st := m.status(nil)
	want := []api.EnterpriseLoad{
		{Enterprise: "a", Accepted: 400, AcceptedPerSecond: 400.0 / 60},
		{Enterprise: "b", Accepted: 300, AcceptedPerSecond: 5},
		{Enterprise: "c", Accepted: 300, AcceptedPerSecond: 5},
		{Enterprise: "new", Accepted: 40, AcceptedPerSecond: 40.0 / 60},
		{Enterprise: "e", Accepted: 20, AcceptedPerSecond: 20.0 / 60},
	}
	if st == nil || st.Seconds != 60 || !slices.Equal(st.TopEnterprises, want) {
		t.Fatalf("top enterprises of the last minute:\n got %+v\nwant %+v", st, want)
	}
	// An account manager serving c, d and f: its three, ranked among
	// themselves; d and f are not in the daemon's five.
	served := func(e string) bool { return e == "c" || e == "d" || e == "f" }
	want = []api.EnterpriseLoad{
		{Enterprise: "c", Accepted: 300, AcceptedPerSecond: 5},
		{Enterprise: "f", Accepted: 10, AcceptedPerSecond: 10.0 / 60},
		{Enterprise: "d", Accepted: 5, AcceptedPerSecond: 5.0 / 60},
	}
	if st := m.status(served); st == nil || !slices.Equal(st.TopEnterprises, want) {
		t.Fatalf("top enterprises of a portfolio:\n got %+v\nwant %+v", st, want)
	}
	cur.at = t0.Add(11 * time.Second)
	cur.byEnterprise = map[string]uint64{"big-before": 1_000_000, "a": 100, "d": 45}
	m.samples = m.samples[1:]
	if st := m.status(nil); st == nil || st.TopEnterprises == nil || len(st.TopEnterprises) != 0 {
		t.Fatalf("nothing accepted in the span: %+v", st)
	}
}

// TestLoadUpstreams: an upstream's part of the load is its counters over
// the span (from zero if it was not in the span's first sample), the
// mean answer time of the submit_sm answered in it, and its state now;
// a pace of +Inf is no limit.
func TestLoadUpstreams(t *testing.T) {
	from := []gateway.UpstreamCount{{Name: "cmcc", Relayed: 1000, Throttled: 5, Failed: 1, RespCount: 1000, RespSeconds: 3}}
	now := []gateway.UpstreamCount{
		{Name: "cmcc", Relayed: 7000, Throttled: 65, Failed: 4, RespCount: 7100, RespSeconds: 15.2, TPS: 200, Pace: 150, InFlight: 90, Slots: 100},
		{Name: "new", Relayed: 30, RespCount: 0, Pace: math.Inf(1), Slots: 50},
	}
	got := upstreamsOf(from, now, 60)
	ms, pace := 2.0, 150.0
	want := []api.UpstreamLoad{
		{Name: "cmcc", Relayed: 6000, RelayedPerSecond: 100, Throttled: 60, Failed: 3, SubmitMeanMS: &ms, TPS: 200, PacePerSecond: &pace, InFlight: 90, Slots: 100},
		{Name: "new", Relayed: 30, RelayedPerSecond: 0.5, Slots: 50},
	}
	if g, w := must(json.Marshal(got)), must(json.Marshal(want)); string(g) != string(w) {
		t.Errorf("upstreams:\n got %s\nwant %s", g, w)
	}
}

// TestLoadInStatus: the running daemon's status has the last minute's
// load, the messages just sent counted, with their CPU cost, in GET
// /admin/v1/status and in `qxtd admin daemon status`.
func TestLoadInStatus(t *testing.T) {
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, ""))
	base := "http://" + d.httpAddr
	code, body := postJSON(t, "POST", base+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
	var login struct{ Token string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &login) != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, body := postJSON(t, "POST", base+"/v1/messages", login.Token,
		`{"to":["13800138000","13800138001","13800138002"],"text":"负载"}`); code != http.StatusOK {
		t.Fatalf("send: %d %s", code, body)
	}
	code, body = postJSON(t, "GET", base+"/admin/v1/status", "test-token", "")
	var st api.SystemStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Load == nil {
		t.Fatalf("status: %d %s", code, body)
	}
	if l := st.Load; l.Accepted != 3 || l.Seconds <= 0 || l.Seconds > 60 || l.CPUCores <= 0 || l.CPUMicrosPerMessage == nil ||
		*l.CPUMicrosPerMessage <= 0 || l.CommitsPerSecond <= 0 || l.WrittenBytesPerSecond <= 0 {
		t.Fatalf("load: %+v", l)
	}
	if top := st.Load.TopEnterprises; len(top) != 1 || top[0].Enterprise != "T1" || top[0].Accepted != 3 {
		t.Fatalf("top enterprises: %+v", top)
	}
	// The three go to the simulator after their acceptance: the upstream's
	// part counts them once they went.
	waitCond(t, 10*time.Second, "three segments relayed in the load", func() bool {
		_, body = postJSON(t, "GET", base+"/admin/v1/status", "test-token", "")
		st = api.SystemStatus{}
		return json.Unmarshal([]byte(body), &st) == nil && st.Load != nil && len(st.Load.Upstreams) == 1 && st.Load.Upstreams[0].Relayed == 3
	})
	if u := st.Load.Upstreams[0]; u.Name != "sim" || u.Throttled != 0 || u.Failed != 0 || u.SubmitMeanMS == nil || *u.SubmitMeanMS <= 0 ||
		u.PacePerSecond != nil || u.TPS != 0 || u.Slots != 100 {
		t.Fatalf("the upstream's load: %s", body)
	}
	var stdout, stderr bytes.Buffer
	if code := runIO(strings.NewReader(""), []string{"admin", "--api", base, "--token", "test-token", "daemon", "status"}, &stdout, &stderr); code != 0 {
		t.Fatalf("daemon status: exit %d\n%s", code, stderr.String())
	}
	if !regexp.MustCompile(`load \(last \d+ s\)\s+[\d.]+ msg/s accepted \(3\), [\d.]+ CPU cores, \d+ µs CPU a message, \d+ store commits/s, [\d.]+ MiB/s written`).MatchString(stdout.String()) {
		t.Fatalf("daemon status:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`load by T1\s+[\d.]+ msg/s accepted \(3, 100%\)`).MatchString(stdout.String()) {
		t.Fatalf("daemon status, the top sender:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`load upstream sim\s+[\d.]+ segments/s relayed \(3\), 0 throttled, 0 failed, [\d.]+ ms mean answer, no pace limit, \d of 100 in flight`).MatchString(stdout.String()) {
		t.Fatalf("daemon status, the upstream:\n%s", stdout.String())
	}
}

// TestUpstreamLoadLine: daemon status's line for an upstream says why its
// pace is what it is.
func TestUpstreamLoadLine(t *testing.T) {
	zero, low, ms := 0.0, 150.0, 2.5
	for _, c := range []struct {
		u    api.UpstreamLoad
		want string
	}{
		{api.UpstreamLoad{Name: "a", Slots: 10}, ", no pace limit, 0 of 10 in flight"},
		{api.UpstreamLoad{Name: "b", TPS: 200, PacePerSecond: &low, SubmitMeanMS: &ms, InFlight: 4, Slots: 10}, ", 2.5 ms mean answer, pace 150/s (tps 200), 4 of 10 in flight"},
		{api.UpstreamLoad{Name: "c", PacePerSecond: &low, Slots: 10}, ", pace 150/s, 0 of 10 in flight"},
		{api.UpstreamLoad{Name: "d", TPS: 200, PacePerSecond: &zero, Slots: 10}, ", pace 0/s (no bind up here), 0 of 10 in flight"},
	} {
		if got := upstreamLoad(c.u); !strings.HasSuffix(got, c.want) {
			t.Errorf("%s: %q, want it to end %q", c.u.Name, got, c.want)
		}
	}
}
