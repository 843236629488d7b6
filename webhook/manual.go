package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// What an admin does by hand (the self-service routes and the desk): a
// test receipt or reply, and posting the receipts that wait for a retry
// now.
//
// Test receipts: an enterprise admin checks an endpoint before receipts
// depend on it (POST /v1/receipt-webhook/test, the console's 回执推送
// page). A test POST is one sample receipt, sent as the enterprise's
// receipts go (its secret, its batch, the Sender's client: the timeout and
// the address check), and nothing of it is stored or retried. Its URL is
// the customer's choice, so the daemon bounds what the button can make it
// send: one test at a time an enterprise, testsPerMinute a minute, and
// testsInFlight over every enterprise.

// Limits of test receipts.
const (
	testsPerMinute = 10
	testsInFlight  = 4
)

// ErrTestBusy refuses a test receipt beyond the limits above.
var ErrTestBusy = errors.New("webhook: too many test receipts at once or this minute")

// TestResult is what a test receipt met.
type TestResult struct {
	Status   int           // the endpoint's HTTP status, 0 if no answer came
	Duration time.Duration // from the start of the POST to its answer or failure
	Signed   bool          // X-Qxtd-Signature was sent (the enterprise has a secret)
	// SignedPrevious: X-Qxtd-Signature-Previous was sent too (a rotated-out
	// secret still signs).
	SignedPrevious bool
	Batched        bool  // the body was a Batch of one (receipt_batch above 1)
	Err            error // why it was not a delivery; nil for a 2xx
}

// TestReceiptID is the id of a test receipt: no message has it.
const TestReceiptID = "0"

// manualLimits is the state of the limits: the starts of each enterprise's
// tests of the last minute, a semaphore for those in flight, and each
// enterprise's last retry-now of each kind.
type manualLimits struct {
	sem    chan struct{}
	mu     sync.Mutex
	recent map[string][]time.Time // a key a tested enterprise, pruned to the last minute
	busy   map[string]bool        // an enterprise's test in flight
	// retried is when each enterprise last made its receipts, or its
	// replies, due now (RetryNow, RetryRepliesNow), pruned to the last
	// minute: a kind's retry does not hold up the other's.
	retried map[retryKey]time.Time
}

// retryKey is an enterprise's retry-now of receipts, or of replies.
type retryKey struct {
	enterprise string
	reply      bool
}

// take admits a test of enterprise at now, or refuses it.
func (l *manualLimits) take(enterprise string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e, ts := range l.recent { // bounded by the enterprises that tested this minute
		i := 0
		for i < len(ts) && now.Sub(ts[i]) >= time.Minute {
			i++
		}
		if i == len(ts) {
			delete(l.recent, e)
		} else {
			l.recent[e] = ts[i:]
		}
	}
	if l.busy[enterprise] || len(l.recent[enterprise]) >= testsPerMinute {
		return false
	}
	select {
	case l.sem <- struct{}{}:
	default:
		return false
	}
	if l.busy == nil {
		l.busy = make(map[string]bool)
	}
	l.busy[enterprise] = true
	l.recent[enterprise] = append(l.recent[enterprise], now)
	return true
}

func (l *manualLimits) done(enterprise string) {
	l.mu.Lock()
	delete(l.busy, enterprise)
	l.mu.Unlock()
	<-l.sem
}

// Test POSTs a sample receipt (id TestReceiptID, delivered) to url as
// enterprise's receipts go, and reports what came back. It returns
// ErrTestBusy, without posting, beyond the limits of test receipts.
func (s *Sender) Test(ctx context.Context, enterprise, url string) (TestResult, error) {
	start := time.Now()
	if !s.manual.take(enterprise, start) {
		return TestResult{}, ErrTestBusy
	}
	defer s.manual.done(enterprise)
	rc := Receipt{ID: TestReceiptID, State: "delivered", Error: "000", Recipient: "13800138000",
		Segments: 1, Delivered: 1, SubmittedAt: start.Add(-3 * time.Second).UTC().Truncate(time.Second),
		DoneAt: start.UTC().Truncate(time.Second)}
	res := TestResult{Batched: s.cfg.Batch(enterprise) > 1}
	var body []byte
	var err error
	if res.Batched {
		body, err = json.Marshal(Batch{Receipts: []Receipt{rc}})
	} else {
		body, err = json.Marshal(rc)
	}
	if err != nil {
		return TestResult{}, err
	}
	res.Status, res.Signed, res.Err = s.postBody(ctx, url, enterprise, EventReceipt, body)
	res.SignedPrevious = res.Signed && s.cfg.Previous(enterprise) != ""
	res.Duration = time.Since(start)
	s.log.Info("test receipt", "enterprise", enterprise, "url", url, "status", res.Status,
		"duration", res.Duration, "err", res.Err)
	return res, nil
}

