package smpp

import (
	"context"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
)

// SetLastSeq makes c's next sequence number v+1 (masked to 31 bits): the
// only way to reach the wraparound at 0x7FFFFFFF without 2³¹ requests.
func SetLastSeq(c *Conn, v uint32) { c.seq.Store(v) }

// HeaderOf reads the header of a raw frame, as the session engine does.
func HeaderOf(frame []byte) pdu.Header { return headerOf(frame) }

// DecodeCodec is Decode with go-smpp's codec for every PDU: the reference
// the hot decoder is held to.
func DecodeCodec(frame []byte) (pdu.Body, error) { return decode(frame, false) }

// Encode is what Conn writes for p.
func Encode(p pdu.Body) ([]byte, error) { return encode(p) }

// EncodeMaps is the one-allocation encoder of go-smpp-built submit_sm and
// deliver_sm; ok false: left to the codec.
func EncodeMaps(p pdu.Body) ([]byte, bool) { return encodeSM(p) }

// RawFrame is a hot PDU's frame from its own fields; ok false when it is
// not a hot PDU or must be written from its maps.
func RawFrame(p pdu.Body) ([]byte, bool) {
	if r, ok := p.(rawEncoder); ok {
		return r.rawFrame()
	}
	return nil, false
}

// InboundLen is how many of the peer's requests await our answer.
func (c *Conn) InboundLen() int { return len(c.inbox) }

// Unbinding reports whether Unbind has begun on c (no request may start).
func (c *Conn) Unbinding() bool { return c.unbound.Load() }

// AfterSend makes c's Request call fn once its frame is queued for the
// writer, before it waits for the answer. Set it before the first Request.
func (c *Conn) AfterSend(fn func()) { c.sent = fn }

// SetClock makes s read the time from now (the failures' and the unbound
// connections' clock), instead of time.Now.
func SetClock(s *Server, now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// CheckRequest is what the server holds an ESME's request to: the field
// that is too long and its status; ok when every field fits.
func CheckRequest(p pdu.Body) (field string, st pdu.Status, ok bool) {
	f, st, ok := checkRequest(p)
	return string(f), st, ok
}

// FieldLimit is one C-Octet String's size (with its NUL) and status.
type FieldLimit struct {
	Name   string
	Size   int
	Status pdu.Status
}

// RequestLimits are the limits of a request, in wire order.
func RequestLimits(id pdu.ID) []FieldLimit {
	var out []FieldLimit
	for _, l := range requestLimits[id] {
		out = append(out, FieldLimit{string(l.name), l.size, l.st})
	}
	return out
}

// UnbindWith is a Client's unbind of a session it takes down for reason.
func UnbindWith(ctx context.Context, c *Conn, reason error) error { return c.unbindWith(ctx, reason) }
