package gateway

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// connPair is two smpp.Conn on the ends of a loopback connection, closed
// at the test's end.
func connPair(t *testing.T) (a, b *smpp.Conn) {
	t.Helper()
	a, b = newConnPair(t)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// newConnPair is connPair without the cleanup, which would keep the
// connections alive to the test's end.
func newConnPair(t *testing.T) (a, b *smpp.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	none := smpp.HandlerFunc(func(context.Context, *smpp.Conn, pdu.Body) pdu.Body { return nil })
	return smpp.NewConn(nc, none, smpp.ConnOptions{}), smpp.NewConn(<-accepted, none, smpp.ConnOptions{})
}

// textFP is the resend fingerprint of a text reply s from one handset.
func textFP(s string) [32]byte {
	return moFingerprint(&queue.MO{Source: "13712345678", Dest: "106575001", SourceTON: 1, SourceNPI: 1, Text: s})
}

func ended(t *testing.T, c *smpp.Conn) time.Time {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end")
	}
	at, _, _ := c.Ended()
	return at
}

// TestMOAgainWindows: a reply is taken for a resend only if it was stored
// at most moAgainBefore before its connection was cut, comes within
// moAgainKeep of the cut, and only once; never while the connection is
// up, nor after a clean unbind; and an upstream remembers at most
// moAgainMax replies.
func TestMOAgainWindows(t *testing.T) {
	var a moAgain
	now := time.Now()

	up, _ := connPair(t)
	a.stored("sim", textFP("up"), up, now)
	if a.again("sim", textFP("up"), nil, now.Add(time.Second)) {
		t.Fatal("taken for a resend while its connection is up")
	}

	cut, _ := connPair(t)
	a.stored("sim", textFP("old"), cut, now.Add(-moAgainBefore-time.Second))
	a.stored("sim", textFP("recent"), cut, now.Add(-moAgainBefore+time.Second))
	a.stored("sim", textFP("late"), cut, now)
	_ = cut.Close()
	end := ended(t, cut)
	a.stored("sim", textFP("after"), cut, end.Add(time.Millisecond)) // stored once the connection was gone
	for _, c := range []struct {
		text string
		at   time.Time
		want bool
	}{
		{"old", end, false},
		{"recent", end.Add(time.Second), true},
		{"recent", end.Add(time.Second), false}, // once
		{"other", end, false},
		{"after", end.Add(moAgainKeep - time.Second), true},
		{"late", end.Add(moAgainKeep + time.Second), false}, // last: it forgets the rest
	} {
		if got := a.again("sim", textFP(c.text), nil, c.at); got != c.want {
			t.Errorf("%q at the cut %+v: taken %v, want %v", c.text, c.at.Sub(end), got, c.want)
		}
	}
	if a.again("other-upstream", textFP("late"), nil, end) {
		t.Error("taken for another upstream's resend")
	}

	clean, peer := connPair(t)
	a.stored("sim", textFP("clean"), clean, time.Now())
	if err := peer.Unbind(context.Background()); err != nil {
		t.Fatal(err)
	}
	ended(t, clean)
	if a.again("sim", textFP("clean"), nil, time.Now()) {
		t.Error("taken for a resend after a clean unbind")
	}

	// A resend that comes while the first copy is still being stored
	// waits for it: its resend once stored, a reply of its own if not.
	first, later := connPair(t)
	stored := a.begin("sim", textFP("racing"), first, time.Now())
	failed := a.begin("sim", textFP("failing"), first, time.Now())
	if a.racing("sim", textFP("racing"), later, time.Now()) != nil {
		t.Error("racing a reply whose connection is up")
	}
	_ = first.Close()
	ended(t, first)
	if a.racing("sim", textFP("racing"), first, time.Now()) != nil {
		t.Error("racing a reply of the same connection")
	}
	f := a.racing("sim", textFP("racing"), later, time.Now())
	if f != stored || a.racing("sim", textFP("failing"), later, time.Now()) != failed {
		t.Fatal("the replies being stored on a cut connection not found")
	}
	a.end(stored, true, time.Now())
	a.end(failed, false, time.Now())
	<-f.done
	if !a.again("sim", textFP("racing"), nil, time.Now()) || a.again("sim", textFP("failing"), nil, time.Now()) {
		t.Error("a resend not taken once its first copy was stored, or taken although it was not")
	}
	if a.racing("sim", textFP("racing"), later, time.Now()) != nil || len(a.storing) != 0 {
		t.Errorf("replies still being stored: %v", a.storing)
	}

	// The answer to a resend cut too: the next copy is a resend as well,
	// but not while the resend's connection is up.
	cutOnce, _ := connPair(t)
	second, _ := connPair(t)
	a.stored("sim", textFP("thrice"), cutOnce, time.Now())
	_ = cutOnce.Close()
	ended(t, cutOnce)
	if !a.again("sim", textFP("thrice"), second, time.Now()) {
		t.Fatal("the resend not taken")
	}
	if a.again("sim", textFP("thrice"), nil, time.Now()) {
		t.Error("a third copy taken while the resend's connection is up")
	}
	_ = second.Close()
	ended(t, second)
	if !a.again("sim", textFP("thrice"), nil, time.Now()) {
		t.Error("a third copy not taken once the resend's connection was cut")
	}

	for i := range moAgainMax + 10 {
		a.stored("busy", [32]byte{byte(i), byte(i >> 8)}, up, time.Now())
	}
	if n := len(a.ups["busy"]); n > moAgainMax {
		t.Errorf("%d replies remembered, at most %d", n, moAgainMax)
	}
}

