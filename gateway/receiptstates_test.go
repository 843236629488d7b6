package gateway

import (
	"slices"
	"testing"

	"github.com/qxtd/qxtd/smpp"
)

// qxtd_dlrs_received_total starts at zero for every state a receipt can
// end in: receiptStates must list each final state receiptState returns.
func TestReceiptStatesInitialised(t *testing.T) {
	for _, acceptedFinal := range []bool{false, true} {
		for s := smpp.MessageState(0); s < 16; s++ {
			st, final := receiptState(s, acceptedFinal)
			if final && !slices.Contains(receiptStates, st) {
				t.Errorf("receipt state %v (from %d) is not in receiptStates", st, s)
			}
		}
	}
}
