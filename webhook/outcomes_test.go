package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
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
	rs := oc.recent("E")
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
	if l := oc.recent("E")[0]; !l.FailingSince.IsZero() || l.Err != "" {
		t.Errorf("a delivery: %+v", l)
	}
	if rs := oc.recent("other"); len(rs) != 0 {
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
