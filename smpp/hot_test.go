package smpp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/smpp"
)

// allNames are every field name go-smpp knows: the accessors must answer
// alike for names a PDU does not have, too.
var allNames = []pdufield.Name{
	pdufield.AddrNPI, pdufield.AddrTON, pdufield.AddressRange, pdufield.DataCoding,
	pdufield.DestAddrNPI, pdufield.DestAddrTON, pdufield.DestinationAddr, pdufield.DestinationList,
	pdufield.ESMClass, pdufield.ErrorCode, pdufield.FinalDate, pdufield.InterfaceVersion,
	pdufield.MessageID, pdufield.MessageState, pdufield.NumberDests, pdufield.NoUnsuccess,
	pdufield.Password, pdufield.PriorityFlag, pdufield.ProtocolID, pdufield.RegisteredDelivery,
	pdufield.ReplaceIfPresentFlag, pdufield.SMDefaultMsgID, pdufield.SMLength,
	pdufield.ScheduleDeliveryTime, pdufield.ServiceType, pdufield.ShortMessage, pdufield.SourceAddr,
	pdufield.SourceAddrNPI, pdufield.SourceAddrTON, pdufield.SystemID, pdufield.SystemType,
	pdufield.UnsuccessSme, pdufield.ValidityPeriod,
	pdufield.UDHLength, pdufield.GSMUserData, // last: on a decoded UDH they build the maps
}

// someTags are TLV tags asked of every PDU, besides the ones it has.
var someTags = []pdutlv.Tag{0, pdutlv.TagReceiptedMessageID, pdutlv.TagMessagePayload,
	pdutlv.TagSarMsgRefNum, pdutlv.TagSarTotalSegments, pdutlv.TagSarSegmentSeqnum, 0x0427, 0xFFFF}

// sameFields checks that Str, Byte, Bytes and TLV read got as they read
// want (a go-smpp PDU, or one built by go-smpp), nil-ness included.
func sameFields(t *testing.T, phase string, got, want pdu.Body) {
	t.Helper()
	tags := slices.Clone(someTags)
	for tag := range want.TLVFields() {
		tags = append(tags, tag)
	}
	for _, k := range allNames {
		if g, w := smpp.Str(got, k), smpp.Str(want, k); g != w {
			t.Fatalf("%s: Str(%s) = %q, go-smpp %q", phase, k, g, w)
		}
		if g, w := smpp.Byte(got, k), smpp.Byte(want, k); g != w {
			t.Fatalf("%s: Byte(%s) = %d, go-smpp %d", phase, k, g, w)
		}
		if g, w := smpp.Bytes(got, k), smpp.Bytes(want, k); !bytes.Equal(g, w) || (g == nil) != (w == nil) {
			t.Fatalf("%s: Bytes(%s) = %#v, go-smpp %#v", phase, k, g, w)
		}
	}
	for _, tag := range tags {
		if g, w := smpp.TLV(got, tag), smpp.TLV(want, tag); !bytes.Equal(g, w) || (g == nil) != (w == nil) {
			t.Fatalf("%s: TLV(%#04x) = %#v, go-smpp %#v", phase, uint16(tag), g, w)
		}
	}
}

// sameMaps checks everything go-smpp's PDU interface shows but the bytes.
func sameMaps(t *testing.T, phase string, got, want pdu.Body) {
	t.Helper()
	if *got.Header() != *want.Header() {
		t.Fatalf("%s: header %+v, go-smpp %+v", phase, *got.Header(), *want.Header())
	}
	if !reflect.DeepEqual(got.FieldList(), want.FieldList()) {
		t.Fatalf("%s: field list %v, go-smpp %v", phase, got.FieldList(), want.FieldList())
	}
	if !reflect.DeepEqual(got.Fields(), want.Fields()) {
		t.Fatalf("%s: fields\n%s\ngo-smpp\n%s", phase, dumpFields(got.Fields()), dumpFields(want.Fields()))
	}
	if !reflect.DeepEqual(got.TLVFields(), want.TLVFields()) {
		t.Fatalf("%s: TLVs %v, go-smpp %v", phase, got.TLVFields(), want.TLVFields())
	}
	if g, w := got.Len(), want.Len(); g != w {
		t.Fatalf("%s: Len %d, go-smpp %d", phase, g, w)
	}
}

