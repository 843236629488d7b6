package smpp

import "github.com/fiorix/go-smpp/smpp/pdu"

// SetLastSeq makes c's next sequence number v+1 (masked to 31 bits): the
// only way to reach the wraparound at 0x7FFFFFFF without 2³¹ requests.
func SetLastSeq(c *Conn, v uint32) { c.seq.Store(v) }

// HeaderOf reads the header of a raw frame, as the session engine does.
func HeaderOf(frame []byte) pdu.Header { return headerOf(frame) }
