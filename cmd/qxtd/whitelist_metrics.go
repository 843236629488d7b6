package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/policy"
)

// registerWhitelistMetrics registers the account manager's whitelist queue
// gauges on reg, computed from policy's memory at scrape time: how many
// entries of all enterprises are pending, and how long the oldest has waited
// (0 when none).
func registerWhitelistMetrics(reg prometheus.Registerer, pol *policy.Policy, now func() time.Time) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_whitelist_pending_entries",
			Help: "Whitelist entries of all enterprises awaiting the account manager's approval.",
		}, func() float64 {
			n, _ := pol.PendingStats()
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_whitelist_pending_oldest_seconds",
			Help: "Age of the oldest whitelist entry awaiting approval (0 when none is pending).",
		}, func() float64 {
			_, oldest := pol.PendingStats()
			if oldest.IsZero() {
				return 0
			}
			return max(now().Sub(oldest).Seconds(), 0)
		}),
	)
}
