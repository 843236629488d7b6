package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// A small package so the quota is reached in a few messages: 1 CNY for 3
// segments, 0.10 CNY per extra segment; with a 1.20 CNY cap the limit is
// 3 + (120-100)/10 = 5 segments.
var testPackages = policy.PackageTable{{ID: 1, FeeFen: 100, Included: 3, OverageFen: 10}}

func policyRig(t *testing.T, sim smpp.SimOptions) (*rig, *policy.Policy) {
	t.Helper()
	var pol *policy.Policy
	r := newRig(t, rigOpts{sim: sim, rules: func(t testing.TB, db *bbolt.DB) gateway.Policy {
		var err error
		pol, err = policy.New(db, policy.Config{Packages: testPackages, BcryptCost: 4, DefaultTPS: 1000})
		if err != nil {
			t.Fatal(err)
		}
		_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{
			{
				Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1, CapFen: 120},
				Users:      []policy.NewUser{{Name: "甲", SystemID: "alice", Password: "secret1"}},
				Whitelist:  []string{"13712345678", "13012345678", "13923412345"},
			},
			{
				Enterprise: policy.Enterprise{Code: "E2", Name: "乙公司", Signature: "【乙公司】", Package: 1},
				Users:      []policy.NewUser{{Name: "乙", SystemID: "bob", Password: "secret2"}},
				Whitelist:  []string{"13712345678"},
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		// A pending entry: added by the enterprise, not yet approved.
		if _, err := pol.AddWhitelist(policy.Actor{Enterprise: "E1", Admin: true, Name: "alice"}, "E1", []string{"13712345679"}); err != nil {
			t.Fatal(err)
		}
		return gateway.Rules{P: pol}
	}})
	return r, pol
}

func wantStatus(t *testing.T, err error, want pdu.Status) {
	t.Helper()
	var st pdu.Status
	if !errors.As(err, &st) || st != want {
		t.Fatalf("got %v, want command_status %#x", err, uint32(want))
	}
}

// TestPolicyOverSMPP walks the operator's rules over a real SMPP bind:
// whitelist approval, off-net scope, the monthly cap, a failed receipt
// releasing its reservation, and the bill matching what was delivered.
func TestPolicyOverSMPP(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	delivered := map[string]bool{}
	send := func(dst string) (string, error) {
		return alice.submit(ctx, submitSM("1069", dst, "policy"))
	}
	mustDeliver := func(dst string, want smpp.MessageState) {
		t.Helper()
		id, err := send(dst)
		if err != nil {
			t.Fatalf("submit to %s: %v", dst, err)
		}
		delivered[id] = true
		got := alice.waitReceipts(t, len(delivered), 10*time.Second)
		if got[id].State != want {
			t.Fatalf("receipt for %s: %s, want %s", dst, got[id].State.Stat(), want.Stat())
		}
	}

	// Pending whitelist entry and a number never added: refused.
	_, err = send("13712345679")
	wantStatus(t, err, 0x400)
	_, err = send("13712340000")
	wantStatus(t, err, 0x400)
	// Approved, in-province China Mobile: delivered.
	mustDeliver("13712345678", smpp.StateDelivered)
	// China Unicom without the off-net grant: refused; with it: delivered.
	_, err = send("13012345678")
	wantStatus(t, err, 0x402)
	if _, err := pol.UpdateEnterprise(policy.OperatorActor("test"), "E1", func(e *policy.Enterprise) error {
		e.OffNet = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustDeliver("13012345678", smpp.StateDelivered)
	// Not a mobile number at all.
	_, err = send("02088888888")
	wantStatus(t, err, 0x403)

	// A failed delivery releases its reservation.
	r.sim.SetFaults(smpp.Faults{Undeliv: 1})
	mustDeliver("13923412345", smpp.StateUndeliverable)
	r.sim.SetFaults(smpp.Faults{})
	month := queue.BillingMonth(time.Now())
	if res, ch := r.store.Usage("E1", month); res != 0 || ch != 2 {
		t.Fatalf("usage reserved=%d charged=%d, want 0 and 2", res, ch)
	}
	// Up to the limit of 5 segments, then quota_exceeded.
	for range 3 {
		mustDeliver("13712345678", smpp.StateDelivered)
	}
	_, err = send("13712345678")
	wantStatus(t, err, 0x404)

	// The bill: 5 delivered = 3 included + 2 overage × 10 fen, + 100 fen fee.
	_, charged := r.store.Usage("E1", month)
	ent, _ := pol.Lookup("E1")
	bill, err := pol.Bill(ent, month, charged)
	if err != nil {
		t.Fatal(err)
	}
	if bill.Delivered != 5 || bill.Overage != 2 || bill.OverageFen != 20 || bill.TotalFen != 120 {
		t.Fatalf("bill %+v, want 5 delivered, 2 overage, 20 + 100 = 120 fen", bill)
	}

	// Isolation: bob's bind never saw one of alice's receipts, and bob's
	// own enterprise is untouched.
	if got := bob.receipts(); len(got) != 0 {
		t.Fatalf("enterprise E2 received E1's receipts: %v", got)
	}
	if res, ch := r.store.Usage("E2", month); res != 0 || ch != 0 {
		t.Fatalf("E2 usage reserved=%d charged=%d, want 0", res, ch)
	}
	// query_sm: alice sees her message; bob's query for it is answered
	// exactly like a query for an id that does not exist.
	var anyID string
	for id := range delivered {
		anyID = id
		break
	}
	q := func(e *esme, id string) (pdu.Body, error) {
		p := pdu.NewQuerySM()
		_ = p.Fields().Set(pdufield.MessageID, id)
		return e.conn.Request(ctx, p)
	}
	resp, err := q(alice, anyID)
	if err != nil {
		t.Fatalf("query own message: %v", err)
	}
	if st := smpp.Byte(resp, pdufield.MessageState); st != uint8(smpp.StateDelivered) && st != uint8(smpp.StateUndeliverable) {
		t.Fatalf("query_sm_resp message_state %d", st)
	}
	_, err = q(bob, anyID)
	wantStatus(t, err, smpp.StatusQueryFailed)
	_, err = q(bob, "999999999")
	wantStatus(t, err, smpp.StatusQueryFailed)

	// bob may send to his own approved number, not to alice's others.
	if _, err := bob.submit(ctx, submitSM("1069", "13012345678", "x")); err == nil {
		t.Fatal("E2 sent to a number only E1 approved")
	}
}

// TestPolicyBindRefusals: wrong password and a disabled enterprise.
func TestPolicyBindRefusals(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{})
	_, err := r.bind("alice", "wrong00", smpp.BindTransmitter)
	wantStatus(t, err, smpp.StatusBindFailed)
	_, err = r.bind("nobody", "secret1", smpp.BindTransmitter)
	wantStatus(t, err, smpp.StatusBindFailed)
	if _, err := pol.UpdateEnterprise(policy.OperatorActor("test"), "E1", func(e *policy.Enterprise) error {
		e.Disabled = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err = r.bind("alice", "secret1", smpp.BindTransmitter)
	wantStatus(t, err, 0x408)
}

// TestSubmitMulti: one text to several recipients; refusals come back per
// recipient in unsuccess_sme with their codes, the others are delivered
// and every receipt carries the submit_multi's message id.
func TestSubmitMulti(t *testing.T) {
	r, _ := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	p := smpp.NewSubmitMulti(smpp.DestList{
		{TON: 1, NPI: 1, Addr: "13712345678"},
		{TON: 1, NPI: 1, Addr: "13712345679"}, // pending whitelist entry
		{DL: true, Addr: "sales"},             // no such address-book group
		{TON: 1, NPI: 1, Addr: "13923412345"},
	})
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, "1069")
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	_ = f.Set(pdufield.ShortMessage, []byte("group send"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := alice.conn.Request(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	id := smpp.Str(resp, pdufield.MessageID)
	failed, err := smpp.ParseUnsuccess(resp)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pdu.Status{"13712345679": 0x400, "sales": 0x34}
	if len(failed) != len(want) {
		t.Fatalf("unsuccess_sme %+v, want %v", failed, want)
	}
	for _, u := range failed {
		if want[u.Addr] != u.Status {
			t.Errorf("unsuccess %s: %#x, want %#x", u.Addr, uint32(u.Status), uint32(want[u.Addr]))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond) // the receipt map has no signal per recipient
	defer tick.Stop()
	for {
		alice.mu.Lock()
		a, b := alice.byRecipient["13712345678"], alice.byRecipient["13923412345"]
		alice.mu.Unlock()
		if a != "" && b != "" {
			if a != id || b != id {
				t.Fatalf("receipts carry ids %q and %q, want the submit_multi id %q", a, b, id)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipts missing: %q %q", a, b)
		}
		select {
		case <-alice.got:
		case <-tick.C:
		}
	}
	if n := len(r.sim.Received()); n != 2 {
		t.Fatalf("simulator got %d messages, want 2", n)
	}
}

// TestRouteByCarrier: with two upstreams, China Mobile numbers go to the
// one that lists china_mobile and the others to the catch-all; with no
// catch-all an unserved carrier is refused per recipient (no_route).
func TestRouteByCarrier(t *testing.T) {
	other := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", DLRDelay: time.Millisecond, Record: true})
	l := listen(t)
	go func() { _ = other.Serve(l) }()
	t.Cleanup(func() { _ = other.Close() })
	r := newRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Carriers = []string{"china_mobile"} },
		gwcfg: func(c *gateway.Config) {
			up := c.Upstreams[0]
			up.Name, up.Addr, up.Carriers = "other", l.Addr().String(), []string{"china_unicom"}
			c.Upstreams = append(c.Upstreams, up)
		},
		rules: anyNumberRules,
	})
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dst := range []string{"13712345678", "13012345678"} { // China Mobile, China Unicom
		if _, err := alice.submit(ctx, submitSM("1069", dst, "route")); err != nil {
			t.Fatalf("submit to %s: %v", dst, err)
		}
	}
	// China Telecom: neither upstream serves it and there is no catch-all.
	_, err = alice.submit(ctx, submitSM("1069", "13312345678", "route"))
	wantStatus(t, err, smpp.StatusInvalidDstAddr)
	alice.waitReceipts(t, 2, 10*time.Second)
	if got := r.sim.Received(); len(got) != 1 || got[0].Dest != "13712345678" {
		t.Fatalf("China Mobile upstream got %+v", got)
	}
	if got := other.Received(); len(got) != 1 || got[0].Dest != "13012345678" {
		t.Fatalf("China Unicom upstream got %+v", got)
	}
}

// anyNumberRules is the real policy with one enterprise, E1, whose user
// alice (secret1) may send to any number of any carrier: for tests of
// what happens after the rules, such as routing by carrier.
func anyNumberRules(t testing.TB, db *bbolt.DB) gateway.Policy {
	pol, err := policy.New(db, policy.Config{BcryptCost: 4, DefaultTPS: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1, National: true, OffNet: true, NoWhitelist: true},
		Users:      []policy.NewUser{{Name: "甲", SystemID: "alice", Password: "secret1"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	return gateway.Rules{P: pol}
}

// TestWhitelistApprovalOverSMPP: a bind submitting to a number the
// enterprise asked for is refused not_whitelisted (0x400) while it waits;
// once the account manager approves it the same submit is accepted and
// delivered.
func TestWhitelistApprovalOverSMPP(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const dst = "13712345679" // pending in the rig
	_, err = alice.submit(ctx, submitSM("1069", dst, "approval"))
	wantStatus(t, err, 0x400)
	if _, err := pol.DecideEntries(policy.OperatorActor("manager"), policy.WhitelistApproved, "",
		[]policy.EntryRef{{Enterprise: "E1", Number: dst}}); err != nil {
		t.Fatal(err)
	}
	id, err := alice.submit(ctx, submitSM("1069", dst, "approval"))
	if err != nil {
		t.Fatalf("submit after approval: %v", err)
	}
	if got := alice.waitReceipts(t, 1, 10*time.Second); got[id].State != smpp.StateDelivered {
		t.Fatalf("receipt: %s", got[id].State.Stat())
	}
}

// TestDisabledUserOpenBind: a user disabled (or deleted) while its bind
// is open sends nothing more on it: account_disabled (0x408) from the
// next submit_sm on.
func TestDisabledUserOpenBind(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := alice.submit(ctx, submitSM("1069", "13712345678", "before")); err != nil {
		t.Fatalf("submit before: %v", err)
	}
	off := true
	if _, err := pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	_, err = alice.submit(ctx, submitSM("1069", "13712345678", "after"))
	wantStatus(t, err, 0x408)
	if err := pol.DeleteUser(policy.OperatorActor("test"), "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = bob.submit(ctx, submitSM("1069", "13712345678", "deleted"))
	wantStatus(t, err, 0x408)
}

// TestSubmitMultiDistributionList: a distribution list entry of
// submit_multi (dest_flag 2) is the address-book group of that name, the
// account's personal one first, else its enterprise's; its numbers join
// the other recipients once each, a member the account may not reach is
// refused in unsuccess_sme by its number, and a name that is no group is
// ESME_RINVDLNAME. unsuccess_sme counts at most 255 entries.
func TestSubmitMultiDistributionList(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	u, err := pol.User(policy.OperatorActor("test"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	add := func(b policy.Book, a policy.Actor, number string, groups ...string) {
		t.Helper()
		if _, err := pol.AddContact(a, b, policy.ContactInput{Name: "c" + number, Number: number, Groups: groups}); err != nil {
			t.Fatal(err)
		}
	}
	admin := policy.Actor{Enterprise: "E1", Admin: true, Name: "alice"}
	add(policy.PersonalBook(u), policy.ActorFor(u), "13712345678", "sales") // also named on its own below
	add(policy.PersonalBook(u), policy.ActorFor(u), "13012345678", "sales") // off-net: refused
	add(policy.EnterpriseBook("E1"), admin, "13923412345", "ops")
	add(policy.EnterpriseBook("E1"), admin, "13712345679", "ops")   // pending whitelist entry: refused
	add(policy.EnterpriseBook("E1"), admin, "13800000001", "sales") // the personal "sales" comes first

	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	multi := func(dests smpp.DestList) (pdu.Body, error) {
		t.Helper()
		p := smpp.NewSubmitMulti(dests)
		f := p.Fields()
		_ = f.Set(pdufield.SourceAddr, "1069")
		_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
		_ = f.Set(pdufield.ShortMessage, []byte("to the lists"))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return alice.conn.Request(ctx, p)
	}
	resp, err := multi(smpp.DestList{
		{TON: 1, NPI: 1, Addr: "8613712345678"}, // in "sales" as 13712345678: once
		{TON: 1, NPI: 1, Addr: "13923412345"},   // in "ops" too, and named again below
		{DL: true, Addr: "sales"},
		{TON: 1, NPI: 1, Addr: "+86 139 2341 2345"},
		{DL: true, Addr: "ops"},
		{DL: true, Addr: "nosuch"},
	})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := smpp.ParseUnsuccess(resp)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pdu.Status{"13012345678": 0x402, "13712345679": 0x400, "nosuch": 0x34}
	if len(failed) != len(want) {
		t.Fatalf("unsuccess_sme %+v, want %v", failed, want)
	}
	for _, f := range failed {
		if want[f.Addr] != f.Status {
			t.Errorf("unsuccess %s: %#x, want %#x", f.Addr, uint32(f.Status), uint32(want[f.Addr]))
		}
	}
	id := smpp.Str(resp, pdufield.MessageID)
	got := alice.waitReceipts(t, 1, 10*time.Second)
	if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
		t.Errorf("receipt of the submit_multi %s: %+v", id, rc)
	}
	sent := map[string]int{}
	for _, m := range r.sim.Received() {
		sent[m.Dest]++
	}
	if len(sent) != 2 || sent["13923412345"] != 1 || sent["13712345678"]+sent["8613712345678"] != 1 {
		t.Errorf("the SMSC got %v, want 13712345678 (however written) and 13923412345 once each", sent)
	}

	// A list of 300 numbers the enterprise may not reach, beside one it
	// may: as many refusals in unsuccess_sme as a 4,096-byte response
	// holds (some 225 of 18 bytes), and the session goes on.
	for i := range 300 {
		add(policy.EnterpriseBook("E1"), admin, fmt.Sprintf("135%08d", i), "big")
	}
	resp, err = multi(smpp.DestList{{TON: 1, NPI: 1, Addr: "13923412345"}, {DL: true, Addr: "big"}})
	if err != nil {
		t.Fatal(err)
	}
	if failed, err = smpp.ParseUnsuccess(resp); err != nil || len(failed) < 200 || len(failed) > 255 {
		t.Fatalf("a list of 300 refused numbers: %d in unsuccess_sme (%v), want what 4,096 bytes hold", len(failed), err)
	}
	if _, err := multi(smpp.DestList{{TON: 1, NPI: 1, Addr: "13923412345"}}); err != nil {
		t.Fatalf("the next request on the session: %v", err)
	}

	// At most 50 lists a submit_multi (each reads the address books);
	// a name repeated counts once.
	var lists smpp.DestList
	for i := range 51 {
		lists = append(lists, smpp.DestAddress{DL: true, Addr: fmt.Sprintf("g%d", i)})
	}
	_, err = multi(lists)
	wantStatus(t, err, 0x33)
	lists = lists[:50]
	lists = append(lists, smpp.DestAddress{DL: true, Addr: "g0"}, smpp.DestAddress{TON: 1, NPI: 1, Addr: "13923412345"})
	if _, err := multi(lists); err != nil {
		t.Errorf("50 lists, one twice: %v", err)
	}
}
