package smpp

// SetLastSeq makes c's next sequence number v+1 (masked to 31 bits): the
// only way to reach the wraparound at 0x7FFFFFFF without 2³¹ requests.
func SetLastSeq(c *Conn, v uint32) { c.seq.Store(v) }
