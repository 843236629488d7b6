package smpp

import (
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// TestDecodeMapsNeverPanics: should go-smpp's decoder ever refuse (or
// panic on) a body the hot decoder accepted, building the maps gives what
// it could read, never a panic in whoever first asked for Fields.
func TestDecodeMapsNeverPanics(t *testing.T) {
	for _, body := range [][]byte{
		nil,
		[]byte("A"),             // service_type without its NUL
		{0, 1, 1, '1', 0, 1, 1}, // cut inside destination_addr
		{0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 200, 5}, // sm_length past the end, UDHI
	} {
		for name, list := range map[string]pdufield.List{"submit_sm": submitSMList, "deliver_sm": deliverSMList} {
			f, tl := decodeMaps(list, body)
			if f == nil || tl == nil {
				t.Errorf("%s %x: nil maps", name, body)
			}
		}
	}
}
