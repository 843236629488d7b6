package cluster

// POST /peer/v1/moparts: a part of a handset's long reply (MO), which the
// carrier's SMSC split and sent on a bind of this node, handed to the node
// that joins the parts of that reply.
//
//	POST /peer/v1/moparts  PeerMOPart → {"result":"stored"}
//
// The carrier spreads the parts of one reply over the binds of its
// system_id, and in a cluster those binds are on several nodes. Every
// node names the same joining node for a reply's parts, MOPartOwner over
// the live members, from the key the join uses (upstream, source,
// destination, reference, total); a node that is not it forwards each
// part there. The owner stores the part durably with the others (or, at
// its cap, as a reply of its own) and only then answers "stored"; only
// then does the forwarding node answer the SMSC's deliver_sm OK. Any
// other answer, or none within the caller's deadline, leaves the outcome
// unknown: the forwarding node stores the part itself, as a node on its
// own does, so nothing is lost (the reply is then stored in fragments at
// the reassembly timeout, and a part the owner had committed after all
// is one fragment more). A replay is harmless: the owner replaces a part
// sent again, and answers one of a reply it joined lately without
// storing it.
//
// The requests have their own pool (PeerMaxMOPartInFlight) and body cap
// (PeerMaxMOPartBody), as relays and questions do: a burst of parts does
// not take the places of receipts and routed queries, nor they those of
// the parts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"time"
)

// Limits of POST /peer/v1/moparts.
const (
	// PeerMaxMOPartInFlight bounds the parts a node stores for the others
	// at once (a part holds its place for one commit of its store).
	PeerMaxMOPartInFlight = 64
	// PeerMaxMOPartData bounds a part's data: the store keeps no more
	// (a deliver_sm's short_message is at most 254 octets, a
	// message_payload at most 64 KiB).
	PeerMaxMOPartData = 64 << 10
	// PeerMaxMOPartBody bounds a request: the data as base64 and the
	// addresses, so that a full pool holds at most 64 × 128 KiB = 8 MiB.
	PeerMaxMOPartBody = 128 << 10
)

// PeerMOPart is one part of a reply the SMSC split, as the node whose
// bind received it read it. Its fields are gateway.PeerMOPart's: one
// converts to the other.
type PeerMOPart struct {
	Upstream string `json:"upstream"` // the upstream's name, the same on every node
	Source   string `json:"source"`
	Dest     string `json:"dest"`
	Ref      uint16 `json:"ref"`
	Total    uint8  `json:"total"`
	Seq      uint8  `json:"seq"`
	Coding   uint8  `json:"coding"` // segment.Coding of Data
	Data     []byte `json:"data"`   // unpacked septets, UTF-16BE or octets
	// Binary: Data are octets not read as text, with the SMSC's
	// data_coding, UDH and port TLVs (queue.MOPart's); a node from
	// before binary replies (or their ports) leaves them out.
	Binary     bool      `json:"binary,omitempty"`
	DataCoding uint8     `json:"data_coding,omitempty"`
	UDH        []byte    `json:"udh,omitempty"`
	SourcePort *uint16   `json:"source_port,omitempty"`
	DestPort   *uint16   `json:"destination_port,omitempty"`
	SourceTON  uint8     `json:"source_ton"`
	SourceNPI  uint8     `json:"source_npi"`
	ReceivedAt time.Time `json:"received_at"`
}

// PeerMOPartStored is the only answer of an owner that took the part.
const PeerMOPartStored = "stored"

// PeerMOPartBackend is the optional part of a PeerBackend that takes
// reply parts for joining; a backend without it answers 501.
type PeerMOPartBackend interface {
	// StoreMOPart stores p durably with the other parts of its reply (or
	// as a reply of its own, as a part of the node's own bind would be)
	// and returns nil only then. An error (the store failed) is a 500:
	// the sender keeps the part.
	StoreMOPart(ctx context.Context, p PeerMOPart) error
}

type moPartResponse struct {
	Result string `json:"result"`
}

func (s *peerServer) moPart(w http.ResponseWriter, r *http.Request) {
	b, ok := s.backend.(PeerMOPartBackend)
	if !ok {
		http.Error(w, "reply parts not taken by this node", http.StatusNotImplemented)
		return
	}
	var p PeerMOPart
	if !decodeStrict(w, r, &p) {
		return
	}
	if p.Upstream == "" || p.Total < 2 || p.Seq == 0 || p.Seq > p.Total {
		http.Error(w, "bad reply part", http.StatusBadRequest)
		return
	}
	if len(p.Data) > PeerMaxMOPartData {
		http.Error(w, "reply part data too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := b.StoreMOPart(r.Context(), p); err != nil {
		s.log.Error("peer reply part", "node", PeerNode(r.Context()), "upstream", p.Upstream, "seq", p.Seq, "total", p.Total, "err", err)
		http.Error(w, "reply part not stored", http.StatusInternalServerError)
		return
	}
	writeJSON(w, moPartResponse{Result: PeerMOPartStored})
}

// ForwardMOPart hands p to the node at peerURL (MOPartOwner's choice) and
// returns nil once that node stored it durably. A node that takes as
// many as it takes at once (and stored nothing) is asked again, 1 ms
// doubling to 50 ms apart, until ctx ends: then the error wraps
// ErrPeerBusy. Any error leaves the outcome unknown: the caller keeps the
// part.
func (c *PeerClient) ForwardMOPart(ctx context.Context, peerURL string, p PeerMOPart) error {
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("cluster: forward reply part: %w", err)
	}
	if len(body) > PeerMaxMOPartBody {
		return fmt.Errorf("cluster: forward reply part: %d bytes, at most %d", len(body), PeerMaxMOPartBody)
	}
	var data []byte
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		data, err = c.do(ctx, http.MethodPost, peerURL, "/peer/v1/moparts", body)
		if pe, ok := errors.AsType[*PeerError](err); !ok || !pe.Busy() {
			break
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cluster: forward reply part to %s: %w", peerURL, ErrPeerBusy)
		case <-t.C:
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: forward reply part to %s: %w", peerURL, err)
	}
	var resp moPartResponse
	if err := json.Unmarshal(data, &resp); err != nil || resp.Result != PeerMOPartStored {
		return fmt.Errorf("cluster: forward reply part to %s: answer %q", peerURL, data)
	}
	return nil
}

// MOPartKey is the key of a reply's parts that MOPartOwner hashes: the
// fields the join groups them by.
func MOPartKey(upstream, source, dest string, ref uint16, total uint8) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", upstream, source, dest, ref, total)
}

// MOPartOwner is the member that joins the parts under key: the highest
// rendezvous (highest random weight) hash of key and member id over
// members, so that every node with the same view names the same one, and
// a member's joining or leaving moves only the keys it wins or held.
// ok is false with no members.
func MOPartOwner(members []Member, key string) (owner Member, ok bool) {
	h := fnv.New64a()
	h.Write([]byte(key))
	base := h.Sum64()
	var best uint64
	for _, m := range members {
		w := mix64(base ^ uint64(m.ID)*0x9e3779b97f4a7c15)
		if !ok || w > best || w == best && m.ID < owner.ID {
			owner, best, ok = m, w, true
		}
	}
	return owner, ok
}

// mix64 is SplitMix64's finaliser: every bit of x moves about half of
// the result's.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