// TestReply POSTs a sample reply (id TestReceiptID, "收到") to url as
// enterprise's replies go (its secret, X-Qxtd-Event: reply, a ReplyBatch
// of one when its reply_batch is above 1), within the limits of test
// receipts, which it shares; nothing is stored or retried.
func (s *Sender) TestReply(ctx context.Context, enterprise, url string) (TestResult, error) {
	start := time.Now()
	if !s.manual.take(enterprise, start) {
		return TestResult{}, ErrTestBusy
	}
	defer s.manual.done(enterprise)
	rp := Reply{ID: TestReceiptID, From: "13800138000", To: "10657500000112", Extension: "12",
		Text: "收到", ReceivedAt: start.UTC().Truncate(time.Second)}
	res := TestResult{Batched: s.cfg.ReplyBatch(enterprise) > 1}
	var body []byte
	var err error
	if res.Batched {
		body, err = json.Marshal(ReplyBatch{Replies: []Reply{rp}})
	} else {
		body, err = json.Marshal(rp)
	}
	if err != nil {
		return TestResult{}, err
	}
	res.Status, res.Signed, res.Err = s.postBody(ctx, url, enterprise, EventReply, body)
	res.SignedPrevious = res.Signed && s.cfg.Previous(enterprise) != ""
	res.Duration = time.Since(start)
	s.log.Info("test reply", "enterprise", enterprise, "url", url, "status", res.Status,
		"duration", res.Duration, "err", res.Err)
	return res, nil
}

// Retry now: an admin whose endpoint is mended makes the receipts, or the
// replies, that wait for a later retry due at once (POST
// /v1/receipt-webhook/retry, with "kind": "reply" for replies) instead of
// waiting out their backoff, up to MaxBackoff. Each move is a store write,
// so it is bounded: once a minute an enterprise and a kind, at most
// retryNowMax a call, retryNowChunk a store operation (a commit that moves
// thousands would hold up everyone's answers).
const (
	retryNowEvery = time.Minute
	retryNowMax   = 10_000
	retryNowChunk = 1_000
)

// ErrRetryBusy refuses a retry-now within a minute of the enterprise's
// last of the same kind.
var ErrRetryBusy = errors.New("webhook: made due now less than a minute ago")

// RetryNow makes up to retryNowMax of enterprise's receipts that wait for
// a later retry due now, and wakes the sender for them (the store's
// OnHookReady); more says some still wait. It returns ErrRetryBusy within
// a minute of the enterprise's last call.
func (s *Sender) RetryNow(ctx context.Context, enterprise string) (moved int, more bool, err error) {
	return s.retryNow(ctx, enterprise, false)
}

// RetryRepliesNow is RetryNow of enterprise's replies (the store's
// OnReplyReady wakes the sender): its own minute, apart from the
// receipts'.
func (s *Sender) RetryRepliesNow(ctx context.Context, enterprise string) (moved int, more bool, err error) {
	return s.retryNow(ctx, enterprise, true)
}

func (s *Sender) retryNow(ctx context.Context, enterprise string, reply bool) (moved int, more bool, err error) {
	now := time.Now()
	key := retryKey{enterprise, reply}
	s.manual.mu.Lock()
	for k, at := range s.manual.retried { // bounded by the enterprises that asked this minute
		if now.Sub(at) >= retryNowEvery {
			delete(s.manual.retried, k)
		}
	}
	if _, ok := s.manual.retried[key]; ok {
		s.manual.mu.Unlock()
		return 0, false, ErrRetryBusy
	}
	if s.manual.retried == nil {
		s.manual.retried = make(map[retryKey]time.Time)
	}
	s.manual.retried[key] = now
	s.manual.mu.Unlock()
	dueNow := s.cfg.Store.HooksDueNow
	if reply {
		dueNow = s.cfg.Store.RepliesDueNow
	}
	for moved < retryNowMax {
		n, m, err := dueNow(ctx, enterprise, now, min(retryNowChunk, retryNowMax-moved))
		moved += n
		if err != nil {
			return moved, true, err
		}
		if more = m; !more {
			break
		}
	}
	return moved, more, nil
}
