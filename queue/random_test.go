package queue

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// TestRandomOperations drives the store with random operations — including
// repeats, DLRs before responses, id variants, and restarts — and checks
// every invariant (Check recomputes usage and counts from the records) as
// it goes.
func TestRandomOperations(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			s := newStore(t, Options{NoSync: true})
			now := time.Now()
			var keys []Key             // every part ever enqueued
			smscOf := map[Key]string{} // id the SMSC gave (or will give) a part
			var nextSMSC int
			idFor := func(k Key) string {
				if id, ok := smscOf[k]; ok {
					return id
				}
				nextSMSC++
				id := strconv.FormatInt(int64(nextSMSC)+1000, 16)
				smscOf[k] = id
				return id
			}
			variant := func(id string) string { // how a DLR may spell it
				v, _ := strconv.ParseInt(id, 16, 64)
				switch rng.IntN(3) {
				case 0:
					return strconv.FormatInt(v, 10)
				case 1:
					return "000" + id
				}
				return id
			}
			pick := func() (Key, bool) {
				if len(keys) == 0 {
					return Key{}, false
				}
				return keys[rng.IntN(len(keys))], true
			}
			for step := range 600 {
				switch op := rng.IntN(100); {
				case op < 20:
					m := msg("acct"+strconv.Itoa(rng.IntN(3)), strconv.Itoa(rng.IntN(5)), 1+rng.IntN(3))
					m.RegisteredDelivery = uint8(rng.IntN(4))
					// Some sent with priority (not drawn: the sequence
					// of operations stays what each seed gave before).
					m.Priority = len(keys)%4 == 0
					errs, err := s.EnqueueLimit(bg, int64(40+rng.IntN(40)), m)
					if err != nil {
						t.Fatal(err)
					}
					if errs[0] == nil {
						for i := range m.Parts {
							keys = append(keys, Key{m.ID, uint16(i)})
						}
					}
				case op < 45:
					if k, ok := pick(); ok {
						err := s.Submitted(bg, k, idFor(k), now)
						if err != nil {
							t.Fatal(err)
						}
					}
				case op < 50:
					if k, ok := pick(); ok {
						err := s.Retry(bg, k, now.Add(time.Duration(rng.IntN(100))*time.Second), "0x58")
						if err != nil && !errors.Is(err, ErrState) {
							t.Fatal(err)
						}
					}
				case op < 55:
					if k, ok := pick(); ok {
						err := s.Fail(bg, k, StateRejected, "0x0b", now)
						if err != nil && !errors.Is(err, ErrState) {
							t.Fatal(err)
						}
					}
				case op < 85:
					if k, ok := pick(); ok {
						states := []State{StateDelivered, StateDelivered, StateUndeliverable, StateExpired}
						_, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: variant(idFor(k)), State: states[rng.IntN(len(states))]})
						if err != nil {
							t.Fatal(err)
						}
					}
				case op < 92:
					acct := "acct" + strconv.Itoa(rng.IntN(3))
					pend, err := s.PendingDLRs(acct, 3, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range pend {
						if err := s.AckDLR(bg, acct, m.ID); err != nil {
							t.Fatal(err)
						}
					}
				case op < 95:
					if _, err := s.ExpireSubmitted(bg, now.Add(time.Second), now, 2); err != nil {
						t.Fatal(err)
					}
				case op < 97:
					if _, err := s.Due(now.Add(time.Minute), 10, nil); err != nil {
						t.Fatal(err)
					}
				default:
					s.reopen()
				}
				if step%50 == 0 {
					if err := s.Check(); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
				}
			}
			c := s.Counts()
			t.Logf("parts by state: %v", c)
		})
	}
}
