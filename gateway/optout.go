package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// Opt-outs (回复TD退订): a reply of an enterprise whose text is an opt-out
// keyword puts its sender on the enterprise's opt-out list. The reply is
// stored with OptOutPending in the commit that stores it, so the intent
// is durable before the SMSC is answered; the opt-out itself is a write
// of the policy store (in a cluster, through etcd), recorded at once and,
// when that fails, again by the optOuts loop until it succeeds. Only then
// is the reply's mark cleared. The policy's OptOut is idempotent, so a
// crash between the two writes only records it a second time, a no-op.

// OptOutRecorder is the optional Policy part that keeps opt-out lists.
// Rules implements it; without it a TD reply is stored and forwarded like
// any other.
type OptOutRecorder interface {
	OptOut(enterprise, number string, moID uint64, at time.Time) (added bool, err error)
}

// OptOut implements OptOutRecorder.
func (r Rules) OptOut(enterprise, number string, moID uint64, at time.Time) (bool, error) {
	return r.P.OptOut(enterprise, number, moID, at)
}

var _ OptOutRecorder = Rules{}

// Opt-out retries: the first after optOutRetryMin, doubling to
// optOutRetryMax while recording keeps failing; optOutBatch replies a
// round.
const (
	optOutRetryMin = time.Second
	optOutRetryMax = 30 * time.Second
	optOutBatch    = 100
)

// optOuts records the opt-outs of stored replies (see above).
type optOuts struct {
	g    *Gateway
	wake chan struct{} // 1-buffered: a recording failed, or a start
}

func newOptOuts(g *Gateway) *optOuts {
	return &optOuts{g: g, wake: make(chan struct{}, 1)}
}

// record records m's opt-out at once, as the reply comes in, and clears
// its mark; a failure leaves the mark for run.
func (o *optOuts) record(ctx context.Context, m *queue.MO) {
	if !o.try(m) {
		o.kick()
		return
	}
	if err := o.g.store.OptOutsRecorded(context.WithoutCancel(ctx), []uint64{m.ID}); err != nil {
		// On the list already; run clears the mark later (a no-op
		// recording).
		o.g.log.Warn("clear a recorded opt-out", "enterprise", m.Enterprise, "id", m.ID, "err", err)
		o.kick()
	}
}

func (o *optOuts) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// try records m's opt-out and reports whether it is done with: on the
// list (now or before), or never to be (no mobile number; the enterprise
// removed). A failure to write is logged and counted, and worth another
// try.
func (o *optOuts) try(m *queue.MO) bool {
	g := o.g
	rec, ok := g.policy.(OptOutRecorder)
	if !ok {
		return true // no opt-out lists: nothing to record
	}
	added, err := rec.OptOut(m.Enterprise, m.Source, m.ID, m.ReceivedAt)
	switch {
	case err != nil && isReason(err, policy.ReasonInvalidNumber):
		g.log.Warn("opt-out reply from no mobile number: ignored", "enterprise", m.Enterprise, "source", m.Source, "id", m.ID)
	case errors.Is(err, policy.ErrNotFound):
		g.log.Warn("opt-out reply of an enterprise removed since: ignored", "enterprise", m.Enterprise, "source", m.Source, "id", m.ID)
	case err != nil:
		g.metrics.optOutErrors.Inc()
		g.log.Error("record opt-out: tried again later", "enterprise", m.Enterprise, "source", m.Source, "id", m.ID, "err", err)
		return false
	case added:
		g.metrics.optOuts.Inc()
		g.log.Info("opted out", "enterprise", m.Enterprise, "source", m.Source, "id", m.ID)
	}
	return true
}

// run records the opt-outs still pending: at start (those a crash or a
// failure left) and after a failure, with a back-off while they fail.
func (o *optOuts) run(ctx context.Context) {
	wait := optOutRetryMin
	timer := time.NewTimer(0) // a first round at start
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-o.wake:
			// A fresh failure: wait before the next try, not spin.
			// (Since Go 1.23 Reset leaves no stale tick behind.)
			timer.Reset(wait)
			continue
		}
		failed := o.round(ctx)
		if !failed {
			wait = optOutRetryMin
			continue // until the next failure's kick
		}
		timer.Reset(wait)
		wait = min(2*wait, optOutRetryMax)
	}
}

// round tries the pending opt-outs, oldest first, a batch at a time,
// and reports whether one failed: the round ends there, since what failed
// it (the disk, etcd) most likely fails the rest too.
func (o *optOuts) round(ctx context.Context) (failed bool) {
	var after uint64
	for ctx.Err() == nil {
		ms, err := o.g.store.PendingOptOuts(after, optOutBatch)
		if err != nil {
			o.g.log.Error("pending opt-outs", "err", err)
			return true
		}
		var done []uint64
		for _, m := range ms {
			after = m.ID
			if !o.try(m) {
				failed = true
				break
			}
			done = append(done, m.ID)
		}
		if len(done) > 0 {
			if err := o.g.store.OptOutsRecorded(context.WithoutCancel(ctx), done); err != nil {
				o.g.log.Error("clear recorded opt-outs", "n", len(done), "err", err)
				return true
			}
		}
		if failed || len(ms) < optOutBatch {
			return failed
		}
	}
	return failed
}

func (g *Gateway) optOutKeywords() []string {
	if g.cfg.OptOutKeywords == nil {
		return policy.DefaultOptOutKeywords
	}
	return g.cfg.OptOutKeywords
}
