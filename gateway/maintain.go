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
// other nodes until then: peers.go); what disabled enterprises hold that
// will never go is ended (settleHeld). All work in bounded batches so the
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
		g.settleHeld(ctx, now)
		if n, err := g.store.PurgeOrphans(ctx, now.Add(-g.cfg.OrphanTTL), 10000); err != nil {
			g.log.Error("purge orphan receipts", "err", err)
		} else if n > 0 {
			g.log.Info("dropped receipts that matched no message", "receipts", n)
		}
	}
}

// Held messages: housekeeping ends at most heldBatch parts a commit; it
// drops at most dropHeldMax parts of an enterprise a run (the rest at the
// next run), and looks at most at expireHeldScan of its waiting parts a
// run for those past their validity (going on where it stopped at the
// next run), so that the commit loop keeps serving the hot path between
// batches.
const (
	heldBatch      = 1000
	dropHeldMax    = 100_000
	expireHeldScan = 10_000
)

// settleHeld ends what the disabled enterprises hold that will never go
// (Holds): every waiting message of one whose held messages the operator
// dropped, and the parts of the others whose validity ended.
func (g *Gateway) settleHeld(ctx context.Context, now time.Time) {
	hs, ok := g.policy.(Holds)
	if !ok {
		return
	}
	type held struct {
		enterprise string
		dropped    time.Time
	}
	var all []held
	hs.Held(func(ent string, dropped time.Time) { all = append(all, held{ent, dropped}) })
	disabled := make(map[string]bool, len(all))
	for _, h := range all {
		disabled[h.enterprise] = true
		if h.dropped.IsZero() {
			g.expireHeld(ctx, h.enterprise, now)
		} else {
			g.dropHeld(ctx, h.enterprise, h.dropped, now)
		}
	}
	for ent := range g.heldAfter {
		if !disabled[ent] {
			delete(g.heldAfter, ent)
		}
	}
}

// dropHeld fails the waiting messages of a disabled enterprise whose held
// messages the operator dropped, rejected account_disabled: not charged,
// their receipts going as for any refusal after acceptance. It runs until
// the enterprise is enabled again, so a node that was down at the drop,
// or a message a node accepted in the moment the enterprise was disabled,
// is dropped too.
func (g *Gateway) dropHeld(ctx context.Context, ent string, dropped, now time.Time) {
	total := 0
	var after []byte
	for total < dropHeldMax && ctx.Err() == nil {
		// Every part waiting, not only those accepted before the drop's
		// time: the enterprise accepts nothing while it is disabled, and
		// a node's clock may run ahead of the one that recorded the drop.
		n, next, err := g.store.FailHeld(ctx, ent, after, now, now, queue.StateRejected, policy.ReasonAccountDisabled.String(), heldBatch)
		if err != nil {
			g.log.Error("drop held messages", "enterprise", ent, "err", err)
			break
		}
		total, after = total+n, next
		if next == nil {
			break
		}
	}
	if total > 0 {
		g.metrics.heldDropped.Add(float64(total))
		g.log.Info("dropped the held messages of a disabled enterprise", "enterprise", ent,
			"dropped_at", dropped.Format(time.RFC3339), "parts", total)
	}
}

// expireHeld fails, expired, the parts a disabled enterprise holds whose
// validity ended (as a worker would have, upstream.send): their receipts
// go, and the quota they reserve is released, without waiting for the
// enterprise to be enabled again. A run looks at expireHeldScan parts and
// the next goes on from there (heldAfter), so every part is looked at
// within a few runs however many are held.
func (g *Gateway) expireHeld(ctx context.Context, ent string, now time.Time) {
	if g.heldAfter == nil {
		g.heldAfter = make(map[string][]byte)
	}
	total, after := 0, g.heldAfter[ent]
	for scanned := 0; scanned < expireHeldScan && ctx.Err() == nil; scanned += heldBatch {
		n, next, err := g.store.ExpireHeld(ctx, ent, after, now, heldBatch)
		if err != nil {
			g.log.Error("expire held messages", "enterprise", ent, "err", err)
			break
		}
		total, after = total+n, next
		if next == nil {
			break // the last: the next run begins again at the first
		}
	}
	if after == nil {
		delete(g.heldAfter, ent)
	} else {
		g.heldAfter[ent] = after
	}
	if total > 0 {
		g.metrics.heldExpired.Add(float64(total))
		g.log.Info("expired held parts past their validity", "enterprise", ent, "parts", total)
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
