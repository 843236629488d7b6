// Package reminder is the schedule reminders (日程提醒, FAQ 11): one-off or
// recurring texts that an enterprise user sets for itself (its registered
// mobile by default) or for numbers and address-book groups, listed by ISO
// week, each occurrence sent as an ordinary scheduled message of the
// outbox. The HTTP handlers live in package api; cmd/qxtd runs the
// scheduler. It imports policy (owners, groups), gateway (Send, Cancel)
// and queue's errors; none of them imports it.
//
// # Basics
//
// rule.go is pure: a Rule (Once, Daily, Workdays, Weekly on chosen
// weekdays, Monthly on a day; Until a date or Count events; Before minutes
// ahead of the event) yields its Occurrences, each keyed by its day in
// Asia/Shanghai (one event a day at most). Check refuses, with the reason,
// a rule that is malformed or never fires (weekly with no weekday, an
// until before the start, monthly on the 31st until a date before any
// 31-day month, everything in the past). Week is an ISO 8601 week in
// Asia/Shanghai ("2026-W53" runs Monday 28 December 2026 to Sunday 3
// January 2027).
//
// Service (service.go) keeps the series: Create, Get, List, Update,
// Delete, and one occurrence's change or deletion (EditOccurrence,
// DeleteOccurrence: an exception stored with the series). Week lists
// every occurrence of a week with what became of it. Its scheduler
// (scheduler.go, Run, owned by the caller's context) hands each
// occurrence to gateway.Send as a message scheduled at its time, Ahead
// (24 h) before it, so that it is in the scheduled outbox like any other
// and policy, quota and signatures apply at that moment.
//
// # Storage
//
// One bucket of the daemon's bbolt file, reminder_series: enterprise 0x00
// id (8 BE) → the JSON series, with its exceptions and, per occurrence,
// what the scheduler did (OccState: the ids of its messages, missed,
// refused with the reason). Reminders are neither account rules (policy
// keeps an in-memory snapshot that the sending path reads, rebuilt on
// every write) nor messages (queue), but a producer of messages like a
// batch job, so they have their own bucket beside those of policy and
// queue; a backup of the file holds them too. Every change is one
// db.Update (or Config.Write's: the daemon's goes through the queue's
// store); the Service's mutex serialises changes with the scheduler's
// pass, so a series is never changed between an occurrence's Send and
// its record.
//
// # Invariants
//
//   - An occurrence is handed to the gateway once: its record is written
//     right after Send committed, and a pass skips every occurrence with
//     a record. Editing or deleting cancels its scheduled messages
//     (gateway.Cancel) and removes the record, so the next pass makes the
//     new one; a message already going out (within queue.ScheduleMargin)
//     is not cancelled and the change is refused (ErrSent).
//   - An occurrence whose send time passed while the daemon was down is
//     sent at start if it is at most Grace late, else recorded missed
//     (shown as such in the listing). Occurrences before the series was
//     created (or its rule last changed) are none of it.
//   - One enterprise never sees another's reminders: every method takes a
//     Viewer and answers ErrNotFound for anything it does not see; a plain
//     user sees only its own.
//   - What a series keeps is bounded, since every pass and listing reads
//     it again: a text (the series', a changed occurrence's) at most
//     MaxText characters — a message's limit, checked with the signatures
//     where the gateway can tell — numbers the classifier takes for one
//     (1,000 at most, the API's), at most MaxExceptions changed or
//     deleted occurrences, the first maxReasons refused recipients of an
//     occurrence. A user keeps at most Config.MaxPerUser series (100), an
//     enterprise MaxPerEnterprise (1,000), counted in the transaction that
//     adds one (ErrLimit past either).
//
// # Caveats
//
//   - A crash (kill -9) between Send's commit and the record's commit
//     sends that occurrence again at the next start: it can duplicate,
//     never vanish.
//   - A pass hashes every stored series in place (bbolt's map, nothing
//     copied) and decodes the head (rule, which occurrences are changed or
//     done) only of those new or changed since the last pass, whoever
//     wrote them (a cluster replica too), or that the Service's memo says
//     may be due by now (memo.go: the next occurrence to do, less Ahead);
//     one at a time, and only the due ones whole. The memo is one entry
//     a stored series, in memory; a clock set back before an entry was made
//     decodes that series again. A change of a series that keeps its
//     length and 64-bit hash (a random seed each start) would be acted on
//     as the old value until that one's next occurrence came due or the
//     series changed again: a chance of 2^-64 a change. Records of
//     occurrences and exceptions older than 400 days are dropped. The week
//     listing and Get read their series whole.
//   - Working days are Monday to Friday: public holidays and the swapped
//     working weekends of the Chinese calendar are not known.
//   - In a cluster (Config.Shared, a policy.Committer such as
//     cluster.Replica) reminder_series is shared by the nodes: every write
//     runs through the committer (its fn may run again after another node's
//     write; they are idempotent), a change applied from any node wakes the
//     scheduler, and only one node — the daemon's choice, the leader — runs
//     it (Run). The Service's mutex serialises only this node's changes.
//     An edit or delete cancels the occurrences' scheduled messages with
//     gateway.Cancel, which asks the node that owns each message (its id
//     says which: the scheduler's node, for occurrences it already handed
//     to its gateway within Ahead); an owner that cannot be reached keeps
//     the occurrence (it is sent), and the edit says so in the log.
package reminder
