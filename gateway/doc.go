// Package gateway joins qxtd's pieces into the SMS gateway: the SMPP
// ingress (it is smpp.Backend), the operator's rules (Policy, adapted
// from package policy by Rules), the text encoder (segment), the durable
// store (queue), the binds to the carrier SMSCs and the receipt router.
// The HTTP API (package api) and the batch sends call Send, Message,
// Cancel and Reschedule; cmd/qxtd builds a Gateway from its
// configuration and starts it.
//
// # The life of one message
//
//  1. In. An ESME's submit_sm (or data_sm, its other form) arrives on a
//     session (ingress.go: Bind, Handle) or an HTTP request calls Send
//     (send.go). The text is
//     decoded from the client's data_coding.
//  2. Checked. Policy.Prepare gives the account as it is now (disabled?
//     enterprise signature?) and the enterprise's monthly segment limit;
//     Policy.Allow takes one token of its rate limit; Policy.Admit checks
//     each recipient (number, network scope, opt-out, whitelist) and names its
//     carrier, which picks the upstream (route). Every refusal is a
//     *policy.Refusal: its reason and command_status come from the one
//     table in package policy; wireError turns it into the pdu.Status of
//     the SMPP answer, api into JSON.
//  3. Encoded. segment.Sign puts the signatures on the text, and
//     segment.Encode splits it for the upstream's options (GSM 7-bit or
//     UCS-2, UDH / SAR / message_payload). build (send.go) makes the
//     queue.Messages.
//  4. Stored. queue.EnqueueLimit commits the messages with the quota
//     check in one group commit (fsync). Only then does the answer go
//     back: submit_sm_resp with our decimal message id, or HTTP 2xx.
//  5. Relayed. The dispatcher (dispatch.go) leases due segments from the
//     store, at most the upstreams' windows (and their RecordingSlots:
//     answered, waiting for the outcome's commit) in flight, one
//     enterprise at most Config.TenantShare of the windows while others
//     have segments due, one upstream at most its own workers, and none
//     to an upstream with no bind up (queue.Store.DueFor: its segments
//     wait in the store, passed by with one seek, so one carrier's
//     outage or slow SMSC holds up no other's); it pauses while the
//     store cannot write.
//     New segments due at once come to it from the commit that stored
//     them (queue.Store.SetDueCallback, a bounded queue: handover.go);
//     it scans the store only when that may hold more (at the start,
//     after a hand-over did not fit, a kick, and every 200 ms for
//     retries and scheduled sends), and sends nothing handed over while
//     a scan is pending, so no segment overtakes an older one, but for
//     those of messages sent with priority (priority_flag, "priority"):
//     a lane of their own, an eighth of the workers an enterprise at
//     most, taken ahead of the backlog whether handed over (takeUrgent)
//     or read back from the store (after a restart, a retry, at a
//     scheduled time, when the lane's hand-over was full), where the
//     flag is stored and each waiting part has a priority due key that
//     a scan reads first (queue.Store.DueSharedAt).
//     Each upstream (upstream.go) keeps its binds, paces each bind
//     (pace.go: cut on throttle, raised per success, under the TPS cap)
//     and records the SMSC's answer durably, trying the record again
//     until it commits: Submitted with the SMSC's id, Retry with a
//     backoff (timeout, connection lost, repeated throttling, the SMSC
//     lost the bind: ESME_RINVBNDSTS, on which the bind is bound again),
//     or Fail. The binds are transceivers, or transmitters beside
//     receivers of their own or the SMSC's outbinds (outbind.go); a text
//     to an SMSC whose data_coding 0x00 is Latin-1 or ASCII is written in
//     it (segment.Alphabet).
//  6. Receipts. A deliver_sm (or data_sm) receipt from the SMSC is
//     matched to its segment by the SMSC's id and stored before its
//     deliver_sm_resp goes out (upstream.go). When the message is final
//     the store calls OnDLRReady with the message as committed, and the
//     router (dlr.go) forwards one receipt per message (per part id for a
//     split message) to the account's receiver or transceiver binds,
//     until an ESME acknowledges it; ReceiptFor builds it from the stored
//     states. The router sends what the store handed over without reading
//     it back, and scans the store (PendingDLRs) only for what it could
//     not take: at a bind's start, after a hand-over overflowed, a
//     delivery failed or an acknowledgement could not be committed, and
//     at least every DLRRetry. While the store cannot commit it sends
//     nothing: an acknowledgement it could not record would bring the
//     receipt back at once, again and again.
//  7. Housekeeping (maintain.go) purges what is past retention and
//     handles messages the ESME split itself (presplit.go): parts are
//     stored one by one, joined by segment.JoinText once complete, and
//     stored as one message by storeAssembled, through the same builder
//     as step 3; a group that never completes is rejected with reason
//     incomplete.
//
// # Files
//
//	gateway.go   Config, New, Start, Stop, Ready, Health
//	policy.go    the Policy boundary, Account, StaticAccounts (demo, tests)
//	rules.go     Rules: Policy over package policy
//	authcache.go AuthCache: known-good rebinds skip bcrypt; slow checks
//	             queued fairly per source address
//	account.go   AccountFor: a policy user as the gateway's Account
//	bindcaps.go  ESME binds up per account and per enterprise, capped
//	ingress.go   the SMPP session: submit_sm, submit_multi, query_sm,
//	             cancel_sm, replace_sm
//	send.go      Send and its message builder
//	answer.go    a send's answer stored with its messages (WithAnswer)
//	presplit.go  messages the ESME split itself
//	outbox.go    Message, Cancel, Reschedule (the scheduled outbox)
//	dispatch.go  due segments from the store to the upstreams
//	handover.go  the bounded queue of what the store hands over at commit
//	upstream.go  one carrier SMSC: binds, answers, receipts in
//	failover.go  since when an upstream has had no bind up, here or (cluster
//	             mode) on any node: route's failover to the next upstream
//	pace.go      each bind's adaptive rate after throttling
//	dlr.go       receipts out to the ESMEs
//	convert.go   receipts whose SMSC id matches only in the other base
//	             (decimal for hex), applied once resp_timeout has passed
//	mo.go        replies (MO) in from the SMSC: routed by service number
//	             and extension, stored, forwarded to the enterprise's binds;
//	             a TD reply opts its sender out (optout.go); one that is
//	             not text kept and passed on as octets
//	moparts.go   long replies the SMSC split: parts stored, then joined
//	             into one reply (at the last part, or at the timeout)
//	moagain.go   the SMSC's resend of a reply whose answer a cut (or the
//	             end of the last run) lost: answered, not stored again
//	maintain.go  retention purge and split-message housekeeping
//	peers.go     cluster mode: receipts another node must match
//	owners.go    cluster mode: query, cancel and replace of another node's message
//	relay.go     cluster mode: receipts and replies for an ESME bound to
//	             another node
//	cluster.go   cluster mode: binds held only with a cluster slot, quotas
//	             spent from this node's claim
//	submitrelay.go  cluster mode: segments sent on another node's bind when
//	             this one holds none of the upstream's
//	metrics.go   the Prometheus series (on an injected registerer)
//
// # Cluster mode
//
// With Config.Peers set, several nodes share the carrier binds, each
// with its own store; message ids carry the node in their top 16 bits
// (queue.Options.NodeID, queue.NodeOf). A receipt that matches nothing
// here is stored as an orphan as on a single node (durable before its
// deliver_sm_resp) and the pusher, woken by each new orphan, offers the
// orphans in batches to every live peer; the owner applies it
// (MatchPeerReceipts, never orphaning it again) and forwards it to its
// ESME like a local receipt. Orphans a peer took are deleted here; the
// others are offered again with a per-orphan backoff (1 s doubling to 30
// s; PeersChanged offers them all at once), so nothing is lost while the
// owner is down, up to Config.OrphanTTL (a day). A local Submitted takes
// a local orphan first. qxtd_dlrs_received_total counts such a receipt
// on both nodes (orphaned here, matched at the owner);
// qxtd_cluster_receipts_forwarded_total{result} counts the offers.
//
// With Config.Owners set, an id that is not here and that another node
// gave is asked of that node: query_sm, cancel_sm, replace_sm and the
// API's FindMessage / Cancel / Reschedule answer with the owner's outcome
// as if it were local (owners.go). An owner that cannot be asked is
// ErrOwnerUnavailable (ESME_RSYSERR): never a "not found".
// With Config.Relay set too, a receipt or reply waiting here for an ESME
// whose receiver is bound to another node only is handed to that node
// (relay.go), which sends it on its bind and confirms after the ESME's
// deliver_sm_resp; it is acknowledged in the store only then. A local
// bind is always preferred.
//
// With Config.Cluster set, upstreams[].binds is the cluster's total: bind
// i of an upstream runs only while i is within this node's share and the
// node holds one of the upstream's slots (cluster.go), and the quota the
// store checks is this node's claim, grown from the cluster's counter when
// the store refuses (enqueueLimited). With Config.SubmitRelay set, a
// node holding no bind of an upstream sends its segments through a node
// that holds one (submitrelay.go), recording the answer as its own.
//
// # Invariants
//
//   - Nothing is acknowledged before the store committed it; nothing in
//     memory grows with the backlog (the store is the buffer, the
//     dispatcher holds at most the windows and recording slots in flight
//     and twice that handed over; a receipt forwarder four windows
//     handed over).
//   - A segment the SMSC accepted is recorded before its worker is
//     freed (and stays in flight, not due, until it is; its window slot
//     is free once answered, and RecordingSlots bounds how many answered
//     ones wait); a receipt is stored before it is acknowledged to the
//     SMSC.
//   - One enterprise never sees another's messages: Message, Cancel,
//     Reschedule and query_sm answer "not found" for them.
//
// # Caveats
//
//   - Send refuses per recipient in its results; its error refuses the
//     whole request (account-level refusals, a text that cannot be
//     encoded, ErrStore).
//   - Every goroutine belongs to the Gateway's context: Stop cancels it
//     and waits.
package gateway
