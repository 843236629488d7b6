package gateway

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/qxtd/qxtd/queue"
)

// TestPeerReplyBatches: replies handed to another node go in requests of
// at most peerReplyBatchBytes of JSON, under the peer's 4 MiB body limit
// (a read of replies holds up to 8 MiB of content), all of them, in
// order; a reply larger than the bound goes alone.
func TestPeerReplyBatches(t *testing.T) {
	var mos []*queue.MO
	for i, n := range []int{700 << 10, 700 << 10, 10, 700 << 10, 3 << 20, 5, 900 << 10, 900 << 10} {
		m := &queue.MO{ID: uint64(i + 1), Source: "13712345678", Dest: "106575001", DataCoding: 0xF5, Binary: make([]byte, n)}
		if i == 2 {
			m.Binary, m.Text = nil, "好"
		}
		mos = append(mos, m)
	}
	var ids []uint64
	var sizes [][]uint64
	for list, ds := range peerReplyBatches("E1", mos) {
		if len(list) != len(ds) {
			t.Fatalf("%d replies, %d deliveries", len(list), len(ds))
		}
		b, err := json.Marshal(ds)
		if err != nil {
			t.Fatal(err)
		}
		var batch []uint64
		for k, m := range list {
			if ds[k].MOID != m.ID || ds[k].Enterprise != "E1" || ds[k].Octets != (m.Binary != nil) || len(ds[k].Binary) != len(m.Binary) {
				t.Errorf("reply %d handed as %+v", m.ID, ds[k].MOID)
			}
			ids, batch = append(ids, m.ID), append(batch, m.ID)
		}
		if len(b) > peerReplyBatchBytes && len(list) > 1 {
			t.Errorf("a batch of %d replies is %d bytes of JSON, bound %d", len(list), len(b), peerReplyBatchBytes)
		}
		sizes = append(sizes, batch)
	}
	if len(ids) != len(mos) {
		t.Fatalf("handed %v, want all %d", ids, len(mos))
	}
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("handed in the order %v", ids)
		}
	}
	// 700 KiB of octets is 933 KiB of base64: two a batch, and the
	// text beside them; 900 KiB is 1.2 MiB: one, and the small reply.
	want := [][]uint64{{1, 2, 3}, {4}, {5}, {6, 7}, {8}}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Errorf("batches %v, want %v", sizes, want)
	}
}
