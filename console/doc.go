// Package console is qxtd's browser console: the enterprise portal that
// the 企信通 FAQ describes (短信发送, 收发记录, 通讯录, 白名单, 日程安排,
// 企业管理, 费用) at /, and the account manager's desk at /ops/. It is
// served by the daemon on http.listen, embedded in the binary.
//
// # One implementation of every rule
//
// The console reads and changes nothing itself. Every page is made of
// calls of the HTTP API — /v1 as the logged-in user, /admin/v1 as the
// operator — served in-process by the API's own handler (inproc.go), with
// the browser's address so the API's per-address limits hold. A refusal is
// the API's, shown in Chinese next to the field it concerns (zh.go, with
// the Chinese of policy's reason table). Downloads (templates, bills, DLR
// exports) are the API's answers streamed through.
//
// # Pages
//
// Each page is one html/template file in templates/: it defines "title"
// and "content", and any fragment it answers alone to htmx. layout.html is
// the frame and the menus (the FAQ's), parts.html the pieces pages share.
// To change a page, edit its file; the handlers (pages_*.go) only fetch
// what it shows. The only script is htmx (static/, pinned, licence beside
// it), for the live character counter and job progress; every form also
// works without it.
//
// # Security
//
//   - Sessions are the API's (POST /v1/login, POST /admin/v1/login): the
//     cookie holds the session token, HttpOnly, SameSite=Strict, Secure
//     over TLS. 30 minutes without a request end it (FAQ 19): the next
//     page is the login page with a notice.
//   - Every POST carries a CSRF token bound to the session (or, before
//     login, to a random cookie), and cross-origin POSTs are refused
//     (http.CrossOriginProtection).
//   - The Content-Security-Policy allows scripts and styles from the
//     console only: no inline script, no eval.
//   - Another enterprise's object is "not found", as the API answers.
//
// # Files
//
//   - console.go: Server, the sessions' middleware, the security headers.
//   - routes.go: who may open which route table.
//   - inproc.go: in-process calls of the API, downloads streamed through.
//   - session.go: cookies, CSRF tokens, one-time notices.
//   - render.go: templates, the page data, error display, template helpers.
//   - zh.go: the Chinese of API error reasons.
//   - pages_auth.go: login and logout (enterprise and desk).
//   - pages_records.go: 发件箱, 定时发件箱, 收件箱, 费用, the home page.
//   - pages_send.go: 短信群发 and the live counter; send_files.go: 批量发送,
//     定制发送 (uploads passed through part by part); send_jobs.go: 发送任务.
//   - records_why.go: the words of "为什么没有收到？" per state and error code.
//   - pages_books.go: 个人通讯录, 企业通讯录, 白名单维护; pages_reminders.go:
//     日程安排; zh_books.go: their template helpers.
//   - pages_account.go: forgotten and changed passwords, 企业管理;
//     pages_receipts.go: 回执推送 (the receipt webhook).
//   - pages_desk.go: the account manager's desk (/ops/), 运行概况;
//     desk_enterprises.go, desk_approvals.go, desk_bills.go: its other pages.
package console
