package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Relay: a node that holds none of an upstream's binds (upstreams[].binds
// is the cluster's total, and may be fewer than the nodes) still sends its
// messages, through a node that holds one. The message stays in its
// owner's store; only the submit_sm crosses: POST /peer/v1/relay carries
// the PDU as the owner framed it, the peer sends it on its bind of the
// upstream (at that bind's pace) and answers with the SMSC's
// submit_sm_resp status and message_id, which the owner records as if it
// had sent it itself. Receipts then come back on any bind and reach the
// owner like every receipt (the orphans offered to the peers).

// PeerRelayBackend is the optional part of a PeerBackend that relays
// submit_sm for nodes without a bind.
type PeerRelayBackend interface {
	// Relay sends pdu (a submit_sm in SMPP wire format) on one of the
	// node's binds of upstream and returns the response's command_status
	// and message_id; ErrPeerNoBind when the node has no bind of it up.
	Relay(ctx context.Context, upstream string, pdu []byte) (status uint32, messageID string, err error)
}

// ErrPeerNoBind: the peer has no bind of the upstream up (503).
var ErrPeerNoBind = errors.New("cluster: peer: no bind of the upstream")

// PeerMaxPDU bounds a relayed PDU: an SMPP PDU of a long message with its
// TLVs is far smaller.
const PeerMaxPDU = 64 << 10

type relayRequest struct {
	Upstream string `json:"upstream"`
	PDU      []byte `json:"pdu"`
}

type relayResponse struct {
	Status    uint32 `json:"status"`
	MessageID string `json:"message_id"`
}

func (s *peerServer) relay(w http.ResponseWriter, r *http.Request) {
	rb, ok := s.backend.(PeerRelayBackend)
	if !ok {
		http.Error(w, "this node relays nothing", http.StatusNotFound)
		return
	}
	var req relayRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Upstream == "" || len(req.PDU) == 0 {
		http.Error(w, "bad relay request", http.StatusBadRequest)
		return
	}
	if len(req.PDU) > PeerMaxPDU {
		http.Error(w, "pdu too large", http.StatusRequestEntityTooLarge)
		return
	}
	st, id, err := rb.Relay(r.Context(), req.Upstream, req.PDU)
	switch {
	case errors.Is(err, ErrPeerNoBind):
		http.Error(w, "no bind of the upstream", http.StatusServiceUnavailable)
		return
	case err != nil:
		// The SMSC may have the message (a lost connection): the owner
		// treats it as it treats its own lost connection.
		s.log.Warn("peer relay", "node", PeerNode(r.Context()), "upstream", req.Upstream, "err", err)
		http.Error(w, "relay failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, relayResponse{Status: st, MessageID: id})
}

// Relay asks the node at peerURL to send pdu on its bind of upstream. It
// returns ErrPeerNoBind when the peer has none up, ErrPeerBusy when it
// relays as many as it takes at once (nothing was sent in either case).
func (c *PeerClient) Relay(ctx context.Context, peerURL, upstream string, pdu []byte) (uint32, string, error) {
	body, err := json.Marshal(relayRequest{Upstream: upstream, PDU: pdu})
	if err != nil {
		return 0, "", err
	}
	data, err := c.do(ctx, http.MethodPost, peerURL, "/peer/v1/relay", body)
	if pe, ok := errors.AsType[*PeerError](err); ok && pe.Status == http.StatusServiceUnavailable {
		if pe.Busy() {
			return 0, "", ErrPeerBusy
		}
		return 0, "", ErrPeerNoBind
	}
	if err != nil {
		return 0, "", fmt.Errorf("cluster: relay to %s: %w", peerURL, err)
	}
	var resp relayResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return 0, "", fmt.Errorf("cluster: relay to %s: %w", peerURL, err)
	}
	return resp.Status, resp.MessageID, nil
}
