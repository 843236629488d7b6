package gateway_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// TestInteropNodeSMPPLongReplies: an ESME written with node-smpp (an
// independent implementation, in JavaScript; testdata/nodesmpp/parts.js),
// bound as a receiver for a user whose long_replies is udh8, udh16 or sar,
// reads qxtd's long replies in parts as a carrier SMSC's: each part's UDH
// (IEI 0x00 with an 8-bit reference, 0x08 with a 16-bit one, esm_class
// UDHI) or SAR TLVs (no UDH, no UDHI) as the library parsed them, and its
// text as the library decoded it for its data_coding (0, GSM, one septet
// an octet; 8, UCS-2). Joined here by reference and seq, each reply reads
// as the handset wrote it: a GSM one whose '€' (escape and 'e') would
// straddle the first boundary if split naively, and goes whole to the
// second part; a Chinese one in 3 parts; a short one whole, without a
// UDH or SAR TLVs. Never in message_payload. (interop_parts_test.go: the
// set-up and checks it shares with TestInteropLibsmpp34LongReplies.)
func TestInteropNodeSMPPLongReplies(t *testing.T) {
	needNodeSMPP(t)
	for _, tc := range longRepliesModes {
		t.Run(tc.mode, func(t *testing.T) {
			lt := newLongReplies(t, "node-smpp", tc.mode, tc.gsm, tc.iei)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			es := startScript(t, ctx, nodeSMPP, "node", "parts.js", lt.host, lt.port, "alice", "secret1", strconv.Itoa(lt.deliveries))
			// The text as node-smpp decoded it, JSON-encoded.
			lt.run(t, es, func(t *testing.T, p *deliveredPart, last string) {
				if err := json.Unmarshal([]byte(last), &p.text); err != nil {
					t.Fatalf("the text in %q: %v", p.line, err)
				}
			})
		})
	}
}
