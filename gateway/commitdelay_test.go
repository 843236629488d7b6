package gateway_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// With store.commit_delay, an ESME that waits for each answer is never
// held; once it has had several submits out at once, a lone submit (its
// window has room) waits for company, up to the delay. store.record_delay
// holds records only: with it, no submit waits, room or not.
func TestCommitDelayHoldsOnlySubmitsOfESMEsWithRoom(t *testing.T) {
	const delay = time.Second // far above a commit, so the bounds below are not timing luck
	for _, knob := range holdKnobs(delay) {
		t.Run(knob.name, func(t *testing.T) {
			held := knob.name == "commit_delay"
			_, e := holdRig(t, time.Hour, knob.set, nil) // no receipt during the test
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			timed := func(dst string) time.Duration {
				t.Helper()
				start := time.Now()
				if _, err := e.submit(ctx, submitSM("1069", dst, "held?")); err != nil {
					t.Fatal(err)
				}
				return time.Since(start)
			}

			// Stop and wait: one submit out at a time, the most it ever had.
			for i := range 3 {
				if took := timed(fmt.Sprintf("1380000%04d", i)); took >= delay {
					t.Errorf("submit %d of an ESME that waits for each answer took %v: held for company", i, took)
				}
			}

			// Three sent at once (the first is still being committed when
			// the second is read, at least), then one alone: its window has
			// room, so with commit_delay it waits for company. (Whether the
			// third of the three waited depends on when it was read: after
			// the first two were answered, it was alone too.)
			submitN(t, e, 3, "1380001")
			took := timed("13800020000")
			if held && (took < delay*3/4 || took > delay+5*time.Second) {
				t.Errorf("a lone submit of an ESME that had three out took %v: want held about %v", took, delay)
			}
			if !held && took >= delay/2 {
				t.Errorf("a lone submit of an ESME that had three out took %v with %s: held", took, knob.name)
			}
		})
	}
}

// The record of an SMSC's answer waits for company only while another
// worker of the upstream is idle (holding it holds up no segment): with
// one bind of window 1 the one worker is busy with that segment, and the
// record is committed at once.
func TestCommitDelayHoldsSubmittedRecordsOnlyWithAnIdleWorker(t *testing.T) {
	const delay = time.Second
	for _, knob := range holdKnobs(delay) {
		for _, c := range []struct {
			name          string
			binds, window int
			held          bool
		}{
			{"idle workers", 2, 20, true},
			{"one worker", 1, 1, false},
		} {
			t.Run(knob.name+"/"+c.name, func(t *testing.T) {
				recorded := func() time.Duration {
					r, e := holdRig(t, time.Hour, knob.set, func(u *gateway.UpstreamConfig) { u.Binds, u.Window = c.binds, c.window })
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					id := submitOne(ctx, t, e, "record")
					r.waitReceived(t, 1)
					answered := time.Now() // about when the SMSC answered
					for {
						m, err := r.store.Get(id)
						if err != nil {
							t.Fatal(err)
						}
						if m.Parts[0].State == queue.StateSubmitted {
							break
						}
						if ctx.Err() != nil {
							t.Fatalf("part still %s", m.Parts[0].State)
						}
						waitABit(ctx)
					}
					return time.Since(answered)
				}
				took := recorded()
				if c.held && took < delay/2 {
					// A held record goes with any commit that comes meanwhile
					// (once under make test's load, at 20 ms: a write of the
					// rig's starting bind, perhaps, made late); one never
					// held misses it every time, so it is measured again
					// once, on a fresh rig.
					t.Logf("with idle workers the SMSC's answer was recorded %v after it: measuring again", took)
					took = recorded()
				}
				if c.held && took < delay/2 {
					t.Errorf("with idle workers the SMSC's answer was recorded %v after it (twice): not held for company", took)
				}
				if !c.held && took >= delay/2 {
					t.Errorf("with the only worker busy the SMSC's answer was recorded %v after it: held", took)
				}
			})
		}
	}
}