func dumpFields(f pdufield.Map) string {
	var lines []string
	for k, v := range f {
		lines = append(lines, string(k)+": "+reflect.TypeOf(v).String()+" "+strings.ReplaceAll(string(v.Bytes()), "\x00", `\0`))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// sameFrame compares two frames of one PDU, whose last tlvLen octets are
// TLVs: go-smpp writes those in map order, which changes from run to run.
func sameFrame(t *testing.T, phase string, got, want []byte, tlvLen int) {
	t.Helper()
	if len(got) != len(want) || len(want) < tlvLen {
		t.Fatalf("%s: % x\ngo-smpp % x", phase, got, want)
	}
	cut := len(want) - tlvLen
	if !bytes.Equal(got[:cut], want[:cut]) || !slices.EqualFunc(tlvList(got[cut:]), tlvList(want[cut:]), bytes.Equal) {
		t.Fatalf("%s: % x\ngo-smpp % x", phase, got, want)
	}
}

// tlvList splits TLVs, in tag order.
func tlvList(b []byte) [][]byte {
	var l [][]byte
	for len(b) >= 4 {
		n := min(4+int(binary.BigEndian.Uint16(b[2:4])), len(b))
		l = append(l, b[:n])
		b = b[n:]
	}
	if len(b) > 0 {
		l = append(l, b)
	}
	slices.SortFunc(l, bytes.Compare)
	return l
}

func tlvLen(p pdu.Body) int {
	n := 0
	for _, v := range p.TLVFields() {
		n += v.Len()
	}
	return n
}

func serialize(t *testing.T, p pdu.Body) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.SerializeTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hotSeedFrames are the frames FuzzDecodeHot starts from.
func hotSeedFrames(t testing.TB) map[string][]byte {
	ucs2 := bytes.Repeat(ucs2Hello, 34)[:134] // 67 UCS-2 characters, a full segment
	smBody := func(esm, coding byte, sm []byte) []byte {
		return bytes.Join([][]byte{
			cs(""), {1, 1}, cs("10086"), {1, 1}, cs("13712345678"),
			{esm, 0, 0}, cs(""), cs(""), {1, 0, coding, 0},
			{byte(len(sm))}, sm,
		}, nil)
	}
	// smBodyN has sm_length n whatever follows.
	smBodyN := func(esm byte, n byte, rest []byte) []byte {
		b := smBody(esm, 0, nil)
		b[len(b)-1] = n
		return append(b, rest...)
	}
	udh := []byte{5, 0, 3, 0x2A, 2, 1}
	seeds := map[string][]byte{
		"submit_sm_ucs2":           frame(pdu.SubmitSMID, 0, 1, smBody(0, 8, ucs2)),
		"submit_sm_udhi":           frame(pdu.SubmitSMID, 0, 2, smBody(0x40, 8, append(slices.Clone(udh), ucs2[:128]...))),
		"submit_sm_empty_sm":       frame(pdu.SubmitSMID, 0, 3, smBody(0, 0, nil)),
		"submit_sm_payload":        frame(pdu.SubmitSMID, 0, 4, smBody(0, 8, nil), tlv(0x0424, ucs2)),
		"submit_sm_sar":            frame(pdu.SubmitSMID, 0, 5, smBody(0, 8, ucs2[:64]), tlv(0x020C, []byte{0, 7}), tlv(0x020E, []byte{2}), tlv(0x020F, []byte{1})),
		"submit_sm_dup_tlv":        frame(pdu.SubmitSMID, 0, 6, smBody(0, 0, []byte("x")), tlv(0x020C, []byte{0, 7}), tlv(0x020C, []byte{0, 8})),
		"submit_sm_nine_tlvs":      frame(pdu.SubmitSMID, 0, 25, smBody(0, 0, []byte("x")), tlv(1, nil), tlv(2, nil), tlv(3, nil), tlv(4, nil), tlv(5, nil), tlv(6, nil), tlv(7, nil), tlv(8, nil), tlv(9, []byte{9})),
		"submit_sm_trailing":       frame(pdu.SubmitSMID, 0, 7, smBody(0, 0, []byte("x")), tlv(0x0005, nil), []byte{9, 9}),
		"submit_sm_short_sm":       frame(pdu.SubmitSMID, 0, 8, smBody(0, 0, []byte("hello"))[:36]),
		"submit_sm_no_dest":        frame(pdu.SubmitSMID, 0, 9, cs(""), []byte{1, 1}, cs("10086"), []byte{1, 1}, []byte("137")),
		"submit_sm_header_only":    frame(pdu.SubmitSMID, 0, 10),
		"submit_sm_tlv_past_end":   frame(pdu.SubmitSMID, 0, 11, smBody(0, 0, nil), []byte{0x04, 0x24, 0, 9, 1}),
		"deliver_sm_receipt":       seedFrames(t)["deliver_sm_receipt"],
		"deliver_sm_udh":           seedFrames(t)["deliver_sm_udh"],
		"deliver_sm_udhi_zero":     frame(pdu.DeliverSMID, 0, 12, smBody(0x40, 0, []byte{0, 'h', 'i'})),
		"deliver_sm_udh_too_long":  frame(pdu.DeliverSMID, 0, 13, smBody(0x40, 0, []byte{9, 0, 1, 'h'})),
		"deliver_sm_udh_ie_data":   frame(pdu.DeliverSMID, 0, 14, smBody(0x40, 0, []byte{4, 0x24, 2, 'a', 'b', 'h', 'i'}), tlv(0x001E, cs("7"))),
		"deliver_sm_udhi_zero_ok":  frame(pdu.DeliverSMID, 0, 22, smBodyN(0x40, 3, []byte{0, 'h', 'i', 'x'})),
		"deliver_sm_udh_over_len":  frame(pdu.DeliverSMID, 0, 23, smBodyN(0x40, 2, udh)),
		"deliver_sm_udh_overshoot": frame(pdu.DeliverSMID, 0, 24, smBodyN(0x40, 9, []byte{2, 0, 3, 'a', 'b', 'c', 'h', 'i', 'x', 'y', 'z'})),
		"deliver_sm_mo":            frame(pdu.DeliverSMID, 0, 15, smBody(0, 8, ucs2Hello)),
		"submit_sm_resp":           frame(pdu.SubmitSMRespID, 0, 16, cs("1234567890")),
		"submit_sm_resp_error":     frame(pdu.SubmitSMRespID, smpp.StatusThrottled, 17),
		"submit_sm_resp_no_nul":    frame(pdu.SubmitSMRespID, 0, 18, []byte("abc")),
		"submit_sm_resp_tlv":       frame(pdu.SubmitSMRespID, 0, 19, cs("ab"), tlv(0x0423, []byte{3, 0, 1})),
		"deliver_sm_resp":          frame(pdu.DeliverSMRespID, 0, 20, cs("")),
		"deliver_sm_resp_empty":    frame(pdu.DeliverSMRespID, 0, 21),
	}
	return seeds
}

// FuzzDecodeHot: the hot decoder and go-smpp's agree on every frame —
// error or not, every field and TLV as Str, Byte, Bytes and TLV read them
// (before and after the maps exist), the maps themselves, Len, and the
// bytes SerializeTo and Conn write.
func FuzzDecodeHot(f *testing.F) {
	for _, s := range hotSeedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A decoded PDU keeps its frame, and go-smpp's UDH values may
		// write into theirs: each decode gets its own copy.
		decode := func() (got, want pdu.Body) {
			t.Helper()
			got, gerr := smpp.Decode(bytes.Clone(b))
			want, werr := smpp.DecodeCodec(bytes.Clone(b))
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("hot decoder: %v; go-smpp: %v", gerr, werr)
			}
			if werr != nil {
				var unk *smpp.UnknownCommandError
				switch {
				case errors.Is(werr, smpp.ErrFrameLength) && errors.Is(gerr, smpp.ErrFrameLength):
				case errors.As(werr, &unk) && errors.As(gerr, &unk):
				case strings.HasPrefix(gerr.Error(), "smpp: decode "+hdr(b).ID.String()+": "):
				default:
					t.Fatalf("hot decoder: %v; go-smpp: %v", gerr, werr)
				}
				return nil, nil
			}
			return got, want
		}
		got, want := decode()
		if got == nil {
			return
		}
		sameFields(t, "fields", got, want)
		if g, w := got.Len(), want.Len(); g != w {
			t.Fatalf("Len %d, go-smpp %d", g, w)
		}
		sameMaps(t, "maps", got, want)
		sameFields(t, "fields from the maps", got, want)

		got, want = decode()
		sameFrame(t, "SerializeTo", serialize(t, got), serialize(t, want), tlvLen(want))
		sameMaps(t, "maps after SerializeTo", got, want)

		got, want = decode()
		fast, err := smpp.Encode(got)
		if err != nil {
			t.Fatal(err)
		}
		sameFrame(t, "encode", fast, serialize(t, want), tlvLen(want))
		if got.Header().Len != want.Header().Len {
			t.Fatalf("command_length %d after encode, go-smpp %d", got.Header().Len, want.Header().Len)
		}
	})
}

