package gateway

import (
	"context"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// Receipts that carry the SMSC id in another base than the submit_sm_resp
// did (decimal against hex). The store matches a receipt by the id's own
// form only (queue.Store.MatchOrphans says why), so such a receipt is kept
// as an orphan at first. The converter applies it once the acceptance it
// might have beaten would be recorded: its upstream's resp_timeout (plus a
// second for the commit) after it came, and once more after the late
// answers' window (rememberLate: three more resp_timeouts), for a part whose
// submit_sm_resp came late.

// convertEvery is how often the converter looks at the orphans.
const convertEvery = time.Second

// converter applies the orphan receipts that are old enough to the part
// whose id is theirs in another base. tried remembers, per orphan (key and
// arrival), how many of its two looks it has had: one that matches nothing
// is left to the cluster's pusher and to the purge (Config.OrphanTTL).
type converter struct {
	g     *Gateway
	tried map[string]orphanTries
}

type orphanTries struct {
	receivedAt time.Time
	n          int
}

func newConverter(g *Gateway) *converter {
	return &converter{g: g, tried: make(map[string]orphanTries)}
}

func (c *converter) run(ctx context.Context) {
	t := time.NewTimer(convertEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n := c.round(ctx, now)
			// Each round reads every orphan: when many wait (in cluster
			// mode, for an owner that is down), it runs less often, so
			// that it costs a bounded share of a core.
			t.Reset(max(convertEvery, time.Duration(n/convertListedPerSecond)*time.Second))
		}
	}
}

// convertListedPerSecond is how many orphans a second of the converter's
// rounds may list.
const convertListedPerSecond = 20000

// convertGrace is how long after it came an orphan of upstream may be for an
// acceptance not recorded yet, and how long after it came a late answer
// may still record one.
func convertGrace(g *Gateway, upstream string) (first, late time.Duration) {
	rt := DefaultRespTimeout
	if u, ok := g.byName[upstream]; ok {
		rt = u.cfg.RespTimeout
	}
	return rt + time.Second, 4*rt + time.Second
}

// round lists the orphans once, offers the store those due a look, and
// returns how many it listed.
func (c *converter) round(ctx context.Context, now time.Time) int {
	seen := make(map[string]struct{}, len(c.tried))
	var after []byte
	for ctx.Err() == nil {
		page, more, err := c.g.store.Orphans(ctx, after, MaxPeerBatch)
		if err != nil {
			if ctx.Err() == nil {
				c.g.log.Error("list orphan receipts", "err", err)
			}
			return len(seen)
		}
		var due []queue.OrphanDLR
		for _, o := range page {
			k := string(o.Key)
			seen[k] = struct{}{}
			tr := c.tried[k]
			if !tr.receivedAt.Equal(o.ReceivedAt) {
				tr = orphanTries{receivedAt: o.ReceivedAt} // stored again: a new receipt
			}
			first, late := convertGrace(c.g, o.DLR.Upstream)
			age := now.Sub(o.ReceivedAt)
			if tr.n == 0 && age >= first || tr.n == 1 && age >= late {
				tr.n++
				due = append(due, o)
			}
			c.tried[k] = tr
		}
		if len(due) > 0 {
			c.match(ctx, due)
		}
		if more == nil {
			break
		}
		after = more
	}
	if ctx.Err() == nil {
		for k := range c.tried {
			if _, ok := seen[k]; !ok {
				delete(c.tried, k) // matched, taken, purged or taken by a peer
			}
		}
	}
	return len(seen)
}

func (c *converter) match(ctx context.Context, due []queue.OrphanDLR) {
	res, err := c.g.store.MatchOrphans(ctx, due)
	if err != nil {
		if ctx.Err() == nil {
			c.g.log.Error("match receipts in another base", "err", err)
		}
		return
	}
	for i, r := range res {
		if r == queue.Unmatched {
			continue
		}
		c.g.metrics.dlrsConverted.WithLabelValues(r.String()).Inc()
		if r == queue.Matched {
			c.g.log.Debug("receipt matched in another base", "upstream", due[i].DLR.Upstream, "smsc_id", due[i].DLR.SMSCID)
		}
	}
}
