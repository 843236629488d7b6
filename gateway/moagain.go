package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// Replies the SMSC sends again after a cut.
//
// A reply is stored before the SMSC is answered. When the connection is
// cut (dropped, failed, closed without unbind) the last answers may never
// reach the SMSC, which then sends those replies again, on the next bind:
// stored twice, the enterprise would see them twice (two orders for one
// 回复Y). Nothing in a deliver_sm names it (an SMSC's MO has no id), so a
// reply the same as one stored on a connection at most moAgainBefore
// before that connection was cut, arriving within moAgainKeep of the cut,
// is taken for the SMSC's resend: answered OK and not stored again, the
// resend then standing for it (its own answer may be cut too). A reply
// whose connection ends while it is being stored is stored all the same,
// and a resend that comes meanwhile waits for that commit. A session that
// ended with an unbind answered delivered every answer (smpp.Conn.Ended),
// and its replies are never taken for resends; nor is anything while the
// connection it came on is up, unless its answer was late (moAgainLate).
// A handset that sends the very same text again within those minutes,
// right after such a cut, is the price: its second reply is dropped.
//
// The end of a run (a crash, a kill -9, a stop) cuts every connection,
// and what was answered is not on disk. At the start the replies stored
// in the moAgainBefore before the newest one are read from the store and
// taken as cut at the start (restarted), unless that newest one is older
// than moAgainKeep: the fingerprint is of the content as stored, not of
// the PDU, for that. A stop that ended every session with an unbind
// answered records so (moStopped), and the next start takes none. The
// end of a crash is not known, so a crashed run that went on a while
// past its last reply has the same price for those minutes. A long
// reply's parts are
// not looked at here: a part sent again replaces the one stored, and one
// sent after its reply was joined is dropped (queue/mojoined.go).
const (
	// moAgainBefore: how long before the cut a stored reply's answer may
	// have been lost (written but not read by the SMSC, or not written).
	moAgainBefore = 10 * time.Second
	// moAgainKeep: how long after the cut the SMSC's resend is waited
	// for. SMSCs send again on their next bind, seconds after it.
	moAgainKeep = 10 * time.Minute
	// moAgainLate: a reply stored this long after it came was answered
	// late enough that the SMSC may have given up waiting (SMSCs wait
	// seconds for a deliver_sm_resp; qxtd's commits take milliseconds,
	// so such an answer is a slow disk's). The SMSC then sends it again
	// on the same connection, still up: taken for a resend as after a
	// cut, for moAgainKeep from the answer. So is one that comes while
	// the first copy is still being stored this long after it came.
	moAgainLate = 2 * time.Second
	// moAgainMax bounds the replies remembered per upstream: the oldest
	// are forgotten first.
	moAgainMax = 20000
)

// moAgain remembers, per upstream, the replies stored lately and the
// connection each came on, and those being stored.
type moAgain struct {
	// lateAfter: an upstream's moAgainLate, when configured
	// (UpstreamConfig.MORespTimeout); set before the gateway starts,
	// read-only after.
	lateAfter map[string]time.Duration

	mu  sync.Mutex
	ups map[string][]moSeen // oldest first
	// conns: the connections that remembered replies came on, while
	// they are up (moConn).
	conns map[*smpp.Conn]*moConn
	// storing: the replies whose commit is under way, by upstream and
	// fingerprint. The SMSC's resend often comes (on its next bind, a
	// few ms after the cut) while the first copy is still being stored.
	storing map[moFlightKey][]*moFlight
}

type moFlightKey struct {
	upstream string
	fp       [sha256.Size]byte
}

// moFlight is one reply being stored: done is closed when its store
// ended, stored set before if it succeeded.
type moFlight struct {
	key    moFlightKey
	conn   *smpp.Conn
	began  time.Time
	done   chan struct{}
	stored bool
}

