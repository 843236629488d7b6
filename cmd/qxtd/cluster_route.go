package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
)

// Cluster mode: a message's id routes query_sm, cancel_sm, replace_sm and
// GET / PATCH / DELETE /v1/messages/{id} to the node that owns it
// (gateway/owners.go). clusterOwners asks the owner; peerBackend's Cancel
// and Replace answer for it.

// ownerTimeout bounds one routed request: an ESME's query_sm waits for
// it, and ESMEs commonly give up on a response after 10 to 30 s.
const ownerTimeout = 5 * time.Second

// clusterOwners is gateway.Owners over the membership and the
// node-to-node client.
type clusterOwners struct {
	node   *cluster.Node
	client *cluster.PeerClient
}

var _ gateway.Owners = clusterOwners{}

// url is the peer URL of owner while it is a live member.
func (o clusterOwners) url(owner uint16) (string, error) {
	for _, m := range o.node.Members() {
		if m.ID == owner && m.PeerURL != "" {
			return m.PeerURL, nil
		}
	}
	return "", fmt.Errorf("%w: node %d is not a live member", gateway.ErrOwnerUnavailable, owner)
}

func (o clusterOwners) OwnerMessage(ctx context.Context, owner uint16, enterprise string, id uint64) (*queue.Message, error) {
	return o.message(ctx, owner, enterprise, id, o.client.Message)
}

func (o clusterOwners) OwnerQueryMessage(ctx context.Context, owner uint16, enterprise string, id uint64) (*queue.Message, error) {
	return o.message(ctx, owner, enterprise, id, o.client.QueryMessage)
}

func (o clusterOwners) message(ctx context.Context, owner uint16, enterprise string, id uint64,
	get func(ctx context.Context, peerURL, enterprise string, id uint64) (json.RawMessage, error),
) (*queue.Message, error) {
	u, err := o.url(owner)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ownerTimeout)
	defer cancel()
	data, err := get(ctx, u, enterprise, id)
	if errors.Is(err, cluster.ErrPeerNotFound) {
		return nil, fmt.Errorf("message %d at node %d: %w", id, owner, queue.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", gateway.ErrOwnerUnavailable, err)
	}
	var m queue.Message
	if err := json.Unmarshal(data, &m); err != nil || m.ID != id && !hasAlias(&m, id) {
		return nil, fmt.Errorf("%w: message %d at node %d: unreadable answer", gateway.ErrOwnerUnavailable, id, owner)
	}
	return &m, nil
}

func hasAlias(m *queue.Message, id uint64) bool {
	for _, a := range m.Aliases {
		if a == id {
			return true
		}
	}
	return false
}

func (o clusterOwners) OwnerCancel(ctx context.Context, owner uint16, acct *gateway.Account, id uint64) error {
	u, err := o.url(owner)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ownerTimeout)
	defer cancel()
	out, err := o.client.Cancel(ctx, u, id, cluster.PeerAccount(*acct))
	if err != nil {
		return fmt.Errorf("%w: %w", gateway.ErrOwnerUnavailable, err)
	}
	return gateway.OwnerAnswer(out).Err()
}

func (o clusterOwners) OwnerReschedule(ctx context.Context, owner uint16, acct *gateway.Account, id uint64, sendAt time.Time, text string) error {
	u, err := o.url(owner)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ownerTimeout)
	defer cancel()
	out, err := o.client.Replace(ctx, u, id, cluster.PeerReplace{Account: cluster.PeerAccount(*acct), SendAt: sendAt, Text: text})
	if err != nil {
		return fmt.Errorf("%w: %w", gateway.ErrOwnerUnavailable, err)
	}
	return gateway.OwnerAnswer(out).Err()
}

func (b peerBackend) QueryMessage(ctx context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	m, err := b.g.PeerQueryMessage(ctx, enterprise, id)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, cluster.ErrPeerNotFound
	}
	return m, err
}

func (b peerBackend) Cancel(ctx context.Context, id uint64, acct cluster.PeerAccount) (cluster.PeerOutcome, error) {
	a := gateway.Account(acct)
	out, err := b.g.PeerCancel(ctx, &a, id)
	return cluster.PeerOutcome(out), err
}

func (b peerBackend) Replace(ctx context.Context, id uint64, req cluster.PeerReplace) (cluster.PeerOutcome, error) {
	a := gateway.Account(req.Account)
	out, err := b.g.PeerReschedule(ctx, &a, id, req.SendAt, req.Text)
	return cluster.PeerOutcome(out), err
}
