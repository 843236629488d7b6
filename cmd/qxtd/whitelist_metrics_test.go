package main

import (
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/policy"
)

// The queue gauges follow policy's memory at each scrape: the count of
// pending entries and the age of the oldest, 0 once all are decided.
func TestWhitelistMetrics(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "q.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clock := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	pol, err := policy.New(db, policy.Config{BcryptCost: 4, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	op := policy.OperatorActor("test")
	for _, code := range []string{"A", "B"} {
		if _, err := pol.CreateEnterprise(op, policy.Enterprise{Code: code, Name: code, Signature: "【" + code + "公司】", Package: 1}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	now := clock.Add(90 * time.Second)
	registerWhitelistMetrics(reg, pol, func() time.Time { return now })
	want := func(n, age float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetType() != dto.MetricType_GAUGE || len(mf.GetMetric()) != 1 {
				t.Fatalf("%s: %v with %d series, want one gauge", mf.GetName(), mf.GetType(), len(mf.GetMetric()))
			}
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
		w := map[string]float64{"qxtd_whitelist_pending_entries": n, "qxtd_whitelist_pending_oldest_seconds": age}
		if !maps.Equal(got, w) {
			t.Errorf("metrics %v, want %v", got, w)
		}
	}
	want(0, 0)
	if _, err := pol.AddWhitelist(policy.Actor{Enterprise: "A", Admin: true, Name: "a"}, "A", []string{"13712345001", "13712345002"}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Minute) // before the next write: the policy reads it then
	if _, err := pol.AddWhitelist(policy.Actor{Enterprise: "B", Admin: true, Name: "b"}, "B", []string{"13712345003"}); err != nil {
		t.Fatal(err)
	}
	want(3, 90)
	now = now.Add(10 * time.Second)
	want(3, 100)
	if _, err := pol.Approve(op, "A"); err != nil { // all of A's pending
		t.Fatal(err)
	}
	want(1, 40) // B's, added a minute later
	if _, err := pol.Reject(op, "B", "空号"); err != nil {
		t.Fatal(err)
	}
	want(0, 0)
}