// A hot PDU is read from several goroutines at once (a request and its
// late response, a handler and a logger): its maps are built once, and
// every reader sees the same fields whether it asks before or after.
func TestHotPDUConcurrentReads(t *testing.T) {
	for name, fr := range map[string][]byte{
		"submit_sm":   hotSeedFrames(t)["submit_sm_sar"],
		"receipt":     hotSeedFrames(t)["deliver_sm_receipt"],
		"udh":         hotSeedFrames(t)["deliver_sm_udh"],
		"submit_resp": hotSeedFrames(t)["submit_sm_resp_tlv"],
	} {
		t.Run(name, func(t *testing.T) {
			want, err := smpp.DecodeCodec(fr)
			if err != nil {
				t.Fatal(err)
			}
			p, err := smpp.Decode(fr)
			if err != nil {
				t.Fatal(err)
			}
			const readers = 8
			results := make(chan string, readers)
			var wg sync.WaitGroup
			for i := range readers {
				wg.Go(func() {
					if i%2 == 0 {
						_ = p.Fields()
						_ = p.TLVFields()
					}
					results <- fieldDump(p)
				})
			}
			wg.Wait()
			close(results)
			w := fieldDump(want)
			for got := range results {
				if got != w {
					t.Fatalf("a reader saw\n%s\ngo-smpp\n%s", got, w)
				}
			}
		})
	}
}

