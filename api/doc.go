// Package api is qxtd's HTTP/JSON surface: the enterprises' user API under
// /v1 (API keys and console logins), the operator's admin API under
// /admin/v1 (bearer token from the configuration) used by `qxtd admin …`,
// `qxtd bill`, `qxtd export` and `qxtd backup`. The daemon owns the bbolt
// file, so every tool goes through this API rather than opening the file.
//
// # Files
//
// The server and its plumbing:
//
//   - api.go: Config, Server, New, the JSON writer and request decoder.
//   - errors.go: every error answer (the error vocabulary, below).
//   - client.go: Client, the Go client the CLI uses.
//
// The user API, /v1 (openapi.yaml documents every route; a test keeps it
// equal to userRouteList):
//
//   - v1.go: the route table (userRouteList) and its registration, the
//     caller and what it may see, GET /v1/openapi.yaml.
//   - v1_auth.go: authentication, POST /v1/login, POST /v1/logout,
//     GET /v1/me; session.go holds the console sessions and the login
//     throttle, login.go the admission of logins to the password check
//     (one per source address and four per its network in progress,
//     clean addresses first).
//   - v1_send.go: POST /v1/messages; idempotency.go answers a retried
//     Idempotency-Key (saved in the store, asked of the other nodes, the
//     body compared), idemstore.go keeps the keys in memory, bounded.
//   - v1_preview.go: POST /v1/messages/preview (a text signed and counted
//     as a send would, by gateway.Preview: the console's live counter).
//   - v1_messages.go: GET, PATCH and DELETE /v1/messages/{id},
//     GET /v1/messages (sent outbox), GET /v1/scheduled.
//   - v1_inbox.go: GET /v1/inbox (replies to the service number).
//   - v1_export.go: GET /v1/messages/export, /v1/scheduled/export and
//     /v1/inbox/export (the lists as one file, a page at a time, with
//     slots per enterprise).
//   - jobs.go: /v1/batches (batch and templated sends from files, or from
//     a staged upload).
//   - v1_uploads.go: /v1/uploads (a templated send's file staged: its
//     columns and first rows, a preview of the filled rows, delete);
//     staged.go keeps the staged files (expiry, bounds); uploads.go the
//     admission of every uploaded sheet; v1_uploads_show.go GET
//     /v1/uploads/{id} (the columns and first rows again).
//   - v1_applications.go: POST /v1/applications, GET
//     /v1/applications/{number} (opening an account, public).
//   - v1_password.go: PUT /v1/me/password, POST /v1/password-reset
//     (public), the one reset flow both reset routes use; keylimit.go the
//     limits of the public routes per address, per network (an IPv4 /24,
//     an IPv6 /48) and per account.
//   - contacts.go: /v1/contacts and /v1/enterprise-contacts (address books).
//   - v1_reminders.go: /v1/reminders (日程提醒: series, the occurrences of
//     an ISO week, one occurrence changed or deleted; package reminder).
//
// The admin API, /admin/v1 (admin.openapi.yaml is the reference of every
// route, served at GET /admin/v1/openapi.yaml; ADMIN.md and OPS.md explain
// them):
//
//   - admin.go: the route table (adminRouteList), the operator check,
//     helpers shared by the admin handlers.
//   - admin_session.go: POST /admin/v1/login and /admin/v1/logout
//     (operator sessions for the browser console).
//   - admin_status.go: GET /admin/v1/status (binds, store, queue,
//     refusals since the start).
//   - admin_enterprises.go: /admin/v1/enterprises[/{code}].
//   - admin_users.go: /admin/v1/enterprises/{code}/users and
//     /admin/v1/users/{system_id} (password, API key).
//   - admin_whitelist.go: /admin/v1/enterprises/{code}/whitelist (add,
//     import, list, approve, reject, remove).
//   - admin_overrides.go: /admin/v1/overrides[/{prefix}].
//   - admin_password.go: POST /admin/v1/password-reset and its notifier.
//   - admin_applications.go: /admin/v1/applications (list, show,
//     approve, reject).
//   - ops.go: /admin/v1/bill, /admin/v1/export/dlr, /admin/v1/backup.
//
// Wire types (stable snake_case JSON, also used by Client) sit beside the
// handlers that use them.
//
// # Authentication
//
// Both APIs take "Authorization: Bearer <token>". On /v1 the token is a
// user's API key (issued by an admin, "qxtd_…") or a console token from
// POST /v1/login ("qxs_…", in memory only, ended by 30 minutes without use,
// by logout, or by newer logins past its user's or enterprise's share of
// the session table). The user and enterprise are looked up on every request,
// so a disabled enterprise or a deleted user stops at once; a user sees
// only its own messages, an enterprise admin the enterprise's, and anything
// else is answered like an unknown id. On /admin/v1 the token is the
// operator token of the configuration (Config.AdminToken; empty disables
// the admin API) or an operator session from POST /admin/v1/login
// ("qxo_…", in memory only, ended like a console session), and handlers
// act as policy.OperatorActor. Both session tables expire by
// Config.Clock.
//
// # Errors
//
// Every error is JSON {"error": {"reason": "...", "message": "..."}}
// (errors.go). A refusal — of a whole request, or of one recipient in a
// send's per-recipient results — is a policy.Refusal: its reason string,
// message and SMPP command_status ("code") come from policy's reason
// table (policy.ReasonTable, the README's "Error codes"), so HTTP, SMPP and
// the metrics name a refusal alike. Other errors map policy and queue
// error values (not found, forbidden, exists, invalid) to HTTP statuses in
// writeErr.
package api
