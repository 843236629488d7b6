package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// Cluster mode: a message's id routes every operation on it to its owner.
//
// Each node keeps its own store, and a message id carries the node that
// gave it in its top 16 bits (queue.NodeOf). FindMessage, Cancel and
// Reschedule look here first; an id that is not here and that another
// node gave (not node 0, the ids of a single node, nor this one) is asked
// of that node through Config.Owners, and its answer is returned as if it
// were local: the same message, queue.ErrNotFound (also for another
// enterprise's), queue.ErrNotScheduled, queue.ErrInvalid or the same
// *policy.Refusal. So query_sm, cancel_sm, replace_sm and the API's
// GET / PATCH / DELETE /v1/messages/{id} answer on any node as on the
// owner. An owner that is not a live member, or does not answer, is
// ErrOwnerUnavailable: a temporary failure (ESME_RSYSERR, HTTP 503),
// never "not found". The owner acts with the caller's account as sent
// (signatures as the caller's node saw them; Prepare refreshes them from
// the shared policy), so it enforces ownership exactly as for a local
// request.

// ErrOwnerUnavailable: the message belongs to another node that could not
// be asked (not a live member, unreachable, or it failed): nothing is
// known of it, and the client should try again later.
var ErrOwnerUnavailable = errors.New("gateway: the node that owns the message is unavailable")

// Owners reaches the node that owns a message this node does not have
// (cmd/qxtd implements it over the membership and cluster.PeerClient).
// owner is queue.NodeOf(id), never 0 nor this node. Each method returns
// the owner's answer as the owner's own method would (errors.Is-able:
// queue.ErrNotFound, queue.ErrNotScheduled, queue.ErrInvalid, a
// *policy.Refusal), or an error wrapping ErrOwnerUnavailable.
type Owners interface {
	// OwnerMessage is the owner's Message(&Account{Enterprise: enterprise}, id).
	OwnerMessage(ctx context.Context, owner uint16, enterprise string, id uint64) (*queue.Message, error)
	// OwnerQueryMessage is the message as the owner's query_sm finds it
	// (PeerQueryMessage): also the id of a part that waits for the rest.
	OwnerQueryMessage(ctx context.Context, owner uint16, enterprise string, id uint64) (*queue.Message, error)
	// OwnerCancel is the owner's Cancel(ctx, acct, id).
	OwnerCancel(ctx context.Context, owner uint16, acct *Account, id uint64) error
	// OwnerReschedule is the owner's Reschedule(ctx, acct, id, sendAt, text).
	OwnerReschedule(ctx context.Context, owner uint16, acct *Account, id uint64, sendAt time.Time, text string) error
}

// remoteOwner returns the node that owns id when the gateway should ask
// it: cluster mode, and an id another node gave.
func (g *Gateway) remoteOwner(id uint64) (uint16, bool) {
	n := queue.NodeOf(id)
	return n, g.owners != nil && n != 0 && n != g.store.NodeID()
}

// FindMessage is Message for any node's id: one that another node gave is
// asked of that node (see above). The error is queue.ErrNotFound (none,
// or another enterprise's), an ErrStore, or ErrOwnerUnavailable.
func (g *Gateway) FindMessage(ctx context.Context, acct *Account, id uint64) (*queue.Message, error) {
	m, err := g.Message(acct, id)
	if owner, ok := g.remoteOwner(id); ok && errors.Is(err, queue.ErrNotFound) {
		return g.owners.OwnerMessage(ctx, owner, acct.Enterprise, id)
	}
	return m, err
}

// OwnerAnswer is a node's outcome of a Cancel or Reschedule that another
// node routed to it (PeerCancel, PeerReschedule), as it travels: its
// fields are cluster.PeerOutcome's. Err turns it back into the error the
// owner's method returned.
type OwnerAnswer struct {
	Result  string // ok, not_found, not_scheduled, invalid, refused
	Reason  string // refused: the policy reason's name
	Message string // the error's text (refused: the refusal's detail)
}

