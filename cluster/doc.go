// Package cluster lets N qxtd nodes work as one gateway, coordinated through
// etcd (go.etcd.io/etcd/client/v3). A qxtd without etcd never imports it
// and works alone as before.
//
// # Basics
//
// A node Joins with a unique NodeID: it takes an etcd lease (TTL, default
// 10 s) kept alive by a concurrency.Session, and publishes itself under
// members/<id>, attached to that lease. Everything a node holds for the
// cluster (its member key, its bind slots, the free part of its quota
// claims, its leaderships) hangs on the lease, so a node that dies lets go
// of all of it when the lease expires, and one that closes (Close revokes
// the lease) lets go at once.
//
// # Key layout
//
// All keys are under Config.Prefix (default "/qxtd/"):
//
//	members/<id>                     JSON Member; lease. The live members.
//	slots/<name>/<i>                 holder's node id; lease. One per held bind of a carrier, i < total.
//	quota/<month>/<ent>/rev          bumped by every grant: the compare-and-swap guard.
//	quota/<month>/<ent>/used/<id>    no lease: the node's usage at its last grant.
//	quota/<month>/<ent>/free/<id>    lease: the unspent part of the node's block.
//	leader/<name>/<lease>            a concurrency.Election; lease.
//
// The replica (data/, sessions/) and the node-to-node peer protocol
// document their keys in their own files.
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
//   - A quota limit is never exceeded by grants: Σ used + Σ free ≤ limit,
//     as every grant reads the month's keys in one Range and writes in a
//     txn guarded by rev's ModRevision; a node charges only up to its claim.
//   - At most one node runs a leadership's function at a time: Close ends
//     the function before it revokes the lease, and a leader whose
//     keepalive is unanswered for TTL/2 steps down before etcd can expire
//     its lease and elect another (this assumes clocks run at about the
//     same rate, not that they agree).
//
// # Caveats
//
//   - A node cut off from etcd keeps spending its quota claim until its
//     last answered keepalive is TTL/2 old, then only up to its used part;
//     its slots and leaderships end when its keepalive ends (Node.Lost),
//     which can take up to TTL: a partitioned node may keep a bind up to
//     that long while another node takes the slot after the lease expired.
//   - When a node dies, its free part returns to the others but what it
//     charged from it since its last grant is not in its used key: the
//     cluster may then overshoot a limit by that much (at most one block,
//     and near the limit at most a quarter of what remained). The same
//     node coming back (same id and store) calls Grow with its true usage,
//     which counts it again, so the error does not accumulate. Making it
//     exact would cost an etcd write per message, which the claim design
//     exists to avoid.
//   - etcd requests per message: about 2 per block of a quota claim (one
//     Range, one Txn); nothing per message otherwise.
//   - A Quota grant never lowers the node's own used+free (goroutines may
//     spend under the old claim while it runs); only Shrink gives back.
//   - The member view (Members, Share) follows a watch: it lags etcd by an
//     event, and each node sees a change at its own moment.
package cluster
