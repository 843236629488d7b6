package gateway

import (
	"context"
	"time"
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
		if n, err := g.store.PurgeOrphans(ctx, now.Add(-g.cfg.OrphanTTL), 10000); err != nil {
			g.log.Error("purge orphan receipts", "err", err)
		} else if n > 0 {
			g.log.Info("dropped receipts that matched no message", "receipts", n)
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
