package policy

import (
	"fmt"
	"testing"
)

// TestSignatureRequestsBounded: an enterprise keeps its latest
// MaxSignatureRequests requests; each new one drops its oldest (decided:
// superseded, approved or rejected), never another enterprise's, so an
// admin asking again and again cannot grow what every request and
// listing reads.
func TestSignatureRequestsBounded(t *testing.T) {
	f := newFixture(t)
	b, err := f.p.RequestSignature(f.bAdmin, entB, "【乙方新名】")
	if err != nil {
		t.Fatal(err)
	}
	var last *SignatureRequest
	for i := range MaxSignatureRequests + 30 {
		if last, err = f.p.RequestSignature(f.aAdmin, entA, fmt.Sprintf("【甲公司%d】", i)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := f.p.SignatureRequests(f.aAdmin, entA, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != MaxSignatureRequests || a[0].ID != last.ID || a[0].State != SignaturePending {
		t.Fatalf("A keeps %d requests, the newest %+v; want %d, the newest %s pending", len(a), a[0], MaxSignatureRequests, last.ID)
	}
	if oldest := a[len(a)-1]; oldest.Signature != "【甲公司30】" || oldest.State != SignatureSuperseded {
		t.Errorf("A's oldest kept: %+v, want 【甲公司30】 superseded", oldest)
	}
	if got, err := f.p.SignatureRequests(f.bAdmin, entB, ""); err != nil || len(got) != 1 || got[0].ID != b.ID || got[0].State != SignaturePending {
		t.Errorf("B's requests after A's: %+v, %v; want its one, still pending", got, err)
	}
	if _, err := f.p.DecideSignature(op, last.ID, true, ""); err != nil {
		t.Errorf("the newest request decided: %v", err)
	}
}
