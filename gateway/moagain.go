package gateway

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

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
// connection it came on is up. A handset that sends
// the very same text again within those minutes, right after such a cut,
// is the price: its second reply is dropped. A long reply's parts are
// not looked at here: a part sent again replaces the one stored, and one
// sent after its reply was joined is dropped (queue/mojoined.go).
const (
	// moAgainBefore: how long before the cut a stored reply's answer may
	// have been lost (written but not read by the SMSC, or not written).
	moAgainBefore = 10 * time.Second
	// moAgainKeep: how long after the cut the SMSC's resend is waited
	// for. SMSCs send again on their next bind, seconds after it.
	moAgainKeep = 10 * time.Minute
	// moAgainMax bounds the replies remembered per upstream: the oldest
	// are forgotten first.
	moAgainMax = 20000
)

// moAgain remembers, per upstream, the replies stored lately and the
// connection each came on, and those being stored.
type moAgain struct {
	mu  sync.Mutex
	ups map[string][]moSeen // oldest first
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
	done   chan struct{}
	stored bool
}

// begin registers a reply about to be stored; end must follow.
func (a *moAgain) begin(upstream string, fp [sha256.Size]byte, conn *smpp.Conn) *moFlight {
	f := &moFlight{key: moFlightKey{upstream, fp}, conn: conn, done: make(chan struct{})}
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

// end records how f's store ended (at now), remembering it stored.
func (a *moAgain) end(f *moFlight, stored bool, now time.Time) {
	f.stored = stored
	close(f.done)
	if f.conn == nil {
		return
	}
	a.mu.Lock()
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
	a.mu.Unlock()
	if stored {
		a.stored(f.key.upstream, f.key.fp, f.conn, now)
	}
}

// racing is a reply the same as fp being stored, come on a connection
// since cut (not conn): the reply fp may be its resend. Its done says
// when it is known.
func (a *moAgain) racing(upstream string, fp [sha256.Size]byte, conn *smpp.Conn) *moFlight {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.storing[moFlightKey{upstream, fp}] {
		if _, unbound, ended := f.conn.Ended(); f.conn != conn && ended && !unbound {
			return f
		}
	}
	return nil
}

type moSeen struct {
	fp   [sha256.Size]byte
	at   time.Time
	conn *smpp.Conn
}

// moFingerprint is what a resend repeats of reply p: its addresses,
// coding and content.
func moFingerprint(p pdu.Body) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte{smpp.Byte(p, pdufield.SourceAddrTON), smpp.Byte(p, pdufield.SourceAddrNPI),
		smpp.Byte(p, pdufield.DataCoding), smpp.Byte(p, pdufield.ESMClass)})
	field([]byte(smpp.Str(p, pdufield.SourceAddr)))
	field([]byte(smpp.Str(p, pdufield.DestinationAddr)))
	field(smpp.UserData(p))
	field(smpp.TLV(p, pdutlv.TagMessagePayload))
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// stored remembers a reply stored at now that came on conn (nil: not
// remembered).
func (a *moAgain) stored(upstream string, fp [sha256.Size]byte, conn *smpp.Conn, now time.Time) {
	if conn == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.pruned(upstream, now)
	if len(list) >= moAgainMax {
		list = list[len(list)-moAgainMax+1:]
	}
	a.ups[upstream] = append(list, moSeen{fp: fp, at: now, conn: conn})
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
				list = append(list, moSeen{fp: fp, at: now, conn: conn})
			}
			a.ups[upstream] = list
			return true
		}
	}
	return false
}

// unsure reports whether s's answer may not have reached the SMSC: its
// connection was cut (end) at most moAgainBefore after s was stored (or
// before: stored once the connection was gone). ended: the connection
// ended, cut or not.
func (s moSeen) unsure() (end time.Time, unsure, ended bool) {
	end, unbound, ended := s.conn.Ended()
	return end, ended && !unbound && !s.at.Before(end.Add(-moAgainBefore)), ended
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