// TestMOAgainRestarted: replies read from the store at a start stand for
// replies cut by the previous run's end, for moAgainKeep from the start,
// each taken once; a reply that did not decode is not among them, nor is
// anything when the newest was stored more than moAgainKeep before.
func TestMOAgainRestarted(t *testing.T) {
	start := time.Now()
	mo := func(text string, at time.Time) *queue.MO {
		return &queue.MO{Source: "13712345678", Dest: "106575001", SourceTON: 1, SourceNPI: 1, Text: text, Upstream: "sim", ReceivedAt: at}
	}
	bin := mo("", start.Add(-3*time.Second))
	bin.Binary, bin.DataCoding = []byte{1, 2}, 4
	recent := []*queue.MO{mo("Y", start.Add(-2*time.Second)), mo("", start.Add(-time.Second)), bin} // newest first
	var a moAgain
	a.restarted(recent, start)
	if a.again("sim", moFingerprint(mo("", time.Time{})), nil, start) {
		t.Error("a reply that did not decode (empty text) taken for a resend")
	}
	if a.again("other", moFingerprint(recent[0]), nil, start) {
		t.Error("another upstream's reply taken for a resend")
	}
	if !a.again("sim", moFingerprint(bin), nil, start.Add(time.Second)) {
		t.Error("the binary reply's resend stored again")
	}
	if !a.again("sim", moFingerprint(recent[0]), nil, start.Add(moAgainKeep-time.Second)) {
		t.Error("the resend within moAgainKeep of the start stored again")
	}
	if a.again("sim", moFingerprint(recent[0]), nil, start.Add(moAgainKeep-time.Second)) {
		t.Error("taken for a resend twice")
	}

	var late moAgain
	late.restarted([]*queue.MO{mo("Y", start.Add(-2*time.Second))}, start)
	if late.again("sim", moFingerprint(mo("Y", time.Time{})), nil, start.Add(moAgainKeep+time.Second)) {
		t.Error("taken for a resend past moAgainKeep after the start")
	}
	var idle moAgain
	idle.restarted([]*queue.MO{mo("Y", start.Add(-moAgainKeep-time.Second))}, start)
	if idle.again("sim", moFingerprint(mo("Y", time.Time{})), nil, start) {
		t.Error("taken for a resend though the last reply was stored more than moAgainKeep before the start")
	}
}

// TestMOAgainLate: a reply stored later than moAgainLate after it came
// was answered too late for some SMSCs, which send it again on the same
// connection, still up: taken for a resend, once, for moAgainKeep from
// the answer. One answered in time is not; a copy that comes while the
// first is stored past moAgainLate waits for it.
func TestMOAgainLate(t *testing.T) {
	var a moAgain
	up, _ := connPair(t)
	t0 := time.Now()
	late := a.begin("sim", textFP("late"), up, t0)
	if a.racing("sim", textFP("late"), up, t0.Add(moAgainLate-time.Millisecond)) != nil {
		t.Error("a copy racing one stored for less than moAgainLate")
	}
	if a.racing("sim", textFP("late"), up, t0.Add(moAgainLate+time.Millisecond)) != late {
		t.Error("a copy racing one stored for longer than moAgainLate does not wait for it")
	}
	a.end(late, true, t0.Add(moAgainLate+time.Second))
	timely := a.begin("sim", textFP("timely"), up, t0)
	a.end(timely, true, t0.Add(moAgainLate-time.Millisecond))
	answered := t0.Add(moAgainLate + time.Second)
	if a.again("sim", textFP("timely"), up, answered) {
		t.Error("a reply answered in time taken for a resend on its live connection")
	}
	if !a.again("sim", textFP("late"), up, answered.Add(moAgainKeep-time.Second)) {
		t.Error("the resend of a reply answered late stored again")
	}
	if a.again("sim", textFP("late"), up, answered.Add(moAgainKeep-time.Second)) {
		t.Error("a third copy, on the live connection, taken for a resend")
	}
	older := a.begin("sim", textFP("older"), up, t0)
	a.end(older, true, answered)
	if a.again("sim", textFP("older"), up, answered.Add(moAgainKeep+time.Second)) {
		t.Error("taken for a resend past moAgainKeep after the late answer")
	}

	// An upstream whose SMSC waits 300 ms (UpstreamConfig.MORespTimeout):
	// late past that, where another upstream's line stays at 2 s.
	b := moAgain{lateAfter: map[string]time.Duration{"fast": 300 * time.Millisecond}}
	for _, upstream := range []string{"fast", "sim"} {
		f := b.begin(upstream, textFP("400ms"), up, t0)
		if got, want := b.racing(upstream, textFP("400ms"), up, t0.Add(400*time.Millisecond)) == f, upstream == "fast"; got != want {
			t.Errorf("%s: a copy racing one stored for 400 ms waits for it: %v, want %v", upstream, got, want)
		}
		b.end(f, true, t0.Add(400*time.Millisecond))
		if got, want := b.again(upstream, textFP("400ms"), up, t0.Add(time.Second)), upstream == "fast"; got != want {
			t.Errorf("%s: a copy of one answered in 400 ms taken for a resend: %v, want %v", upstream, got, want)
		}
	}
}

