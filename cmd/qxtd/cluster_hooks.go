package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/webhook"
)

// Receipt webhooks across the nodes: each node keeps and pushes the
// receipts of the messages it accepted (and the replies it received), so
// an enterprise's status sums every node's and its "post the waiting
// receipts (or replies) now" asks every node (api.PeerHooks over the peer
// protocol's /peer/v1/receipt-hooks and /peer/v1/reply-hooks/retry).

// peerHooksBackend is peerUsageBackend that also answers the other nodes'
// questions about this node's receipt webhooks (cluster.PeerHooksBackend).
type peerHooksBackend struct {
	peerUsageBackend
	hooks *webhook.Sender
	log   *slog.Logger
}

var _ cluster.PeerHooksBackend = peerHooksBackend{}

func (b peerHooksBackend) HookStatus(_ context.Context, enterprise string) (cluster.PeerHookStatus, error) {
	st, err := b.hooks.Status(enterprise)
	if err != nil {
		return cluster.PeerHookStatus{}, err
	}
	out := peerStatusOf(st)
	if rst, err := b.hooks.ReplyStatus(enterprise); err != nil {
		b.log.Error("reply status for another node", "enterprise", enterprise, "err", err) // it names this node missing
	} else {
		r := peerStatusOf(rst)
		out.Replies = &r
	}
	return out, nil
}

// peerStatusOf is a webhook status on the wire, in the API's terms.
func peerStatusOf(st webhook.Status) cluster.PeerHookStatus {
	out := cluster.PeerHookStatus{Pending: st.Pending, More: st.More, Retrying: st.Retrying}
	if !st.FirstDue.IsZero() {
		out.FirstDue = &st.FirstDue
	}
	for _, o := range st.Recent {
		p := api.ReceiptPostOf(o) // the API's view, on the wire in the peer protocol's terms
		out.Recent = append(out.Recent, cluster.PeerHookPost{At: p.At, URL: p.URL, Receipts: p.Receipts, Replies: p.Replies, Delivered: p.Delivered,
			Status: p.Status, DurationMS: p.DurationMS, Err: p.Error, FailingSince: p.FailingSince})
	}
	return out
}

// nodeStatusOf is another node's answer in the API's terms.
func nodeStatusOf(id uint16, st cluster.PeerHookStatus) api.NodeReceiptStatus {
	n := api.NodeReceiptStatus{Node: id}
	n.Pending, n.PendingMore, n.Retrying, n.FirstDueAt = st.Pending, st.More, st.Retrying, st.FirstDue
	for _, p := range st.Recent {
		n.Recent = append(n.Recent, api.ReceiptPost{At: p.At, URL: p.URL, Receipts: p.Receipts, Replies: p.Replies, Delivered: p.Delivered,
			Status: p.Status, DurationMS: p.DurationMS, Error: p.Err, FailingSince: p.FailingSince})
	}
	if len(n.Recent) > 0 {
		n.Last = &n.Recent[0]
	}
	if st.Replies != nil {
		r := nodeStatusOf(id, *st.Replies)
		r.Replies = nil
		n.Replies = &r
	}
	return n
}

func (b peerHooksBackend) HookRetry(ctx context.Context, enterprise string, reply bool) (cluster.PeerHookRetry, error) {
	retry, what := b.hooks.RetryNow, "receipts"
	if reply {
		retry, what = b.hooks.RetryRepliesNow, "replies"
	}
	n, more, err := retry(ctx, enterprise)
	if errors.Is(err, webhook.ErrRetryBusy) {
		return cluster.PeerHookRetry{Busy: true}, nil
	}
	if err == nil {
		b.log.Info(what+" made due now", "enterprise", enterprise, "asked_by_node", cluster.PeerNode(ctx),
			what, n, "more", more)
	}
	return cluster.PeerHookRetry{Rescheduled: n, More: more}, err
}

// hookStatusTTL is how long the other nodes' answers about an
// enterprise's receipts are kept: a member reloading the page, or
// scripting GET /v1/receipt-webhook in a loop, asks the other nodes at
// most once in it per enterprise, so it cannot crowd their peer listeners
// (16 requests at once, receipts matching among them).
const hookStatusTTL = time.Second

// hookStatusWait bounds the wait for the other nodes' part of a status: a
// node that does not answer by then is named missing, so that one hung
// node does not hold every status page for the peer timeout (10 s).
const hookStatusWait = 3 * time.Second

// clusterHooks is api.PeerHooks: it asks every other node with a store, in
// parallel.
type clusterHooks struct {
	node   *cluster.Node
	client *cluster.PeerClient
	log    *slog.Logger

	now func() time.Time // time.Now; tests move it

	mu     sync.Mutex
	status map[string]*hookStatusEntry // by enterprise: bounded by the enterprises
}

// hookStatusEntry is an enterprise's last status of the other nodes; its mu
// makes concurrent askers wait for one round of questions.
type hookStatusEntry struct {
	mu      sync.Mutex
	at      time.Time
	nodes   []api.NodeReceiptStatus
	missing []uint16
}

var _ api.PeerHooks = (*clusterHooks)(nil)

func (d *daemon) clusterHooks(cfg *Config) *clusterHooks {
	return &clusterHooks{node: d.cluster.node, log: d.log.With("component", "cluster"),
		client: cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP),
		status: make(map[string]*hookStatusEntry), now: time.Now}
}

func (h *clusterHooks) Self() uint16 { return h.node.ID() }

func (h *clusterHooks) entry(enterprise string) *hookStatusEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.status[enterprise]
	if e == nil {
		e = &hookStatusEntry{}
		h.status[enterprise] = e
	}
	return e
}

func (h *clusterHooks) PeerHookStatus(ctx context.Context, enterprise string) ([]api.NodeReceiptStatus, []uint16, error) {
	e := h.entry(enterprise)
	e.mu.Lock()
	defer e.mu.Unlock()
	if h.now().Sub(e.at) < hookStatusTTL {
		return e.nodes, e.missing, nil
	}
	var (
		mu    sync.Mutex
		nodes []api.NodeReceiptStatus
	)
	missing, err := askOthers(ctx, h.node, h.log, "receipt webhook status", func(ctx context.Context, id uint16, peerURL string) error {
		ctx, cancel := context.WithTimeout(ctx, hookStatusWait)
		defer cancel()
		st, err := h.client.HookStatus(ctx, peerURL, enterprise)
		if err != nil {
			return err
		}
		n := nodeStatusOf(id, st)
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	e.at, e.nodes, e.missing = h.now(), nodes, missing
	return nodes, missing, nil
}

func (h *clusterHooks) PeerHookRetry(ctx context.Context, enterprise string, reply bool) ([]api.NodeReceiptRetry, []uint16, error) {
	var (
		mu    sync.Mutex
		nodes []api.NodeReceiptRetry
	)
	what := "receipts due now"
	if reply {
		what = "replies due now"
	}
	missing, err := askOthers(ctx, h.node, h.log, what, func(ctx context.Context, id uint16, peerURL string) error {
		res, err := h.client.HookRetry(ctx, peerURL, enterprise, reply)
		if err != nil {
			return err // a node older than reply webhooks too (404): missing, its replies untouched
		}
		mu.Lock()
		nodes = append(nodes, api.NodeReceiptRetry{Node: id, Rescheduled: res.Rescheduled, More: res.More, Busy: res.Busy})
		mu.Unlock()
		return nil
	})
	e := h.entry(enterprise) // the next status asks again
	e.mu.Lock()
	e.at = time.Time{}
	e.mu.Unlock()
	return nodes, missing, err
}
