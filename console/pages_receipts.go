package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
)

// 回执推送: the enterprise's receipt webhook, self-service. Where the
// final receipts of its HTTP sends are POSTed, how many a POST, where its
// replies (MO) are POSTed, the secret that signs both, and a test receipt
// to check an endpoint. Every rule is
// the API's (/v1/receipt-webhook): a member sees the settings, an admin
// changes them. A new secret and a test's outcome are shown on the page
// the POST answers (a redirect would have to carry the secret).

var receiptRoutes = []route{
	{"GET /enterprise/receipts", (*Server).receiptsPage},
	{"POST /enterprise/receipts", (*Server).saveReceipts},
	{"POST /enterprise/receipts/secret", (*Server).newReceiptSecret},
	{"POST /enterprise/receipts/test", (*Server).testReceipt},
	{"POST /enterprise/receipts/retry", (*Server).retryReceipts},
}

// receiptsData is the 回执推送 page.
type receiptsData struct {
	Hook   api.ReceiptWebhook
	Secret string                  // a secret just generated, shown this once
	Test   *api.ReceiptWebhookTest // the outcome of a test just sent
}

// Batch is the batch as the page shows it: 1 for one a POST.
func (d *receiptsData) Batch() int { return max(d.Hook.ReceiptBatch, 1) }

// ReplyBatch is the replies' batch as the page shows it: 1 for one a POST.
func (d *receiptsData) ReplyBatch() int { return max(d.Hook.ReplyBatch, 1) }

// FirstDue is when the earliest pending receipt was due (zero: none).
func (d *receiptsData) FirstDue() time.Time {
	if d.Hook.Status.FirstDueAt == nil {
		return time.Time{}
	}
	return *d.Hook.Status.FirstDueAt
}

func (s *Server) receiptsView(q *req, p *page, code int, d *receiptsData) {
	if err := s.call(q.r, http.MethodGet, "/v1/receipt-webhook", nil, &d.Hook); err != nil {
		q.adminFail(err)
		return
	}
	p.D = d
	q.render(code, "receipts", p)
}

func (s *Server) receiptsPage(q *req) {
	s.receiptsView(q, q.view(nil), http.StatusOK, &receiptsData{})
}

func (s *Server) saveReceipts(q *req) {
	p := q.view(nil)
	url := strings.TrimSpace(q.r.PostFormValue("receipt_url"))
	replyURL := strings.TrimSpace(q.r.PostFormValue("reply_url"))
	p.Form.Set("receipt_url", url)
	p.Form.Set("reply_url", replyURL)
	batch, ok := batchField(p, q, "receipt_batch", "每次推送条数须为 1 到 1000 的整数。")
	replyBatch, rok := batchField(p, q, "reply_batch", "每次推送回复条数须为 1 到 1000 的整数。")
	if !ok || !rok {
		s.receiptsView(q, p, http.StatusBadRequest, &receiptsData{})
		return
	}
	in := api.ReceiptWebhookPatch{ReceiptURL: &url, ReplyURL: &replyURL, ReceiptBatch: &batch, ReplyBatch: &replyBatch}
	if err := s.call(q.r, http.MethodPatch, "/v1/receipt-webhook", in, nil); err != nil {
		if isStatus(err, http.StatusForbidden) {
			q.adminFail(err)
			return
		}
		code, ok := q.fieldErr(p, err, "receipt_url", "reply_url", "receipt_batch", "reply_batch")
		if !ok {
			return
		}
		s.receiptsView(q, p, code, &receiptsData{})
		return
	}
	notice := "回执推送设置已保存，下一次推送即生效。"
	if url == "" {
		notice = "已清除推送地址：HTTP 接口发送的短信不再推送回执（请求中指定了 receipt_url 的除外）。"
	}
	q.redirect("/enterprise/receipts", notice)
}

// batchField reads a batch size field of the form (empty: 1), keeping
// what was typed for the page; a value outside 1–1000 sets the field's
// error msg.
func batchField(p *page, q *req, name, msg string) (int, bool) {
	text := strings.TrimSpace(q.r.PostFormValue(name))
	p.Form.Set(name, text)
	if text == "" {
		return 1, true
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 || n > 1000 {
		p.Errors[name] = msg
		return 0, false
	}
	return n, true
}

func (s *Server) newReceiptSecret(q *req) {
	var out api.ReceiptWebhookSecret
	if err := s.call(q.r, http.MethodPost, "/v1/receipt-webhook/secret", nil, &out); err != nil {
		q.adminFail(err)
		return
	}
	s.receiptsView(q, q.view(nil), http.StatusOK, &receiptsData{Secret: out.Secret})
}

func (s *Server) testReceipt(q *req) {
	p := q.view(nil)
	url := strings.TrimSpace(q.r.PostFormValue("url"))
	kind := q.r.PostFormValue("kind")
	p.Form.Set("url", url)
	p.Form.Set("kind", kind)
	var out api.ReceiptWebhookTest
	if err := s.call(q.r, http.MethodPost, "/v1/receipt-webhook/test", api.ReceiptWebhookTestIn{URL: url, Kind: kind}, &out); err != nil {
		if isStatus(err, http.StatusForbidden) {
			q.adminFail(err)
			return
		}
		code, ok := q.fieldErr(p, err, "url")
		if !ok {
			return
		}
		if isStatus(err, http.StatusTooManyRequests) {
			p.Errors["url"] = "测试过于频繁：同一时间只能发送一条测试回执，每分钟最多 10 条，请稍后再试。"
		}
		s.receiptsView(q, p, code, &receiptsData{})
		return
	}
	s.receiptsView(q, p, http.StatusOK, &receiptsData{Test: &out})
}

// retryReceipts makes the receipts (with kind "reply" in the form, the
// replies) that wait for a later retry due now.
func (s *Server) retryReceipts(q *req) {
	kind := q.r.PostFormValue("kind")
	var out api.ReceiptWebhookRetry
	if err := s.call(q.r, http.MethodPost, "/v1/receipt-webhook/retry", api.ReceiptWebhookRetryIn{Kind: kind}, &out); err != nil {
		if isStatus(err, http.StatusTooManyRequests) {
			p := q.view(nil)
			p.Errors[""] = "一分钟内已重试过" + kindZH(kind) + "，请稍后再试。"
			s.receiptsView(q, p, http.StatusTooManyRequests, &receiptsData{})
			return
		}
		q.adminFail(err)
		return
	}
	q.redirect("/enterprise/receipts", retryNotice(out))
}

// kindZH is what a retry of kind ("reply", else receipts) moves, in
// words.
func kindZH(kind string) string {
	if kind == "reply" {
		return "回复"
	}
	return "回执"
}

// retryNotice says what a retry-now did: how many receipts (or replies),
// whether more wait, and in a cluster which nodes could not be asked.
func retryNotice(out api.ReceiptWebhookRetry) string {
	what := kindZH(out.Kind)
	notice := "已将 " + strconv.Itoa(out.Rescheduled) + " 条等待重试的" + what + "改为立即推送。"
	if out.More {
		notice += "还有更多等待重试的" + what + "，请一分钟后再点一次。"
	}
	if out.Partial {
		notice += "部分节点暂时无法联系" + nodeList(out.MissingNodes) + "，其" + what + "仍按退避时间重试。"
	}
	return notice
}

// nodeList names cluster nodes for a notice: "（节点 2、4）", or "" if none
// is known.
func nodeList(ids []uint16) string {
	if len(ids) == 0 {
		return ""
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(int(id))
	}
	return "（节点 " + strings.Join(parts, "、") + "）"
}
