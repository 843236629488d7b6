package api

import (
	"context"
	"slices"

	"github.com/qxtd/qxtd/webhook"
)

// Receipt webhooks in a cluster. Each node keeps and pushes the receipts of
// the messages it accepted, so an enterprise's waiting receipts are spread
// over the nodes' stores. With Config.PeerHooks set, the status (GET
// /v1/receipt-webhook, the receipts of GET /admin/v1/enterprises/{code})
// sums every node's, and "post the waiting receipts now" (POST
// /v1/receipt-webhook/retry, …/receipt-retry) is done by every node for its
// own. A node that cannot be asked is named in missing_nodes: its receipts
// are not counted, nor made due. Replies pushed to a reply_url are kept
// and pushed by the node that received them: their status (reply_status,
// the replies of the enterprise detail) comes in the same answers and is
// summed the same way, and their retry-now ("kind": "reply") asks every
// node as the receipts' does.

// PeerHooks is the other nodes' receipt webhooks, in a cluster
// (Config.PeerHooks; the daemon implements it over the peer protocol). nil:
// a node of its own, whose store has all the receipts.
type PeerHooks interface {
	// Self is this node's id.
	Self() uint16
	// PeerHookStatus returns enterprise's receipt webhooks on every other
	// live node (sorted by node), and the ids of the nodes that hold a
	// store but were not asked or did not answer (sorted; nil when none).
	// An error means not even that is known.
	PeerHookStatus(ctx context.Context, enterprise string) ([]NodeReceiptStatus, []uint16, error)
	// PeerHookRetry asks every other live node to make enterprise's
	// receipts (with reply, its replies) that wait for a later retry due
	// now; what each did (sorted by node) and the nodes not asked or not
	// answering, as PeerHookStatus: a node that cannot be asked about
	// replies (older than reply webhooks) is among the latter.
	PeerHookRetry(ctx context.Context, enterprise string, reply bool) ([]NodeReceiptRetry, []uint16, error)
}

// hookStatus is enterprise code's ReceiptStatus of its receipts and of its
// replies: this node's, plus the other nodes' in a cluster (one question a
// node for both). What cannot be read is left out and said (the settings
// are still worth answering): a node whose replies' part is unknown (an
// error, or a node older than reply webhooks) is missing from the replies'
// status only.
func (s *Server) hookStatus(ctx context.Context, code string) (receipts, replies ReceiptStatus) {
	local, err := s.localReceiptStatus(code)
	if err != nil {
		s.log.Error("receipt status", "enterprise", code, "err", err)
	}
	if s.cfg.PeerHooks == nil {
		receipts.Partial = err != nil
		receipts.ReceiptCounts, receipts.Recent = local.ReceiptCounts, local.Recent
		if local.Replies == nil {
			replies.Partial = true
		} else {
			replies.ReceiptCounts, replies.Recent = local.Replies.ReceiptCounts, local.Replies.Recent
		}
		return receipts, replies
	}
	local.Node = s.cfg.PeerHooks.Self()
	var rcpt, rply []NodeReceiptStatus
	var rcptMissing, rplyMissing []uint16
	if err != nil {
		rcptMissing = append(rcptMissing, local.Node)
	} else {
		rcpt = append(rcpt, local)
	}
	peers, missing, perr := s.cfg.PeerHooks.PeerHookStatus(ctx, code)
	if perr != nil {
		s.log.Warn("receipt status without the other nodes'", "enterprise", code, "err", perr)
	}
	rcpt = append(rcpt, peers...)
	rcptMissing = append(rcptMissing, missing...)
	rplyMissing = append(rplyMissing, missing...)
	for _, n := range append(slices.Clone(peers), local) { // peers may be a cached answer: not appended to
		if n.Replies == nil {
			rplyMissing = append(rplyMissing, n.Node)
			continue
		}
		p := *n.Replies
		p.Node, p.Replies = n.Node, nil
		rply = append(rply, p)
	}
	for i := range rcpt {
		rcpt[i].Replies = nil // shown in the replies' status
	}
	return sumNodes(rcpt, rcptMissing, perr != nil), sumNodes(rply, rplyMissing, perr != nil)
}

// sumNodes is the status of the nodes' parts: the counts summed, the
// earliest due, the latest POSTs with their node, the nodes missing; with
// partial, or when a node is missing, Partial.
func sumNodes(nodes []NodeReceiptStatus, missing []uint16, partial bool) ReceiptStatus {
	st := ReceiptStatus{Nodes: nodes}
	slices.SortFunc(st.Nodes, func(a, b NodeReceiptStatus) int { return int(a.Node) - int(b.Node) })
	st.MissingNodes = missing
	slices.Sort(st.MissingNodes)
	st.Partial = partial || len(st.MissingNodes) > 0
	for _, n := range st.Nodes {
		st.Pending += n.Pending
		st.PendingMore = st.PendingMore || n.PendingMore
		st.Retrying += n.Retrying
		if n.FirstDueAt != nil && (st.FirstDueAt == nil || n.FirstDueAt.Before(*st.FirstDueAt)) {
			st.FirstDueAt = n.FirstDueAt
		}
		for _, p := range n.Recent {
			p.Node = n.Node
			st.Recent = append(st.Recent, p)
		}
	}
	// The latest POSTs of all the nodes, newest first.
	slices.SortStableFunc(st.Recent, func(a, b ReceiptPost) int { return b.At.Compare(a.At) })
	st.Recent = st.Recent[:min(len(st.Recent), webhook.RecentPosts)]
	if len(st.Recent) > 0 {
		last := st.Recent[0]
		st.Last = &last
	}
	return st
}

// clusterRetry completes this node's retry-now of receipts, or of replies
// (done already: local), with the other nodes', in a cluster.
func (s *Server) clusterRetry(ctx context.Context, code string, reply bool, local NodeReceiptRetry) ReceiptWebhookRetry {
	out := ReceiptWebhookRetry{Kind: kindName(reply), Rescheduled: local.Rescheduled, More: local.More}
	if s.cfg.PeerHooks == nil {
		return out
	}
	local.Node = s.cfg.PeerHooks.Self()
	out.Nodes = []NodeReceiptRetry{local}
	peers, missing, err := s.cfg.PeerHooks.PeerHookRetry(ctx, code, reply)
	if err != nil {
		s.log.Warn(kindPlural(reply)+" made due now on this node only", "enterprise", code, "err", err)
		out.Partial = true
	}
	for _, p := range peers {
		out.Rescheduled += p.Rescheduled
		out.More = out.More || p.More
	}
	out.Nodes = append(out.Nodes, peers...)
	slices.SortFunc(out.Nodes, func(a, b NodeReceiptRetry) int { return int(a.Node) - int(b.Node) })
	out.MissingNodes = missing
	out.Partial = out.Partial || len(missing) > 0
	return out
}
