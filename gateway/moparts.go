package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
)

// Replies the SMSC split (long replies, 长回复).
//
// A handset's reply longer than one SMS reaches us as several deliver_sm
// (or data_sm), each with a concatenation UDH (IE 0x00 or 0x08) or SAR
// TLVs. The enterprise is to see one reply, as Kannel's
// sms-combine-concatenated-mo shows it, not fragments (its ESME, its
// reply webhook, its inbox, the opt-out check):
//
//  1. Each part is stored (queue.StoreMOPart: by upstream, source,
//     destination, reference and total) before the SMSC is answered OK.
//     A part the SMSC sends again replaces the one stored.
//  2. The part that completes its group joins it at once: the parts'
//     data in sequence order, decoded together (segment.JoinText: a
//     surrogate pair or GSM escape split across parts is whole), owned as
//     a single reply would be, stored with the parts' deletion in one
//     commit (queue.StoreJoinedMO), then forwarded, POSTed and checked
//     for an opt-out like any reply.
//  3. Housekeeping (at start and every Config.MaintainInterval) joins a
//     complete group a crash left, and stores a group still incomplete
//     Config.MOReassemblyTimeout after its first part as one reply of
//     the parts that came, with PartsMissing: never dropped.
//     A part of a group joined lately sent again with the same data
//     (our answer lost) is answered and dropped (queue/mojoined.go).
//  4. An upstream holds at most Config.MOReassemblyMaxParts parts (and
//     MOReassemblyMaxBytes of text) waiting: a part past either is stored
//     as a reply of its own at once, as before joining, so that an SMSC
//     sending first parts that never complete cannot grow the store
//     without bound.
//
// In a cluster the carrier spreads a reply's parts over the binds of its
// system_id, held by several nodes: each part goes to the one node that
// joins that reply (mojoin.go), and is stored there as above; a node
// that cannot reach it keeps the part itself, and each node then stores
// what it has at the timeout.

// partOutcome is what receiveMOPart did with a part.
type partOutcome int

const (
	partStored partOutcome = iota // stored as a part: answer OK
	partAlone                     // not stored: store it as a reply of its own
	partFailed                    // the store failed: answer a system error
)

// receiveMOPart stores m (its text frag, its concatenation info) as a
// part of its reply, and joins the reply when it was the last part
// missing. In a cluster a part whose reply another node joins is handed
// to that node first (mojoin.go). A failure to join is logged: the part
// is stored, and housekeeping joins the group later.
func (g *Gateway) receiveMOPart(ctx context.Context, m *queue.MO, frag segment.Fragment, info *segment.UDHInfo) partOutcome {
	p := &queue.MOPart{
		MOPartGroup: queue.MOPartGroup{Upstream: m.Upstream, Source: m.Source, Dest: m.Dest, Ref: info.Ref, Total: info.Total},
		Seq:         info.Seq, Coding: uint8(frag.Coding), Data: frag.Data,
		SourceTON: m.SourceTON, SourceNPI: m.SourceNPI, ReceivedAt: m.ReceivedAt,
	}
	if frag.Coding == segment.Octets {
		p.Binary, p.DataCoding, p.UDH = true, m.DataCoding, frag.UDH
		p.SourcePort, p.DestPort = m.SourcePort, m.DestPort
	}
	if out, done := g.forwardMOPart(ctx, p); done {
		return out
	}
	return g.storeMOPart(ctx, m, p)
}