// TestMOAgainReleasesConns: replies remembered after their connection was
// cut (up to moAgainKeep) keep how it ended, not the connection: an SMSC
// that drops and binds again and again does not keep every dead
// connection alive. What they are taken for does not change.
func TestMOAgainReleasesConns(t *testing.T) {
	var a moAgain
	var gone []weak.Pointer[smpp.Conn]
	for i := range 20 {
		c, peer := newConnPair(t)
		a.stored("sim", textFP(fmt.Sprint(i)), c, time.Now())
		_ = peer.Close()
		_ = c.Close()
		<-c.Done()
		<-peer.Done()
		gone = append(gone, weak.Make(c))
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive := len(gone); alive > 0; {
		runtime.GC()
		alive = 0
		for _, w := range gone {
			if w.Value() != nil {
				alive++
			}
		}
		if alive > 0 && time.Now().After(deadline) {
			a.mu.Lock()
			n := len(a.conns)
			a.mu.Unlock()
			t.Fatalf("%d of %d cut connections still alive (%d held)", alive, len(gone), n)
		}
		runtime.Gosched()
	}
	for i := range 20 {
		if !a.again("sim", textFP(fmt.Sprint(i)), nil, time.Now()) {
			t.Fatalf("reply %d: not taken for a resend once its connection was released", i)
		}
	}
}

// TestMOAgainAnswered: a stop records every reply answered only when no
// remembered reply may still be sent again: none being stored, none on a
// connection still up, cut, or answered late, none read at the start,
// within moAgainKeep.
func TestMOAgainAnswered(t *testing.T) {
	now := time.Now()
	var a moAgain
	if !a.answered(now) {
		t.Fatal("nothing remembered: not answered")
	}
	clean, peer := connPair(t)
	a.stored("sim", textFP("clean"), clean, now)
	if a.answered(now) {
		t.Error("answered while the connection is up")
	}
	if err := peer.Unbind(context.Background()); err != nil {
		t.Fatal(err)
	}
	ended(t, clean)
	if !a.answered(now) {
		t.Error("not answered after a clean unbind")
	}
	f := a.begin("sim", textFP("storing"), clean, now)
	if a.answered(now) {
		t.Error("answered while a reply is being stored")
	}
	a.end(f, false, now)
	cut, _ := connPair(t)
	a.stored("sim", textFP("cut"), cut, now)
	_ = cut.Close()
	end := ended(t, cut)
	if a.answered(end) || !a.answered(end.Add(moAgainKeep+time.Second)) {
		t.Error("a cut reply: answered within moAgainKeep, or not after")
	}
	var r moAgain
	r.restarted([]*queue.MO{{Source: "13712345678", Dest: "106575001", Text: "Y", Upstream: "sim", ReceivedAt: now}}, now)
	if r.answered(now) || !r.answered(now.Add(moAgainKeep+time.Second)) {
		t.Error("a reply read at the start: answered within moAgainKeep, or not after")
	}
}

// TestMOAgainRacingSeesStored: a resend that waited for its first copy's
// commit (racing) finds it remembered as soon as it wakes: the copy is
// remembered before its waiters are woken, not after.
func TestMOAgainRacingSeesStored(t *testing.T) {
	cut, later := connPair(t)
	_ = cut.Close()
	ended(t, cut)
	var a moAgain
	for i := range 2000 {
		key := textFP(fmt.Sprint(i))
		f := a.begin("sim", key, cut, time.Now())
		w := a.racing("sim", key, later, time.Now())
		if w != f {
			t.Fatal("the copy on the cut connection not found racing")
		}
		taken := make(chan bool, 1)
		go func() {
			<-w.done
			taken <- a.again("sim", key, later, time.Now())
		}()
		a.end(f, true, time.Now())
		if !<-taken {
			t.Fatalf("round %d: the resend that waited for its first copy stored again", i)
		}
	}
}
