package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// Client calls the admin API (it is what `qxtd admin` uses) and, with a
// user's token, the user API routes it has methods for (Preview, the
// staged uploads).
type Client struct {
	Base  string       // "http://127.0.0.1:8080"
	Token string       // the operator's admin token (http.admin_token) or session, or a user's API key or console token
	HTTP  *http.Client // nil: a client with a 2-minute timeout
	// Header is sent with every request (an Idempotency-Key, say).
	Header http.Header
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int    // HTTP status
	Reason  string // "not_found", "invalid", "not_whitelisted", …
	Message string
	// DetailZH: a refusal's detail, or an invalid field's rule, in
	// Chinese, when the answer has one.
	DetailZH string
	// Field: the request's field an invalid answer is about, when one is.
	Field string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Reason, e.Message, e.Status)
}

var defaultHTTP = &http.Client{Timeout: 2 * time.Minute}

// streamHTTP carries exports and backups: no overall timeout, they take
// as long as they take (the caller's context bounds them).
var streamHTTP = &http.Client{}

// ErrIncomplete is a stream (export, backup) that ended before the daemon
// confirmed its end: the bytes received are not the whole answer.
var ErrIncomplete = errors.New("incomplete")

// Do sends a request with body (nil: none; otherwise encoded as JSON) and
// decodes a 2xx answer's JSON into out (nil: discarded). An error answer is
// an *APIError.
func (c *Client) Do(method, path string, body, out any) error {
	return c.DoContext(context.Background(), method, path, body, out)
}

// DoContext is Do with a context.
func (c *Client) DoContext(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	ct := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd, ct = bytes.NewReader(b), "application/json"
	}
	return c.send(ctx, method, path, ct, rd, out)
}

// Upload sends body as is, with the given Content-Type.
func (c *Client) Upload(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	return c.send(ctx, method, path, contentType, body, out)
}

func (c *Client) send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	resp, err := c.open(ctx, method, path, contentType, body, defaultHTTP)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// open sends a request and returns a 2xx answer, whose body the caller
// closes; any other answer is an *APIError. hc is used when c.HTTP is nil.
func (c *Client) open(ctx context.Context, method, path, contentType string, body io.Reader, hc *http.Client) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.HTTP != nil {
		hc = c.HTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, ReadAPIError(resp)
	}
	return resp, nil
}

// ReadAPIError turns a non-2xx answer into an *APIError (for callers that
// stream answers themselves and cannot use Do).
func ReadAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Status: resp.StatusCode}
	var b errorBody
	if json.Unmarshal(data, &b) == nil && b.Error.Reason != "" {
		e.Reason, e.Message, e.DetailZH, e.Field = b.Error.Reason, b.Error.Message, b.Error.DetailZH, b.Error.Field
		return e
	}
	// Not one of ours (a proxy, or no such route: the mux answers text).
	e.Reason = strings.ReplaceAll(strings.ToLower(http.StatusText(resp.StatusCode)), " ", "_")
	if e.Reason == "" {
		e.Reason = "http_" + strconv.Itoa(resp.StatusCode)
	}
	e.Message = strings.TrimSpace(string(data))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	return e
}

func seg(s string) string { return url.PathEscape(s) }

