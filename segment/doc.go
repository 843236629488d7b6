// Package segment turns the text of an SMS into what goes on the air and
// back: it chooses the coding, applies signatures, enforces the length
// rules, splits long text into concatenated segments and frames them for
// submit_sm; in the other direction it decodes what ESMEs send, refuses
// binary content and reassembles messages that ESMEs split themselves.
//
// It is pure and deterministic: no I/O, no clock, no randomness, no
// goroutines. The concatenation reference number is an argument, because
// the store assigns it inside its transaction (it must not repeat for one
// recipient while a message is in flight). It imports nothing of qxtd.
//
// # Specifications
//
//   - 3GPP TS 23.038 (GSM 03.38) §6.2.1 default alphabet and §6.2.1.1
//     extension table; §6.1.2.1 packing of septets; §6.1.2.3.1 CR padding;
//     §4 data coding scheme groups (for incoming data_coding values SMPP
//     leaves reserved).
//   - 3GPP TS 23.040 §9.2.3.24 user data header: IE 0x00 (concatenation,
//     8-bit reference), 0x08 (16-bit reference), 0x04 / 0x05 (application
//     ports), fill bits before the first septet after a UDH.
//   - SMPP 3.4 §5.2.12 esm_class (UDHI 0x40), §5.2.19 data_coding, §5.3.2
//     TLVs sar_msg_ref_num 0x020C, sar_total_segments 0x020E,
//     sar_segment_seqnum 0x020F, message_payload 0x0424, destination_port
//     0x020B.
//
// # Sending: Sign, Encode, BuildFrames
//
// Sign puts the enterprise signature (e.g. 【某某公司】) in front of the text —
// the Chinese convention — and the optional user signature after it; a
// signature the text already carries in its place is not repeated. The
// signed text is what is counted, billed and sent.
//
// Encode picks GSM 7-bit (data_coding 0x00) when every character is in the
// default alphabet or its extension table (^ { } \ [ ~ ] | € and form feed
// take two septets: escape + code), else UCS-2 (data_coding 0x08,
// UTF-16BE; characters beyond the BMP travel as surrogate pairs).
//
// Length. Options.MaxChars (default 500, the operator's "one long message
// holds at most 500 characters") is counted in Unicode code points of the
// signed text: a Chinese character, a letter, an escaped GSM character and
// an emoji outside the BMP each count 1. We chose code points because that
// is what a person counts; UTF-16 units would make one emoji cost two of
// the 500, septets would make "€" cost two. (An emoji built of several code
// points, e.g. with ZWJ or a skin-tone modifier, counts each of them.)
// More than MaxChars, or more than 255 segments, is ErrTooLong.
//
// Segments are counted in septets (GSM) or UTF-16 code units (UCS-2):
//
//	              single   UDH8 / SAR / payload   UDH16
//	GSM 7-bit     160      153                    152
//	UCS-2         70       67                     66
//
// A message that fits the single capacity is one segment; in the UDH and
// SAR modes it is sent with no UDH and no SAR TLVs. Longer text is split
// greedily, but a segment never ends inside an escape pair or a surrogate
// pair (it is one unit short instead). So 70 Chinese characters (signature included) are
// one segment, 71 are two, 134 two, 135 three.
//
// ConcatSAR bodies use the UDH8 capacity: the SMSC adds the header. An
// SMSC that turned a SAR reference ≥ 256 into a 16-bit UDH would need the
// UDH16 capacity; none of ours is known to.
//
// ConcatPayload sends the whole encoded text, unsplit, in message_payload
// (sm_length 0), even when it would fit one segment, so the SMSC sees one
// shape. Plan.Segments still reports the count the network bills: the
// split with 8-bit-reference UDHs.
//
// Stored parts. Plan.Parts are bodies without UDH, meant to be persisted.
// GSM parts are always unpacked septets, one per octet; BuildFrames packs
// them when Options.GSMPacked, because the fill bits depend on the UDH the
// frame gets. BuildFrames(plan.DataCoding, plan.Parts, ref, opt) with the
// same Options as Encode always rebuilds the same frames. Frames carry only
// esm_class (0x40 with a UDH), data_coding, short_message and TLVs; the
// caller fills in the rest of the PDU.
//
// Packed GSM. Septets are packed LSB first; after a UDH, fill bits align
// the first septet on a septet boundary (1 fill bit after the 6-octet UDH8
// header, none after the 7-octet UDH16 one). SMPP gives the octet count,
// not the septet count, so when 7 bits of the last octet are spare the
// encoder pads with CR (TS 23.038 §6.1.2.3.1) and decoders drop a CR that
// exactly fills the last octet. A real CR in that position would be
// dropped too: the splitter moves such a CR to the next segment, so this
// can only happen to the very last character of a message — a trailing CR
// that no handset shows. It is the one case where packed round trips are
// not exact.
//
// # Receiving: ParseIncoming, DecodeIncoming, JoinText
//
// ParseIncoming decodes one part an ESME sent: data_coding 0x00 (GSM,
// packed or not per ESME), 0x01 (IA5), 0x03 (Latin-1), 0x08 (UCS-2), and
// the TS 23.038 groups that say GSM or UCS-2 (e.g. 0x10–0x13, 0x18, 0xF0–
// 0xF3). Binary codings (0x02, 0x04, 8-bit data groups, 0xF4–0xF7) and WAP
// push (port 2948/2949/9200–9203 in a UDH port IE or destination_port) are
// ErrBinary — this is how MMS is refused. Other codings are
// ErrUnsupportedCoding. The text is taken from message_payload when
// short_message is empty; both set is ErrMalformed. With
// Incoming.KeepOctets (replies), what is not text — binary, content for
// an application port (WAP push or any other), a coding not read, octets
// the coding forbids — is instead a Fragment of
// Coding Octets: the octets as received, and the UDH less its
// concatenation IEs.
//
// JoinText decodes the parts of one ESME-split message. It joins the raw
// septets or UTF-16 units before decoding, so a surrogate or escape pair
// that a sender split across parts survives. Collecting the parts is not
// this package's job: the gateway keeps them on disk until the last one
// arrives (queue's fragment store), so that an acknowledged part survives
// a crash.
//
// Reassemble is an independent decoder of frames, the way a handset reads
// them, used to check BuildFrames and what an SMSC simulator received.
//
// # Errors
//
// All errors wrap one of the sentinels in errors.go; test them with
// errors.Is.
package segment
