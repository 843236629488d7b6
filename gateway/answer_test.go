package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
)

// TestSendStoresItsAnswer: a send whose context carries an Answer stores
// it with its messages, rendered from the results Send returns (ids,
// a number named twice given its first's), with the request's sum; a
// second send in the same context stores nothing more (the answer is one
// request's); a send without one stores none.
func TestSendStoresItsAnswer(t *testing.T) {
	r := newRig(t, rigOpts{})
	render := func(res []gateway.SendResult) []byte {
		var b strings.Builder
		for _, x := range res {
			fmt.Fprintf(&b, "%s=%d,%v,%v;", x.Dest, x.ID, x.Err != nil, x.Duplicate)
		}
		return []byte(b.String())
	}
	a := &gateway.Answer{Key: "A\x00esme\x00/v1/messages\x00k", Enterprise: "A", At: time.Unix(1_790_000_000, 0).UTC(),
		Header: []byte(`{}`), Sum: func() []byte { return []byte("sum") }, Render: render}
	ctx := gateway.WithAnswer(context.Background(), a)
	acct := &gateway.Account{SystemID: "esme", Enterprise: "A", Signature: "【甲】"}
	res, err := r.gw.Send(ctx, acct, gateway.SendRequest{Ingress: "http", Source: "1069", Text: "一次",
		Dests: []string{"13800110001", "13800110002", "13800110001"}, Once: true})
	if err != nil {
		t.Fatal(err)
	}
	want := render(res)
	if !res[2].Duplicate || res[2].ID != res[0].ID || res[0].ID == 0 {
		t.Fatalf("results %+v", res)
	}
	got, err := r.store.LoadAnswer(a.Key)
	if err != nil || !bytes.Equal(got.Body, want) || !bytes.Equal(a.Stored(), want) || string(got.Sum) != "sum" ||
		got.Code != 200 || string(got.Header) != `{}` || got.Enterprise != "A" || !got.At.Equal(a.At) {
		t.Fatalf("stored %+v (%v); want the body %q", got, err, want)
	}
	if _, err := r.gw.Send(ctx, acct, gateway.SendRequest{Ingress: "http", Source: "1069", Text: "另一次", Dests: []string{"13800110003"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := r.store.LoadAnswer(a.Key); err != nil || !bytes.Equal(got.Body, want) {
		t.Fatalf("a second send in the context replaced the answer: %q (%v)", got.Body, err)
	}
	n := 0
	if err := r.store.Answers(func(*queue.Answer, int) { n++ }); err != nil || n != 1 {
		t.Fatalf("%d answers stored (%v), want 1", n, err)
	}
}
