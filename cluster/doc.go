// Package cluster lets N qxtd nodes work as one gateway, coordinated through
// etcd (go.etcd.io/etcd/client/v3). A qxtd without etcd never imports it
// and works alone as before.
//
// # Basics
//
// A node Joins with a unique NodeID: it takes an etcd lease (TTL, default
// 10 s) kept alive by a concurrency.Session, and publishes itself under
// members/<id>, attached to that lease. Everything a node holds for the
// cluster (its member key, its bind slots, the unpublished free part of its
// quota claims, its leaderships) hangs on the lease, so a node that dies lets go
// of all of it when the lease expires, and one that closes (Close revokes
// the lease) lets go at once.
//
// # Key layout
//
// All keys are under Config.Prefix (default "/qxtd/"):
//
//	members/<id>                     JSON Member; lease. The live members.
//	slots/<name>/<i>                 holder's node id; lease. One per held bind of a carrier, i < total.
//	quota/<month>/<ent>/rev          bumped by every grant from the pool: the compare-and-swap guard.
//	quota/<month>/<ent>/used/<id>    no lease: P, the node's published watermark; it never spends beyond.
//	quota/<month>/<ent>/free/<id>    lease: F, held by the node, unpublished, so unspent.
//	leader/<name>/<lease>            a concurrency.Election; lease.
//
//	data/…, data-rev, data-init       the shared policy and reminder buckets (replica.go, replica_keys.go).
//	sessions/<sha256 of token>       JSON; a lease per session (sessions.go).
//	esmebinds/<id>/<account>         accounts with a receiver bind on node id; lease (esmebinds.go).
//	stores/<id>                      no lease: node id has a store with billable rows (peer_usage.go).
//
// Nodes talk to each other over HTTP on their peer listeners (peer.go and
// its peer_*.go files: receipts, owner routing, relayed submit_sm,
// deliveries to ESMEs bound elsewhere, usage, receipt webhooks), every request signed with
// HMAC-SHA256 of the cluster's secret.
//
// # Invariants
//
//   - Node ids are fenced by the lease: Join creates members/<id> only if
//     no key is there (CreateRevision == 0), so a second process, for
//     example one that adopted a dead node's store on another machine, can
//     take the id only after the first one's lease expired.
//   - The bind cap is never exceeded: a held bind is a slot key, created
//     only if absent and only for an index below total, so at most total
//     keys, hence binds, exist for a name. A bind must close when its
//     Slot's Done is closed.
//   - A quota limit is never exceeded, even when nodes race or die:
//     Σ used + Σ free ≤ limit, as every grant from the pool is computed
//     from the month's keys as of one revision and written in a txn
//     guarded by rev's ModRevision; a node charges only up to its claim,
//     its used key P (moving a step from its free key to it is one txn
//     that proves the free key, so the lease, still there). What returns
//     to the pool when a lease expires is F, which nobody spent.
//   - At most one node runs a leadership's function at a time: Close ends
//     the function before it revokes the lease, and a leader whose
//     keepalive is unanswered for TTL/2 steps down before etcd can expire
//     its lease and elect another (this assumes clocks run at about the
//     same rate, not that they agree).
//
// # Caveats
//
//   - A node cut off from etcd keeps spending its quota claim, its used
//     key P, which stays counted without a lease; growing it needs etcd. Its
//     slots and leaderships end once its keepalive has gone unanswered for
//     TTL/2, before etcd can expire its lease and give them to another node
//     (Slot.Done, the leader's context), so the carrier never sees its bind
//     and the taker's at once — as long as the clocks run at about the same
//     rate (a node paused for longer than TTL/2, e.g. a VM frozen, sees its
//     own pause only when it resumes).
//   - Quotas are conservative when a node dies: its P stays counted, and
//     P may be ahead of what it spent by one step (half its current block,
//     up to MaxBlock/2, or the need if larger; near the limit half of the
//     quarter it took). Nobody
//     spends that part until the node comes back (same id and store): its
//     Grow with its true usage finds its P to spend again, and its Shrink
//     lowers P to that usage and returns the rest. A node that never comes
//     back leaves it counted until the month ends (or an operator deletes
//     its used key, knowing what it spent).
//   - etcd requests per quota step: one Txn, whether the step comes from
//     the node's free part or takes a block from the pool with it, plus a
//     Range when another node took from the pool since this node last
//     looked (the failed Txn's Else returns it). Measured by
//     TestQuotaRequests on one node: about 4 per 1,000 segments at the
//     default block, under 1 once blocks doubled. Nothing per message.
//   - A Quota grant never lowers the node's P (goroutines may spend under
//     the old claim while it runs); only Shrink gives back.
//   - The member view (Members, Share) follows a watch: it lags etcd by an
//     event, and each node sees a change at its own moment.
package cluster
