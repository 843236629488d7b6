package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// recordingPeers is a PeerUsage with fixed answers that records what it
// was asked ("month/enterprise").
type recordingPeers struct {
	mu      sync.Mutex
	usage   []queue.EnterpriseUsage
	missing []uint16
	err     error
	asked   []string
}

func (p *recordingPeers) PeerUsage(_ context.Context, month, enterprise string) ([]queue.EnterpriseUsage, []uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, month+"/"+enterprise)
	if p.err != nil {
		return nil, nil, p.err
	}
	var out []queue.EnterpriseUsage
	for _, u := range p.usage {
		if enterprise == "" || u.Enterprise == enterprise {
			out = append(out, u)
		}
	}
	return out, p.missing, nil
}

func (p *recordingPeers) set(missing []uint16, err error) {
	p.mu.Lock()
	p.missing, p.err, p.asked = missing, err, nil
	p.mu.Unlock()
}

func (p *recordingPeers) questions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

var _ PeerUsage = (*recordingPeers)(nil)

// In a cluster every answer that shows usage or a bill adds the other
// nodes' usage; when some node's is unknown it says partial and which.
func TestUsageAcrossNodes(t *testing.T) {
	e := newOpsEnv(t) // 2026-10-15
	peers := &recordingPeers{usage: []queue.EnterpriseUsage{
		{Enterprise: "G1", Reserved: 2, Charged: 4, PurgedCharged: 1},
		{Enterprise: "G9", Charged: 2}, // not configured: listed all the same
	}}
	e.api = New(Config{AdminToken: opsToken, Store: e.store, Policy: e.pol, PeerUsage: peers})
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)

	e.enterprise("G1", "一号公司", 1) // 20.00 for 5, 0.10 each beyond
	g1admin := e.user("G1", "g1admin", "管理员", "13712345678", policy.RoleAdmin)
	oct := time.Date(2026, 10, 10, 0, 0, 0, 0, shanghai)
	D, A := queue.StateDelivered, queue.StateAccepted
	e.send("G1", oct, oct.Add(time.Minute), D, D, D) // this node: 3 delivered
	e.send("G1", oct, oct, A)                        // and 1 in flight

	// 3 + 4 = 7 delivered: 5 included + 2 × 0.10.
	check := func(t *testing.T, missing []uint16) {
		t.Helper()
		wantPartial := Missing{Partial: len(missing) > 0, MissingNodes: missing}
		var mu MonthUsage
		e.must(http.StatusOK, "", "GET", "/v1/usage", g1admin, nil, &mu)
		if mu.Delivered != 7 || mu.Reserved != 3 || mu.TotalFen != 20_20 || !slices.Equal(mu.MissingNodes, missing) ||
			mu.Partial != wantPartial.Partial || mu.Remaining != -1 {
			t.Errorf("GET /v1/usage: %+v", mu)
		}
		var bill BillLine
		e.must(http.StatusOK, "", "GET", "/v1/bills?month=2026-10", g1admin, nil, &bill)
		if bill.Delivered != 7 || bill.Pending != 3 || bill.Purged != 1 || bill.TotalYuan != "20.20" ||
			bill.Partial != wantPartial.Partial || !slices.Equal(bill.MissingNodes, missing) {
			t.Errorf("GET /v1/bills: %+v", bill)
		}
		var lines []BillLine
		e.must(http.StatusOK, "", "GET", "/admin/v1/bill?month=2026-10", opsToken, nil, &lines)
		if len(lines) != 2 || lines[0].Enterprise != "G1" || lines[0].Delivered != 7 || lines[0].TotalFen != 20_20 ||
			lines[1].Enterprise != "G9" || lines[1].Delivered != 2 || lines[1].Error == "" {
			t.Fatalf("GET /admin/v1/bill: %+v", lines)
		}
		for _, l := range lines {
			if l.Partial != wantPartial.Partial || !slices.Equal(l.MissingNodes, missing) {
				t.Errorf("GET /admin/v1/bill: %s: %+v, want %+v", l.Enterprise, l.Missing, wantPartial)
			}
		}
		var d EnterpriseDetail
		e.must(http.StatusOK, "", "GET", "/admin/v1/enterprises/G1?month=2026-10", opsToken, nil, &d)
		if d.Usage.Charged != 7 || d.Usage.Reserved != 3 || d.Usage.Partial != wantPartial.Partial ||
			!slices.Equal(d.Usage.MissingNodes, missing) {
			t.Errorf("GET /admin/v1/enterprises/G1: usage %+v", d.Usage)
		}
	}

	t.Run("complete", func(t *testing.T) {
		peers.set(nil, nil)
		check(t, nil)
		want := []string{"2026-10/G1", "2026-10/G1", "2026-10/", "2026-10/G1"}
		if got := peers.questions(); !slices.Equal(got, want) {
			t.Errorf("peers asked %q, want %q", got, want)
		}
		// A complete answer has no partial key at all.
		_, body := e.call("GET", "/admin/v1/bill?month=2026-10", opsToken, nil, nil)
		if strings.Contains(string(body), "partial") || strings.Contains(string(body), "missing_nodes") {
			t.Errorf("complete bill mentions partial: %s", body)
		}
	})
	t.Run("partial", func(t *testing.T) {
		peers.set([]uint16{3}, nil)
		check(t, []uint16{3})
		_, body := e.call("GET", "/admin/v1/bill?month=2026-10&enterprise=G1", opsToken, nil, nil)
		if !strings.Contains(string(body), `"partial":true,"missing_nodes":[3]`) {
			t.Errorf("partial bill: %s", body)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		peers.set(nil, errors.New("etcd unreachable"))
		for _, c := range []struct{ path, token string }{
			{"/v1/usage", g1admin}, {"/v1/bills?month=2026-10", g1admin},
			{"/admin/v1/bill?month=2026-10", opsToken}, {"/admin/v1/enterprises/G1", opsToken},
		} {
			e.must(http.StatusServiceUnavailable, "unavailable", "GET", c.path, c.token, nil, nil)
		}
	})
}
