// Package webhook pushes delivery receipts to HTTP senders (receipt
// webhooks, like Kannel's dlr-url and Jasmin's HTTP receipts). A message
// stored with a ReceiptURL gets a key in the queue's hook bucket in the
// commit that makes it final (queue/hooks.go); a Sender reads those keys
// and POSTs one JSON Receipt per message, or, to an enterprise that takes
// them in batches (Config.Batch: its receipt_batch), a Batch of up to that
// many receipts due at once for the same URL. A batch is never waited for:
// it holds what is due when a worker is free, so batches grow only when
// receipts come faster than POSTs one at a time would deliver them.
//
// The Sender pushes replies (MO) too: an MO stored with a reply_url
// (queue/moreplies.go) is POSTed as one JSON Reply (or, with the
// enterprise's reply_batch above 1, a ReplyBatch of those due at once),
// signed and retried as a receipt is, within the same bounds (replies.go).
//
// # Basics
//
// The body is a Receipt as JSON (a Batch for batches). It is signed with HMAC-SHA256 under the
// enterprise's receipt secret over the text
//
//	<X-Qxtd-Timestamp> "." <body>
//
// (the decimal Unix seconds of the header, a full stop, then the body bytes
// exactly as sent), and the signature goes in X-Qxtd-Signature as
// "sha256=" and the lowercase hex digest. A receiver recomputes it, compares
// in constant time and refuses timestamps far from its clock (replay). An
// enterprise without a secret gets unsigned receipts (no signature header).
// For a day after its secret is replaced (webhooks.secret_overlap),
// the old secret signs too, into X-Qxtd-Signature-Previous
// (Config.Previous): a receiver that checks either header against the
// secret it has keeps accepting receipts while it switches to the new one.
//
// Any 2xx answer is a delivery (of every receipt of a batch). Anything else (an error status, a timeout,
// a refused connection, a refused address) is tried again, each receipt
// of a batch on its own, after an exponential backoff (Config.Backoff doubled per attempt up to
// Config.MaxBackoff); a receipt still undelivered Config.MaxAge after the
// message became final is given up and counted.
//
// # Invariants
//
//   - At-least-once: a receipt leaves the store only by AckHook after a 2xx
//     or when given up. A crash between the POST and the AckHook posts it
//     again; receivers deduplicate by id.
//   - Bounded: at most Config.Workers POSTs in flight (receipts and
//     replies together), at most Config.PerEnterprise of them for one
//     enterprise, so one enterprise's
//     dead endpoint cannot take every worker; each POST ends within
//     Config.Timeout. A POST answered 2xx frees its worker and waits for
//     the acker, which records deliveries many to a store operation; at
//     most Config.Workers wait, then a worker keeps its slot until there
//     is room. So memory holds at most about three times Config.Workers
//     POSTs' receipts, a POST at most its enterprise's batch (MaxBatch):
//     an enterprise's POSTs in flight hold at most Config.PerEnterprise
//     times its batch, and a pass reads at most 4,096 receipts of one
//     enterprise, only those of the POSTs it may start. The store is the
//     buffer. Sending SMS never waits for this package.
//   - Reads scale with what is due, not with what is pending: after each
//     commit that queues receipts (HooksReady names their enterprises)
//     and each POST that ends, the sender reads only the enterprises that
//     may have a receipt due now; every Config.Poll it reads every
//     enterprise with one pending, which is where a retry that came due
//     is found (so within Poll of its time). A receipt whose retry,
//     give-up or delivery the store cannot record (a full disk) waits
//     for that pass too: posted again once a Poll, not in a loop.
//   - At most Config.Workers keep-alive connections are kept idle,
//     Config.PerEnterprise to one host: receipts to a busy endpoint reuse
//     their connections.
//   - Every goroutine belongs to Run's context; Run returns after they end.
//   - What became of an enterprise's last RecentPosts POSTs is kept in
//     memory (outcomes.go) for its status (Sender.Status: the API's GET
//     /v1/receipt-webhook) and for
//     qxtd_receipt_webhook_failing_since_seconds{enterprise} (and, of its
//     POSTs of replies, qxtd_reply_webhook_failing_since_seconds), which
//     has a series only for an enterprise whose last POST failed. That is
//     bounded by the enterprises that had receipts since the start, each
//     with RecentPosts outcomes of at most a URL (one copy while it does
//     not change) and 300 bytes of error.
//
// # Manual actions
//
// An enterprise's admin, or its account manager, can send one test
// receipt (Sender.Test: one at a time an enterprise, 10 a minute, 4 in
// the daemon) and make the receipts that wait out a backoff due now
// (Sender.RetryNow: once a minute an enterprise, at most 10,000 a call,
// 1,000 a store operation), or its replies (Sender.RetryRepliesNow: the
// same bounds, its own minute); manual.go.
//
// # Caveats (SSRF)
//
// A receipt_url is chosen by a customer, so the daemon would otherwise
// POST wherever it is told — its own admin API on loopback, a cloud
// metadata address, the operator's internal network. Unless
// Config.AllowPrivate is set (configuration webhooks.allow_private,
// default false), the address each connection goes to is checked after
// name resolution, at dial time (so DNS rebinding does not pass), and
// loopback, private (RFC 1918, fc00::/7), link-local, unspecified and
// multicast addresses are refused. Proxies from the environment are not
// used. Only http and https URLs are accepted when a URL is set
// (policy.CheckReceiptURL).
package webhook
