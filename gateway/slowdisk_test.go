package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestSlowDisk: a disk whose every commit takes 50 ms (a failing SSD, a
// noisy neighbour, a cloud volume out of IOPS; a sound one takes a
// millisecond or two) makes each answer wait for a commit or two, but
// loses nothing and sends nothing twice, and group commit keeps the rate:
// the operations that queue during one slow commit share the next.
func TestSlowDisk(t *testing.T) {
	const n, slow = 300, 50 * time.Millisecond
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond},
		store: func(o *queue.Options) {
			o.CommitFault = func() error {
				time.Sleep(slow) // the disk, not the test's timing: every commit takes this long
				return nil
			}
		},
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	before := r.store.Stats()
	start := time.Now()
	ids := submitN(t, e, n, "1380066")
	accepted := time.Since(start)
	got := e.waitReceipts(t, n, 60*time.Second)
	for _, id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("message %s: receipt %+v, %v; want DELIVRD", id, rc, ok)
		}
	}
	arrived := r.sim.Arrived()
	for i := range n {
		if dst := fmt.Sprintf("1380066%04d", i); arrived[dst] != 1 {
			t.Errorf("%s reached the SMSC %d times, want once", dst, arrived[dst])
		}
	}
	st := r.store.Stats()
	commits, ops := st.Txns-before.Txns, st.Ops-before.Ops
	// Each message is at least three operations (accepted, submitted, its
	// receipt) and the receipt's acknowledgement; one commit each would
	// take 3 × 300 × 50 ms = 45 s.
	if commits == 0 || ops/commits < 10 {
		t.Errorf("%d operations in %d commits: group commit should share each slow commit among many", ops, commits)
	}
	t.Logf("%d messages accepted in %v (%.0f/s) with every commit taking %v; %d operations in %d commits",
		n, accepted.Round(time.Millisecond), float64(n)/accepted.Seconds(), slow, ops, commits)
}
