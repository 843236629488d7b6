package queue

import (
	"testing"
	"time"
)

// TestCodecOptionalFields: Group, ClientCoding and Weight, added after version 1
// records were written, round-trip when set and stay absent (zero) in a
// record written without them.
func TestCodecOptionalFields(t *testing.T) {
	m := &Message{ID: 7, Account: "a", Enterprise: "e", Dest: "13800138000", Upstream: "u",
		AcceptedAt: time.Unix(1700000000, 0), Parts: []Part{{Body: []byte("x"), State: StateAccepted}}}
	plain, err := DecodeMessage(encodeMessage(nil, m))
	if err != nil || plain.Group != 0 || plain.ClientCoding != 0 {
		t.Fatalf("plain record: %+v, %v", plain, err)
	}
	m.Group, m.ClientCoding, m.Weight = 5, 0x08, 3
	got, err := DecodeMessage(encodeMessage(nil, m))
	if err != nil {
		t.Fatal(err)
	}
	if got.Group != 5 || got.ClientCoding != 0x08 || got.Weight != 3 || got.Segments() != 3 {
		t.Fatalf("group %d client coding %#x weight %d, want 5, 0x08, 3", got.Group, got.ClientCoding, got.Weight)
	}
	// Old records (flags without the new bits) are byte-identical to what
	// version 1 wrote: the new fields cost nothing when unused.
	if len(encodeMessage(nil, plain)) >= len(encodeMessage(nil, m)) {
		t.Fatal("optional fields should only add bytes when set")
	}
}
