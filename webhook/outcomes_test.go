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
