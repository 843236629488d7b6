package webhook

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/queue"
)

// TestOutcomesBounded: an enterprise keeps its last RecentPosts POSTs,
// newest first; a URL that does not change is kept once; an error's text
// is cut to maxOutcomeErr on a character boundary; failures in a row keep
// the first one's time, and a delivery ends them.
func TestOutcomesBounded(t *testing.T) {
	var oc outcomes
	at := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)
	long := errors.New(strings.Repeat("回执", maxOutcomeErr)) // 3 bytes a character: cut mid-character if cut by bytes
	for i := range RecentPosts + 5 {
		url := strings.Clone("https://e.example/dlr") // a new string each time, as decoded from the store
		var err error
		if i >= 3 {
			err = long
		}
		oc.add("E", Outcome{At: at.Add(time.Duration(i) * time.Second), URL: url, Receipts: i, Delivered: err == nil}, err)
	}
	rs := oc.recent("E", false)
	if len(rs) != RecentPosts || rs[0].Receipts != RecentPosts+4 || rs[RecentPosts-1].Receipts != 5 {
		t.Fatalf("%d kept, newest %d, oldest %d; want %d, %d to %d", len(rs), rs[0].Receipts, rs[len(rs)-1].Receipts, RecentPosts, RecentPosts+4, 5)
	}
	for _, o := range rs {
		if unsafe.StringData(o.URL) != unsafe.StringData(rs[0].URL) {
			t.Fatal("the same URL is kept more than once")
		}
		if !utf8.ValidString(o.Err) || len(o.Err) > maxOutcomeErr+len("…") || !strings.HasSuffix(o.Err, "…") {
			t.Fatalf("error text %d bytes, valid %v", len(o.Err), utf8.ValidString(o.Err))
		}
		if want := at.Add(3 * time.Second); !o.FailingSince.Equal(want) {
			t.Fatalf("failing since %v, want the first failure's %v", o.FailingSince, want)
		}
	}
	oc.add("E", Outcome{At: at.Add(time.Minute), Delivered: true}, nil)
	if l := oc.recent("E", false)[0]; !l.FailingSince.IsZero() || l.Err != "" {
		t.Errorf("a delivery: %+v", l)
	}
	if rs := oc.recent("other", false); len(rs) != 0 {
		t.Errorf("another enterprise: %+v", rs)
	}
}

// TestFailingList: the enterprises whose last POST failed, the longest
// failing first, cut at the limit; one delivered since is not listed.
func TestFailingList(t *testing.T) {
	var s Sender
	at := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)
	fail := errors.New("webhook: HTTP status 502")
	s.posts.add("late", Outcome{At: at.Add(2 * time.Minute)}, fail)
	s.posts.add("early", Outcome{At: at}, fail)
	s.posts.add("early", Outcome{At: at.Add(3 * time.Minute)}, fail)
	s.posts.add("mended", Outcome{At: at}, fail)
	s.posts.add("mended", Outcome{At: at.Add(time.Minute), Delivered: true}, nil)
	s.posts.add("fine", Outcome{At: at, Delivered: true}, nil)
	fs := s.Failing(10)
	var got []string
	for _, f := range fs {
		got = append(got, f.Enterprise)
	}
	if strings.Join(got, ",") != "early,late" || !fs[0].Last.FailingSince.Equal(at) || !fs[0].Last.At.Equal(at.Add(3*time.Minute)) {
		t.Errorf("failing %v: %+v", got, fs)
	}
	if fs := s.Failing(1); len(fs) != 1 || fs[0].Enterprise != "early" {
		t.Errorf("limit 1: %+v", fs)
	}
}

