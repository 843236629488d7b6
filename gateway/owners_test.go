package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// recordingOwners is a gateway.Owners whose owner nodes are a map: an id
// it holds is answered with its message for the enterprise that has it,
// any other is not found; unavailable nodes fail.
type recordingOwners struct {
	mu          sync.Mutex
	messages    map[uint64]*queue.Message
	unavailable map[uint16]bool
	calls       []string
}

func (o *recordingOwners) call(owner uint16, format string, args ...any) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("node %d: ", owner)+fmt.Sprintf(format, args...))
	if o.unavailable[owner] {
		return fmt.Errorf("%w: node %d down", gateway.ErrOwnerUnavailable, owner)
	}
	return nil
}

func (o *recordingOwners) find(enterprise string, id uint64) (*queue.Message, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m, ok := o.messages[id]
	if !ok || m.Enterprise != enterprise {
		return nil, queue.ErrNotFound
	}
	return m, nil
}

func (o *recordingOwners) OwnerMessage(_ context.Context, owner uint16, enterprise string, id uint64) (*queue.Message, error) {
	if err := o.call(owner, "message %d for %s", id, enterprise); err != nil {
		return nil, err
	}
	return o.find(enterprise, id)
}

func (o *recordingOwners) OwnerQueryMessage(_ context.Context, owner uint16, enterprise string, id uint64) (*queue.Message, error) {
	if err := o.call(owner, "query %d for %s", id, enterprise); err != nil {
		return nil, err
	}
	return o.find(enterprise, id)
}

func (o *recordingOwners) OwnerCancel(_ context.Context, owner uint16, acct *gateway.Account, id uint64) error {
	if err := o.call(owner, "cancel %d for %s/%s", id, acct.SystemID, acct.Enterprise); err != nil {
		return err
	}
	_, err := o.find(acct.Enterprise, id)
	return err
}

func (o *recordingOwners) OwnerReschedule(_ context.Context, owner uint16, acct *gateway.Account, id uint64, sendAt time.Time, text string) error {
	if err := o.call(owner, "reschedule %d for %s/%s %q %v", id, acct.SystemID, acct.Enterprise, text, !sendAt.IsZero()); err != nil {
		return err
	}
	_, err := o.find(acct.Enterprise, id)
	return err
}

func (o *recordingOwners) takeCalls() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

var _ gateway.Owners = (*recordingOwners)(nil)