// storeMOPart is receiveMOPart on this node: p (of m) stored here.
func (g *Gateway) storeMOPart(ctx context.Context, m *queue.MO, p *queue.MOPart) partOutcome {
	lim := queue.MOPartLimits{MaxParts: g.cfg.MOReassemblyMaxParts, MaxBytes: g.cfg.MOReassemblyMaxBytes}
	complete, err := g.store.StoreMOPart(ctx, p, lim)
	switch {
	case errors.Is(err, queue.ErrMOPartsFull):
		g.metrics.moParts.WithLabelValues(moPartAlone).Inc()
		if g.moFull.set(m.Upstream, true) {
			g.log.Warn("reply parts waiting for the rest of their reply at the cap: parts stored as replies of their own until some are joined",
				"upstream", m.Upstream, "max_parts", lim.MaxParts, "max_bytes", lim.MaxBytes, "err", err)
		}
		return partAlone
	case errors.Is(err, queue.ErrMOPartJoined):
		// Our answer to it was lost, and its reply is joined already.
		g.metrics.moParts.WithLabelValues(moPartAgain).Inc()
		g.log.Debug("reply part sent again after its reply was joined: answered, not stored", "group", p.MOPartGroup.String(), "seq", p.Seq)
		return partStored
	case errors.Is(err, queue.ErrInvalid):
		g.metrics.moParts.WithLabelValues(moPartAlone).Inc()
		g.log.Warn("reply part that cannot be kept for joining: stored as a reply of its own", "upstream", m.Upstream, "err", err)
		return partAlone
	case err != nil && ctx.Err() != nil:
		g.moCut(m.Upstream, err)
		return partFailed
	case err != nil:
		g.log.Error("store a reply part", "upstream", m.Upstream, "err", err)
		g.metrics.moReceived.WithLabelValues("store_error").Inc()
		return partFailed
	}
	g.metrics.moParts.WithLabelValues(moPartStored).Inc()
	if g.moFull.set(m.Upstream, false) {
		g.log.Info("reply parts below the cap again: joined as they complete", "upstream", m.Upstream)
	}
	if complete {
		// The join is the gateway's, not the connection's: the part is
		// stored, and a join cut by the connection's end (the SMSC
		// dropped it, or a bind it had lost was left) would leave a whole
		// reply unjoined until the part came again or housekeeping ran,
		// logged as a store failure; or, its commit under way, joined
		// with its opt-out left unrecorded and its forwarders not woken.
		// Joined, the part sent again is answered and dropped.
		if err := g.joinMOParts(context.WithoutCancel(ctx), p.MOPartGroup, false); err != nil {
			g.log.Error("join a reply's parts: joined later", "group", p.MOPartGroup.String(), "err", err)
		}
	}
	return partStored
}

// joinMOParts stores the parts of group as one reply and sends it on:
// all of them, or with timedOut those present (the reply then says how
// many are missing). A group no longer there, or incomplete without
// timedOut, is left: another call joined it, or will.
func (g *Gateway) joinMOParts(ctx context.Context, group queue.MOPartGroup, timedOut bool) error {
	parts, err := g.store.MOParts(group)
	if err != nil {
		return err
	}
	if len(parts) == 0 || !timedOut && len(parts) != int(group.Total) {
		return nil
	}
	m := &queue.MO{
		Source: group.Source, Dest: group.Dest, SourceTON: parts[0].SourceTON, SourceNPI: parts[0].SourceNPI,
		Upstream: group.Upstream, PartsMissing: int(group.Total) - len(parts),
	}
	if !joinMOBinary(m, parts) {
		m.Text = g.joinMOText(group, parts)
	}
	// The latest part's arrival: the reply was whole (or given up on)
	// then, and ids, which follow storing, stay close to arrival order.
	for _, p := range parts {
		if p.ReceivedAt.After(m.ReceivedAt) {
			m.ReceivedAt = p.ReceivedAt
		}
	}
	result := g.resolveMO(m)
	err = g.store.StoreJoinedMO(ctx, parts, m)
	switch {
	case errors.Is(err, queue.ErrMOPartsGone):
		return nil // joined by another call, or changed: the next look joins it
	case err != nil:
		return err
	}
	how := moJoinedComplete
	if m.PartsMissing > 0 {
		how = moJoinedTimeout
		g.log.Warn("reply stored without all its parts after the reassembly timeout", "upstream", group.Upstream,
			"source", group.Source, "dest", group.Dest, "parts", len(parts), "total", group.Total, "id", m.ID)
	}
	g.metrics.moJoined.WithLabelValues(how).Inc()
	g.moStored(ctx, m, result)
	return nil
}