// begin registers a reply about to be stored (at now); end must follow.
func (a *moAgain) begin(upstream string, fp [sha256.Size]byte, conn *smpp.Conn, now time.Time) *moFlight {
	f := &moFlight{key: moFlightKey{upstream, fp}, conn: conn, began: now, done: make(chan struct{})}
	if conn == nil {
		return f
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.storing == nil {
		a.storing = make(map[moFlightKey][]*moFlight)
	}
	a.storing[f.key] = append(a.storing[f.key], f)
	return f
}

// end records how f's store ended (at now), remembering it stored, and
// answered late past moAgainLate.
func (a *moAgain) end(f *moFlight, stored bool, now time.Time) {
	f.stored = stored
	// Closed once the reply is remembered, in the same hold of a.mu as
	// it leaves storing: a resend that waited on done (racing), or comes
	// meanwhile, finds it.
	defer close(f.done)
	if f.conn == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.storing[f.key]
	for i, x := range list {
		if x == f {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(a.storing, f.key)
	} else {
		a.storing[f.key] = list
	}
	if stored {
		var late time.Time
		if now.Sub(f.began) > a.late(f.key.upstream) {
			late = now
		}
		a.add(f.key.upstream, f.conn, moSeen{fp: f.key.fp, at: now, late: late}, now)
	}
}

// racing is a reply the same as fp being stored, come on a connection
// since cut (not conn), or for longer than moAgainLate at now: the reply
// fp may be its resend. Its done says when it is known.
func (a *moAgain) racing(upstream string, fp [sha256.Size]byte, conn *smpp.Conn, now time.Time) *moFlight {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.storing[moFlightKey{upstream, fp}] {
		if _, unbound, ended := f.conn.Ended(); f.conn != conn && ended && !unbound || now.Sub(f.began) > a.late(upstream) {
			return f
		}
	}
	return nil
}

// late is upstream's line past which an answer was late: its
// MORespTimeout, or moAgainLate.
func (a *moAgain) late(upstream string) time.Duration {
	if d, ok := a.lateAfter[upstream]; ok {
		return d
	}
	return moAgainLate
}

type moSeen struct {
	fp   [sha256.Size]byte
	at   time.Time
	conn *moConn
	// restart: read from the store at a start at this time, conn nil
	// (restarted): cut by the previous run's end.
	restart time.Time
	// late: answered at this time, past moAgainLate (end).
	late time.Time
}

// moFingerprint is what a resend repeats of reply m (its content set:
// fillMO): its addresses and content as stored, so that a restart can
// take it from the store (restarted). raw, for a reply that did not
// decode (stored with an empty text), is its user data, which tells such
// replies apart; stored, they are not remembered across a restart.
func moFingerprint(m *queue.MO, raw ...[]byte) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	port := func(p *uint16) []byte {
		if p == nil {
			return nil
		}
		return []byte{1, byte(*p >> 8), byte(*p)}
	}
	binaryMark := byte(0)
	if m.Binary != nil {
		binaryMark = 1
	}
	field([]byte{m.SourceTON, m.SourceNPI, binaryMark, m.DataCoding})
	field([]byte(m.Source))
	field([]byte(m.Dest))
	field([]byte(m.Text))
	field(m.Binary)
	field(m.UDH)
	field(port(m.SourcePort))
	field(port(m.DestPort))
	for _, b := range raw {
		field(b)
	}
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// restarted remembers the replies stored just before the previous run
// ended (a crash, a kill, a stop), read from the store at the start
// (queue.Store.RecentMOs): that end cut every connection, and the SMSC
// sends again, on its first bind after the start, the replies whose
// answers it lost. They are taken as cut at now, for moAgainKeep from
// the start. Replies stored with an empty text and no octets (they did
// not decode: their fingerprint needs the raw PDU) are left out. So is
// everything when the newest was stored more than moAgainKeep before
// now: that run went on long after its last reply (its answers were out
// long before its end), or was down longer than a cut is waited for.
func (a *moAgain) restarted(mos []*queue.MO, now time.Time) {
	var newest time.Time
	for _, m := range mos {
		if m.ReceivedAt.After(newest) {
			newest = m.ReceivedAt
		}
	}
	if now.Sub(newest) > moAgainKeep {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ups == nil {
		a.ups = make(map[string][]moSeen)
	}
	for i := len(mos) - 1; i >= 0; i-- { // oldest first
		m := mos[i]
		if m.Text == "" && m.Binary == nil {
			continue
		}
		list := a.ups[m.Upstream]
		if len(list) >= moAgainMax {
			list = list[len(list)-moAgainMax+1:]
		}
		a.ups[m.Upstream] = append(list, moSeen{fp: moFingerprint(m), at: m.ReceivedAt, restart: now})
	}
}

// stored remembers a reply stored at now that came on conn (nil: not
// remembered).
func (a *moAgain) stored(upstream string, fp [sha256.Size]byte, conn *smpp.Conn, now time.Time) {
	a.remember(upstream, conn, moSeen{fp: fp, at: now}, now)
}

// remember adds s, come on conn, to upstream's list, pruned at now (conn
// nil: not remembered).
func (a *moAgain) remember(upstream string, conn *smpp.Conn, s moSeen, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.add(upstream, conn, s, now)
}

// add is remember with a.mu held.
func (a *moAgain) add(upstream string, conn *smpp.Conn, s moSeen, now time.Time) {
	if conn == nil {
		return
	}
	s.conn = a.handle(conn)
	list := a.pruned(upstream, now)
	if len(list) >= moAgainMax {
		list = list[len(list)-moAgainMax+1:]
	}
	a.ups[upstream] = append(list, s)
}

// again reports whether a reply fp arriving at now on conn is the SMSC's
// resend of one stored on a connection cut since. The one stored is then
// remembered as come on conn at now: the answer to the resend may be cut
// too, and the SMSC send it a third time. One still being stored
// (racing) is waited for by the caller first.
func (a *moAgain) again(upstream string, fp [sha256.Size]byte, conn *smpp.Conn, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.pruned(upstream, now)
	for i, s := range list {
		if s.fp != fp {
			continue
		}
		if end, unsure, _ := s.unsure(); unsure && now.Sub(end) <= moAgainKeep {
			list = append(list[:i:i], list[i+1:]...)
			if conn != nil {
				list = append(list, moSeen{fp: fp, at: now, conn: a.handle(conn)})
			}
			a.ups[upstream] = list
			return true
		}
	}
	return false
}

// unsure reports whether s's answer may not have reached the SMSC: its
// connection was cut (end) at most moAgainBefore after s was stored (or
// before: stored once the connection was gone), or it was answered late
// (end: then). ended: the connection ended, cut or not, or the answer
// was late.
func (s moSeen) unsure() (end time.Time, unsure, ended bool) {
	if !s.restart.IsZero() {
		return s.restart, true, true
	}
	end, unbound, ended := s.conn.ended()
	cut := ended && !unbound && !s.at.Before(end.Add(-moAgainBefore))
	if !cut && !s.late.IsZero() {
		return s.late, true, true
	}
	return end, cut, ended
}

// pruned is upstream's list, pruned at now and kept so.
func (a *moAgain) pruned(upstream string, now time.Time) []moSeen {
	if a.ups == nil {
		a.ups = make(map[string][]moSeen)
	}
	list := a.prune(a.ups[upstream], now)
	a.ups[upstream] = list
	return list
}

// prune drops the oldest of list while they can no longer be taken for
// a resend at now: stored longer ago than moAgainBefore on a connection
// still up, or on one that ended cleanly or too long after, or was cut
// more than moAgainKeep ago. It stops at the first that can: a cost per
// reply that does not grow with the replies remembered (those behind it
// go when they reach the front, or at moAgainMax).
func (a *moAgain) prune(list []moSeen, now time.Time) []moSeen {
	n := 0
	for _, s := range list {
		end, unsure, ended := s.unsure()
		if !ended && now.Sub(s.at) <= moAgainBefore || unsure && now.Sub(end) <= moAgainKeep {
			break
		}
		n++
	}
	clear(list[:n])
	return list[n:]
}

// moConn is a connection remembered replies came on: the connection
// while it is up, then only how it ended. Replies are remembered up to
// moAgainKeep after a cut, and a connection dropped and bound again and
// again would otherwise keep that many dead connections (their channels
// and buffers) alive.
type moConn struct {
	mu      sync.Mutex
	conn    *smpp.Conn // nil once ended
	end     time.Time
	unbound bool
}

// handle is conn's moConn, made at its first remembered reply; a.mu is
// held. The connection's end releases it (its context ends once Ended
// reports the end).
func (a *moAgain) handle(conn *smpp.Conn) *moConn {
	if h, ok := a.conns[conn]; ok {
		return h
	}
	if a.conns == nil {
		a.conns = make(map[*smpp.Conn]*moConn)
	}
	h := &moConn{conn: conn}
	a.conns[conn] = h
	context.AfterFunc(conn.Context(), func() {
		h.release()
		a.mu.Lock()
		delete(a.conns, conn)
		a.mu.Unlock()
	})
	return h
}

// release keeps how the connection ended, not the connection.
func (h *moConn) release() {
	end, unbound, ok := h.conn.Ended()
	if !ok {
		// Not reported ended as its context ended (it always is):
		// kept, read as it goes.
		return
	}
	h.mu.Lock()
	h.conn, h.end, h.unbound = nil, end, unbound
	h.mu.Unlock()
}

// ended is smpp.Conn.Ended of the connection.
func (h *moConn) ended() (at time.Time, unbound, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		return h.end, h.unbound, true
	}
	return h.conn.Ended()
}

// moRestart, at the start, remembers the replies stored just before the
// last run ended (restarted), unless that run recorded at its stop that
// every one of them was answered (moStopped).
func (g *Gateway) moRestart() {
	mos, err := g.store.RecentMOs(moAgainBefore, moAgainMax*len(g.ups))
	if err != nil {
		g.log.Warn("replies stored before the last stop not read: the SMSC's resends of those whose answers the stop cut are stored again", "err", err)
		return
	}
	// Bounded: a disk that does not commit holds up the start no longer.
	ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
	at, answered, err := g.store.TakeRepliesAnswered(ctx)
	cancel()
	if err != nil {
		g.log.Warn("the last stop's record of its replies answered not read: its last replies are taken as unanswered", "err", err)
	}
	var newest time.Time
	for _, m := range mos {
		if m.ReceivedAt.After(newest) {
			newest = m.ReceivedAt
		}
	}
	if err == nil && answered && !newest.After(at) {
		g.log.Debug("the last stop answered every reply: none taken for the SMSC's resend", "stopped", at)
		return
	}
	g.moAgain.restarted(mos, time.Now())
}

// moStopped, at the stop, records that every reply was answered to the
// SMSC when every session they came on ended with an unbind answered and
// no reply is being stored (moAgain.answered).
func (g *Gateway) moStopped() {
	if g.store == nil || !g.moAgain.answered(time.Now()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.store.MarkRepliesAnswered(ctx, time.Now()); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, queue.ErrClosed) {
			level = slog.LevelDebug
		}
		g.log.Log(ctx, level, "replies not recorded as answered at the stop: the next start takes the last ones for unanswered", "err", err)
	}
}

// answered reports whether, at now, no remembered reply may have lost its
// answer (none whose resend is still waited for: every session they came
// on ended with an unbind answered, none was answered late or read at the
// start within moAgainKeep) and none is being stored.
func (a *moAgain) answered(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.storing) > 0 {
		return false
	}
	for _, list := range a.ups {
		for _, s := range list {
			if end, unsure, ended := s.unsure(); !ended || unsure && now.Sub(end) <= moAgainKeep {
				return false
			}
		}
	}
	return true
}
