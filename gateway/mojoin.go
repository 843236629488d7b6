package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
)

// Long replies joined across the nodes of a cluster.
//
// The carrier's SMSC spreads the parts of one reply over the binds of its
// system_id, and in a cluster each node holds some of them. So that the
// reply is joined — stored, counted, forwarded, POSTed and checked for an
// opt-out once, whole — every part goes to one node, the reply's owner:
// MOPartPeers.MOPartOwner names it from the group (upstream, source,
// destination, reference, total) over the live members, the same on
// every node (cluster.MOPartOwner: rendezvous hashing). A part that came
// on a bind of another node is handed to the owner over the peer API
// (POST /peer/v1/moparts); the owner stores it as a part of its own bind
// (StorePeerMOPart: moparts.go's storeMOPart) and answers once it is
// durable; only then is the SMSC answered OK. The part is therefore
// durable somewhere before the SMSC hears OK, as on one node.
//
// An owner that does not answer stored within moForwardTimeout (down, its
// store failing, its parts' pool full) leaves the part here: stored as a
// part on this node, as without a cluster, and counted forward_failed.
// Its reply is then in fragments at the reassembly timeout (each node
// storing what it holds, with parts_missing), and a part the owner did
// commit although its answer was lost is one fragment more: nothing is
// lost, a fragment may be stored twice.
//
// The owner changes with the members: a part that came before an owner
// died is durable on it and is stored there, with the parts it has, at
// its reassembly timeout once it runs again (its housekeeping); later
// parts go to the new owner (or, while the dead one still counts as a
// member, stay where they came). Two nodes whose views of the members
// differ for a moment may name two owners: the reply is then stored in
// fragments too.

// MOPartPeers is the cluster as the join of long replies needs it;
// cmd/qxtd implements it over the membership and cluster.PeerClient.
type MOPartPeers interface {
	// MOPartOwner is the node that joins the parts of group; ok is false
	// when that is this node (or it knows of no other).
	MOPartOwner(group queue.MOPartGroup) (owner Peer, ok bool)
	// ForwardMOPart hands p to owner and returns nil once owner stored
	// it durably; an error leaves the outcome unknown.
	ForwardMOPart(ctx context.Context, owner Peer, p PeerMOPart) error
}

// PeerMOPart is one part of a reply handed to the node that joins it.
// Its fields are cluster.PeerMOPart's: one converts to the other.
type PeerMOPart struct {
	Upstream   string    `json:"upstream"`
	Source     string    `json:"source"`
	Dest       string    `json:"dest"`
	Ref        uint16    `json:"ref"`
	Total      uint8     `json:"total"`
	Seq        uint8     `json:"seq"`
	Coding     uint8     `json:"coding"`
	Data       []byte    `json:"data"`
	Binary     bool      `json:"binary,omitempty"`
	DataCoding uint8     `json:"data_coding,omitempty"`
	UDH        []byte    `json:"udh,omitempty"`
	SourcePort *uint16   `json:"source_port,omitempty"`
	DestPort   *uint16   `json:"destination_port,omitempty"`
	SourceTON  uint8     `json:"source_ton"`
	SourceNPI  uint8     `json:"source_npi"`
	ReceivedAt time.Time `json:"received_at"`
}

// moForwardTimeout bounds a part's hand-over to its owner: the SMSC waits
// for its deliver_sm_resp meanwhile (SMSCs commonly wait 10 s or more;
// the owner's answer takes one commit).
const moForwardTimeout = 3 * time.Second

