package gateway

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// Answer is the answer of a send the caller keeps under a key (package
// api: an Idempotency-Key), to be stored in the transaction that stores
// the send's messages (queue.WithAnswer), so that a crash leaves both or
// neither: a retry can never send again what was stored without its
// answer. Send and SendEach take it from their context (WithAnswer); the
// first of them that stores messages uses it, the others ignore it.
type Answer struct {
	Key, Enterprise string
	At              time.Time
	Header          []byte // as stored (queue.Answer.Header)
	// Sum is the request's fingerprint (queue.Answer.Sum), asked for just
	// before the messages are stored (the request's body has been read).
	Sum func() []byte
	// Render is the body of the answer to the send's results, exactly as
	// the caller writes it when the send returns them.
	Render func([]SendResult) []byte
	// Book is where it is kept (queue.Answer.Book): a batch job keeps
	// its chunks' answers so (queue.AnswerJob), to resume after a restart.
	Book queue.Book

	taken  atomic.Bool
	stored []byte // the body stored with the messages (Stored)
}

type answerCtxKey struct{}

// WithAnswer returns a context whose first send that stores messages
// stores a's answer with them.
func WithAnswer(ctx context.Context, a *Answer) context.Context {
	return context.WithValue(ctx, answerCtxKey{}, a)
}

// Stored is the answer's body stored with the send's messages, nil if
// none was (no send stored messages: refused, or the store failed).
func (a *Answer) Stored() []byte { return a.stored }

// takeAnswer returns ctx's Answer if no send used it yet.
func takeAnswer(ctx context.Context) *Answer {
	a, _ := ctx.Value(answerCtxKey{}).(*Answer)
	if a == nil || !a.taken.CompareAndSwap(false, true) {
		return nil
	}
	return a
}

// render returns the function that renders a's answer for b's messages'
// outcomes (errs, ids: by b.msgs' index) as b's results would then be,
// for enqueueLimited (a refused message's quota refusal as g.settle
// words it under limit); nil without a.
func (a *Answer) render(b *outgoing, g *Gateway, limit int64) func(errs []error, ids []uint64) *queue.Answer {
	if a == nil {
		return nil
	}
	sum := a.Sum()
	return func(errs []error, ids []uint64) *queue.Answer {
		res := slices.Clone(b.results)
		for k := range b.msgs {
			g.settle(&res[b.slots[k]], errs[k], ids[k], limit)
		}
		settleDups(res, b.dups)
		return &queue.Answer{Key: a.Key, Enterprise: a.Enterprise, At: a.At, Code: 200, Sum: sum, Header: a.Header, Body: a.Render(res), Book: a.Book}
	}
}

// settle sets a stored message's result: its id, or the quota's refusal
// (err, under the enterprise's limit). It runs in the commit too (the
// answer stored with the messages): what it writes depends on err alone.
func (g *Gateway) settle(r *SendResult, err error, id uint64, limit int64) {
	if err != nil {
		r.Err = g.quotaRefusal(err, limit)
		return
	}
	r.ID = id
}
