package gateway_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// Messages sent with priority that reach the dispatcher from the store,
// not from the commit that accepted them: a split message joined after a
// restart. It goes out ahead of the backlog of ordinary messages its
// enterprise queued before it.

// The upstream of these tests: one bind with a window of 10 (10 workers,
// one part with priority in flight an enterprise) at tps submit_sm a
// second, so that a backlog of a few hundred takes seconds to drain.
const storedWorkers = 10

func storedUpstream(tps float64) func(u *gateway.UpstreamConfig) {
	return func(u *gateway.UpstreamConfig) {
		u.TPS = tps
		u.Binds, u.Window = 1, storedWorkers
	}
}

// urgentParts are the parts of the split message with priority: 180
// characters in UCS-2 (360 octets), three parts of at most 134 octets
// from the ESME; with the signature, three segments to the SMSC.
func urgentParts(t *testing.T) [][]byte {
	t.Helper()
	return chunks(ucs2(t, strings.Repeat("验证码三八四九二一", 20)), 134)
}

// sendPart submits part seq of parts (UDH, 8-bit reference 9) to dest,
// with priority_flag 1 if priority.
func sendPart(ctx context.Context, t *testing.T, e *esme, dest string, parts [][]byte, seq int, priority bool) {
	t.Helper()
	p := partSM(dest, 0x08, splitUDH8, 9, uint8(len(parts)), uint8(seq), parts[seq-1])
	if priority {
		_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
	}
	if _, err := e.submit(ctx, p); err != nil {
		t.Fatalf("part %d: %v", seq, err)
	}
}

// positions returns the indexes in what the SMSC received of the
// segments to dest.
func positions(rec []smpp.SimMessage, dest string) []int {
	var out []int
	for i, m := range rec {
		if m.Dest == dest {
			out = append(out, i)
		}
	}
	return out
}

// TestPrioritySplitAcrossARestart: an ESME splits a message itself and
// sends its parts with priority_flag 1 behind a backlog of 500 of its
// ordinary messages, while the SMSC refuses the bind; the gateway
// restarts on the same file before the message is joined. Whether the
// ESME sends the last part after the restart (without the flag: the
// stored parts have it) or the last part was acknowledged and the process
// stopped before the join (housekeeping joins it at start), the message
// goes out ahead of the backlog: its segments among the first windows
// sent after it was joined, where without the stored flag it waited for
// the whole backlog.
func TestPrioritySplitAcrossARestart(t *testing.T) {
	t.Run("the last part after the restart", func(t *testing.T) { prioritySplitAcrossARestart(t, false) })
	t.Run("joined by housekeeping at start", func(t *testing.T) { prioritySplitAcrossARestart(t, true) })
}

func prioritySplitAcrossARestart(t *testing.T, storedWhole bool) {
	const backlog, dest = 500, "13900000001"
	parts := urgentParts(t)
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	path := filepath.Join(t.TempDir(), "q.db")
	refused := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Password = "not the SMSC's" }})
	e, err := refused.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	submitN(t, e, backlog, "1370000")
	for seq := 1; seq < len(parts); seq++ {
		sendPart(ctx, t, e, dest, parts, seq, true)
	}
	if n := len(refused.sim.Received()); n != 0 {
		t.Fatalf("%d sent to an SMSC that refuses the bind", n)
	}
	refused.stop()

	if storedWhole {
		// The file as the process leaves it when it stops after the last
		// part's submit_sm_resp and before the join: every part stored,
		// each with the flag its submit_sm had.
		s, err := queue.Open(path, queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		groups, err := s.FragmentGroups()
		if err != nil || len(groups) != 1 || groups[0].Complete {
			t.Fatalf("pending groups %+v, %v; want the one with its last part missing", groups, err)
		}
		stored, err := s.Fragments(groups[0].Group)
		if err != nil || len(stored) != len(parts)-1 || !stored[0].Priority {
			t.Fatalf("stored parts: %d, %v; want %d with priority", len(stored), err, len(parts)-1)
		}
		last := *stored[0]
		last.ID, last.ArrivedAt = 0, time.Time{}
		last.Seq, last.Data = uint8(len(parts)), parts[len(parts)-1]
		if res, err := s.StoreFragment(ctx, &last, queue.FragmentLimits{}); err != nil || !res.Complete {
			t.Fatalf("the last part: %+v, %v; want it to complete the group", res, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	r := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond}, upstream: storedUpstream(100)})
	sent := 0 // of the backlog, when the message was joined
	if !storedWhole {
		e, err := r.bind("esme", "pw", smpp.BindTransceiver)
		if err != nil {
			t.Fatal(err)
		}
		sent = len(r.sim.Received())
		sendPart(ctx, t, e, dest, parts, len(parts), false)
	}
	if sent > backlog/2 {
		t.Fatalf("%d of the backlog already sent: no backlog to skip", sent)
	}
	// Its segments go one at a time in the lane (one in flight an
	// enterprise), each after at most the windows' worth in flight when
	// it came: a segment after the last of those is late.
	const segments = 3
	limit := sent + segments*2*storedWorkers
	var at []int
	waitFor(t, 30*time.Second, "the message with priority at the SMSC", func() bool {
		rec := r.sim.Received()
		at = positions(rec, dest)
		return len(at) >= segments || len(rec) > limit
	})
	if len(at) < segments {
		t.Fatalf("the message with priority: %d of %d segments among the first %d sent after the restart (%d out when it was joined), want all: it waits behind the backlog of %d",
			len(at), segments, limit, sent, backlog)
	}
	if last := at[segments-1]; last >= limit {
		t.Errorf("the last segment of the message with priority went out %dth (%d out when it was joined), want before %d", last+1, sent, limit)
	}
	t.Logf("backlog %d at 100/s, %d out when the split message was joined: its segments out %v (0-based)", backlog, sent, at)
}
