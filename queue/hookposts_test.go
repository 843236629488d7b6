package queue

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestHookPosts: the POSTs saved are read back after a reopen, a later
// save replaces an enterprise's record, a longer list keeps its newest
// MaxHookPosts, enterprise "" and an empty list are left out (not an error
// for the others), and a damaged record is left out and named, by
// HookPosts and by Check, while the others are still read.
func TestHookPosts(t *testing.T) {
	ts := newStore(t, Options{})
	at := time.Unix(1_790_000_000, 5).UTC()
	a := []HookPost{
		{At: at, URL: "https://a.example/r", Receipts: 1, Delivered: true, Status: 200, Duration: 3 * time.Millisecond},
		{At: at.Add(time.Minute), URL: "https://a.example/r", Receipts: 100, Status: 503, Duration: time.Second,
			Err: "webhook: HTTP status 503", FailingSince: at.Add(time.Minute)},
		{At: at.Add(2 * time.Minute), URL: "https://a.example/mo", Reply: true, Status: 502, Duration: time.Second,
			Err: "webhook: HTTP status 502", FailingSince: at.Add(2 * time.Minute)},
	}
	long := make([]HookPost, MaxHookPosts+3)
	for i := range long {
		long[i] = HookPost{At: at.Add(time.Duration(i) * time.Second), URL: "https://c.example/", Receipts: i + 1,
			Err: "dial tcp: connection refused", FailingSince: at}
	}
	ctx := context.Background()
	if err := ts.SaveHookPosts(ctx, map[string][]HookPost{"A": a[:1], "B": nil, "C": long, "": a}); err != nil {
		t.Fatal(err)
	}
	if err := ts.SaveHookPosts(ctx, map[string][]HookPost{"A": a}); err != nil {
		t.Fatal(err)
	}
	ts.reopen()
	got, err := ts.HookPosts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]HookPost{"A": a, "C": long[3:]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v\nwant %+v", got, want)
	}

	// A damaged record, written past the store.
	if err := ts.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHookPost).Put([]byte("D"), []byte{hookPostVersion, 1, 0})
	}); err != nil {
		t.Fatal(err)
	}
	got, err = ts.HookPosts()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"D"`) {
		t.Fatalf("damaged record: err %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with a damaged record, read %+v; want the others %+v", got, want)
	}
	if err := ts.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `hook posts of "D"`) {
		t.Fatalf("check: %v", err)
	}
	if err := ts.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketHookPost).Delete([]byte("D")) }); err != nil {
		t.Fatal(err)
	}
}
