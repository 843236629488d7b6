package gateway_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"strconv"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/qxtd/qxtd/segment"
)

// TestInteropLibsmpp34LongReplies: an ESME written in C with osmocom's
// libsmpp34 (testdata/libsmpp34/parts.c), bound as a receiver for a user
// whose long_replies is udh8, udh16 or sar, reads qxtd's long replies in
// parts as a carrier SMSC's, as TestInteropNodeSMPPLongReplies has
// node-smpp read them (interop_parts_test.go: the set-up, the replies and
// the checks they share): each part's SAR TLVs as libsmpp34 unpacked
// them, its UDH as the head of the short_message it unpacked (IEI 0x00
// with an 8-bit reference, 0x08 with a 16-bit one, esm_class UDHI; with
// sar neither), one reference a reply, total and seq 1..n, the
// data_coding, never message_payload. libsmpp34 decodes no text: each
// part's octets are decoded here on their own (GSM 7-bit, one septet an
// octet, by qxtd's segment package; UCS-2 as UTF-16BE), joined by
// reference and seq, and each reply reads as the handset wrote it: the
// GSM one's '€' whole at the start of the second part, the Chinese one
// in 3 parts, the short one whole.
func TestInteropLibsmpp34LongReplies(t *testing.T) {
	bin := buildLibsmpp34(t, "parts")
	for _, tc := range longRepliesModes {
		t.Run(tc.mode, func(t *testing.T) {
			lt := newLongReplies(t, "libsmpp34", tc.mode, tc.gsm, tc.iei)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			es := startScript(t, ctx, ".", bin, lt.host, lt.port, "alice", "secret1", strconv.Itoa(lt.deliveries))
			lt.run(t, es, libsmpp34PartText)
		})
	}
}

// libsmpp34PartText reads p's text from last, the whole short_message in
// hex: the UDH parts.c found at its head checked against it (UDHL, then
// the IEs) and left out, the rest decoded for p's data_coding on its own,
// as node-smpp decodes a part. A GSM part ending in an escape (a '€' cut
// in two) is an error here: decoded alone its escape shows nothing.
func libsmpp34PartText(t *testing.T, p *deliveredPart, last string) {
	t.Helper()
	var sm []byte
	if last != "-" {
		var err error
		if sm, err = hex.DecodeString(last); err != nil {
			t.Fatalf("short_message in %q: %v", p.line, err)
		}
	}
	if p.udh != nil {
		if len(sm) < 1+len(p.udh) || int(sm[0]) != len(p.udh) || !bytes.Equal(sm[1:1+len(p.udh)], p.udh) {
			t.Fatalf("%q: short_message does not start with UDHL %d and the UDH", p.line, len(p.udh))
		}
		sm = sm[1+len(p.udh):]
	}
	switch p.dataCoding {
	case 0:
		if len(sm) > 0 && sm[len(sm)-1] == 0x1B {
			t.Errorf("a GSM part ending in an escape, its character in the next part:\n%s", p.line)
		}
		text, _, err := segment.DecodeIncoming(0, 0, sm, nil, false)
		if err != nil {
			t.Fatalf("%q: %v", p.line, err)
		}
		p.text = text
	case 8:
		if len(sm)%2 != 0 {
			t.Fatalf("%q: UCS-2 of %d octets", p.line, len(sm))
		}
		u := make([]uint16, len(sm)/2)
		for i := range u {
			u[i] = uint16(sm[2*i])<<8 | uint16(sm[2*i+1])
		}
		p.text = string(utf16.Decode(u))
	default:
		t.Fatalf("%q: data_coding %d, want 0 or 8", p.line, p.dataCoding)
	}
}
