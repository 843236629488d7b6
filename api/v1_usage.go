package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// Usage and bills of the caller's enterprise (FAQ 16, 18): GET /v1/usage
// (this month so far, every member of the enterprise) and GET /v1/bills
// (past months, enterprise admins). Bills are computed by billLine (ops.go),
// as the operator's GET /admin/v1/bill computes them, with the package in
// force in each month.

// maxBillMonths bounds GET /v1/bills without a month: the newest months.
const maxBillMonths = 120

// MonthUsage is the answer of GET /v1/usage: the enterprise's month so far.
// Delivered segments are charged; Reserved are in flight (accepted, no
// final outcome yet) and count toward Limit but are not billed unless
// delivered. Overage, OverageFen and TotalFen are what the month costs so
// far.
type MonthUsage struct {
	policy.Bill
	Reserved       int64  `json:"reserved"`
	OverageRateFen int64  `json:"overage_rate_fen"`
	FeeYuan        string `json:"fee_yuan"`
	OverageYuan    string `json:"overage_yuan"`
	TotalYuan      string `json:"total_yuan"`
	// Limit is how many segments the month allows (delivered + reserved)
	// before sends are refused quota_exceeded; -1: no limit. Remaining is
	// what is left of it (-1: no limit).
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	Missing
}

// BillList is the answer of GET /v1/bills without a month.
type BillList struct {
	Bills []BillLine `json:"bills"` // newest month first
}

// enterpriseUsage returns one enterprise's counters of a month, summed
// over the nodes of a cluster, and the nodes missing from the sum.
func (s *Server) enterpriseUsage(ctx context.Context, code, month string) (queue.EnterpriseUsage, Missing, error) {
	all, missing, err := s.usageByMonth(ctx, month, code)
	if err != nil {
		return queue.EnterpriseUsage{}, Missing{}, err
	}
	u, ok := all[code]
	if !ok {
		u.Enterprise = code
	}
	return u, missingOf(missing), nil
}

// usage: GET /v1/usage
func (s *Server) usage(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	month := s.cfg.Policy.Month()
	u, partial, err := s.enterpriseUsage(r.Context(), c.ent.Code, month)
	if err != nil {
		writeUsageErr(w, err)
		return
	}
	line := s.billLine(c.ent.Code, c.ent, month, u)
	if line.Error != "" {
		writeError(w, http.StatusInternalServerError, "internal", line.Error)
		return
	}
	out := MonthUsage{Bill: line.Bill, Reserved: u.Reserved, OverageRateFen: line.OverageRateFen,
		FeeYuan: line.FeeYuan, OverageYuan: line.OverageYuan, TotalYuan: line.TotalYuan,
		Limit: s.cfg.Policy.Limit(c.ent), Remaining: -1, Missing: partial}
	if out.Limit >= 0 {
		out.Remaining = max(0, out.Limit-u.Charged-u.Reserved)
	}
	writeJSON(w, http.StatusOK, out)
}

// bills: GET /v1/bills[?month=2006-01]. A month before the enterprise
// existed or after the current one is not_found; the current month is a
// bill so far (pending > 0 while messages are in flight).
func (s *Server) bills(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	if !c.admin() {
		writeError(w, http.StatusForbidden, "forbidden", "bills are for enterprise admins")
		return
	}
	first, now := policy.MonthOf(c.ent.CreatedAt), s.cfg.Policy.Month()
	if m := r.URL.Query().Get("month"); m != "" {
		if _, err := ParseMonth(m); err != nil {
			writeInvalid(w, "month", monthZH, err.Error())
			return
		}
		if m < first || m > now {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no bill for %s: the enterprise is billed from %s to %s", m, first, now))
			return
		}
		line, err := s.enterpriseBill(r.Context(), c.ent, m)
		if err != nil {
			writeUsageErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, line)
		return
	}
	out := BillList{Bills: []BillLine{}}
	t, _ := ParseMonth(now)
	for range maxBillMonths {
		t = t.AddDate(0, -1, 0)
		m := t.Format("2006-01")
		if m < first {
			break
		}
		line, err := s.enterpriseBill(r.Context(), c.ent, m)
		if err != nil {
			writeUsageErr(w, err)
			return
		}
		out.Bills = append(out.Bills, line)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) enterpriseBill(ctx context.Context, e *policy.Enterprise, month string) (BillLine, error) {
	u, partial, err := s.enterpriseUsage(ctx, e.Code, month)
	if err != nil {
		return BillLine{}, err
	}
	line := s.billLine(e.Code, e, month, u)
	line.Missing = partial
	return line, nil
}
