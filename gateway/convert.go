package gateway

import (
	"context"
	"math/big"
	"strconv"
	"strings"
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

// ReceiptIDs says how an SMSC's receipts give the message id its
// submit_sm_resp gave (UpstreamConfig.ReceiptIDs).
type ReceiptIDs string

const (
	// ReceiptIDsAuto: the same id, or (seen only once the upstream's
	// resp_timeout has passed since the receipt came) the same number in
	// the other base. The default.
	ReceiptIDsAuto ReceiptIDs = "auto"
	// ReceiptIDsSame: the same id (case and leading zeros aside); never
	// converted.
	ReceiptIDsSame ReceiptIDs = "same"
	// ReceiptIDsDecimal: hex in submit_sm_resp, its value in decimal in
	// receipts; converted as the receipt comes, so matched at once.
	ReceiptIDsDecimal ReceiptIDs = "decimal"
	// ReceiptIDsHex: decimal in submit_sm_resp, its value in hex in
	// receipts; converted as the receipt comes.
	ReceiptIDsHex ReceiptIDs = "hex"
)

// ParseReceiptIDs reads a ReceiptIDs setting; "" is ReceiptIDsAuto.
func ParseReceiptIDs(s string) (ReceiptIDs, bool) {
	switch r := ReceiptIDs(s); r {
	case "":
		return ReceiptIDsAuto, true
	case ReceiptIDsAuto, ReceiptIDsSame, ReceiptIDsDecimal, ReceiptIDsHex:
		return r, true
	}
	return "", false
}

// receiptID is the id of a receipt from an upstream set to r, in the base
// its submit_sm_resp gave: an id that is not a number in the base r
// expects is left as it is (it then matches only as given).
func (r ReceiptIDs) receiptID(id string) string {
	from, to := 0, 0
	switch r {
	case ReceiptIDsDecimal:
		from, to = 10, 16
	case ReceiptIDsHex:
		from, to = 16, 10
	default:
		return id
	}
	t := strings.TrimSpace(strings.TrimRight(id, "\x00"))
	if u, err := strconv.ParseUint(t, from, 64); err == nil {
		return strconv.FormatUint(u, to)
	}
	if v, ok := new(big.Int).SetString(t, from); ok && v.Sign() >= 0 {
		return v.Text(to)
	}
	return id
}

// converts reports whether the orphans of upstream may be matched by
// their id in the other base (ReceiptIDsAuto).
func (g *Gateway) converts(upstream string) bool {
	u, ok := g.byName[upstream]
	return !ok || u.cfg.ReceiptIDs == ReceiptIDsAuto || u.cfg.ReceiptIDs == ""
}

// convertEvery is how often the converter looks at the orphans.
const convertEvery = time.Second

// converter applies the orphan receipts that are old enough to the part
// whose id is theirs in another base. Each orphan gets two looks: once its
// first grace has passed since it came, and again once the late answers'
// one has (a look that matches nothing leaves it to the cluster's pusher
// and to the purge, Config.OrphanTTL).
//
// It remembers nothing per orphan: a look is due when the orphan's age
// crossed one of the two graces between the last round that listed every
// orphan and this one (lookDue). An SMSC may send receipts for messages
// that are not ours by the hundred thousand (store.max_orphans keeps up to
// 1,000,000 an upstream); remembering each orphan's looks held 89 MiB at a
// million of them (210 MiB before they were hashed), for a day, the
// orphans' lifetime.
type converter struct {
	g *Gateway
	// last is the time of the last round that listed every orphan (zero
	// before the first: that round looks once at every orphan past its
	// first grace, so that a restart does not skip those whose looks were
	// due while the daemon was down).
	last time.Time
	// matched counts, per upstream, the receipts matched by conversion,
	// for the one warning that suggests naming the SMSC's form.
	matched map[string]int
}

// convertHint is how many receipts of an upstream match by conversion
// before the converter suggests setting its receipt_ids.
const convertHint = 20

func newConverter(g *Gateway) *converter {
	return &converter{g: g, matched: make(map[string]int)}
}

// lookDue reports whether an orphan that came at received is due a look
// in a round at now, the last complete round having been at last: its age
// crossed a grace (first or late) since last. Crossing both between two
// rounds is one look (the later one serves both: it comes after any late
// answer). At the first round (last zero) every orphan past its first
// grace is due once.
func lookDue(received, last, now time.Time, first, late time.Duration) bool {
	age := now.Sub(received)
	if last.IsZero() {
		return age >= first
	}
	before := last.Sub(received)
	return age >= first && before < first || age >= late && before < late
}

func (c *converter) run(ctx context.Context) {
	t := time.NewTimer(convertEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			t.Reset(convertPause(c.round(ctx, now)))
		}
	}
}

// convertPause is the pause after a round that listed n orphans. Each round
// reads every orphan: when many wait (in cluster mode, for an owner that
// is down), it runs less often, so that it costs a bounded share of a
// core.
func convertPause(n int) time.Duration {
	return max(convertEvery, time.Duration(n)*time.Second/convertListedPerSecond)
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
	listed := 0
	var after []byte
	for ctx.Err() == nil {
		page, more, err := c.g.store.Orphans(ctx, after, MaxPeerBatch)
		if err != nil {
			if ctx.Err() == nil {
				c.g.log.Error("list orphan receipts", "err", err)
			}
			// c.last stays: the next round looks again at what this one
			// did not reach (and at some it did: a look more, no harm).
			return listed
		}
		listed += len(page)
		var due []queue.OrphanDLR
		for _, o := range page {
			if !c.g.converts(o.DLR.Upstream) {
				continue
			}
			first, late := convertGrace(c.g, o.DLR.Upstream)
			if lookDue(o.ReceivedAt, c.last, now, first, late) {
				due = append(due, o)
			}
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
		c.last = now
	}
	return listed
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
		if r != queue.Matched {
			continue
		}
		up := due[i].DLR.Upstream
		c.g.log.Debug("receipt matched in another base", "upstream", up, "smsc_id", due[i].DLR.SMSCID)
		if c.matched[up]++; c.matched[up] == convertHint {
			form := ReceiptIDsHex
			if strings.Trim(due[i].DLR.SMSCID, "0123456789") == "" {
				form = ReceiptIDsDecimal
			}
			c.g.log.Warn("upstream's receipts give the message id in another base than its submit_sm_resp: they reach the ESMEs resp_timeout late; set its receipt_ids",
				"upstream", up, "receipts", convertHint, "receipt_ids", string(form))
		}
	}
}
