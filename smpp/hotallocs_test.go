package smpp_test

import (
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// TestHotPathAllocs holds the four hot PDUs to the allocations they cost
// since they stopped going through go-smpp's field maps (README,
// Performance): a change that builds the maps again (a Fields() call on
// the hot path, a field read that falls back to them) shows here as tens
// of allocations instead of a few, long before it shows in the CPU per
// message, which the machine's noise hides. The budgets are what the
// codec costs now; go-smpp's own path costs 11 to 67 (BenchmarkHot*).
func TestHotPathAllocs(t *testing.T) {
	submit := encodeT(t, smpp.NewSubmitSM(typicalSubmitSM()))
	resp := encodeT(t, smpp.NewSubmitSMResp("5f3a9c0012"))
	receipt := encodeT(t, smpp.NewReceiptPDU(smpp.Receipt{ID: "5f3a9c0012", Sub: 1, Dlvrd: 1,
		SubmitDate: time.Date(2025, 11, 25, 14, 30, 0, 0, time.Local),
		DoneDate:   time.Date(2025, 11, 25, 14, 31, 0, 0, time.Local),
		State:      smpp.StateDelivered, Err: "000", Text: "hello"}, "13712345678", "10690000123", 1, 1, 1, 1))
	m := typicalSubmitSM()
	for _, c := range []struct {
		name   string
		budget float64
		run    func() error
	}{
		{"decode submit_sm and read what ingress reads", 3, func() error {
			p, err := smpp.Decode(submit)
			if err == nil && readSubmit(p) == 0 {
				t.Error("submit_sm read as empty")
			}
			return err
		}},
		{"decode an SMSC's submit_sm_resp and read its message_id", 2, func() error {
			p, err := smpp.Decode(resp)
			if err == nil && smpp.Str(p, pdufield.MessageID) != "5f3a9c0012" {
				t.Error("message_id lost")
			}
			return err
		}},
		{"decode an SMSC's receipt and parse it", 5, func() error {
			p, err := smpp.Decode(receipt)
			if err != nil {
				return err
			}
			rc, err := smpp.ParseReceipt(p)
			if err == nil && rc.ID != "5f3a9c0012" {
				t.Errorf("receipt id %q", rc.ID)
			}
			return err
		}},
		{"build and encode a submit_sm", 3, func() error {
			_, err := smpp.Encode(smpp.NewSubmitSM(m))
			return err
		}},
		{"build and encode our submit_sm_resp", 2, func() error {
			_, err := smpp.Encode(smpp.NewSubmitSMResp("1234567890"))
			return err
		}},
	} {
		var err error
		got := testing.AllocsPerRun(200, func() {
			if e := c.run(); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got > c.budget {
			t.Errorf("%s: %v allocations, budget %v", c.name, got, c.budget)
		}
	}
}

func encodeT(t *testing.T, p pdu.Body) []byte {
	t.Helper()
	f, err := smpp.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