// TestRouteToOwner: on node 1, query_sm, cancel_sm and replace_sm of an
// id another node gave are answered with that node's outcome; an owner
// that cannot be asked is ESME_RSYSERR; this node's ids and node 0's are
// never routed.
func TestRouteToOwner(t *testing.T) {
	const node2 = uint64(2) << 48
	done := time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC)
	owners := &recordingOwners{
		messages: map[uint64]*queue.Message{
			node2 + 5: {ID: node2 + 5, Account: "alice", Enterprise: "E1", Parts: []queue.Part{{State: queue.StateDelivered, DoneAt: done}}},
			node2 + 6: {ID: node2 + 6, Account: "alice", Enterprise: "E1", Parts: []queue.Part{{State: queue.StateAccepted}}},
		},
		unavailable: map[uint16]bool{3: true},
	}
	r := newRig(t, rigOpts{
		accounts: gateway.StaticAccounts{
			"alice": {Password: "pw", Account: gateway.Account{Enterprise: "E1", Signature: "【测试】"}},
			"bob":   {Password: "pw", Account: gateway.Account{Enterprise: "E2", Signature: "【测试】"}},
		},
		store: func(o *queue.Options) { o.NodeID = 1 },
		gwcfg: func(c *gateway.Config) { c.Owners = owners },
	})
	alice, err := r.bind("alice", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := r.bind("bob", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	id := func(n uint64) string { return fmt.Sprint(n) }
	query := func(e *esme, id string) (pdu.Body, error) {
		p := pdu.NewQuerySM()
		_ = p.Fields().Set(pdufield.MessageID, id)
		return e.conn.Request(ctx, p)
	}
	cancelSM := func(e *esme, id string) error {
		p := smpp.NewPDU(smpp.CancelSMID)
		_ = p.Fields().Set(pdufield.MessageID, id)
		_, err := e.conn.Request(ctx, p)
		return err
	}
	replaceSM := func(e *esme, id, text string) error {
		p := smpp.NewPDU(smpp.ReplaceSMID)
		_ = p.Fields().Set(pdufield.MessageID, id)
		_ = p.Fields().Set(pdufield.ShortMessage, []byte(text))
		_, err := e.conn.Request(ctx, p)
		return err
	}

	resp, err := query(alice, id(node2+5))
	if err != nil {
		t.Fatalf("query_sm of node 2's message: %v", err)
	}
	if st, fd := smpp.Byte(resp, pdufield.MessageState), smpp.Str(resp, pdufield.FinalDate); st != uint8(smpp.StateDelivered) || fd != smpp.FormatTime(done) {
		t.Errorf("query_sm_resp: state %d final_date %q", st, fd)
	}
	if err := cancelSM(alice, id(node2+6)); err != nil {
		t.Errorf("cancel_sm of node 2's message: %v", err)
	}
	if err := replaceSM(alice, id(node2+6), "new"); err != nil {
		t.Errorf("replace_sm of node 2's message: %v", err)
	}
	want := []string{
		"node 2: query 562949953421317 for E1",
		"node 2: cancel 562949953421318 for alice/E1",
		"node 2: message 562949953421318 for E1", // replace_sm reads the data_coding first
		`node 2: reschedule 562949953421318 for alice/E1 "new" false`,
	}
	if got := owners.takeCalls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("owners asked\n%q\nwant\n%q", got, want)
	}

	tests := []struct {
		name string
		err  error
		want pdu.Status
	}{
		{"another enterprise's query", func() error { _, err := query(bob, id(node2+5)); return err }(), smpp.StatusQueryFailed},
		{"another enterprise's cancel", cancelSM(bob, id(node2+6)), smpp.StatusCancelFailed},
		{"another enterprise's replace", replaceSM(bob, id(node2+6), "x"), smpp.StatusReplaceFailed},
		{"unknown at the owner", func() error { _, err := query(alice, id(node2+7)); return err }(), smpp.StatusQueryFailed},
		{"owner down: query", func() error { _, err := query(alice, id(3<<48+1)); return err }(), smpp.StatusSystemError},
		{"owner down: cancel", cancelSM(alice, id(3<<48+1)), smpp.StatusSystemError},
		{"owner down: replace", replaceSM(alice, id(3<<48+1), "x"), smpp.StatusSystemError},
	}
	for _, tc := range tests {
		var st pdu.Status
		if !errors.As(tc.err, &st) || st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	owners.takeCalls()

	// This node's ids and node 0's are answered here alone.
	for _, n := range []uint64{1<<48 + 999, 999} {
		if _, err := query(alice, id(n)); !isStatus(err, smpp.StatusQueryFailed) {
			t.Errorf("query_sm %d: %v", n, err)
		}
		if err := cancelSM(alice, id(n)); !isStatus(err, smpp.StatusCancelFailed) {
			t.Errorf("cancel_sm %d: %v", n, err)
		}
	}
	if got := owners.takeCalls(); len(got) != 0 {
		t.Errorf("ids of this node or of node 0 routed: %q", got)
	}
}

func isStatus(err error, want pdu.Status) bool {
	var st pdu.Status
	return errors.As(err, &st) && st == want
}

// TestOwnerAnswer: an outcome travels as an OwnerAnswer and comes back as
// the error the owner's method returned.
func TestOwnerAnswer(t *testing.T) {
	tests := []struct {
		a    gateway.OwnerAnswer
		want func(error) bool
	}{
		{gateway.OwnerAnswer{Result: gateway.OwnerOK}, func(err error) bool { return err == nil }},
		{gateway.OwnerAnswer{Result: gateway.OwnerNotFound}, func(err error) bool { return errors.Is(err, queue.ErrNotFound) }},
		{gateway.OwnerAnswer{Result: gateway.OwnerNotScheduled, Message: "queue: not scheduled"}, func(err error) bool {
			return errors.Is(err, queue.ErrNotScheduled) && err.Error() == "queue: not scheduled"
		}},
		{gateway.OwnerAnswer{Result: gateway.OwnerInvalid, Message: "send_at too far"}, func(err error) bool {
			return errors.Is(err, queue.ErrInvalid) && err.Error() == "send_at too far"
		}},
		{gateway.OwnerAnswer{Result: gateway.OwnerRefused, Reason: policy.ReasonQuotaExceeded.String(), Message: "d"}, func(err error) bool {
			var ref *policy.Refusal
			return errors.As(err, &ref) && ref.Reason == policy.ReasonQuotaExceeded && ref.Detail == "d"
		}},
		{gateway.OwnerAnswer{Result: gateway.OwnerRefused, Reason: "no_such_reason"}, func(err error) bool { return errors.Is(err, gateway.ErrOwnerUnavailable) }},
		{gateway.OwnerAnswer{Result: "exploded"}, func(err error) bool { return errors.Is(err, gateway.ErrOwnerUnavailable) }},
	}
	for _, tc := range tests {
		if err := tc.a.Err(); !tc.want(err) {
			t.Errorf("%+v: %v", tc.a, err)
		}
	}
}