// Results of OwnerAnswer.
const (
	OwnerOK           = "ok"
	OwnerNotFound     = "not_found"
	OwnerNotScheduled = "not_scheduled"
	OwnerInvalid      = "invalid"
	OwnerRefused      = "refused"
)

// answerOf is the OwnerAnswer of an outbox error; an error that is none
// of the outbox's outcomes (a store failure) is returned as is.
func answerOf(err error) (OwnerAnswer, error) {
	var ref *policy.Refusal
	switch {
	case err == nil:
		return OwnerAnswer{Result: OwnerOK}, nil
	case errors.Is(err, queue.ErrNotFound):
		return OwnerAnswer{Result: OwnerNotFound}, nil
	case errors.Is(err, queue.ErrNotScheduled):
		return OwnerAnswer{Result: OwnerNotScheduled, Message: err.Error()}, nil
	case errors.Is(err, queue.ErrInvalid):
		return OwnerAnswer{Result: OwnerInvalid, Message: err.Error()}, nil
	case errors.As(err, &ref) && ref.Reason.Valid():
		return OwnerAnswer{Result: OwnerRefused, Reason: ref.Reason.String(), Message: ref.Detail}, nil
	}
	return OwnerAnswer{}, err
}

// Err is the error the owner's method returned: nil for ok, and one
// errors.Is-able as queue.ErrNotFound, queue.ErrNotScheduled,
// queue.ErrInvalid or a *policy.Refusal with the owner's reason; an
// answer this node cannot read is ErrOwnerUnavailable.
func (a OwnerAnswer) Err() error {
	switch a.Result {
	case OwnerOK:
		return nil
	case OwnerNotFound:
		return queue.ErrNotFound
	case OwnerNotScheduled:
		return &ownerError{msg: a.Message, kind: queue.ErrNotScheduled}
	case OwnerInvalid:
		return &ownerError{msg: a.Message, kind: queue.ErrInvalid}
	case OwnerRefused:
		if r, ok := policy.ParseReason(a.Reason); ok {
			return policy.NewRefusal(r, a.Message)
		}
	}
	return fmt.Errorf("%w: unknown answer %q %q", ErrOwnerUnavailable, a.Result, a.Reason)
}

// ownerError carries the owner's error text with its kind, so that an
// answer that shows the text shows the owner's.
type ownerError struct {
	msg  string
	kind error
}

func (e *ownerError) Error() string {
	if e.msg == "" {
		return e.kind.Error()
	}
	return e.msg
}

func (e *ownerError) Unwrap() error { return e.kind }

// PeerQueryMessage is PeerMessage as query_sm looks a message up
// (cluster.PeerBackend.QueryMessage): the id of one part of a message
// its ESME split itself, waiting for the others, is a message of one
// Accepted part (query_sm answers ENROUTE). queue.ErrNotFound when there
// is none (or it is another enterprise's).
func (g *Gateway) PeerQueryMessage(_ context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	m, err := g.queryLookup(id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	case m.Enterprise != enterprise:
		return nil, fmt.Errorf("queue: get: %w: message %d", queue.ErrNotFound, id)
	}
	return json.Marshal(m)
}

// PeerCancel is Cancel for another node that routed it here
// (cluster.PeerBackend.Cancel): the outcome as an OwnerAnswer, or an
// error when the store failed. It never routes further.
func (g *Gateway) PeerCancel(ctx context.Context, acct *Account, id uint64) (OwnerAnswer, error) {
	return answerOf(g.cancelHere(ctx, acct, id))
}

// PeerReschedule is Reschedule for another node that routed it here
// (cluster.PeerBackend.Replace), as PeerCancel.
func (g *Gateway) PeerReschedule(ctx context.Context, acct *Account, id uint64, sendAt time.Time, text string) (OwnerAnswer, error) {
	return answerOf(g.rescheduleHere(ctx, acct, id, sendAt, text))
}
