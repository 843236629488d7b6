package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// SubmitRelay sends a segment on another node's bind (cluster mode): the
// carrier caps an account's binds, upstreams[].binds is the cluster's
// total, and a node may hold none of them. Its messages stay in its store;
// only the submit_sm crosses to a node that holds a bind, and the answer
// comes back to be recorded here as if this node had sent it. cmd/qxtd
// adapts the cluster's peer protocol to it.
type SubmitRelay interface {
	// RelaySubmit sends frame (a submit_sm in SMPP wire format) on some
	// live node's bind of upstream and returns the submit_sm_resp's
	// command_status and message_id. ErrNoRelay: no node could take it
	// (nothing was sent). Any other error: the frame may have reached the
	// SMSC (a lost connection).
	RelaySubmit(ctx context.Context, upstream string, frame []byte) (status uint32, messageID string, err error)
}

// ErrNoRelay: no node has a bind of the upstream up.
var ErrNoRelay = errors.New("gateway: no node has a bind of the upstream up")

// relayPause is how long a segment with no bind anywhere waits before it
// is tried again (or until a bind of this node comes up).
const relayPause = time.Second

// relay sends j through another node. It returns false when no node could
// take it (the caller waits and tries again); otherwise the outcome is
// recorded like a local submit's.
func (u *upstream) relay(ctx context.Context, j queue.Job) bool {
	g := u.g
	p, err := u.buildPDU(j)
	if err != nil {
		g.log.Error("cannot frame stored message", "id", j.Key.String(), "err", err)
		u.persist(ctx, j.Key, "fail", func(ctx context.Context) error {
			return g.store.Fail(ctx, j.Key, queue.StateRejected, "frame", time.Now())
		})
		return true
	}
	var frame bytes.Buffer
	if err := p.SerializeTo(&frame); err != nil {
		g.log.Error("cannot frame stored message", "id", j.Key.String(), "err", err)
		return false
	}
	if ctx.Err() != nil {
		return true // shutting down: the segment stays due in the store
	}
	start := time.Now()
	// As on a bind of our own (send): once the other node may be sending
	// it, its answer is awaited even if qxtd is stopping (at most the peer
	// timeout); taken for unanswered, the segment would go out again
	// after the restart.
	st, id, err := g.cfg.SubmitRelay.RelaySubmit(context.WithoutCancel(ctx), u.cfg.Name, frame.Bytes())
	if errors.Is(err, ErrNoRelay) {
		return false
	}
	g.metrics.submitLatency.WithLabelValues(u.cfg.Name).Observe(time.Since(start).Seconds())
	status := pdu.Status(st)
	switch {
	case err != nil:
		// The other node may have sent it: like a lost connection.
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "connection").Inc()
		u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
			return g.store.Retry(ctx, j.Key, time.Now().Add(g.cfg.RetryMin), "relay")
		})
	case status == smpp.StatusOK:
		g.metrics.relayed.WithLabelValues(u.cfg.Name).Inc()
		g.metrics.relayedVia.WithLabelValues(u.cfg.Name).Inc()
		u.persist(ctx, j.Key, "submitted", func(ctx context.Context) error {
			return g.store.Submitted(ctx, j.Key, id, time.Now())
		})
	case status == smpp.StatusInvalidBindStatus:
		// A peer of an earlier release passes on its lost bind's refusal
		// (SubmitRelayed now tries another bind): no verdict on the
		// message, which is tried again.
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, kindBindLost).Inc()
		u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
			return g.store.Retry(ctx, j.Key, time.Now().Add(g.cfg.RetryMin), fmt.Sprintf("0x%08x", st))
		})
	case flowControl(status) || temporary(status):
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, throttleLabel(status)).Inc()
		u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
			return g.store.Retry(ctx, j.Key, time.Now().Add(u.backoff(j.Part.Attempts)), fmt.Sprintf("0x%08x", st))
		})
	default:
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "rejected").Inc()
		u.persist(ctx, j.Key, "fail", func(ctx context.Context) error {
			return g.store.Fail(ctx, j.Key, queue.StateRejected, fmt.Sprintf("0x%08x", st), time.Now())
		})
	}
	return true
}

// waitUpFor waits until a bind of the upstream is up, d passed or ctx
// ended.
func (u *upstream) waitUpFor(ctx context.Context, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	u.waitUp(ctx)
}

// SubmitRelayed sends another node's submit_sm (its SMPP wire frame) on a
// bind of upstream, at that bind's pace, and returns the SMSC's answer:
// for the peer protocol (cmd/qxtd). ErrNoBind when this node has no bind
// of it up; another error when the SMSC's answer is unknown.
func (g *Gateway) SubmitRelayed(ctx context.Context, upstream string, frame []byte) (status uint32, messageID string, err error) {
	u := g.byName[upstream]
	if u == nil {
		return 0, "", fmt.Errorf("%w: no upstream %q here", ErrNoBind, upstream)
	}
	p, err := smpp.Decode(frame)
	if err != nil || p.Header().ID != pdu.SubmitSMID {
		return 0, "", fmt.Errorf("gateway: relayed frame is not a submit_sm: %v", err)
	}
	for range len(u.clients) + 1 {
		b := u.pick(0)
		if !u.clients[b].Up() {
			return 0, "", ErrNoBind
		}
		if !u.waitTurn(ctx, b) {
			return 0, "", ctx.Err()
		}
		u.paces[b].sent(time.Now())
		resp, err := u.clients[b].SubmitIfUp(ctx, p)
		if errors.Is(err, smpp.ErrNotBound) {
			continue
		}
		var st pdu.Status
		switch {
		case err == nil:
			u.paces[b].ok(time.Now())
			return uint32(smpp.StatusOK), smpp.Str(resp, pdufield.MessageID), nil
		case errors.As(err, &st) && st == smpp.StatusInvalidBindStatus:
			// The SMSC lost this bind (the client is binding again): the
			// segment was refused, not judged. Another bind of this node
			// takes it, or the owner tries another node (ErrNoBind); the
			// status sent back would make the owner reject the message.
			u.g.metrics.submitErrors.WithLabelValues(u.cfg.Name, kindBindLost).Inc()
			continue
		case errors.As(err, &st):
			if flowControl(st) {
				u.paces[b].throttled(time.Now())
			}
			return uint32(st), "", nil
		default:
			return 0, "", err
		}
	}
	return 0, "", ErrNoBind
}

// ErrNoBind: this node has no bind of the upstream up (SubmitRelayed).
var ErrNoBind = errors.New("gateway: no bind of the upstream up here")