// fieldDump is every field and TLV as the accessors read them.
func fieldDump(p pdu.Body) string {
	var b strings.Builder
	for _, k := range allNames[:len(allNames)-2] { // a UDH's values change as they are read (go-smpp)
		fmt.Fprintf(&b, "%s=%q/%d/%x\n", k, smpp.Str(p, k), smpp.Byte(p, k), smpp.Bytes(p, k))
	}
	for _, tag := range someTags {
		fmt.Fprintf(&b, "%04x=%x\n", uint16(tag), smpp.TLV(p, tag))
	}
	return b.String()
}

// A frame past go-smpp's 4096 octets is refused as go-smpp refuses it,
// hot PDU or not (a relayed frame may be longer than ReadFrame allows).
func TestDecodeHotTooLarge(t *testing.T) {
	body := bytes.Join([][]byte{cs(""), {1, 1}, cs("1"), {1, 1}, cs("2"), {0, 0, 0}, cs(""), cs(""), {0, 0, 0, 0, 0}}, nil)
	pad := pdu.MaxSize + 1 - pdu.HeaderLen - len(body) - 4
	fr := frame(pdu.SubmitSMID, 0, 1, body, tlv(0x1400, make([]byte, pad)))
	if len(fr) != pdu.MaxSize+1 {
		t.Fatalf("frame of %d", len(fr))
	}
	_, werr := smpp.DecodeCodec(fr)
	p, err := smpp.Decode(fr)
	if err == nil || werr == nil || err.Error() != werr.Error() {
		t.Fatalf("Decode: %v, %v; go-smpp: %v", p, err, werr)
	}
	fr = fr[:pdu.MaxSize]
	binary.BigEndian.PutUint32(fr, pdu.MaxSize)
	binary.BigEndian.PutUint16(fr[len(fr)-pad+1-2:], uint16(pad-1)) // the TLV one octet shorter
	if _, err := smpp.Decode(fr); err != nil {
		t.Fatalf("a frame of 4096 octets: %v", err)
	}
}