// An SMSC's receipt waits for company only while the SMSC has room in
// its window (smpp.Conn.PeerHasRoom): a crash repeats none of those held,
// since the SMSC sends again what was not answered, but an SMSC that
// waits for each answer would be slowed by every hold. On a fresh bind
// the SMSC has only ever had one receipt out, so the first is committed
// at once; after a burst of receipts out together, a lone one is held.
func TestCommitDelayHoldsSMSCReceiptsOnlyWithRoom(t *testing.T) {
	const delay = time.Second
	for _, knob := range holdKnobs(delay) {
		t.Run(knob.name, func(t *testing.T) {
			// One bind, so every receipt comes on the connection whose
			// window the gateway has learnt.
			r, e := holdRig(t, 10*time.Millisecond, knob.set, func(u *gateway.UpstreamConfig) { u.Binds = 1 })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// delivered is how long after the SMSC accepted the n-th
			// message its receipt was committed: about the simulator's
			// 10ms receipt delay, or the hold besides.
			delivered := func(id uint64, n int) time.Duration {
				t.Helper()
				r.waitReceived(t, n)
				accepted := time.Now()
				for {
					m, err := r.store.Get(id)
					if err != nil {
						t.Fatal(err)
					}
					if m.Parts[0].State == queue.StateDelivered {
						return time.Since(accepted)
					}
					if ctx.Err() != nil {
						t.Fatalf("receipt %d never recorded: part %s", n, m.Parts[0].State)
					}
					waitABit(ctx)
				}
			}

			if took := delivered(submitOne(ctx, t, e, "first"), 1); took >= delay/2 {
				t.Errorf("the first receipt on a bind was recorded %v after its submit: held, though the SMSC had never had two out", took)
			}
			e.waitReceipts(t, 1, 20*time.Second)

			// Twenty receipts due together: the SMSC sends them at once
			// (the simulator has up to 64 out), so several wait for their
			// answers while the first is committed.
			const burst = 20
			submitN(t, e, burst, "1380003")
			e.waitReceipts(t, 1+burst, 20*time.Second)

			if took := delivered(submitOne(ctx, t, e, "lone"), 2+burst); took < delay*3/4 || took > delay+5*time.Second {
				t.Errorf("a lone receipt after a burst was recorded %v after its submit: want held about %v", took, delay)
			}
		})
	}
}

// holdKnob is a store setting that holds records for company: every
// test in this file runs with each.
type holdKnob struct {
	name string
	set  func(*queue.Options)
}

// holdKnobs: store.commit_delay, which holds the ESMEs' submits too, and
// store.record_delay, which holds records only.
func holdKnobs(d time.Duration) []holdKnob {
	return []holdKnob{
		{"commit_delay", func(o *queue.Options) { o.CommitDelay = d }},
		{"record_delay", func(o *queue.Options) { o.RecordDelay = d }},
	}
}

// The receipt forwarder's record that an ESME acknowledged a receipt is
// off the ESME's window (the next receipt goes out meanwhile), so it
// waits for company, up to the delay; until it is committed the receipt
// stays pending.
func TestCommitDelayHoldsReceiptAcks(t *testing.T) {
	const delay = time.Second
	for _, knob := range holdKnobs(delay) {
		t.Run(knob.name, func(t *testing.T) { testHoldsReceiptAcks(t, delay, knob.set) })
	}
}

func testHoldsReceiptAcks(t *testing.T, delay time.Duration, set func(*queue.Options)) {
	r, e := holdRig(t, 10*time.Millisecond, set, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := submitOne(ctx, t, e, "receipt")
	e.waitReceipts(t, 1, 20*time.Second)
	answered := time.Now() // about when the ESME answered the receipt
	for {
		m, err := r.store.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.DLRForwarded {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the ESME's answer to the receipt was never recorded")
		}
		waitABit(ctx)
	}
	if took := time.Since(answered); took < delay/2 || took > delay+5*time.Second {
		t.Errorf("the ESME's answer to the receipt was recorded %v after it: want held about %v", took, delay)
	}
}

// submitOne submits text to 13800000001 and returns the message id.
func submitOne(ctx context.Context, t *testing.T, e *esme, text string) uint64 {
	t.Helper()
	sid, err := e.submit(ctx, submitSM("1069", "13800000001", text))
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(sid, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// holdRig is a gateway whose store holds operations as set says, whose
// simulator sends receipts dlrDelay after each submit, with its
// housekeeping off (no write of its, which is never held, ends a wait
// early), and an ESME bound to it as a transceiver.
func holdRig(t *testing.T, dlrDelay time.Duration, set func(*queue.Options), upstream func(*gateway.UpstreamConfig)) (*rig, *esme) {
	t.Helper()
	r := newRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: dlrDelay},
		store:    set,
		gwcfg:    func(c *gateway.Config) { c.MaintainInterval = time.Hour },
		upstream: upstream,
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	return r, e
}