// call is Do decoding into a new T.
func call[T any](c *Client, method, path string, body any) (*T, error) {
	var out T
	if err := c.Do(method, path, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// --- enterprises ---

// CreateEnterprise creates an enterprise.
func (c *Client) CreateEnterprise(e NewEnterprise) (*Enterprise, error) {
	return call[Enterprise](c, http.MethodPost, "/admin/v1/enterprises", e)
}

// Enterprises lists the enterprises.
func (c *Client) Enterprises() ([]Enterprise, error) {
	out, err := call[EnterpriseList](c, http.MethodGet, "/admin/v1/enterprises", nil)
	if err != nil {
		return nil, err
	}
	return out.Enterprises, nil
}

// Enterprise shows an enterprise with its usage in month ("": this month).
func (c *Client) Enterprise(code, month string) (*EnterpriseDetail, error) {
	p := "/admin/v1/enterprises/" + seg(code)
	if month != "" {
		p += "?month=" + url.QueryEscape(month)
	}
	return call[EnterpriseDetail](c, http.MethodGet, p, nil)
}

// UpdateEnterprise changes the fields set in p.
func (c *Client) UpdateEnterprise(code string, p EnterprisePatch) (*Enterprise, error) {
	return call[Enterprise](c, http.MethodPatch, "/admin/v1/enterprises/"+seg(code), p)
}

// TestReceipt sends an enterprise's test receipt to url ("": its
// receipt_url), or with kind "reply" a test reply ("": its reply_url),
// and returns what the endpoint did.
func (c *Client) TestReceipt(code, url, kind string) (*ReceiptWebhookTest, error) {
	return call[ReceiptWebhookTest](c, http.MethodPost, "/admin/v1/enterprises/"+seg(code)+"/receipt-test", ReceiptWebhookTestIn{URL: url, Kind: kind})
}

// RetryReceipts makes an enterprise's receipts that wait for a later
// retry due now, or with kind "reply" its replies.
func (c *Client) RetryReceipts(code, kind string) (*ReceiptWebhookRetry, error) {
	var in any // no body for receipts: what an older daemon takes too
	if kind != "" {
		in = ReceiptWebhookRetryIn{Kind: kind}
	}
	return call[ReceiptWebhookRetry](c, http.MethodPost, "/admin/v1/enterprises/"+seg(code)+"/receipt-retry", in)
}

// SetReceiptSecret sets the secret that signs an enterprise's receipt
// webhooks, or generates one when secret is empty; the answer holds it.
func (c *Client) SetReceiptSecret(code, secret string) (*ReceiptSecret, error) {
	return call[ReceiptSecret](c, http.MethodPost, "/admin/v1/enterprises/"+seg(code)+"/receipt-secret", ReceiptSecretRequest{Secret: secret})
}

// --- an enterprise's records ---

// RecordQuery narrows EnterpriseMessages and EnterpriseInbox: the number
// (any form, or its last digits), from and to (RFC 3339), the outbox's
// outcome (received, failed, pending) and account, a page's cursor (the
// last page's Next) and size (0: the server's).
type RecordQuery struct {
	Number, Outcome, Account string
	From, To                 string
	Cursor                   string
	Limit                    int
}

func (q RecordQuery) values(cursorName string) string {
	v := url.Values{}
	for k, x := range map[string]string{"number": q.Number, "outcome": q.Outcome, "account": q.Account,
		"from": q.From, "to": q.To, cursorName: q.Cursor} {
		if x != "" {
			v.Set(k, x)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// EnterpriseMessages is a page of an enterprise's sent outbox (every
// user's), newest first.
func (c *Client) EnterpriseMessages(code string, q RecordQuery) (*MessagePage, error) {
	return call[MessagePage](c, http.MethodGet, "/admin/v1/enterprises/"+seg(code)+"/messages"+q.values("after"), nil)
}

// TraceNumber is a page of every enterprise's sent messages to a number
// (q.Number, required), newest first, each naming its enterprise.
func (c *Client) TraceNumber(q RecordQuery) (*MessagePage, error) {
	return call[MessagePage](c, http.MethodGet, "/admin/v1/messages"+q.values("after"), nil)
}

// TraceReplies is a page of every enterprise's replies from a number
// (q.Number, required), newest first, each naming its enterprise (q.Outcome
// and q.Account are not used).
func (c *Client) TraceReplies(q RecordQuery) (*InboxPage, error) {
	q.Outcome, q.Account = "", ""
	return call[InboxPage](c, http.MethodGet, "/admin/v1/inbox"+q.values("before"), nil)
}

// OptOutsOf is a number's entries on every enterprise's opt-out list
// (a whole mobile number in any form).
func (c *Client) OptOutsOf(number string) ([]policy.OptOutEntry, error) {
	out := []policy.OptOutEntry{} // none: [], also as the CLI's JSON
	if err := c.Do(http.MethodGet, "/admin/v1/optouts?"+url.Values{"number": {number}}.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// AddOptOuts puts numbers on an enterprise's opt-out list as the operator.
func (c *Client) AddOptOuts(code string, numbers []string) (*policy.ImportResult, error) {
	return call[policy.ImportResult](c, http.MethodPost, "/admin/v1/enterprises/"+seg(code)+"/optouts", Numbers{Numbers: numbers})
}

// DropHeld drops the messages a disabled enterprise holds (every node
// fails them, rejected account_disabled, within a minute).
func (c *Client) DropHeld(code string) (*Enterprise, error) {
	return call[Enterprise](c, http.MethodPost, "/admin/v1/enterprises/"+seg(code)+"/held/drop", nil)
}

// EnterpriseMessage is one message of an enterprise, with its parts.
func (c *Client) EnterpriseMessage(code, id string) (*Message, error) {
	return call[Message](c, http.MethodGet, "/admin/v1/enterprises/"+seg(code)+"/messages/"+seg(id), nil)
}

// EnterpriseInbox is a page of the replies to an enterprise, newest first
// (q.Outcome and q.Account are not used).
func (c *Client) EnterpriseInbox(code string, q RecordQuery) (*InboxPage, error) {
	q.Outcome, q.Account = "", ""
	return call[InboxPage](c, http.MethodGet, "/admin/v1/enterprises/"+seg(code)+"/inbox"+q.values("before"), nil)
}

// RecordExport is how an enterprise's records are exported: Format "csv"
// ("" too) or "jsonl", and Lang "zh" for people (a BOM, Chinese headers,
// Beijing times) or "" / "en".
type RecordExport struct {
	Format, Lang string
}

// ExportEnterpriseMessages streams an enterprise's sent outbox into w, as
// the enterprise's own GET /v1/messages/export writes it, narrowed by q
// (its Cursor and Limit are not used), and returns the rows the daemon
// counted. An export the daemon did not finish (cut short, or without
// its ExportRowsTrailer) is an error wrapping ErrIncomplete, whatever
// reached w.
func (c *Client) ExportEnterpriseMessages(ctx context.Context, code string, q RecordQuery, x RecordExport, w io.Writer) (int64, error) {
	return c.exportRecords(ctx, "/admin/v1/enterprises/"+seg(code)+"/messages/export", q, x, w)
}

// ExportEnterpriseInbox streams the replies to an enterprise into w, as
// ExportEnterpriseMessages does its outbox (q.Outcome and q.Account are
// not used).
func (c *Client) ExportEnterpriseInbox(ctx context.Context, code string, q RecordQuery, x RecordExport, w io.Writer) (int64, error) {
	q.Outcome, q.Account = "", ""
	return c.exportRecords(ctx, "/admin/v1/enterprises/"+seg(code)+"/inbox/export", q, x, w)
}

func (c *Client) exportRecords(ctx context.Context, path string, q RecordQuery, x RecordExport, w io.Writer) (int64, error) {
	q.Cursor, q.Limit = "", 0
	v, _ := url.ParseQuery(strings.TrimPrefix(q.values("after"), "?"))
	for k, s := range map[string]string{"format": x.Format, "lang": x.Lang} {
		if s != "" {
			v.Set(k, s)
		}
	}
	resp, err := c.open(ctx, http.MethodGet, path+"?"+v.Encode(), "", nil, streamHTTP)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return 0, fmt.Errorf("export %w: cut short after %d bytes: %w", ErrIncomplete, n, err)
	}
	trailer := resp.Trailer.Get(ExportRowsTrailer)
	if trailer == "" {
		return 0, fmt.Errorf("export %w: the daemon did not confirm the end (%d bytes received)", ErrIncomplete, n)
	}
	rows, err := strconv.ParseInt(trailer, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("export: trailer %s %q: %w", ExportRowsTrailer, trailer, err)
	}
	return rows, nil
}

// --- users ---

// CreateUser creates a user of an enterprise.
func (c *Client) CreateUser(code string, u NewUser) (*User, error) {
	return call[User](c, http.MethodPost, "/admin/v1/enterprises/"+seg(code)+"/users", u)
}

// Users lists an enterprise's users.
func (c *Client) Users(code string) ([]User, error) {
	out, err := call[UserList](c, http.MethodGet, "/admin/v1/enterprises/"+seg(code)+"/users", nil)
	if err != nil {
		return nil, err
	}
	return out.Users, nil
}

// User shows a user.
func (c *Client) User(systemID string) (*User, error) {
	return call[User](c, http.MethodGet, "/admin/v1/users/"+seg(systemID), nil)
}

// UpdateUser changes the fields set in p.
func (c *Client) UpdateUser(systemID string, p UserPatch) (*User, error) {
	return call[User](c, http.MethodPatch, "/admin/v1/users/"+seg(systemID), p)
}

// DeleteUser deletes a user.
func (c *Client) DeleteUser(systemID string) error {
	return c.Do(http.MethodDelete, "/admin/v1/users/"+seg(systemID), nil, nil)
}

// SetPassword sets a user's SMPP password.
func (c *Client) SetPassword(systemID, password string) error {
	return c.Do(http.MethodPut, "/admin/v1/users/"+seg(systemID)+"/password", PasswordSet{Password: password}, nil)
}

// IssueAPIKey issues a new API key (replacing any previous one); the key is
// returned this once.
func (c *Client) IssueAPIKey(systemID string) (*APIKey, error) {
	return call[APIKey](c, http.MethodPost, "/admin/v1/users/"+seg(systemID)+"/apikey", nil)
}

// RevokeAPIKey removes a user's API key.
func (c *Client) RevokeAPIKey(systemID string) error {
	return c.Do(http.MethodDelete, "/admin/v1/users/"+seg(systemID)+"/apikey", nil, nil)
}

// ResetPassword asks for the forgotten-password flow; the answer does not
// tell whether the details matched.
func (c *Client) ResetPassword(r PasswordReset) (*Status, error) {
	return call[Status](c, http.MethodPost, "/admin/v1/password-reset", r)
}

// --- whitelist ---

func wlPath(code, suffix string) string {
	return "/admin/v1/enterprises/" + seg(code) + "/whitelist" + suffix
}

// AddWhitelist adds numbers (approved at once when the operator adds them).
func (c *Client) AddWhitelist(code string, numbers []string) (*policy.ImportResult, error) {
	return call[policy.ImportResult](c, http.MethodPost, wlPath(code, ""), Numbers{Numbers: numbers})
}

// ImportWhitelist uploads a CSV or XLSX file (column A: numbers).
func (c *Client) ImportWhitelist(ctx context.Context, code string, f sheet.Format, file io.Reader) (*policy.ImportResult, error) {
	ct := "text/csv"
	if f == sheet.XLSX {
		ct = XLSXContentType
	}
	var out policy.ImportResult
	if err := c.Upload(ctx, http.MethodPost, wlPath(code, "/import"), ct, file, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListWhitelist returns one page of entries in state ("" or "all": every
// state) after the cursor after; limit 0 is the server's default.
func (c *Client) ListWhitelist(code, state, after string, limit int) (*WhitelistPage, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := wlPath(code, "")
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return call[WhitelistPage](c, http.MethodGet, p, nil)
}

// Approve approves numbers, or every pending entry when allPending.
func (c *Client) Approve(code string, numbers []string, allPending bool) (*policy.BulkResult, error) {
	return c.decide(code, "/approve", "", numbers, allPending)
}

// Reject rejects numbers, or every pending entry when allPending, for a
// reason the enterprise sees.
func (c *Client) Reject(code, reason string, numbers []string, allPending bool) (*policy.BulkResult, error) {
	return c.decide(code, "/reject", reason, numbers, allPending)
}

func (c *Client) decide(code, suffix, reason string, numbers []string, allPending bool) (*policy.BulkResult, error) {
	return call[policy.BulkResult](c, http.MethodPost, wlPath(code, suffix), Decision{Numbers: numbers, AllPending: allPending, Reason: reason})
}

// RemoveWhitelist removes numbers in any state.
func (c *Client) RemoveWhitelist(code string, numbers []string) (*policy.BulkResult, error) {
	return call[policy.BulkResult](c, http.MethodPost, wlPath(code, "/remove"), Numbers{Numbers: numbers})
}

// --- overrides ---

// Overrides lists the number overrides.
func (c *Client) Overrides() ([]policy.Override, error) {
	out, err := call[OverrideList](c, http.MethodGet, "/admin/v1/overrides", nil)
	if err != nil {
		return nil, err
	}
	return out.Overrides, nil
}

// SetOverride adds or replaces the override of prefix.
func (c *Client) SetOverride(prefix string, o OverrideSet) error {
	return c.Do(http.MethodPut, "/admin/v1/overrides/"+seg(prefix), o, nil)
}

// RemoveOverride removes the override of prefix.
func (c *Client) RemoveOverride(prefix string) error {
	return c.Do(http.MethodDelete, "/admin/v1/overrides/"+seg(prefix), nil, nil)
}

// --- operations (OPS.md) ---

// ExportQuery selects a DLR export: the messages accepted in [From, To),
// of one enterprise or ("") all, as csv or jsonl ("": csv).
type ExportQuery struct {
	From, To   time.Time
	Enterprise string
	Format     string
}

// ExportDLR streams the DLR export into w as it arrives and returns the
// rows the daemon counted and the bytes written. An export the daemon did
// not finish (cut short, or no RowsTrailer) is an error wrapping
// ErrIncomplete, whatever reached w.
func (c *Client) ExportDLR(ctx context.Context, q ExportQuery, w io.Writer) (rows, n int64, err error) {
	v := url.Values{"from": {q.From.Format(time.RFC3339Nano)}, "to": {q.To.Format(time.RFC3339Nano)}}
	res, err := c.exportDLR(ctx, v, q, w)
	return res.Rows, res.Bytes, err
}

// ExportResult is what a complete incremental export reports.
type ExportResult struct {
	Rows  int64  // rows sent (RowsTrailer)
	Bytes int64  // bytes written
	Next  string // the cursor to ask after next time (NextCursorHeader)
	// Purged: parts final within the range that retention deleted before
	// they could be exported (PurgedTrailer); 0 unless the job polls less
	// often than the retention period.
	Purged int64
}

// ExportDLRAfter streams into w the rows of the parts that became final
// after cursor after ("" for the start), in that order; q.From and q.To are
// not used. Keep res.Next only when err is nil: an incomplete export is an
// error wrapping ErrIncomplete, and asking again after the same cursor
// gives the rows again.
func (c *Client) ExportDLRAfter(ctx context.Context, after string, q ExportQuery, w io.Writer) (res ExportResult, err error) {
	return c.exportDLR(ctx, url.Values{"after": {after}}, q, w)
}

func (c *Client) exportDLR(ctx context.Context, v url.Values, q ExportQuery, w io.Writer) (res ExportResult, err error) {
	if q.Format != "" {
		v.Set("format", q.Format)
	}
	if q.Enterprise != "" {
		v.Set("enterprise", q.Enterprise)
	}
	resp, err := c.open(ctx, http.MethodGet, "/admin/v1/export/dlr?"+v.Encode(), "", nil, streamHTTP)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	res.Bytes, err = io.Copy(w, resp.Body)
	if err != nil {
		return res, fmt.Errorf("export %w: cut short after %d bytes: %w", ErrIncomplete, res.Bytes, err)
	}
	trailer := resp.Trailer.Get(RowsTrailer)
	if trailer == "" {
		return res, fmt.Errorf("export %w: the daemon did not confirm the end (%d bytes received)", ErrIncomplete, res.Bytes)
	}
	if res.Rows, err = strconv.ParseInt(trailer, 10, 64); err != nil {
		return res, fmt.Errorf("export: trailer %s %q: %w", RowsTrailer, trailer, err)
	}
	if !v.Has("after") {
		return res, nil
	}
	res.Next = resp.Header.Get(NextCursorHeader)
	if res.Next == "" {
		return res, fmt.Errorf("export: no %s header: the daemon does not know incremental exports", NextCursorHeader)
	}
	if p := resp.Trailer.Get(PurgedTrailer); p != "" {
		if res.Purged, err = strconv.ParseInt(p, 10, 64); err != nil {
			return res, fmt.Errorf("export: trailer %s %q: %w", PurgedTrailer, p, err)
		}
	}
	return res, nil
}

// Bill returns the bill of month ("2006-01", Asia/Shanghai) per
// enterprise, or of one enterprise.
func (c *Client) Bill(ctx context.Context, month, enterprise string) ([]BillLine, error) {
	v := url.Values{"month": {month}}
	if enterprise != "" {
		v.Set("enterprise", enterprise)
	}
	var out []BillLine
	if err := c.DoContext(ctx, http.MethodGet, "/admin/v1/bill?"+v.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Backup streams a consistent snapshot of the daemon's store into w and
// returns its size. A download cut short (shorter than the announced
// length, or a read error) is an error wrapping ErrIncomplete.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.open(ctx, http.MethodGet, "/admin/v1/backup", "", nil, streamHTTP)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup %w: cut short after %d bytes: %w", ErrIncomplete, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("backup %w: cut short: %d of %d bytes", ErrIncomplete, n, resp.ContentLength)
	}
	return n, nil
}

// ExportOptOuts streams the opt-out lists (one enterprise's, or every
// enterprise's when code is "") as format "csv" or "json" into w.
func (c *Client) ExportOptOuts(ctx context.Context, code, format string, w io.Writer) error {
	v := url.Values{}
	if code != "" {
		v.Set("enterprise", code)
	}
	if format != "" {
		v.Set("format", format)
	}
	resp, err := c.open(ctx, http.MethodGet, "/admin/v1/optouts?"+v.Encode(), "", nil, streamHTTP)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// --- the console's additions ---

// OperatorLogin exchanges the operator token (c.Token is not used) for an
// operator session token ("qxo_…", ended by 30 minutes without use);
// set it as c.Token to act with it.
func (c *Client) OperatorLogin(token string) (*OperatorLoginResponse, error) {
	return call[OperatorLoginResponse](c, http.MethodPost, "/admin/v1/login", OperatorLoginRequest{Token: token})
}

// OperatorLogout ends the operator session of c.Token.
func (c *Client) OperatorLogout() error {
	return c.Do(http.MethodPost, "/admin/v1/logout", nil, nil)
}

// OperatorSession is whom c.Token (an operator token or session) acts as
// now, and what it may do (GET /admin/v1/session).
func (c *Client) OperatorSession() (*OperatorSession, error) {
	return call[OperatorSession](c, http.MethodGet, "/admin/v1/session", nil)
}

// Status is the daemon's health summary (GET /admin/v1/status).
func (c *Client) Status() (*SystemStatus, error) {
	return call[SystemStatus](c, http.MethodGet, "/admin/v1/status", nil)
}

// Preview signs and counts a text as sending it would, for the user of
// c.Token (an API key or a console token: POST /v1/messages/preview).
func (c *Client) Preview(text string) (*PreviewResponse, error) {
	return call[PreviewResponse](c, http.MethodPost, "/v1/messages/preview", PreviewRequest{Text: text})
}

// StageUpload stages a templated send's file (POST /v1/uploads) for the
// user of c.Token; f is the file's format.
func (c *Client) StageUpload(ctx context.Context, f sheet.Format, file io.Reader) (*Upload, error) {
	ct := "text/csv"
	if f == sheet.XLSX {
		ct = XLSXContentType
	}
	var out Upload
	if err := c.Upload(ctx, http.MethodPost, "/v1/uploads", ct, file, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PreviewUpload is the first rows of a staged upload as the templated send
// would send them (GET /v1/uploads/{id}/preview).
func (c *Client) PreviewUpload(id, template, numberColumn string) (*UploadPreview, error) {
	v := url.Values{"template": {template}}
	if numberColumn != "" {
		v.Set("number_column", numberColumn)
	}
	return call[UploadPreview](c, http.MethodGet, "/v1/uploads/"+seg(id)+"/preview?"+v.Encode(), nil)
}

// SendUpload starts the templated send of a staged upload (POST
// /v1/batches with a JSON body); the upload is consumed.
func (c *Client) SendUpload(req StagedBatchRequest) (*BatchCreated, error) {
	return call[BatchCreated](c, http.MethodPost, "/v1/batches", req)
}

// DeleteUpload deletes a staged upload.
func (c *Client) DeleteUpload(id string) error {
	return c.Do(http.MethodDelete, "/v1/uploads/"+seg(id), nil, nil)
}

// Packages is the configured package table (GET /admin/v1/packages).
func (c *Client) Packages() ([]PackageOut, error) {
	out, err := call[PackageList](c, http.MethodGet, "/admin/v1/packages", nil)
	if err != nil {
		return nil, err
	}
	return out.Packages, nil
}

// SetLogLevel changes the running daemon's log level (debug, info, warn or
// error) until it restarts, and returns the level now in force. The route
// is the daemon's own (PUT /admin/v1/log-level) and speaks plain text.
func (c *Client) SetLogLevel(ctx context.Context, level string) (string, error) {
	resp, err := c.open(ctx, http.MethodPut, "/admin/v1/log-level", "text/plain; charset=utf-8", strings.NewReader(level), defaultHTTP)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return "", fmt.Errorf("log level: reading the answer: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
