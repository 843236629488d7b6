package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/queue"
)

// TestStoreOperationsPerMessage holds a message's path to the store
// operations it costs, one at a time (a stop-and-wait ESME: no operation
// shares a commit with another message's): three without a receipt for
// the ESME (accepted, the SMSC's answer recorded, the SMSC's receipt
// applied: the gateway asks for every receipt, for billing), four with
// one (the ESME's answer to the forwarded receipt recorded).
//
// At a moderate rate each operation is a commit of its own, and a commit,
// not what it carries, is most of a message's CPU and disk writes there
// (cmd/qxtd-bench/RESULTS.md, "A steady moderate rate costs more per
// message than full load"): one more operation a message is about a
// quarter more of both, which the CPU figures of a shared machine can
// hide for a while; here it fails at once.
func TestStoreOperationsPerMessage(t *testing.T) {
	for _, c := range []struct {
		name    string
		receipt uint8 // registered_delivery
		ops     uint64
	}{
		{"no receipt asked", 0, 3},
		{"receipt asked", 1, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			const n = 20
			r, e := holdRig(t, time.Millisecond, nil, nil) // no hold: every operation commits at once
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// One message first, so that whatever the first message of a
			// session writes once is not counted.
			settled(ctx, t, r, e, "13800000000", c.receipt)
			before := r.store.Stats()
			for i := range n {
				settled(ctx, t, r, e, fmt.Sprintf("1380000%04d", i+1), c.receipt)
			}
			st := r.store.Stats()
			ops, commits := st.Ops-before.Ops, st.Txns-before.Txns
			// The store counts a commit's operations just after the commit
			// is visible, so a read of the final state can come before the
			// last one is counted (and the setup's last one can be counted
			// after before was read): one either way, seen once at a load
			// average of 14. One more operation a message is 20 more.
			if want := n * c.ops; ops+1 < want || ops > want+1 {
				t.Errorf("%d messages cost %d store operations (%.2f each) in %d commits; want %d each",
					n, ops, float64(ops)/n, commits, c.ops)
			}
			t.Logf("%d messages: %d store operations in %d commits", n, ops, commits)
		})
	}
}

// settled submits one message to dst, asking for a receipt as receipt
// says, and returns once the store holds its final state and, when a
// receipt was asked for, the ESME's answer to it.
func settled(ctx context.Context, t *testing.T, r *rig, e *esme, dst string, receipt uint8) {
	t.Helper()
	p := submitSM("1069", dst, "counted")
	_ = p.Fields().Set(pdufield.RegisteredDelivery, receipt)
	sid, err := e.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var id uint64
	if _, err := fmt.Sscan(sid, &id); err != nil {
		t.Fatalf("message_id %q: %v", sid, err)
	}
	for {
		m, err := r.store.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Final() && m.Parts[0].State == queue.StateDelivered && m.DLRForwarded {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("message %d to %s not settled: %+v", id, dst, m)
		}
		waitABit(ctx)
	}
}