// joinMOBinary sets m's octets to parts' (in sequence order) when the
// reply is binary, its first binary part's data_coding, UDH and port
// TLVs going with
// them, and reports whether it was. A text part among binary ones (no
// handset sends that) is joined as the data it was stored as.
func joinMOBinary(m *queue.MO, parts []*queue.MOPart) bool {
	first := -1
	for i, p := range parts {
		if p.Binary {
			first = i
			break
		}
	}
	if first < 0 {
		return false
	}
	m.DataCoding, m.UDH = parts[first].DataCoding, parts[first].UDH
	m.SourcePort, m.DestPort = parts[first].SourcePort, parts[first].DestPort
	m.Binary = []byte{}
	for _, p := range parts {
		m.Binary = append(m.Binary, p.Data...)
	}
	return true
}

// joinMOText decodes the parts together; parts that do not decode
// together (a part missing in the middle of a character) are decoded one
// by one, what does not decode left out: the reply is kept.
func (g *Gateway) joinMOText(group queue.MOPartGroup, parts []*queue.MOPart) string {
	frags := make([]*segment.Fragment, len(parts))
	for i, p := range parts {
		frags[i] = &segment.Fragment{Coding: segment.Coding(p.Coding), Data: p.Data}
	}
	text, err := segment.JoinText(frags)
	if err == nil {
		return text
	}
	g.log.Warn("reply parts that do not decode together: decoded one by one", "group", group.String(), "err", err)
	var b strings.Builder
	for _, f := range frags {
		s, _ := f.Text()
		b.WriteString(s)
	}
	return b.String()
}

// moReassemblyHousekeeping joins the complete groups of reply parts a
// crash left, and those incomplete MOReassemblyTimeout after their first
// part came; and forgets the replies joined longer ago than that (their
// parts sent again would have been waited for no longer).
func (g *Gateway) moReassemblyHousekeeping(ctx context.Context, now time.Time) {
	for ctx.Err() == nil {
		n, err := g.store.PurgeJoinedMOParts(ctx, now.Add(-g.cfg.MOReassemblyTimeout), 1000)
		if err != nil {
			g.log.Error("purge the marks of joined replies", "err", err)
			break
		}
		if n < 1000 {
			break
		}
	}
	groups, err := g.store.MOPartGroups()
	if err != nil {
		g.log.Error("pending reply parts", "err", err)
		return
	}
	for _, gi := range groups {
		if ctx.Err() != nil {
			return
		}
		if !gi.Complete && now.Sub(gi.Started) < g.cfg.MOReassemblyTimeout {
			continue
		}
		if err := g.joinMOParts(ctx, gi.Group, !gi.Complete); err != nil {
			g.log.Error("join a reply's parts", "group", gi.Group.String(), "err", err)
		}
	}
}

// moFull remembers the upstreams whose reply parts are at their cap (and,
// as Gateway.moOwnersDown, the nodes that do not take the parts handed to
// them: mojoin.go), so that reaching it is logged once, not once a part.
type moFull struct {
	mu   sync.Mutex
	full map[string]bool
}

// set records upstream's state and reports whether it changed.
func (f *moFull) set(upstream string, full bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full[upstream] == full {
		return false
	}
	if f.full == nil {
		f.full = make(map[string]bool)
	}
	f.full[upstream] = full
	return true
}

// Labels of qxtd_mo_parts_total and qxtd_mo_joined_total.
const (
	moPartStored = "stored"
	moPartAlone  = "alone"
	moPartAgain  = "again"
	// In a cluster (mojoin.go): handed to the node that joins the reply
	// and stored there, or not (kept here).
	moPartForwarded     = "forwarded"
	moPartForwardFailed = "forward_failed"
	moJoinedComplete    = "complete"
	moJoinedTimeout     = "timeout"
)
