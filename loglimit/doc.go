// Package loglimit rate-limits repetitive log lines: a slog.Handler that
// passes a small burst of lines per key, then at most one per interval,
// the line that passes carrying how many were dropped before it
// (`suppressed`). A key is the record's message plus the host part of one
// attribute (by default `remote`, the peer's address), so one peer
// repeating one mistake cannot fill the log, while other peers and other
// messages are unaffected.
//
// Invariants:
//   - Records without the key attribute pass unchanged.
//   - Memory is bounded: at most MaxKeys keys; past that, keys that have
//     refilled their burst are forgotten, and if none has, new peers share
//     one key per message.
//   - Every dropped line is counted through OnSuppress with a reason from a
//     bounded set: the record's message (messages are constants in our
//     code), or "other" past MaxReasons distinct messages.
//
// Caveats: the attribute is found among the record's own attributes and
// those added by Logger.With outside any group; one inside a group is not
// seen.
//
// loglimit imports nothing of qxtd.
package loglimit
