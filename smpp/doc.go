// Package smpp is qxtd's SMPP 3.4 session engine, server, upstream client
// and SMSC simulator, built on go-smpp's codec (smpp/pdu and its
// subpackages) and nothing else of go-smpp.
//
// One engine serves both directions. A Conn owns one TCP connection: one
// reader goroutine that frames (command_length 16..4096, else the session
// closes), decodes and routes responses to their request by sequence
// number and command id; one writer goroutine that drains a bounded
// channel; a window of outstanding requests that makes Request wait, not
// fail, when full; response timeouts that keep the request so a late
// answer is not mistaken for another's (OnLateResponse gets it); enquire_link
// keepalive and idle timeout; unbind in both directions (an inbound unbind
// is answered after the requests in flight). Sequence numbers are per
// session, 0x00000001–0x7FFFFFFF (§3.2, §5.1.4).
//
// Decode adds the PDUs go-smpp cannot decode (cancel_sm §4.9, replace_sm
// §4.10, data_sm §4.7, outbind §4.1.7, alert_notification §4.12) and never
// panics on bad input: an unknown command_id gets generic_nack
// ESME_RINVCMDID, a malformed body generic_nack ESME_RINVCMDLEN, and the
// session goes on (§5.1.3). A panic in a handler is recovered and answered
// ESME_RSYSERR.
//
// Server is shaped like go-smtp: a Backend authenticates binds and returns a
// Session per bound peer; Serve, Close and Shutdown (unbind every peer).
// The server bounds what strangers can take: MaxConns connections in all,
// MaxUnboundPerIP not-yet-bound ones per source address and PrefixTimes as
// many per network (SourcePrefix); more are closed at accept, reported to
// OnReject, except that at MaxConns a new connection closes the one
// unbound the longest, if unbound EvictGrace or more (at most one list
// operation an accept), so connections that never bind cannot hold the
// listener against peers that do. BindTimeout to bind, a growing
// delay after each failed bind from an address; the binds of peers with
// credentials are the Backend's to cap (it refuses one with a pdu.Status).
// Accept errors (EMFILE at the descriptor limit among them) are retried
// with backoff 5 ms → 1 s and reported by Healthy; only a closed listener ends Serve. Its log lines
// carry the peer's address (`remote`) and pass through loglimit, so one
// peer repeating one mistake writes a few lines, not one per PDU.
// Client keeps one bind to an SMSC up (a transceiver, a transmitter or a
// receiver) with capped, jittered backoff, and binds again when the SMSC
// answers a request ESME_RINVBNDSTS (it lost the session's bound state:
// ErrBindLost). AcceptOutbind takes an SMSC's outbind on a connection it
// opened to us and binds a receiver on it (§2.2.1).
// Simulator is the SMSC used by `make run` and the tests, with faults; it
// can refuse transceivers (as an SMPP 3.3 SMSC) and outbind to an ESME.
//
// A submit_sm_resp with a non-zero command_status goes out as its header
// alone (§4.4.2); go-smpp's codec would add an empty message_id.
//
// Receipts follow SMPP 3.4 Appendix B (text) plus the receipted_message_id
// and message_state TLVs (§5.3.2.12, §5.3.2.35).
//
// submit_sm, deliver_sm and their responses, a few of each per message,
// skip go-smpp's map-based codec: Decode parses them into hot PDUs that
// read their fields from the frame and build go-smpp's maps only when
// asked (hot.go); NewSubmitSM, NewDeliverSM, NewSubmitSMResp and
// NewDeliverSMResp build them directly (build.go); Conn encodes them, and
// go-smpp-built ones, in one allocation (fastenc.go). FuzzDecodeHot and
// FuzzEncodeHot hold them to go-smpp's results.
//
// go-smpp quirks handled here: pdu.NewDeliverSM writes a spurious UDH
// length octet (#73) — NewDeliverSM does not; go-smpp numbers PDUs from
// one process-wide counter — Conn sets every sequence number itself.
package smpp