// TestOutcomesKeptAcrossRestart: the last POSTs are saved while the
// sender runs (every SaveEvery) and when it stops, and a sender started on
// the same store carries them on: its status, its failing list and the
// metric an alert names the enterprise by show the endpoint that was down
// since before the restart, and the next failure continues the streak.
func TestOutcomesKeptAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rcv := newReceiver(t, 503, 503, 503, 503)
	// Each receipt's next POST an hour away (as after a day of failures):
	// until then only what was kept tells that the endpoint is down.
	r := start(t, path, Config{Backoff: time.Hour, Poll: 10 * time.Millisecond, SaveEvery: 20 * time.Millisecond})
	for range 2 {
		finalMessage(t, r.store, "ent1", rcv.URL, queue.StateDelivered)
		if p := rcv.next(t); p.status != 503 {
			t.Fatalf("status %d", p.status)
		}
	}
	// Saved while running: the store has both failures (what a kill -9
	// would leave).
	waitFor(t, func() (bool, string) {
		kept, err := r.store.HookPosts()
		return err == nil && len(kept["ent1"]) >= 2, fmt.Sprintf("kept %+v (%v)", kept, err)
	})
	before := r.snd.posts.recent("ent1", false)
	r.stop()
	if len(before) != 2 || before[0].Delivered || before[0].Status != 503 {
		t.Fatalf("before the restart: %+v", before)
	}
	since := before[len(before)-1].FailingSince

	r2 := start(t, path, Config{Backoff: time.Hour, Poll: 10 * time.Millisecond})
	st, err := r2.snd.Status("ent1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Recent) != len(before) || !st.Recent[0].At.Equal(before[0].At) || st.Recent[0].Err != before[0].Err ||
		st.Recent[0].URL != rcv.URL || !st.Recent[0].FailingSince.Equal(since) {
		t.Fatalf("after the restart, recent %+v\nwant %+v", st.Recent, before)
	}
	if fs := r2.snd.Failing(10); len(fs) != 1 || fs[0].Enterprise != "ent1" || !fs[0].Last.FailingSince.Equal(since) {
		t.Fatalf("failing after the restart: %+v", fs)
	}
	want := fmt.Sprintf(`
# HELP qxtd_receipt_webhook_failing_since_seconds For each enterprise whose last receipt webhook POST failed: the Unix time of the first failure in a row (absent once a POST is delivered).
# TYPE qxtd_receipt_webhook_failing_since_seconds gauge
qxtd_receipt_webhook_failing_since_seconds{enterprise="ent1"} %g
`, float64(since.UnixNano())/1e9)
	if err := testutil.GatherAndCompare(r2.reg, strings.NewReader(want), "qxtd_receipt_webhook_failing_since_seconds"); err != nil {
		t.Fatal(err)
	}

	// The receipts made due now fail once more: the streak goes on from
	// before the restart.
	if _, _, err := r2.store.HooksDueNow(context.Background(), "ent1", time.Now(), 10); err != nil {
		t.Fatal(err)
	}
	r2.snd.Wake()
	for range 2 {
		if p := rcv.next(t); p.status != 503 {
			t.Fatalf("status %d", p.status)
		}
	}
	waitFor(t, func() (bool, string) {
		rs := r2.snd.posts.recent("ent1", false)
		return len(rs) == 4, fmt.Sprintf("%d recent, want 4", len(rs))
	})
	if l := r2.snd.posts.recent("ent1", false)[0]; !l.FailingSince.Equal(since) {
		t.Errorf("a failure after the restart: failing since %v, want %v", l.FailingSince, since)
	}
}

// TestOutcomesSavedOnStop: with no periodic save due, the POSTs made
// since the last one are saved when the sender stops.
func TestOutcomesSavedOnStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rcv := newReceiver(t, 503)
	r := start(t, path, Config{Backoff: time.Hour, Poll: 10 * time.Millisecond, SaveEvery: time.Hour})
	finalMessage(t, r.store, "ent1", rcv.URL, queue.StateDelivered)
	if p := rcv.next(t); p.status != 503 {
		t.Fatalf("status %d", p.status)
	}
	waitFor(t, func() (bool, string) {
		return len(r.snd.posts.recent("ent1", false)) == 1, "the failure not recorded"
	})
	if kept, err := r.store.HookPosts(); err != nil || len(kept) != 0 {
		t.Fatalf("saved before the hour: %+v, %v", kept, err)
	}
	r.stop()
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kept, err := s.HookPosts()
	if err != nil || len(kept["ent1"]) != 1 || kept["ent1"][0].Status != 503 {
		t.Fatalf("after the stop: %+v, %v", kept, err)
	}
}

// TestOutcomesKinds: an enterprise's POSTs of replies are kept apart from
// its POSTs of receipts, RecentPosts of each: many replies do not push the
// receipts' out; a failing streak is of one kind; an enterprise whose
// replies alone fail is not in the failing list (of receipts); what is
// saved loads back into the same two lists.
func TestOutcomesKinds(t *testing.T) {
	s := &Sender{}
	at := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)
	fail := errors.New("webhook: HTTP status 503")
	s.posts.add("E", Outcome{At: at, Receipts: 1, Delivered: true}, nil)
	for i := range RecentPosts + 3 {
		s.posts.add("E", Outcome{At: at.Add(time.Duration(i+1) * time.Second), Reply: true}, fail)
	}
	s.posts.add("R", Outcome{At: at, Reply: true}, fail) // replies alone, failing
	check := func(when string, oc *outcomes) {
		t.Helper()
		rc, rp := oc.recent("E", false), oc.recent("E", true)
		if len(rc) != 1 || !rc[0].Delivered || rc[0].Reply {
			t.Errorf("%s: receipts' POSTs %+v", when, rc)
		}
		if len(rp) != RecentPosts || !rp[0].At.Equal(at.Add((RecentPosts+3)*time.Second)) || !rp[0].Reply ||
			!rp[0].FailingSince.Equal(at.Add(time.Second)) {
			t.Errorf("%s: %d reply POSTs, newest %+v", when, len(rp), rp[0])
		}
		if rc := oc.recent("R", false); len(rc) != 0 {
			t.Errorf("%s: R's receipts' POSTs %+v", when, rc)
		}
	}
	check("in memory", &s.posts)
	if fs := s.Failing(10); len(fs) != 0 {
		t.Errorf("failing list %+v: replies are not in it", fs)
	}
	saved := s.posts.takeDirty()
	if n := len(saved["E"]); n != 1+RecentPosts || n > queue.MaxHookPosts {
		t.Errorf("saved %d POSTs of E, want %d", n, 1+RecentPosts)
	}
	var again outcomes
	again.load(saved)
	check("loaded", &again)
}
