package gateway

import (
	"context"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// maintain purges finished messages past the retention period and
// settles what will never finish on its own: parts whose receipt
// never came (after the validity period plus a grace period) become
// unknown, which releases their quota reservation and sends the ESME a
// final receipt; receipts that never matched a message are dropped after
// Config.OrphanTTL (a day; in cluster mode the pusher offers them to the
// other nodes until then: peers.go). Both work in bounded batches so the
// hot path is never held up.
// It runs every Config.MaintainInterval.
//
// Messages the ESME split itself (presplit.go): at start-up and on every
// run, groups whose parts are all in but that were never assembled (a
// crash after the last part's ack) are assembled, and groups still
// incomplete Config.ReassemblyTimeout after their first part are
// rejected. Replies the SMSC split (moparts.go) likewise: complete groups
// a crash left are joined, groups incomplete Config.MOReassemblyTimeout
// after their first part are stored with the parts that came.
func (g *Gateway) maintain(ctx context.Context) {
	g.reassemblyHousekeeping(ctx, time.Now())
	g.moReassemblyHousekeeping(ctx, time.Now())
	t := time.NewTicker(g.cfg.MaintainInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		g.reassemblyHousekeeping(ctx, now)
		g.moReassemblyHousekeeping(ctx, now)
		for {
			n, err := g.store.ExpireSubmitted(ctx, now.Add(-g.cfg.Validity-g.cfg.ReceiptGrace), now, 1000)
			if err != nil {
				g.log.Error("expire submitted", "err", err)
				break
			}
			if n > 0 {
				g.log.Info("settled parts without receipt as unknown", "parts", n)
			}
			if n < 1000 || ctx.Err() != nil {
				break
			}
		}
		if g.cfg.Retention > 0 {
			g.purge(ctx, now.Add(-g.cfg.Retention))
		}
		g.dropHeld(ctx, now)
		if n, err := g.store.PurgeOrphans(ctx, now.Add(-g.cfg.OrphanTTL), 10000); err != nil {
			g.log.Error("purge orphan receipts", "err", err)
		} else if n > 0 {
			g.log.Info("dropped receipts that matched no message", "receipts", n)
		}
	}
}

// Dropping held messages: at most dropHeldBatch parts a commit, and
// dropHeldMax parts an enterprise a run (the rest at the next run), so
// that the commit loop keeps serving the hot path between batches.
const (
	dropHeldBatch = 1000
	dropHeldMax   = 100_000
)

// dropHeld fails the waiting messages of each disabled enterprise whose
// held messages the operator dropped (HeldDrops), rejected
// account_disabled: not charged, their receipts going as for any refusal
// after acceptance. It runs until the enterprise is enabled again, so a
// node that was down at the drop, or a message a node accepted in the
// moment the enterprise was disabled, is dropped too.
func (g *Gateway) dropHeld(ctx context.Context, now time.Time) {
	hd, ok := g.policy.(HeldDrops)
	if !ok {
		return
	}
	type drop struct {
		enterprise string
		at         time.Time
	}
	var drops []drop
	hd.HeldDrops(func(ent string, at time.Time) { drops = append(drops, drop{ent, at}) })
	for _, d := range drops {
		total := 0
		for total < dropHeldMax && ctx.Err() == nil {
			// Every part waiting, not only those accepted before the
			// drop's time: the enterprise accepts nothing while it is
			// disabled, and a node's clock may run ahead of the one
			// that recorded the drop.
			n, more, err := g.store.FailHeld(ctx, d.enterprise, now, now, queue.StateRejected, policy.ReasonAccountDisabled.String(), dropHeldBatch)
			if err != nil {
				g.log.Error("drop held messages", "enterprise", d.enterprise, "err", err)
				break
			}
			total += n
			if !more || n == 0 {
				break
			}
		}
		if total > 0 {
			g.metrics.heldDropped.Add(float64(total))
			g.log.Info("dropped the held messages of a disabled enterprise", "enterprise", d.enterprise,
				"dropped_at", d.at.Format(time.RFC3339), "parts", total)
		}
	}
}

// purge deletes finished messages accepted before cutoff, then replies
// (MO) received before it, taken or not, a bounded
// batch at a time so that the commit loop keeps serving the hot path
// between batches. Usage counters (bills) are not affected.
func (g *Gateway) purge(ctx context.Context, cutoff time.Time) {
	total := 0
	for ctx.Err() == nil {
		n, err := g.store.Purge(ctx, cutoff, 512)
		if err != nil {
			g.log.Error("retention purge", "err", err)
			break
		}
		total += n
		if n < 512 {
			break
		}
	}
	if total > 0 {
		g.log.Info("purged finished messages past retention", "messages", total, "cutoff", cutoff)
	}
	mos, untaken := 0, 0
	for ctx.Err() == nil {
		n, u, err := g.store.PurgeMOs(ctx, cutoff, 512)
		if err != nil {
			g.log.Error("retention purge of replies", "err", err)
			break
		}
		mos, untaken = mos+n, untaken+u
		g.metrics.moUntaken.Add(float64(u))
		if n < 512 {
			break
		}
	}
	if mos > 0 {
		g.log.Info("purged replies past retention", "replies", mos, "untaken", untaken, "cutoff", cutoff)
	}
}
