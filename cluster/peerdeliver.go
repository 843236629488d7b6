package cluster

// POST /peer/v1/deliver: a node hands another the deliver_sm PDUs — receipts
// and replies (MO) — for an ESME whose receiver bind is there and not here.
//
//	POST /peer/v1/deliver  {"deliveries":[PeerDelivery…]} (at most PeerMaxDeliveries)
//	                       → {"results":["delivered"|"refused"|"no_bind"|"throttled"|"failed"…]} in order
//
// The receiving node stores nothing: it sends each delivery as a
// deliver_sm on one of its own binds of the account (a reply for the
// enterprise as a whole: of any account of the enterprise) and answers
// "delivered" only after that ESME's deliver_sm_resp. The sender keeps
// every delivery in its store until it got "delivered" for it, and
// acknowledges it there only then ("refused" too); "no_bind",
// "throttled", "failed" or no answer at all leave it pending, to be tried
// again (on that node, another, or locally once the ESME binds here). So nothing is lost while a node is down, and
// a delivery is repeated only when an answer was lost after the ESME had
// it (a batch at most), as a local receipt is repeated when its
// acknowledgement's commit fails: receipts and replies are at-least-once.
// Taking them durably on the receiving node instead would need a second
// store and forwarder per item on that node, and would leave them stranded
// there if the ESME moved on again.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// PeerMaxDeliveries bounds the deliveries of one POST /peer/v1/deliver.
const PeerMaxDeliveries = 256

// Kinds of PeerDelivery.
const (
	DeliveryReceipt = "receipt"
	DeliveryMO      = "mo"
)

// PeerDelivery is one deliver_sm for an ESME bound to the receiving node,
// with the addresses as they go on the wire. Kind "receipt" is a delivery
// receipt for Account; the receipt fields are smpp.Receipt's. Kind "mo"
// is a reply to Enterprise's service number, for Account's binds only, or
// for any of the enterprise's binds when Account is "".
type PeerDelivery struct {
	Kind       string `json:"kind"`
	Enterprise string `json:"enterprise"`
	Account    string `json:"account,omitempty"`
	Source     string `json:"source"`
	SourceTON  uint8  `json:"source_ton"`
	SourceNPI  uint8  `json:"source_npi"`
	Dest       string `json:"dest"`
	DestTON    uint8  `json:"dest_ton"`
	DestNPI    uint8  `json:"dest_npi"`
	Text       string `json:"text,omitempty"`
	// Receipt only.
	ReceiptID  string    `json:"receipt_id,omitempty"`
	Sub        int       `json:"sub,omitempty"`
	Dlvrd      int       `json:"dlvrd,omitempty"`
	SubmitDate time.Time `json:"submit_date,omitzero"`
	DoneDate   time.Time `json:"done_date,omitzero"`
	State      uint8     `json:"state,omitempty"` // smpp.MessageState
	Err        string    `json:"err,omitempty"`
	// Reply only: a reply kept as octets, and the reply's id (the
	// reference of its parts); gateway.PeerDelivery says more.
	Octets     bool    `json:"octets,omitempty"`
	Binary     []byte  `json:"binary,omitempty"`
	DataCoding uint8   `json:"data_coding,omitempty"`
	UDH        []byte  `json:"udh,omitempty"`
	SourcePort *uint16 `json:"source_port,omitempty"`
	DestPort   *uint16 `json:"dest_port,omitempty"`
	MOID       uint64  `json:"mo_id,omitempty"`
}

// PeerDeliveryResult is what the receiving node did with a PeerDelivery.
type PeerDeliveryResult string

// Results of PeerDeliverer.Deliver.
const (
	PeerDelivered PeerDeliveryResult = "delivered" // the ESME answered deliver_sm_resp OK
	PeerNoBind    PeerDeliveryResult = "no_bind"   // no receiver bind of the account here (any more)
	PeerFailed    PeerDeliveryResult = "failed"    // sent and not acknowledged (error, timeout)
	// PeerRefused: the ESME refused it for good (ESME_RX_P_APPN or
	// ESME_RX_R_APPN): answered, not to be sent again. A node of an
	// earlier release reads it as not delivered and keeps the delivery.
	PeerRefused PeerDeliveryResult = "refused"
	// PeerThrottled: the ESME asked to slow down (ESME_RTHROTTLED,
	// ESME_RMSGQFUL), or had and its pause held, so it was not sent:
	// kept by the sender and tried again after a back-off. A node of an
	// earlier release reads it as failed.
	PeerThrottled PeerDeliveryResult = "throttled"
)

// PeerDeliverer is the optional part of a PeerBackend that serves POST
// /peer/v1/deliver; a backend without it answers 501.
type PeerDeliverer interface {
	// Deliver sends each delivery to a local bind and returns one result
	// per delivery, in order, once each is answered or given up. An
	// error fails the whole batch (500).
	Deliver(ctx context.Context, ds []PeerDelivery) ([]PeerDeliveryResult, error)
}

type deliverRequest struct {
	Deliveries []PeerDelivery `json:"deliveries"`
}

type deliverResponse struct {
	Results []PeerDeliveryResult `json:"results"`
}

func (s *peerServer) deliver(w http.ResponseWriter, r *http.Request) {
	d, ok := s.backend.(PeerDeliverer)
	if !ok {
		http.Error(w, "deliveries not served by this node", http.StatusNotImplemented)
		return
	}
	var req deliverRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad deliveries: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Deliveries) > PeerMaxDeliveries {
		http.Error(w, fmt.Sprintf("more than %d deliveries", PeerMaxDeliveries), http.StatusRequestEntityTooLarge)
		return
	}
	res, err := d.Deliver(r.Context(), req.Deliveries)
	if err == nil && len(res) != len(req.Deliveries) {
		err = fmt.Errorf("backend gave %d results for %d deliveries", len(res), len(req.Deliveries))
	}
	if err != nil {
		s.log.Error("peer deliveries", "node", PeerNode(r.Context()), "deliveries", len(req.Deliveries), "err", err)
		http.Error(w, "deliveries not made", http.StatusInternalServerError)
		return
	}
	writeJSON(w, deliverResponse{Results: res})
}

// Deliver hands ds (at most PeerMaxDeliveries) to the node at peerURL and
// returns its result for each, in order. An error means nothing is known
// of the outcome: the caller keeps them all and tries again (some may
// then reach the ESME twice).
func (c *PeerClient) Deliver(ctx context.Context, peerURL string, ds []PeerDelivery) ([]PeerDeliveryResult, error) {
	if len(ds) > PeerMaxDeliveries {
		return nil, fmt.Errorf("cluster: deliver: %d deliveries, at most %d", len(ds), PeerMaxDeliveries)
	}
	body, err := json.Marshal(deliverRequest{Deliveries: ds})
	if err != nil {
		return nil, fmt.Errorf("cluster: deliver: %w", err)
	}
	data, err := c.do(ctx, http.MethodPost, peerURL, "/peer/v1/deliver", body)
	if err != nil {
		return nil, fmt.Errorf("cluster: deliver to %s: %w", peerURL, err)
	}
	var resp deliverResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("cluster: deliver to %s: answer: %w", peerURL, err)
	}
	if len(resp.Results) != len(ds) {
		return nil, fmt.Errorf("cluster: deliver to %s: %d results for %d deliveries", peerURL, len(resp.Results), len(ds))
	}
	return resp.Results, nil
}
