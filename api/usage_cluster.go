package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/qxtd/qxtd/queue"
)

// Usage in a cluster. Each node's store holds the usage of the messages it
// accepted; an enterprise's month is the sum over the nodes. With
// Config.PeerUsage set, every answer that shows usage or a bill (GET
// /v1/usage, GET /v1/bills, GET /admin/v1/bill, the usage of GET
// /admin/v1/enterprises/{code}) adds the other nodes' counters to this
// node's. When a node's counters are unknown (it is down, or did not
// answer) the answer still comes, with partial: true and missing_nodes
// naming them: its amounts are too low, never to be billed as they are.

// PeerUsage is the other nodes' usage counters, in a cluster (Config.PeerUsage;
// the daemon implements it over the peer protocol). nil: a node of its own,
// whose store has all the usage.
type PeerUsage interface {
	// PeerUsage returns the counters of month ("2006-01") of every
	// enterprise (enterprise "") or of one, summed over every other node
	// that holds a store, and the ids of the nodes whose counters are not
	// in the sum (sorted; nil when the sum is complete). An error means
	// not even that is known.
	PeerUsage(ctx context.Context, month, enterprise string) (sum []queue.EnterpriseUsage, missing []uint16, err error)
}

// Missing marks an answer computed without some nodes' usage, or some
// nodes' messages or replies. It is embedded in BillLine, MonthUsage and
// Usage, and in MessagePage and InboxPage (lists_cluster.go).
type Missing struct {
	// Partial: the usage of the nodes MissingNodes is not in this answer
	// (cluster mode: they are down or did not answer), so its counts and
	// amounts are too low. Ask again once they are back; do not bill it.
	Partial      bool     `json:"partial,omitempty"`
	MissingNodes []uint16 `json:"missing_nodes,omitempty"`
}

func missingOf(missing []uint16) Missing {
	return Missing{Partial: len(missing) > 0, MissingNodes: missing}
}

// usageByMonth returns the counters of month per enterprise (of enterprise
// only, if not ""), this node's plus the other nodes', and the nodes whose
// counters are missing from the sums.
func (s *Server) usageByMonth(ctx context.Context, month, enterprise string) (map[string]queue.EnterpriseUsage, []uint16, error) {
	local, err := s.cfg.Store.UsageByMonth(month)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]queue.EnterpriseUsage, len(local))
	add := func(us []queue.EnterpriseUsage) {
		for _, u := range us {
			if enterprise != "" && u.Enterprise != enterprise {
				continue
			}
			t := out[u.Enterprise]
			t.Enterprise = u.Enterprise
			t.Reserved += u.Reserved
			t.Charged += u.Charged
			t.PurgedCharged += u.PurgedCharged
			out[u.Enterprise] = t
		}
	}
	add(local)
	if s.cfg.PeerUsage == nil {
		return out, nil, nil
	}
	peers, missing, err := s.cfg.PeerUsage.PeerUsage(ctx, month, enterprise)
	if err != nil {
		return nil, nil, &peerUsageError{err}
	}
	add(peers)
	if len(missing) > 0 {
		s.log.Warn("usage without some nodes' counters: answered partial", "month", month, "enterprise", enterprise, "missing_nodes", missing)
	}
	return out, missing, nil
}

// peerUsageError: the other nodes' usage could not be asked for at all.
type peerUsageError struct{ err error }

func (e *peerUsageError) Error() string { return "the other nodes' usage is unknown: " + e.err.Error() }
func (e *peerUsageError) Unwrap() error { return e.err }

// writeUsageErr answers an error of usageByMonth.
func writeUsageErr(w http.ResponseWriter, err error) {
	if pe, ok := errors.AsType[*peerUsageError](err); ok {
		writeError(w, http.StatusServiceUnavailable, "unavailable", pe.Error())
		return
	}
	writeErr(w, err)
}
