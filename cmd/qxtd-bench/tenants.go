package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// tenantAccount is the system_id of the bench's tenant i (0-based): the
// first is the bench account every scenario uses, the others exist only
// with -tenants (each its own enterprise, derivedConfig).
func tenantAccount(i int) string {
	if i == 0 {
		return benchSystemID
	}
	return fmt.Sprintf("%s%d", benchSystemID, i+1)
}

// tenantEnterprise is the code of tenant i's enterprise.
func tenantEnterprise(i int) string {
	if i == 0 {
		return "BENCH"
	}
	return fmt.Sprintf("BENCH%d", i+1)
}

// Tenants is the load of many enterprises at once: one transceiver bind
// per tenant, each its own account of its own enterprise, the run's
// messages and window shared out among them and sent concurrently. It
// measures what qxtd's per-account and per-enterprise parts (receipt
// forwarders, the per-enterprise due index, rate limits, usage rows) cost
// when there are many of them, against the same load from one bind.
type Tenants struct {
	cls []*Client
}

// DialTenants binds n clients to addr, one per tenant account, one after
// another (so that no more than one is unbound at a time: qxtd caps the
// unbound connections of a source address).
func DialTenants(ctx context.Context, addr string, n int) (*Tenants, error) {
	t := &Tenants{}
	for i := range n {
		cl, err := Dial(ctx, addr, tenantAccount(i), benchPassword)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("tenant %d: %w", i+1, err)
		}
		t.cls = append(t.cls, cl)
	}
	return t, nil
}

// share is tenant i's part of total shared out among n, the remainder
// to the first ones.
func share(total, n, i int) int {
	s := total / n
	if i < total%n {
		s++
	}
	return s
}

// Run sends spec among the tenants at once: tenant i gets its share of
// spec.N (destinations continuing where the previous tenant's end), of
// the window (at least 1) and of the offered rate, and the results are
// merged as one run's.
func (t *Tenants) Run(ctx context.Context, spec RunSpec) (RunResult, error) {
	n := len(t.cls)
	results := make([]RunResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	dst := spec.FirstDst
	for i, cl := range t.cls {
		s := spec
		s.N = share(spec.N, n, i)
		s.Window = max(1, share(spec.Window, n, i))
		s.Offered = spec.Offered / float64(n)
		s.FirstDst = dst
		dst += int64(s.N)
		wg.Go(func() {
			results[i], errs[i] = cl.Run(ctx, s)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("tenant %d: %w", i+1, errs[i])
			}
		})
	}
	wg.Wait()
	return mergeRuns(results, spec.Receipts), errors.Join(errs...)
}

// mergeRuns is one RunResult of several run at once: counts summed,
// latencies together, the earliest start and the latest answer and
// receipt, the first refusal seen.
func mergeRuns(rs []RunResult, receipts bool) RunResult {
	var m RunResult
	for _, r := range rs {
		m.N += r.N
		m.Answered += r.Answered
		m.Receipts += r.Receipts
		m.Errors += r.Errors
		m.DupReceipts += r.DupReceipts
		m.Dropped += r.Dropped
		if m.FirstErr == 0 {
			m.FirstErr = r.FirstErr
		}
		if m.FirstErrText == "" {
			m.FirstErrText = r.FirstErrText
		}
		if r.N == 0 {
			continue
		}
		if m.Start.IsZero() || r.Start.Before(m.Start) {
			m.Start = r.Start
		}
		m.LastResp = later(m.LastResp, r.LastResp)
		m.LastRcpt = later(m.LastRcpt, r.LastRcpt)
		m.RespLat = append(m.RespLat, r.RespLat...)
		if receipts {
			m.RcptLat = append(m.RcptLat, r.RcptLat...)
		}
	}
	return m
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Close unbinds every tenant's client.
func (t *Tenants) Close() {
	var wg sync.WaitGroup
	for _, cl := range t.cls {
		wg.Go(cl.Close)
	}
	wg.Wait()
}
