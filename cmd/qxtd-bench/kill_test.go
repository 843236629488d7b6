package main

import (
	"context"
	"runtime"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// TestSubmitToken: the peer finds the client's token in the text as the
// client sent it and as qxtd may relay it (a signature added, UCS-2).
func TestSubmitToken(t *testing.T) {
	ucs2 := func(s string) []byte {
		var b []byte
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u>>8), byte(u))
		}
		return b
	}
	for _, c := range []struct {
		text []byte
		dc   uint8
		want int
	}{
		{[]byte(tokenText(0)), 0, 0},
		{[]byte(tokenText(19999)), 0, 19999},
		{[]byte("【压测】" + tokenText(42)), 0, 42},
		{ucs2("【压测】" + tokenText(7)), 8, 7},
		{ucs2(tokenText(123) + "【压测】"), 8, 123},
		{[]byte("bench message 5"), 0, -1},
		{[]byte(tokenPrefix), 0, -1},
	} {
		p := pdu.NewSubmitSM(nil)
		_ = p.Fields().Set(pdufield.DataCoding, c.dc)
		_ = p.Fields().Set(pdufield.ShortMessage, c.text)
		if got := submitToken(p); got != c.want {
			t.Errorf("submitToken(%q, dc %d) = %d, want %d", c.text, c.dc, got, c.want)
		}
	}
}

// TestTally: lost is acked with neither a receipt nor its token at the
// peer; duplicates are extra submits of a token and extra receipts of an id.
func TestTally(t *testing.T) {
	acked := map[string]int{"a": 0, "b": 1, "c": 2, "d": 3}
	rcpts := map[string]int{"a": 1, "b": 2, "x": 1} // x: an unanswered message's receipt
	tokens := map[int]int{0: 1, 1: 1, 2: 3, 9: 1}
	got := tally(acked, rcpts, tokens)
	want := killCounts{Acked: 4, Lost: 1, NoReceipt: 2, NotAtPeer: 1, PeerDups: 2, DupReceipts: 1}
	if got != want {
		t.Errorf("tally = %+v, want %+v", got, want)
	}
}

// TestKillSubmitPaced: with -offered the crash scenario's client sends at
// that rate (n submits take at least (n-1) intervals), and without it as
// fast as the window allows; every submit is answered either way. The
// bench's peer stands in for qxtd: it binds and answers the same way.
func TestKillSubmitPaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := startTestPeer(t, ctx, time.Millisecond)
	const n, offered = 21, 50.0 // 20 intervals of 20 ms
	for _, rate := range []float64{offered, 0} {
		l := &killLedger{pending: map[uint32]int{}, acked: map[string]int{}, rcpts: map[string]int{}}
		k, err := dialKill(ctx, peer.Addr(), l, 100)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if next := k.submit(ctx, 0, n, 2, rate, nil); next != n {
			t.Fatalf("offered %v: sent %d of %d", rate, next, n)
		}
		took := time.Since(start)
		for {
			if a, _ := l.counts(); a == n {
				break
			}
			if ctx.Err() != nil {
				a, _ := l.counts()
				t.Fatalf("offered %v: %d of %d answered", rate, a, n)
			}
			runtime.Gosched()
		}
		k.close()
		if min := time.Duration(n-1) * time.Second / offered; rate > 0 && took < min {
			t.Errorf("offered %v: %d submits in %v, less than %v", rate, n, took, min)
		}
		if min := time.Duration(n-1) * time.Second / offered; rate == 0 && took >= min {
			t.Errorf("unpaced: %d submits took %v, as long as paced ones", n, took)
		}
	}
}