// forwardMOPart hands p to its owner when that is another node. done is
// false when the part is this node's to store: it is the owner, has no
// cluster, or the owner did not take the part.
func (g *Gateway) forwardMOPart(ctx context.Context, p *queue.MOPart) (out partOutcome, done bool) {
	mp := g.cfg.MOPartPeers
	if mp == nil {
		return 0, false
	}
	owner, ok := mp.MOPartOwner(p.MOPartGroup)
	if !ok {
		return 0, false
	}
	fctx, cancel := context.WithTimeout(ctx, moForwardTimeout)
	err := mp.ForwardMOPart(fctx, owner, PeerMOPart{
		Upstream: p.Upstream, Source: p.Source, Dest: p.Dest, Ref: p.Ref, Total: p.Total, Seq: p.Seq,
		Coding: p.Coding, Data: p.Data, Binary: p.Binary, DataCoding: p.DataCoding, UDH: p.UDH,
		SourcePort: p.SourcePort, DestPort: p.DestPort, SourceTON: p.SourceTON, SourceNPI: p.SourceNPI, ReceivedAt: p.ReceivedAt,
	})
	cancel()
	switch {
	case err == nil:
		g.metrics.moParts.WithLabelValues(moPartForwarded).Inc()
		g.log.Debug("reply part handed to the node that joins its reply", "group", p.MOPartGroup.String(), "seq", p.Seq, "node", owner.ID)
		if g.moOwnersDown.set(strconv.Itoa(int(owner.ID)), false) {
			g.log.Info("node takes reply parts again: they are joined there", "node", owner.ID)
		}
		return partStored, true
	case ctx.Err() != nil:
		// The connection to the SMSC ended: it sends the part again
		// (the owner replaces it, or answers it joined).
		g.moCut(p.Upstream, err)
		return partFailed, true
	}
	// Logged once as a node stops taking parts (and once as it takes
	// them again), not once a part: a dead owner is many parts a second.
	g.metrics.moParts.WithLabelValues(moPartForwardFailed).Inc()
	level := slog.LevelDebug
	if g.moOwnersDown.set(strconv.Itoa(int(owner.ID)), true) {
		level = slog.LevelWarn
	}
	g.log.Log(context.WithoutCancel(ctx), level, "reply parts not taken by the node that joins their reply: kept here (their replies may be stored in fragments)",
		"group", p.MOPartGroup.String(), "seq", p.Seq, "node", owner.ID, "err", err)
	return 0, false
}

// StorePeerMOPart stores a part another node's bind received, whose reply
// this node joins (cluster.PeerMOPartBackend): as a part of its own bind
// would be, never handed on again. It returns nil once the part is
// durable (stored as a part, as a reply of its own at the cap, or found
// joined already).
func (g *Gateway) StorePeerMOPart(ctx context.Context, pp PeerMOPart) error {
	if pp.Total < 2 || pp.Seq == 0 || pp.Seq > pp.Total {
		return fmt.Errorf("gateway: peer reply part %d of %d: %w", pp.Seq, pp.Total, queue.ErrInvalid)
	}
	m := &queue.MO{
		Source: pp.Source, Dest: pp.Dest, SourceTON: pp.SourceTON, SourceNPI: pp.SourceNPI,
		Upstream: pp.Upstream, ReceivedAt: pp.ReceivedAt,
	}
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = time.Now()
	}
	p := &queue.MOPart{
		MOPartGroup: queue.MOPartGroup{Upstream: pp.Upstream, Source: pp.Source, Dest: pp.Dest, Ref: pp.Ref, Total: pp.Total},
		Seq:         pp.Seq, Coding: pp.Coding, Data: pp.Data,
		Binary: pp.Binary, DataCoding: pp.DataCoding, UDH: pp.UDH, SourcePort: pp.SourcePort, DestPort: pp.DestPort,
		SourceTON: pp.SourceTON, SourceNPI: pp.SourceNPI, ReceivedAt: m.ReceivedAt,
	}
	switch g.storeMOPart(ctx, m, p) {
	case partStored:
		return nil
	case partFailed:
		return errors.New("gateway: peer reply part: not stored")
	}
	// partAlone: stored as a reply of its own, as on the bind's node.
	frag := segment.Fragment{Coding: segment.Coding(pp.Coding), Data: pp.Data}
	if pp.Binary {
		frag.Coding, frag.UDH, m.DataCoding = segment.Octets, pp.UDH, pp.DataCoding
		m.SourcePort, m.DestPort = pp.SourcePort, pp.DestPort
	}
	if err := g.storeWholeMO(ctx, m, frag, nil); err != nil {
		return fmt.Errorf("gateway: peer reply part as a reply of its own: %w", err)
	}
	return nil
}
