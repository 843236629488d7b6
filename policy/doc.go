// Package policy is the business-rule core of qxtd, the 企信通 enterprise SMS
// gateway: accounts (enterprises, users, passwords, API keys), whitelists,
// network scope, packages and billing, rate limits, and the refusals that
// follow from them. It implements the operator's rules of the 企信通
// service: accounts and signatures, the forgotten-password reset, the
// whitelist, national and off-net scope, packages, billing of delivered
// segments only.
// It knows nothing of SMPP, HTTP or the queue: it imports none of smpp,
// queue, segment or cmd; callers map its refusals to command_status values
// and HTTP answers with Reason.Status and Reason.String.
//
// # Basics
//
// New(db, Config) opens the policy data in the daemon's state file and
// loads all of it into memory. The daemon opens that file once
// (queue.OpenDB) and gives it to the queue and to policy as peers; the
// caller owns and closes db. Everything policy persists lives there, in its
// own buckets (Caveats), one transaction per admin write, so one backup of
// the file holds messages and accounts together.
//
// The sending path is the gateway's Rules adapter (gateway/rules.go). It
// authenticates an SMPP bind (the HTTP API authenticates its clients with
// AuthenticateAPIKey instead), then asks, for SMPP and HTTP submissions
// alike:
//
//	u, ent, err := p.Authenticate(systemID, password) // at bind: ErrAuth, account_disabled
//	ent, ok := p.Lookup(code)                 // per submission, fresh: grants and Disabled apply at once
//	err = p.CheckEnterprise(ent)              // account_disabled, no_signature
//	ok = p.Allow(ent.Code)                    // false → rate_limited (ESME_RTHROTTLED)
//	limit := p.Limit(ent)                     // the queue refuses past it: quota_exceeded
//	class, err := p.CheckRecipient(ent, dest) // per recipient: invalid_number, scope_*, opted_out, not_whitelisted
//
// The text is the gateway's: it adds the enterprise signature and, when
// the user shows it, the user signature (UserSignatureSeparator and the
// user's name), and refuses binary content (binary_refused) and text that
// segment cannot fit (too_long), with the reasons of this package's table
// (Refusals).
//
// # Invariants
//
//   - Nothing on the sending path touches the file: Lookup, Authenticate,
//     AuthenticateAPIKey, Allowed, WhitelistStatus, CheckRecipient, Allow and
//     Limit read an immutable in-memory snapshot. Each admin write is one
//     db.Update; the parts it touched (an enterprise record, a whitelist, the
//     user index, the overrides) are rebuilt from that same transaction and the
//     new snapshot is published after the commit, so memory never shows
//     uncommitted state and a failed write changes nothing.
//   - Memory is bounded by the data: one entry per enterprise, user and
//     whitelist number; the classifier caches per 7-digit number block (at
//     most 10^6), never per number; rate-limit buckets exist only for existing
//     enterprises.
//   - Money is int64 fen, never a float; months are "2006-01" in Asia/Shanghai
//     (time/tzdata is embedded).
//   - No secret is stored in clear or returned: passwords are bcrypt
//     (DefaultBcryptCost 10 ≈ 70 ms on the reference machine; tests use cost 4),
//     API keys SHA-256. Unknown system_id and wrong password are the same
//     ErrAuth after the same work; so are the three ways a password reset can
//     mismatch.
//   - Every refusal is a *Refusal of the closed Reason set: errors.As or
//     ReasonOf, never string matching.
//
// # Roles
//
// Every administrative method takes an Actor.
//
//   - The operator (account managers; OperatorActor) creates enterprises and
//     changes every enterprise field — signature, package, grants, cap, TPS,
//     disabled — approves and rejects whitelist entries (DecideWhitelist,
//     DecideEntries, Approve, Reject), maintains number overrides, and can do anything an
//     enterprise admin can. Entries the operator adds are approved at once.
//   - An enterprise admin (ActorFor a RoleAdmin user) manages its own
//     enterprise's users (create, update, delete, show user signature,
//     passwords, API keys) and whitelist (add, import, remove: entries become
//     pending). It cannot change its enterprise record.
//   - A plain user reads its enterprise, its whitelist and itself, asks for
//     whitelist numbers (add, import: pending like an admin's), and sets its
//     own password and API key.
//
// An enterprise actor can never read, list, change or approve anything of
// another enterprise: such calls return ErrForbidden, whether the target
// exists or not (system_ids being global, CreateUser's ErrExists is the one
// thing that tells a system_id is taken elsewhere).
//
// # Seeding
//
// Store.Seed loads enterprises, users (clear passwords, hashed on the way in),
// grants, packages, approved whitelist numbers and overrides from
// configuration, in one transaction. Seeding creates what does not exist and
// never changes or deletes what does: once a record is in the file, admin
// changes (a reset password, a rejected number, a new grant) survive every
// restart, and removing a record from the configuration does not delete it.
// SeedData.Force makes the configuration overwrite existing records (still
// deleting nothing), for a deliberate one-off run.
//
// # Numbers
//
// Classifier normalises "13712345678", "+86 137-1234-5678", "008613712345678",
// "8613712345678" to E.164 and asks github.com/nyaruka/phonenumbers for the
// type, carrier (zh carrier data) and province (zh geocoding: "广东省东莞市" →
// "广东省"). Only type MOBILE is a mobile number (for CN the library never
// answers FIXED_LINE_OR_MOBILE; if it ever did, it would count only where the
// carrier data names a mobile network): landlines, service numbers and
// foreign numbers are invalid_number. A China Mobile number of the home
// province is always reachable; of another province, or of unknown province
// (blocks such as 172, 195, 197, 198 have no location data), it needs the
// National grant; every other carrier — China Unicom, China Telecom, China
// Broadnet, and numbers whose carrier the data does not name — needs OffNet.
// Operator overrides (携号转网 and block corrections), by full number or by
// 3–7 digit block, are consulted first.
//
// # Packages
//
// DefaultPackages is the operator's table of 12 monthly packages (fee,
// included segments, overage rate per segment). Limit returns the segments
// an enterprise may have charged plus reserved in a month: NoOverage → the
// included segments; a cap → included + (cap − fee) / overage rate, rounded
// down (a cap at or below the fee allows no overage); else -1, no limit.
// ComputeBill bills delivered segments only. Each enterprise keeps a
// package history (Enterprise.PackageHistory, written by the store): a month
// is billed with the package in force in it (PackageIn), so a package change
// never re-prices earlier months.
//
// # Refusals
//
// reasons.go holds qxtd's one vocabulary of refusals: every Reason, its
// string (HTTP JSON, Prometheus label, stored error code), its SMPP
// command_status and its messages in English and Chinese. The operator's
// rules have vendor-specific codes 0x400–0x4FF; the gateway's own reasons
// (bad_text, no_route, part_conflict, …) map to standard SMPP codes.
// ReasonTable() prints the table; the README's "Error codes" section is
// that output, and a test keeps the two equal.
//
// A whitelist entry still pending approval, or rejected, is not_whitelisted
// like an absent one (one SMPP status); the Refusal's Detail tells the
// enterprise which (WhitelistDetail: "whitelist entry pending, awaits the
// account manager's approval", "whitelist entry rejected by the account
// manager: <reason>"), in HTTP answers and logs.
//
// # Whitelist requests
//
// An enterprise admin adds or imports numbers: they are pending. The
// account managers see the pending entries of every enterprise, oldest
// first (ListPending), and approve or reject them one enterprise at a time
// (DecideWhitelist) or across enterprises (DecideEntries); a rejection
// carries a reason the enterprise sees. Each entry keeps who added it and
// when, who decided and when. Numbers the operator adds itself are approved
// at once: the operator is the account manager, so its adding is its
// approval. PendingStats (memory only) gives the number of pending entries
// and the age of the oldest, for the daemon's metrics; policy itself exports
// no metrics.
//
// # Opt-outs
//
// A handset that replies an opt-out keyword (IsOptOut: TD, T, 退订 by
// default, trimmed of spaces and punctuation, any case) to an enterprise's
// service number goes on that enterprise's opt-out list: the gateway calls
// OptOut after storing the reply, through the same update as every admin
// write, so CheckRecipient sees it at once and refuses opted_out — before
// the whitelist, and for enterprises without one. OptOut is idempotent (the
// first reply's time and id stay). The enterprise lists its list and its
// admins remove numbers (ListOptOuts, RemoveOptOut); the operator exports
// every list (ExportOptOuts). Other enterprises are unaffected.
//
// Refusals the policy package does not detect itself have helpers:
// NewRefusal(ReasonQuotaExceeded, …) for the queue's limit check,
// NewRefusal(ReasonRateLimited, …) when Allow fails.
//
// # Caveats
//
//   - The state file is shared. Policy owns the buckets named "policy_"
//     (policy_meta with the schema version, policy_enterprises,
//     policy_users, policy_whitelist, policy_overrides,
//     policy_contacts for the address books, policy_optouts for the
//     opt-out lists, policy_signatures for
//     signature change requests, and policy_applications for the
//     applications for an account); the queue owns the rest
//     (listed in the queue's doc).
//     Neither reads nor writes the other's. Policy's writes are
//     db.Update calls, or StoreOptions.Write's (the daemon's runs them
//     through the queue's store, queue.Store.Update, which guards the
//     file after a failed sync); they wait for the queue's commit like
//     any writer. A write that fails after fn succeeded may still be
//     what the file shows: the snapshot is then reloaded from the file.
//   - In a cluster (StoreOptions.Shared / Config.Shared, a Committer such
//     as cluster.Replica), the policy buckets are shared by the nodes: each
//     write runs through the committer (its fn may run again after a
//     conflict with another node's write, so the closures reset what they
//     return), and the snapshot is rebuilt by the committer's hook from
//     what was applied to the file, this node's writes and others' alike,
//     before the write returns. Invariant 1 still holds per node; other
//     nodes see a write when their copy of the file has it (milliseconds).
//   - Values returned by the Store are copies; changing them changes nothing.
//   - ListWhitelist, ListOptOuts, ExportOptOuts and SignatureRequests read the file (it is an admin operation), everything else
//     that reads is memory.
//   - Authenticate waits while AuthConcurrency bcrypt operations run; callers
//     should bound bind attempts per connection and rate-limit ResetPassword.
package policy
