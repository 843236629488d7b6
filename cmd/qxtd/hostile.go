package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/loglimit"
	"github.com/qxtd/qxtd/smpp"
)

// hostileMetrics count what the daemon's bounds turned away: SMPP
// connections over a cap, requests with a field outside its SMPP 3.4
// bounds, bind checks by outcome, log lines suppressed.
// Every series exists from the start, at zero, for alerts and rate().
type hostileMetrics struct {
	rejected   *prometheus.CounterVec
	fields     *prometheus.CounterVec
	checks     *prometheus.CounterVec
	suppressed *prometheus.CounterVec
}

func newHostileMetrics(reg prometheus.Registerer) *hostileMetrics {
	f := promauto.With(reg)
	m := &hostileMetrics{
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_smpp_connections_rejected_total",
			Help: "SMPP connections closed by a cap: at accept (max_conns, unbound_per_ip, unbound_per_network: 4 × smpp.max_unbound_per_ip a /24 or /48), or evicted_idle: the one unbound the longest, closed at smpp.max_conns to make room for a new one.",
		}, []string{"reason"}),
		fields: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_smpp_fields_refused_total",
			Help: "SMPP requests from ESMEs refused because a field is outside its SMPP 3.4 bounds (a C-Octet String over its size, short_message over 254 octets, submit_multi's number_of_dests 0 or over 254), by command and field.",
		}, []string{"command", "field"}),
		checks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_esme_bind_checks_total",
			Help: "ESME bind authentications: answered from the credential cache, checked (bcrypt), or abandoned (the connection closed while waiting).",
		}, []string{"outcome"}),
		suppressed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_log_suppressed_total",
			Help: "Log lines dropped because the same message from the same peer repeated too often.",
		}, []string{"reason"}),
	}
	for _, r := range smpp.RejectReasons {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range smpp.RefusedFields() {
		m.fields.WithLabelValues(r.Command, r.Field)
	}
	for _, o := range gateway.AuthOutcomes {
		m.checks.WithLabelValues(o)
	}
	m.suppressed.WithLabelValues(loglimit.ReasonOther)
	return m
}

func (m *hostileMetrics) smppReject(reason string) { m.rejected.WithLabelValues(reason).Inc() }
func (m *hostileMetrics) fieldRefused(command, field string) {
	m.fields.WithLabelValues(command, field).Inc()
}
func (m *hostileMetrics) bindCheck(outcome string) { m.checks.WithLabelValues(outcome).Inc() }

// logSuppressed counts a dropped line by its reason: the log message,
// a closed set (loglimit caps the distinct values, then ReasonOther).
func (m *hostileMetrics) logSuppressed(reason string) { m.suppressed.WithLabelValues(reason).Inc() }
