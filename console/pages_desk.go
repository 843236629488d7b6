package console

import (
	"cmp"
	"net/http"
	"slices"

	"github.com/qxtd/qxtd/api"
)

// The account manager's desk (客户经理工作台, /ops/): 运行概况, 企业 (list,
// new, detail and edit with its users), 待审批 (whitelist entries of every
// enterprise, signature changes, account applications), 账单 (with its
// CSV) and 回执导出 (the API's DLR export streamed through). Every figure
// and every rule is the admin API's (/admin/v1, as the operator session).

// An account manager with a portfolio sees its enterprises' only (the
// API keeps every list to them), and is not offered what belongs to no
// one enterprise (page.OpsScope).
var deskRoutes = []route{
	{"GET /ops/{$}", (*Server).opsHome},
	{"GET /ops/enterprises", (*Server).opsEnterprises},
	{"GET /ops/enterprises/new", (*Server).opsEnterpriseNewPage},
	{"POST /ops/enterprises/new", (*Server).opsEnterpriseCreate},
	{"GET /ops/enterprises/{code}", (*Server).opsEnterprise},
	{"POST /ops/enterprises/{code}", (*Server).opsEnterpriseUpdate},
	{"POST /ops/enterprises/{code}/state", (*Server).opsEnterpriseState},
	{"POST /ops/enterprises/{code}/held/drop", (*Server).opsEnterpriseDropHeld},
	{"POST /ops/enterprises/{code}/receipt-test", (*Server).opsReceiptTest},
	{"POST /ops/enterprises/{code}/receipt-retry", (*Server).opsReceiptRetry},
	{"POST /ops/enterprises/{code}/users", (*Server).opsUserCreate},
	{"POST /ops/enterprises/{code}/users/{sid}/password", (*Server).opsUserPassword},
	{"POST /ops/enterprises/{code}/users/{sid}/update", (*Server).opsUserUpdate},
	{"GET /ops/enterprises/{code}/whitelist", (*Server).opsWhitelist},
	{"POST /ops/enterprises/{code}/whitelist/decide", (*Server).opsWhitelistDecide},
	{"GET /ops/enterprises/{code}/records", (*Server).opsRecords},
	{"GET /ops/enterprises/{code}/records/{id}", (*Server).opsRecord},
	{"GET /ops/enterprises/{code}/records/export.csv", (*Server).opsRecordsExport},
	{"GET /ops/trace", (*Server).opsTrace},
	{"POST /ops/trace/optout", (*Server).opsTraceOptOut},
	{"GET /ops/approvals", (*Server).opsApprovals},
	{"POST /ops/approvals/whitelist", (*Server).opsDecideWhitelist},
	{"POST /ops/approvals/signatures/{id}/{decision}", (*Server).opsDecideSignature},
	{"POST /ops/approvals/applications/{number}/{decision}", (*Server).opsDecideApplication},
	{"GET /ops/bills", (*Server).opsBills},
	{"GET /ops/bills.csv", (*Server).opsBillsCSV},
	{"GET /ops/export", (*Server).opsExportPage},
	{"GET /ops/export/dlr.csv", (*Server).opsExportDLR},
	{"GET /ops/export/optouts.csv", (*Server).opsExportOptOuts},
}

// --- 运行概况 ---

// queueStates are the store's segment states in the order the desk shows
// them, with their Chinese names.
var queueStates = []struct{ State, ZH string }{
	{"accepted", "已受理（待提交）"},
	{"submitted", "已提交（待回执）"},
	{"waiting", "等待定时或重试"},
	{"delivered", "接收成功"},
	{"undeliverable", "接收失败"},
	{"expired", "已过期"},
	{"rejected", "被拒绝"},
	{"unknown", "状态未知"},
	{"cancelled", "已取消"},
}

type opsCount struct {
	Key, ZH string
	N       int
}

type refusalRow struct {
	Reason, ZH string
	Count      uint64
}

// failingRow is an enterprise whose endpoint of a kind fails, as the desk
// lists it.
type failingRow struct {
	api.FailingWebhook
	Reply bool // its reply endpoint (reply_webhooks_failing), not its receipts'
}

// since is when the row's POSTs began to fail (Unix ns; 0 if unknown).
func (f failingRow) since() int64 {
	if f.Last.FailingSince == nil {
		return 0
	}
	return f.Last.FailingSince.UnixNano()
}

type opsHomeData struct {
	St api.SystemStatus
	// Failing are the enterprises whose receipt or reply endpoint failed
	// its last POST, in one list, the longest failing first: whom to call.
	Failing   []failingRow
	AllUp     bool
	Queue     []opsCount
	Refusals  []refusalRow // with a count
	Zero      []refusalRow // the reasons not seen since the start
	Whitelist int          // pending entries (at most pendingPage)
	More      bool         // more than Whitelist
	Sigs      int
	Apps      int
}

func (s *Server) opsHome(q *req) {
	d := &opsHomeData{AllUp: true}
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/status", nil, &d.St); err != nil {
		q.fail(err)
		return
	}
	for _, u := range d.St.Upstreams {
		// In a cluster a node holds its share of the binds (or none: it
		// relays through the others), so only a node alone is short.
		if (u.BindsUp < u.BindsConfigured || u.ReceiversUp < u.ReceiversConfigured) && d.St.Cluster == nil {
			d.AllUp = false
		}
	}
	seen := map[string]bool{}
	for _, qs := range queueStates {
		seen[qs.State] = true
		d.Queue = append(d.Queue, opsCount{qs.State, qs.ZH, d.St.Queue[qs.State]})
	}
	for k, n := range d.St.Queue {
		if !seen[k] {
			d.Queue = append(d.Queue, opsCount{k, k, n})
		}
	}
	for _, rf := range d.St.Refusals {
		row := refusalRow{Reason: rf.Reason, ZH: reasonZH(rf.Reason), Count: rf.Count}
		if rf.Count == 0 {
			d.Zero = append(d.Zero, row)
		} else {
			d.Refusals = append(d.Refusals, row)
		}
	}
	for _, f := range d.St.ReceiptWebhooksFailing {
		d.Failing = append(d.Failing, failingRow{FailingWebhook: f})
	}
	for _, f := range d.St.ReplyWebhooksFailing {
		d.Failing = append(d.Failing, failingRow{FailingWebhook: f, Reply: true})
	}
	slices.SortStableFunc(d.Failing, func(a, b failingRow) int {
		return cmp.Compare(a.since(), b.since())
	})
	pend, err := s.pendingWhitelist(q, "")
	if err != nil {
		q.fail(err)
		return
	}
	d.Whitelist, d.More = len(pend.Entries), pend.Next != ""
	sigs, err := s.pendingSignatures(q)
	if err != nil {
		q.fail(err)
		return
	}
	d.Sigs = len(sigs)
	apps, err := s.pendingApplications(q)
	if err != nil {
		q.fail(err)
		return
	}
	d.Apps = len(apps)
	q.render(http.StatusOK, "ops_home", q.view(d))
}
