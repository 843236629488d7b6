// Package queue is qxtd's durable message store and send queue. It keeps
// every accepted message, the parts still to submit, the SMSC ids to match
// delivery receipts (DLRs) against, the final DLRs still to forward to the
// submitting ESME, and each enterprise's monthly segment usage for billing.
// It hides bbolt behind a small API; it imports nothing else of qxtd.
//
// # The state file
//
// The daemon keeps its whole state — the queue's buckets and the policy
// package's — in one bbolt file, so that one Backup is all of it. The file
// is opened once, by OpenDB, and handed to New and to policy.New as peers:
// each creates and owns its buckets, neither reaches into the other's, and
// the caller closes the file after closing both (see Caveats). Open is
// OpenDB and New for a store alone in its file (tests, tools), which it
// then owns and closes. Store.Path names the file; nothing else of bbolt
// leaves the package.
//
// # Durability
//
// Every write method (Enqueue, Submitted, Retry, Fail, ApplyDLR,
// ApplyDLRIfKnown, AckDLR, ExpireSubmitted, PurgeOrphans, DeleteOrphans,
// Purge, and StoreFragment,
// EnqueueAssembled, RejectFragments for messages the client split
// itself: fragments.go) returns nil only after its change is
// committed and fsync'd (unless Options.NoSync): a caller may acknowledge
// upstream (submit_sm_resp, HTTP 2xx, deliver_sm_resp handling) as soon as
// the method returns. Each change, with its index, counter and usage
// updates, is one atomic step: a crash leaves it wholly done or not done.
//
// Writes use group commit. One goroutine owns all writes; each method
// queues an operation (a closure over the write transaction) on a bounded
// channel and waits. The goroutine takes every operation queued (up to
// Options.MaxBatch) and applies them in one bbolt transaction — one fsync —
// then reports each result. An idle loop commits a lone operation at once;
// under load, the operations that arrive during one commit share the next
// (see Stats). Throughput therefore grows with the number of concurrent
// writers: one writer gets one fsync per operation. Options.CommitDelay
// lets a commit of patient operations (Patient: their senders' windows
// have room) wait a little for more (no operation is held back longer
// than the delay, and one that is not patient is committed at once), which
// trades that much latency for fewer commits, and less CPU and fewer disk
// writes, at a moderate steady rate. Options.RecordDelay does the same for
// records alone (Record: the answers already sent or received, which no
// sender waits on), which then ride along with the next operation that
// commits at once.
//
// An operation checks its preconditions before it writes, so its own
// failure (ErrNotFound, ErrState, ErrQuota, ErrOrphansFull, ErrInvalid) leaves nothing
// written and the rest of the batch commits. Any other error in an
// operation (or a panic) rolls the transaction back; that operation fails
// and the others are run again, from scratch, in a new transaction. A
// failed commit (I/O) fails every operation of the batch. Operations
// therefore never act on captured state that a rerun would double.
//
// A failed commit makes Writable false until a commit succeeds; Probe
// commits nothing to find out. Options.CommitFault fails commits on
// purpose, for tests of what a full disk does to the callers.
//
// A commit whose meta page was written and whose sync then failed (an
// I/O error) is what bbolt reads from then on, while the disk may hold
// only the state before it: its operations wait (Options.SyncWait) for
// the empty commit that makes it durable, tried every syncRetry, and
// fail with ErrNotSynced if none syncs in time; the mirrors and
// hand-offs take it as committed at once, and no commit writes a page until
// an empty one that writes only its meta page has synced (syncMeta),
// since bbolt would reuse at once the pages that older state needs; the
// file's other writers (the policy, reminders, a cluster's replica)
// write through Update, which takes part in the same guard, for the
// same reason. Options.SyncFault reports such failures on purpose.
//
// If a caller's context ends while it waits, the method returns ctx.Err()
// at once, but the operation may still commit. An operation whose context
// has ended before its batch starts is skipped.
//
// Reads (Due, DueShared, Get, PendingDLRs, ExportParts, Backup, Check) use read-only
// transactions that run concurrently with the writer; everything they
// return is decoded into fresh memory, never aliasing the database's
// pages. Usage, Counts and DueOf are served from in-memory mirrors that
// the commit goroutine updates after each commit (loaded at Open: usage
// from its bucket, the state counts and the due parts per upstream from
// the meta bucket, which every commit that changes them rewrites; a file
// without them is counted once by a scan: counts.go).
//
// # Life cycle of a part
//
//	Enqueue ──► Accepted ──Submitted──► Submitted ──ApplyDLR──► Delivered / Undeliverable /
//	              │  ▲                     │                    Expired / Rejected / Unknown
//	              │  └─Retry (due later)   └─ExpireSubmitted──► Unknown
//	              └─Fail──► Rejected / Expired / Undeliverable / Unknown
//
// A final state never changes. When the last part of a message becomes
// final and its registered_delivery asks for a receipt (bits 0-1: 1 or 3 =
// always, 2 = on failure only), the message is queued for its Account
// (PendingDLRs) and Options.OnDLRReady(account, messages) is called after
// the commit, with the messages as committed; AckDLR dequeues it. Otherwise DLRForwarded is set at once. In the same commit, a message
// with a ReceiptURL (an HTTP sender's) gets a hook key, due at once: the
// webhook sender reads them per enterprise (DueHooks) and ends each with
// AckHook (delivered or given up: ReceiptDone) or RetryHook (due later).
//
// # Buckets
//
//	msg     id (8 BE)                                → message record (version byte, then fields)
//	due     due time (Unix ns, 8 BE) | id | part (2) → empty   parts Accepted, due-time order
//	udue    upstream 0x00 enterprise 0x00 due time | id | part → empty   the same keys per upstream and enterprise (DueFor); built at Open if missing
//	updue   upstream 0x00 enterprise 0x00 due time | id | part → empty   the udue keys of messages sent with priority, read first (DueFor)
//	        (files from before them had edue and pdue: the same keys without the upstream; Open builds udue and updue and deletes those)
//	wait    submitted time (8 BE) | id | part        → empty   parts Submitted, oldest first
//	smsc    upstream 0x00 canonical SMSC id          → id | part
//	orphan  upstream 0x00 canonical SMSC id          → DLR record, received before its submit_sm_resp
//	dlrout  account 0x00 id                          → empty   final DLRs to forward to the ESME
//	ref     dest                                     → uint16 (2 BE) last concatenation reference
//	usage   enterprise 0x00 "2006-01"                → version | reserved (8 BE) | charged (8 BE)
//	purged  enterprise 0x00 "2006-01"                → version | parts (8 BE) | delivered (8 BE)   deleted by Purge
//	frag    account 0x00 source 0x00 dest 0x00 ref (2) total (1) 0x00 seq (1) → part of a client-split message (fragments.go; version 2 with Priority)
//	fragid  part id (8 BE)                           → frag key
//	fragn   account; 0x00 enterprise; 0x00 for all   → version | pending groups | bytes (an enterprise's: bytes only)
//	alias   part id (8 BE)                           → id of the message the part was reassembled into
//	hook    enterprise 0x00 due time (8 BE) | id     → attempts (uvarint)   receipt webhooks to POST (hooks.go)
//	hookpost enterprise                              → version | count | POSTs: the last POSTs of its receipts and of its replies (hookposts.go)
//	final   seq (8 BE)                               → id | part   parts in the order they became final (final.go)
//	finalpart id | part                              → seq (8 BE)  the same keys, by part; both built at Open if missing
//	mo      id (8 BE)                                → version | JSON: a mobile-originated message (MO, mo.go)
//	moout   enterprise 0x00 id                       → empty   MOs still to forward to the enterprise's ESMEs
//	moin    enterprise 0x00 id                       → empty   the inbox, per enterprise ("" = no enterprise owns it)
//	mohook  enterprise 0x00 due time (8 BE) | MO id  → attempts (uvarint)   reply webhooks to POST (moreplies.go)
//	moparts upstream 0x00 source 0x00 dest 0x00 ref (2) total (1) 0x00 seq (1) → part of a reply the SMSC split, until its reply is joined (moparts.go)
//	mopartn upstream                                 → version | parts (uvarint) | bytes (uvarint)   the upstream's pending reply parts
//	idem    api's Idempotency-Key                    → version | at | enterprise | code | sum | header | body   answers kept for retries (answers.go)
//	jobs    batch job id                             → batch's record of the job (jobs.go)
//	jobchunks job id (a bucket) → chunk (4 BE)        → an answer, as idem's: the rows one gateway call of the job sent (jobs.go)
//	meta    "counts", "duecounts"                    → the state counts and the due parts per upstream (counts.go)
//	        "replies_answered"                       → Unix ns (8 BE): a stop answered every reply stored before (MarkRepliesAnswered), until the next start takes it
//
// Hot paths never scan the store: Due walks the due keys from the first
// (stopping at the first key later than now), DueFor the updue keys
// and then the udue keys in the same way, one seek past an upstream
// without room however many parts it has due, PendingDLRs walks one
// account's dlrout keys, DLR matching is at most three point lookups, and
// every transition is point reads and writes. Account, Enterprise,
// Upstream and Dest are at most 255 bytes and contain no NUL (Enqueue
// refuses them otherwise), so prefixes never collide.
//
// # Invariants (verified by Check)
//
//   - Every MO has its moin key; it has a moout key iff it has an
//     enterprise and AckMO has not run (ForwardedAt zero). StoreMO
//     returns once committed, so the SMSC is answered after; the queue
//     does not resolve owners (the caller sets Enterprise and Account).
//   - An MO has exactly one mohook key iff it has an enterprise and a
//     ReplyURL, and its reply webhook is neither delivered (PostedAt)
//     nor given up (ReplyGaveUp); every mohook key names such an MO of
//     its enterprise. StoreMO writes the key in the MO's commit;
//     PurgeMOs deletes it with the MO.
//   - An MO has a mooptout key iff OptOutPending (an opt-out reply whose
//     opt-out is not yet recorded, which has an enterprise); every
//     mooptout key names an MO. StoreMO writes it in the MO's commit,
//     OptOutsRecorded and PurgeMOs delete it.
//   - Every moparts key names a part of one group; the mopartn counters
//     of an upstream are its parts and their data's octets; a mojoined
//     mark is a group's prefix with a hash of each part (mojoined.go).
//   - Every moparts key and record decodes; each upstream's mopartn
//     record is the count and Data octets of its moparts records, and
//     an upstream without parts has none. StoreMOPart and StoreJoinedMO
//     change both in one commit; StoreJoinedMO stores the joined MO in
//     the commit that deletes its parts.
//   - Every Accepted part has exactly one due key, at its DueAt, and one
//     udue key under its Upstream and Enterprise; every due key names an
//     Accepted part. A message keeps Priority only while a part of it is
//     Accepted; each such part has its udue key in updue too, and every
//     updue key names one. A message without priority has no updue key
//     (its parts cost no more writes than before updue), and its record
//     is version 1.
//   - Every Submitted part has exactly one wait key, at its SubmittedAt;
//     every wait key names a Submitted part.
//   - Every SMSC id a part was accepted under (SMSCID and DupSMSCIDs) is
//     indexed in smsc — for a final part, unless the id was reused for a
//     newer message that Purge has deleted (with its key); every smsc key
//     names a part past Accepted.
//   - A message has a dlrout key iff it is final, a receipt was requested
//     and AckDLR has not run; DLRForwarded is set iff it is final and has
//     no dlrout key.
//   - A message has exactly one hook key iff it is final, has a
//     ReceiptURL and ReceiptDone is not set; the key is under its
//     Enterprise. Purge keeps it until then.
//   - For each enterprise and billing month, reserved = parts not yet final
//     and charged = parts Delivered, over the messages accepted that month,
//     plus the delivered parts Purge deleted (purged bucket); the in-memory
//     mirrors equal the buckets.
//   - Ids come from the msg bucket's sequence: monotonic, never reused.
//     With Options.NodeID n > 0 (cluster mode) new ids (and MO ids, from
//     the mo bucket's sequence) lie in [n<<48, (n+1)<<48): Open raises a
//     lower sequence to n<<48, so ids of different nodes never collide
//     and NodeOf(id) names the owner; ids given before cluster mode keep
//     their values (NodeOf 0). A file whose sequence is past n's range
//     (another node's) is refused.
//     Part ids of client-split messages (fragments.go) come from it too:
//     each names a pending part (fragid) or an alias of one message that
//     lists it in Aliases, never both, never a message id. fragn equals
//     the pending groups and Data bytes counted from frag, per account,
//     per enterprise (the enterprise each part arrived under) and in all;
//     StoreFragment keeps each enterprise within its share of the bytes
//     (FragmentLimits), so one enterprise's incomplete messages cannot
//     fill the pool all share.
//   - Every final part has exactly one final key and one finalpart key,
//     naming each other, numbered by the final bucket's sequence in the
//     transaction that made it final; no other part has one. Numbers are
//     never reused and never above the sequence; the only holes are keys
//     Purge deleted (ExportFinal counts them).
//   - A multi-part message has a non-zero Ref (except one that
//     RejectFragments settled at once: nothing of it is sent); for one destination, Refs
//     are consecutive (wrapping 0xFFFF → 1) and survive restarts, so a
//     reference does not repeat for a recipient while earlier parts may be
//     in flight. Single-part messages have Ref 0.
//
// # Billing
//
// Usage is kept per enterprise and billing month: the month, in
// Asia/Shanghai, of the message's AcceptedAt (see BillingMonth); a DLR
// arriving next month still counts in the month of acceptance. Enqueue
// adds len(Parts) to reserved; a part becoming Delivered moves one segment
// from reserved to charged; any other final state releases one. These
// updates are in the transition's transaction, so they are exact across
// crashes, and a receipt applied twice counts once. EnqueueLimit refuses a
// message (ErrQuota) when reserved + charged + len(Parts) would exceed the
// caller's limit, checked inside the commit, so concurrent senders cannot
// overshoot.
//
// # Matching DLRs
//
// SMSC ids are unique per upstream, so they are indexed under the
// message's Upstream, in canonical form (CanonicalSMSCID: trimmed of white
// space and NULs, lowercased, leading zeros stripped). ApplyDLR looks up
// the canonical id only, and a receipt it does not find is an orphan;
// Submitted takes an orphan under the canonical id only.
//
// SMSCs differ in whether the DLR repeats the id in the same base as
// submit_sm_resp. MatchOrphans looks an orphan up in the other bases: if
// it is all decimal digits, the hex form of its value; if it is all hex
// digits, the decimal form of its value. It must not do so while the
// orphan may still be for an acceptance not recorded yet: an SMSC that
// numbers in hex gives out "5c" and, later, "92", and a receipt for "92"
// that beats its submit_sm_resp would be taken for "5c" (0x5c is 92),
// delivered or failed in its place. So the gateway calls it only for
// orphans older than the upstream's resp_timeout. If an SMSC reuses an
// id, the index moves to the newer part (logged); an orphan that arrived
// more than Options.OrphanMaxAge before the submit_sm_resp is taken to be
// for an earlier message and dropped.
//
// In cluster mode a receipt may reach a node that did not submit its
// part (binds are shared). It is stored as an orphan like any other;
// the gateway lists orphans (Orphans), offers them to the other nodes,
// which apply them with ApplyDLRIfKnown (Unmatched, and nothing stored,
// when they do not know the id either), and deletes what another node
// took (DeleteOrphans: orphans.go). A local Submitted still takes a local
// orphan first; PurgeOrphans still drops what nobody claimed.
//
// Orphans are bounded per upstream (Options.MaxOrphans): an SMSC that
// sends receipts for messages that are not ours must not fill the disk.
// Past the bound ApplyDLR keeps no new one (ErrOrphansFull: the caller
// asks the SMSC to send it again later); a receipt that matches, or one
// whose id is kept already, is taken as before. The counts per upstream
// are kept in memory (counted at Open: about 0.17 s at a million, an
// SMSC flooding us; normally the bucket holds a few) and
// verified by Check. PurgeOrphans reads the orphans in a read
// transaction and deletes in the commit loop only those unchanged since,
// so its walk does not hold up commits.
//
// # What can duplicate
//
// The store never loses an acknowledged message; the price is that a few
// cases can send or report twice:
//
//   - A crash (or kill -9) after the SMSC accepted a part but before
//     Submitted committed leaves the part due: it is sent again after the
//     restart. The recipient may get it twice; billing counts it once (the
//     second id is the one indexed; the first id's DLR stays an orphan and
//     is removed by PurgeOrphans).
//   - A submit_sm whose response timed out, retried, and then answered
//     twice: both ids are indexed (DupSMSCIDs); the first DLR settles the
//     part and the other is a Duplicate. Sent twice, billed once.
//   - Due returns the same parts until Submitted, Retry or Fail moves them:
//     the sender must skip what it has in flight.
//   - Enqueue whose context ended before the commit was reported may have
//     stored the messages; a client that retries creates a second message.
//   - A final DLR forwarded to the ESME but not yet acknowledged with
//     AckDLR (lost deliver_sm_resp, crash, unbind) is returned again by
//     PendingDLRs and forwarded again.
//   - Retry is not idempotent in Attempts (a repeated call counts twice).
//   - A part the sender ended with Fail (validity ran out while a timed-out
//     submit_sm was pending) that the SMSC then turns out to have accepted
//     stays failed: if the SMSC delivers it, it was sent but is not billed.
//
// Everything else is idempotent: Submitted with the same id, Fail with the
// same state, a repeated DLR (Duplicate), a repeated orphan, AckDLR.
//
// # Caveats
//
//   - The file is shared. The queue owns the buckets listed under Buckets
//     and no others; the policy package owns those named "policy_" (its
//     doc lists them), package reminder the one named "reminder_series". Peer writes are plain bbolt transactions that wait
//     for the commit loop's transaction like any writer (and it for
//     them). A Store made by New does not close the file: Close stops the
//     commit loop, later calls return ErrClosed, and the caller closes the
//     file once every store on it is closed.
//   - Options.OnDLRReady and the SetDueCallback function run on the
//     commit goroutine: they must not block and must not call a Store
//     write method. What they get is handed over, not copied: they must
//     not modify it. Both are hints with a Snapshot: a consumer that
//     drops what it gets finds it again by a scan (PendingDLRsAt,
//     DueSharedAt), and one that scanned at or past that snapshot has
//     seen it already.
//   - Get, Due and PendingDLRs do not check ownership; callers compare
//     Account / Enterprise before showing or changing a message.
//   - Parts whose DLR never comes stay Submitted (and reserved) until
//     ExpireSubmitted; Accepted parts past ValidUntil stay due until the
//     sender Fails them as Expired. Call both policies from the daemon.
//   - PurgeMOs deletes MOs received before the retention cutoff, taken or
//     not, with their inbox, forwarding and reply webhook keys: one that
//     no receiver took within the retention is given up (counted), not
//     kept, so that the scan starts at the oldest MO it can delete.
//   - A message stored with Priority has a version 2 record while a part
//     of it waits (codec.go), which a release before version 2 refuses as
//     damaged: it skips such a message (Due reports it), its Check,
//     VerifyBackup and ExportParts fail on it. It waits on disk untouched
//     and goes out once a release that reads it runs again; once no part
//     waits, the record is version 1 again. A part of a client-split
//     message stored with Priority (Fragment.Priority) has a version 2
//     frag record too (fragkeys.go), until its group is assembled or
//     rejected; a release before refuses it as damaged as well: its
//     FragmentGroups fails on it (so its housekeeping of every pending
//     group stops), as do the assembly of its group, its FragmentByID,
//     Check and VerifyBackup. Parts without priority keep version 1.
//   - A part of a binary reply waiting for the rest of its reply has a
//     version 2 moparts record (3 with the port TLVs), which a release
//     before binary replies (before 2026-12-06; before its evening for
//     3) refuses as damaged, until the reply is joined. Text parts keep
//     version 1.
//   - Only Purge, PurgeMOs (retention) and PurgeOrphans delete. Without a Purge loop
//     msg and smsc grow with traffic; ref always grows with the number of
//     distinct destinations (two bytes each).
//
// # Operations: export, retention, backup
//
// ExportParts streams one Row per part of the messages accepted in a time
// window (by AcceptedAt, like the bill), in id order, in bounded memory:
// chunks of 1000 messages per read-only transaction, the callback run
// between transactions. The window's first id is found by binary search
// over ids; AcceptedAt need only follow id order within ExportSkew (15
// min) for the result to be exact. RowWriter writes rows as CSV or JSON
// Lines (columns: ExportColumns, stable). UsageByMonth lists every
// enterprise's counters for a month.
//
// ExportFinal is the incremental export: the parts that became final
// after a Cursor, up to the store's position (FinalCursor), in the order
// they became final. Consecutive exports chained by the cursor give each
// final part exactly once, whatever becomes final meanwhile and across
// restarts, because the number is taken in the transaction that makes the
// part final. A cursor is opaque text (Cursor.String, ParseCursor).
//
// Purge deletes, oldest first and in batches of at most 512 messages per
// commit-loop operation, messages accepted before a cutoff whose parts are
// all final, done before the cutoff too (so an incremental export polled
// more often than the retention period sees every part), and whose receipt
// was forwarded (or not requested), with their smsc and final keys; usage is kept, and what it deleted is counted in the purged
// bucket. bbolt reuses the freed pages, so with a periodic Purge the file
// stops growing.
//
// Backup writes the whole file (policy buckets included) from one
// read-only transaction: a consistent copy while the daemon runs, which
// Open opens as it is. VerifyBackup checks such a copy before it is
// trusted: whole (not cut short), bbolt's page check, the queue's buckets
// present, and the invariants above as Check verifies them.
package queue
