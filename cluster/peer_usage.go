package cluster

// Usage across nodes. Each node keeps its own message store, and with it
// the usage counters of the messages it accepted: an enterprise's month is
// spread over the nodes' stores, and a bill is their sum. A node answers
// its counters on
//
//	GET /peer/v1/usage?month=2006-01[&enterprise=E]
//	                              → {"month":M,"usage":[PeerUsage…]}
//	                                (404 if the backend is not a PeerUsageBackend)
//
// and the stores of the cluster are registered in etcd, without a lease,
// so that a node that is down is still known to hold rows:
//
//	stores/<node>                 {"name":…,"since":…}, put by RegisterStore
//
// A bill sums this node's usage and every other registered store's; a
// registered node that is not live, or does not answer, makes the sum
// partial (its ids are named). A node retired for good leaves its key:
// its rows are still unbilled elsewhere; delete the key (ForgetStore, or
// etcdctl del <prefix>/stores/<id>) once its months are billed.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// PeerUsage is one enterprise's segment counters of one billing month on
// one node (queue.EnterpriseUsage on the wire).
type PeerUsage struct {
	Enterprise    string `json:"enterprise"`
	Reserved      int64  `json:"reserved"`       // accepted, no final outcome yet
	Charged       int64  `json:"charged"`        // delivered: billable
	PurgedCharged int64  `json:"purged_charged"` // of Charged, of messages retention deleted
}

// PeerUsageBackend is the optional part of a PeerBackend that answers
// GET /peer/v1/usage.
type PeerUsageBackend interface {
	// Usage returns the node's counters of month ("2006-01"), of every
	// enterprise with traffic in it, or of enterprise only if not "".
	Usage(ctx context.Context, month, enterprise string) ([]PeerUsage, error)
}

type usageResponse struct {
	Month string      `json:"month"`
	Usage []PeerUsage `json:"usage"`
}

// usageRoutes registers the usage endpoint if backend answers it.
func (s *peerServer) usageRoutes() {
	if ub, ok := s.backend.(PeerUsageBackend); ok {
		s.mux.HandleFunc("GET /peer/v1/usage", func(w http.ResponseWriter, r *http.Request) { s.usage(w, r, ub) })
	}
}

func (s *peerServer) usage(w http.ResponseWriter, r *http.Request, ub PeerUsageBackend) {
	q := r.URL.Query()
	month := q.Get("month")
	if t, err := time.Parse("2006-01", month); err != nil || t.Format("2006-01") != month {
		http.Error(w, "month: want YYYY-MM", http.StatusBadRequest)
		return
	}
	us, err := ub.Usage(r.Context(), month, q.Get("enterprise"))
	if err != nil {
		s.log.Error("peer usage", "node", PeerNode(r.Context()), "month", month, "err", err)
		http.Error(w, "usage unavailable", http.StatusInternalServerError)
		return
	}
	if us == nil {
		us = []PeerUsage{}
	}
	writeJSON(w, usageResponse{Month: month, Usage: us})
}

// Usage asks the node at peerURL for its counters of month (of enterprise
// only, if not ""). An error means the node's usage is unknown.
func (c *PeerClient) Usage(ctx context.Context, peerURL, month, enterprise string) ([]PeerUsage, error) {
	v := url.Values{"month": {month}}
	if enterprise != "" {
		v.Set("enterprise", enterprise)
	}
	data, err := c.do(ctx, http.MethodGet, peerURL, "/peer/v1/usage?"+v.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("cluster: usage of %s at %s: %w", month, peerURL, err)
	}
	var resp usageResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("cluster: usage of %s at %s: answer: %w", month, peerURL, err)
	}
	if resp.Month != month {
		return nil, fmt.Errorf("cluster: usage of %s at %s: answered month %q", month, peerURL, resp.Month)
	}
	return resp.Usage, nil
}

// storeRecord is the value of stores/<node>.
type storeRecord struct {
	Name  string    `json:"name"`
	Since time.Time `json:"since"`
}

func (n *Node) storeKey(id uint16) string { return n.key("stores", strconv.Itoa(int(id))) }

// RegisterStore records in etcd, without a lease, that this node id has a
// message store whose rows bills must count (idempotent: the first
// registration's time stays).
func (n *Node) RegisterStore(ctx context.Context) error {
	key := n.storeKey(n.cfg.NodeID)
	val, _ := json.Marshal(storeRecord{Name: n.cfg.Name, Since: time.Now().UTC().Truncate(time.Second)})
	_, err := n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	if err != nil {
		return fmt.Errorf("cluster: register store %s: %w", key, err)
	}
	return nil
}

// ForgetStore removes node id's registration: bills no longer wait for
// its rows. For a node retired for good, once its months are billed.
func (n *Node) ForgetStore(ctx context.Context, id uint16) error {
	if _, err := n.cli.Delete(ctx, n.storeKey(id)); err != nil {
		return fmt.Errorf("cluster: forget store %d: %w", id, err)
	}
	return nil
}

// Stores returns the ids of every registered store, this node's included,
// sorted.
func (n *Node) Stores(ctx context.Context) ([]uint16, error) {
	prefix := n.key("stores") + "/"
	resp, err := n.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("cluster: list stores: %w", err)
	}
	out := make([]uint16, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id, err := strconv.ParseUint(string(kv.Key[len(prefix):]), 10, 16)
		if err != nil || id == 0 {
			continue // not one of ours
		}
		out = append(out, uint16(id))
	}
	slices.Sort(out)
	return out, nil
}
