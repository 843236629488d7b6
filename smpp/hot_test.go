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

	"github.com/qxtd/qxtd/segment"
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

// onWire is what encode writes where go-smpp's codec writes frame (its
// last tlvLen octets TLVs): the same, but for a submit_sm_resp with a
// non-zero command_status, which goes out as its header alone (SMPP 3.4
// §4.4.2), where go-smpp writes an empty message_id.
func onWire(frame []byte, tlvLen int) ([]byte, int) {
	if len(frame) < pdu.HeaderLen || pdu.ID(binary.BigEndian.Uint32(frame[4:8])) != pdu.SubmitSMRespID ||
		binary.BigEndian.Uint32(frame[8:12]) == 0 {
		return frame, tlvLen
	}
	w := bytes.Clone(frame[:pdu.HeaderLen])
	binary.BigEndian.PutUint32(w, pdu.HeaderLen)
	return w, 0
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
		wantFrame, tl := onWire(serialize(t, want), tlvLen(want))
		sameFrame(t, "encode", fast, wantFrame, tl)
		if got.Header().Len != uint32(len(wantFrame)) {
			t.Fatalf("command_length %d after encode, want %d", got.Header().Len, len(wantFrame))
		}
	})
}

// smInput is a submit_sm or deliver_sm's values as FuzzEncodeHot takes
// them.
type smInput struct {
	strs [5]string // service_type, source_addr, destination_addr, schedule_delivery_time, validity_period
	octs [11]uint8 // source_addr_ton … sm_default_msg_id, wire order
	sm   []byte
	tlvs []smpp.TLVField
}

// smNames are the mandatory fields in wire order, sm_length left out.
var smNames = [...]pdufield.Name{
	pdufield.ServiceType, pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
	pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr,
	pdufield.ESMClass, pdufield.ProtocolID, pdufield.PriorityFlag,
	pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod,
	pdufield.RegisteredDelivery, pdufield.ReplaceIfPresentFlag, pdufield.DataCoding,
	pdufield.SMDefaultMsgID, pdufield.ShortMessage,
}

// smSlots says where each of smNames but short_message is in an
// smInput: a string of strs or an octet of octs.
var smSlots = [...]struct {
	str bool
	i   int
}{
	{true, 0}, {false, 0}, {false, 1}, {true, 1}, {false, 2}, {false, 3}, {true, 2},
	{false, 4}, {false, 5}, {false, 6}, {true, 3}, {true, 4},
	{false, 7}, {false, 8}, {false, 9}, {false, 10},
}

// value is field i of smNames.
func (in *smInput) value(i int) any {
	switch {
	case i == len(smSlots):
		return in.sm
	case smSlots[i].str:
		return in.strs[smSlots[i].i]
	}
	return in.octs[smSlots[i].i]
}

func (in *smInput) sm2() smpp.SM {
	return smpp.SM{
		ServiceType: in.strs[0], SourceAddrTON: in.octs[0], SourceAddrNPI: in.octs[1], SourceAddr: in.strs[1],
		DestAddrTON: in.octs[2], DestAddrNPI: in.octs[3], DestinationAddr: in.strs[2],
		ESMClass: in.octs[4], ProtocolID: in.octs[5], PriorityFlag: in.octs[6],
		ScheduleDeliveryTime: in.strs[3], ValidityPeriod: in.strs[4],
		RegisteredDelivery: in.octs[7], ReplaceIfPresentFlag: in.octs[8], DataCoding: in.octs[9],
		SMDefaultMsgID: in.octs[10], ShortMessage: in.sm, TLVs: in.tlvs,
	}
}

// codec builds the PDU with go-smpp: the fields whose bit is set in
// mask, in wire order; for a deliver_sm with bit 20 the #73 work-around.
func (in *smInput) codec(deliver bool, mask uint32) pdu.Body {
	var p pdu.Body
	if deliver {
		p = pdu.NewDeliverSM()
	} else {
		p = pdu.NewSubmitSM(nil)
	}
	f := p.Fields()
	for i, k := range smNames {
		if mask&(1<<i) != 0 {
			if err := f.Set(k, in.value(i)); err != nil {
				panic(err)
			}
		}
	}
	if deliver && mask&(1<<20) != 0 {
		f[pdufield.UDHLength] = &pdufield.SM{Data: []byte{}}
		f[pdufield.GSMUserData] = &pdufield.SM{Data: []byte{}}
	}
	for _, t := range in.tlvs {
		_ = p.TLVFields().Set(t.Tag, t.Value)
	}
	return p
}

func parseSMInput(strs string, octs, sm, tlvs []byte) *smInput {
	in := &smInput{sm: sm}
	copy(in.strs[:], strings.SplitN(strs, "|", 5))
	copy(in.octs[:], octs)
	for len(tlvs) >= 3 { // tag (2 octets), length (1), value
		n := min(int(tlvs[2]), len(tlvs)-3)
		in.tlvs = append(in.tlvs, smpp.TLVField{Tag: pdutlv.Tag(binary.BigEndian.Uint16(tlvs)), Value: tlvs[3 : 3+n]})
		tlvs = tlvs[3+n:]
	}
	return in
}

// FuzzEncodeHot: for any field values, the one-allocation encoders write
// what go-smpp's SerializeTo writes (TLVs in any order): for a PDU built
// by go-smpp with any subset of its fields set (mask), and for
// NewSubmitSM / NewDeliverSM / NewSubmitSMResp / NewDeliverSMResp against
// go-smpp's constructors and Sets, whose fields, maps and frames they
// must also match.
func FuzzEncodeHot(f *testing.F) {
	for _, s := range encodeSeeds {
		f.Add(s.kind, s.mask, s.strs, s.octs, s.sm, s.tlvs, s.seq, s.status)
	}
	f.Fuzz(func(t *testing.T, kind uint8, mask uint32, strs string, octs, sm, tlvs []byte, seq, status uint32) {
		if len(strs)+len(octs)+len(sm)+len(tlvs) > 2*pdu.MaxSize {
			return // past any PDU (and quadratic in the checks' TLV look-ups)
		}
		in := parseSMInput(strs, octs, sm, tlvs)
		if kind%4 >= 2 {
			encodeResp(t, kind%4 == 2, in.strs[1], mask&1 != 0, seq, status)
			return
		}
		deliver := kind%4 == 1
		head := func(p pdu.Body) pdu.Body {
			p.Header().Seq, p.Header().Status = seq, pdu.Status(status)
			return p
		}

		// go-smpp's PDU, some fields set: encodeSM from the maps.
		p := head(in.codec(deliver, mask))
		extra := mask&(1<<21) != 0
		if extra { // a field outside the list: command_length counts it
			_ = p.Fields().Set(pdufield.MessageID, "x")
		}
		fast, ok := smpp.EncodeMaps(p)
		if ok == extra {
			t.Fatalf("fast path taken: %v, with a field outside the list: %v", ok, extra)
		}
		if want := serialize(t, p); ok {
			sameFrame(t, "from the maps", fast, want, tlvLen(p))
		}

		// NewSubmitSM / NewDeliverSM against go-smpp with every field set.
		want := head(in.codec(deliver, 1<<20|1<<len(smNames)-1))
		build := func() pdu.Body {
			if deliver {
				return head(smpp.NewDeliverSM(in.sm2()))
			}
			return head(smpp.NewSubmitSM(in.sm2()))
		}
		wantFrame := serialize(t, want)
		got := build()
		sameFrame(t, "built, SerializeTo first", serialize(t, got), wantFrame, tlvLen(want))
		sameMaps(t, "built, SerializeTo first", got, want)
		got = build()
		sameFields(t, "built", got, want)
		if g, w := got.Len(), want.Len(); g != w {
			t.Fatalf("Len %d, go-smpp %d", g, w)
		}
		raw, ok := smpp.RawFrame(got)
		if !ok {
			t.Fatal("a built PDU not written from its fields")
		}
		sameFrame(t, "built", raw, wantFrame, tlvLen(want))
		sameMaps(t, "built", got, want)
		fromMaps, err := smpp.Encode(got)
		if err != nil {
			t.Fatal(err)
		}
		sameFrame(t, "built, from its maps", fromMaps, wantFrame, tlvLen(want))
		sameFrame(t, "built, SerializeTo", serialize(t, got), wantFrame, tlvLen(want))
		sameFields(t, "built, from its maps", got, want)
	})
}

// encodeResp checks NewSubmitSMResp(id) (set) or NewDeliverSMResp()
// against go-smpp's.
func encodeResp(t *testing.T, submit bool, id string, set bool, seq, status uint32) {
	var got, want pdu.Body
	if submit {
		got, want = smpp.NewSubmitSMResp(id), pdu.NewSubmitSMResp()
		_ = want.Fields().Set(pdufield.MessageID, id)
	} else {
		got, want = smpp.NewDeliverSMResp(), pdu.NewDeliverSMResp()
		if set {
			// go-smpp's with an id has no hot twin: encodeResponse's.
			_ = want.Fields().Set(pdufield.MessageID, id)
			got = want
		}
	}
	for _, p := range []pdu.Body{got, want} {
		p.Header().Seq, p.Header().Status = seq, pdu.Status(status)
	}
	sameFields(t, "response", got, want)
	if g, w := got.Len(), want.Len(); g != w {
		t.Fatalf("response Len %d, go-smpp %d", g, w)
	}
	fast, err := smpp.Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	wantFrame := serialize(t, want)
	wire, _ := onWire(wantFrame, 0)
	sameFrame(t, "response", fast, wire, 0)
	if got == want {
		return
	}
	sameFrame(t, "response, SerializeTo", serialize(t, got), wantFrame, 0)
	sameMaps(t, "response", got, want)
}

// encodeSeed is one FuzzEncodeHot input.
type encodeSeed struct {
	kind           uint8
	mask           uint32
	strs           string
	octs, sm, tlvs []byte
	seq, status    uint32
}

func (s encodeSeed) args() []any {
	return []any{s.kind, s.mask, s.strs, s.octs, s.sm, s.tlvs, s.seq, s.status}
}

// buildPDUMask sets what gateway's buildPDU sets: source and destination
// ton, npi and address, esm_class, registered_delivery, data_coding and
// short_message (bits 1–7, 12, 14, 16 of smNames).
const buildPDUMask = 1<<16 | 1<<14 | 1<<12 | 0b1111_1110

// encodeSeeds start FuzzEncodeHot (testdata/fuzz/FuzzEncodeHot).
var encodeSeeds = map[string]encodeSeed{
	"upstream_ucs2":        {0, buildPDUMask, "|10086|13712345678||", []byte{1, 1, 1, 1, 0, 0, 0, 1, 0, 8, 0}, bytes.Repeat(ucs2Hello, 34)[:134], nil, 7, 0},
	"upstream_udh":         {0, buildPDUMask, "|10086|13712345678||", []byte{1, 1, 1, 1, 0x40, 0, 0, 1, 0, 8, 0}, append([]byte{5, 0, 3, 9, 2, 1}, ucs2Hello...), nil, 8, 0},
	"upstream_sar":         {0, buildPDUMask, "|10086|13712345678||", []byte{1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0}, []byte("part one"), []byte{0x02, 0x0C, 2, 0, 7, 0x02, 0x0E, 1, 2, 0x02, 0x0F, 1, 1}, 9, 0},
	"upstream_payload":     {0, buildPDUMask, "|10086|13712345678||", []byte{1, 1, 1, 1, 0, 0, 0, 1, 0, 8, 0}, nil, append([]byte{0x04, 0x24, 200}, bytes.Repeat([]byte{0x4F}, 200)...), 10, 0},
	"all_set_nuls":         {0, 0x1FFFF, "WAP\x00|a\x00b|\x00|251126120000000+|", []byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}, []byte{}, nil, 11, 0},
	"none_set":             {0, 0, "", nil, nil, nil, 12, 0},
	"extra_field":          {0, 1<<21 | 0x1FFFF, "|1|2||", nil, []byte("x"), nil, 13, 0},
	"receipt":              {1, 1<<20 | 0x4000 | 0x10000 | 0xFE, "|13712345678|10086||", []byte{1, 1, 0, 0, 4, 0, 0, 0, 0, 0, 0}, []byte("id:1f2e3d sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:hello"), []byte{0x00, 0x1E, 7, '1', 'f', '2', 'e', '3', 'd', 0, 0x04, 0x27, 1, 2}, 14, 0},
	"deliver_73":           {1, 0x1FFFF, "|1|2||", nil, []byte("mo"), nil, 15, 0},
	"dup_tlv":              {1, 1<<20 | 0x1FFFF, "|1|2||", nil, []byte("mo"), []byte{0, 5, 1, 1, 0, 5, 1, 2}, 16, 0},
	"submit_sm_resp":       {2, 1, "|1234567890", nil, nil, nil, 17, 0},
	"submit_sm_resp_long":  {2, 1, "|" + strings.Repeat("9", 64), nil, nil, nil, 18, 0},
	"submit_sm_resp_error": {2, 0, "", nil, nil, nil, 19, 0x58},
	"deliver_sm_resp":      {3, 0, "", nil, nil, nil, 20, 0},
	"deliver_sm_resp_id":   {3, 1, "|abc", nil, nil, nil, 21, 0},
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

// Once someone has the maps of a hot PDU, they are the PDU: a value set
// there is what the accessors read and what goes on the wire, as with
// go-smpp's PDUs.
func TestHotPDUMapsWin(t *testing.T) {
	change := func(p pdu.Body) {
		_ = p.Fields().Set(pdufield.SourceAddr, "1065")
		_ = p.Fields().Set(pdufield.ShortMessage, []byte("changed"))
		_ = p.TLVFields().Set(pdutlv.TagSarMsgRefNum, []byte{0, 9})
		delete(p.TLVFields(), pdutlv.TagSarTotalSegments)
		p.Header().Seq = 99
	}
	in := &smInput{strs: [5]string{"", "10086", "13712345678"}, octs: [11]uint8{1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0},
		sm: []byte("hello"), tlvs: []smpp.TLVField{{Tag: pdutlv.TagSarMsgRefNum, Value: []byte{0, 7}}, {Tag: pdutlv.TagSarTotalSegments, Value: []byte{2}}}}
	built := smpp.NewSubmitSM(in.sm2())
	decoded, err := smpp.Decode(serialize(t, smpp.NewSubmitSM(in.sm2())))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]pdu.Body{"built": built, "decoded": decoded} {
		t.Run(name, func(t *testing.T) {
			if smpp.Str(p, pdufield.SourceAddr) != "10086" || string(smpp.Bytes(p, pdufield.ShortMessage)) != "hello" {
				t.Fatalf("before: %q %q", smpp.Str(p, pdufield.SourceAddr), smpp.Bytes(p, pdufield.ShortMessage))
			}
			change(p)
			if smpp.Str(p, pdufield.SourceAddr) != "1065" || string(smpp.Bytes(p, pdufield.ShortMessage)) != "changed" ||
				smpp.Byte(p, pdufield.SMLength) != 7 || !bytes.Equal(smpp.TLV(p, pdutlv.TagSarMsgRefNum), []byte{0, 9}) ||
				smpp.TLV(p, pdutlv.TagSarTotalSegments) != nil {
				t.Fatalf("after: %s", fieldDump(p))
			}
			got, err := smpp.Encode(p)
			if err != nil {
				t.Fatal(err)
			}
			w := in.codec(false, 1<<len(smNames)-1)
			change(w)
			sameFrame(t, "encode", got, serialize(t, w), tlvLen(w))
		})
	}
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

// NewSubmitSM copies what it is given: the caller may reuse its buffers.
func TestNewSubmitSMCopies(t *testing.T) {
	sm, v := []byte("hello"), []byte{0, 7}
	p := smpp.NewSubmitSM(smpp.SM{SourceAddr: "1", DestinationAddr: "2", ShortMessage: sm,
		TLVs: []smpp.TLVField{{Tag: pdutlv.TagSarMsgRefNum, Value: v}}})
	copy(sm, "xxxxx")
	v[1] = 9
	if got := smpp.Bytes(p, pdufield.ShortMessage); string(got) != "hello" {
		t.Errorf("short_message %q", got)
	}
	if got := smpp.TLV(p, pdutlv.TagSarMsgRefNum); !bytes.Equal(got, []byte{0, 7}) {
		t.Errorf("sar_msg_ref_num % x", got)
	}
}

// TestDeliverSMUDHInPayload: a deliver_sm whose UDH is message_payload's
// (esm_class UDHI, sm_length 0: SMPP 3.4 §5.2.12, §5.3.2.32), as
// NewOctetsPDU sends a binary reply of more than 254 octets, decodes, and
// serializes back to its frame, with both decoders. go-smpp's own decoder
// takes the TLVs' first octet for the UDH's length and refuses it.
func TestDeliverSMUDHInPayload(t *testing.T) {
	udh := []byte{6, 5, 4, 0x0B, 0x84, 0x23, 0xF0}
	data := bytes.Repeat([]byte{0xA5}, 300)
	p := smpp.NewOctetsPDU(smpp.Octets{Data: data, DataCoding: 0x04, UDH: udh}, "13712345678", "10657500112", 1, 1)
	p.Header().Seq = 7
	frame, err := smpp.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdu.Decode(bytes.NewReader(frame)); err == nil {
		t.Fatal("go-smpp decoded it: the work-around may go")
	}
	for name, decode := range map[string]func([]byte) (pdu.Body, error){"hot": smpp.Decode, "go-smpp's codec": smpp.DecodeCodec} {
		got, err := decode(bytes.Clone(frame))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if esm, sm, pl := smpp.Byte(got, pdufield.ESMClass), smpp.Bytes(got, pdufield.ShortMessage), smpp.TLV(got, pdutlv.TagMessagePayload); esm != 0x40 || len(sm) != 0 || !bytes.Equal(pl, append(slices.Clone(udh), data...)) {
			t.Fatalf("%s: esm_class 0x%02x, short_message % x, message_payload %d octets", name, esm, sm, len(pl))
		}
		if smpp.Byte(got, pdufield.DataCoding) != 0x04 || smpp.Str(got, pdufield.SourceAddr) != "13712345678" {
			t.Fatalf("%s: fields %v", name, got.Fields())
		}
		var b bytes.Buffer
		if err := got.SerializeTo(&b); err != nil || !bytes.Equal(b.Bytes(), frame) {
			t.Fatalf("%s: serialized back as % x (%v), want % x", name, b.Bytes(), err, frame)
		}
	}
}

// TestOctetsPDUPorts: a binary reply's port TLVs reach the ESME as TLVs,
// each only when the SMSC gave it, read alike by both decoders.
func TestOctetsPDUPorts(t *testing.T) {
	src, dst := uint16(0), uint16(5505)
	for _, c := range []struct {
		name     string
		o        smpp.Octets
		src, dst []byte
	}{
		{name: "both", o: smpp.Octets{Data: []byte{1, 2}, DataCoding: 0xF5, SourcePort: &src, DestPort: &dst}, src: []byte{0, 0}, dst: []byte{0x15, 0x81}},
		{name: "destination only, with a UDH", o: smpp.Octets{Data: []byte{1}, DataCoding: 0x04, UDH: []byte{2, 0x0A, 0}, DestPort: &dst}, dst: []byte{0x15, 0x81}},
		{name: "none", o: smpp.Octets{Data: []byte{1}, DataCoding: 0x04}},
	} {
		frame, err := smpp.Encode(smpp.NewOctetsPDU(c.o, "13712345678", "10657500112", 1, 1))
		if err != nil {
			t.Fatal(err)
		}
		for name, decode := range map[string]func([]byte) (pdu.Body, error){"hot": smpp.Decode, "go-smpp's codec": smpp.DecodeCodec} {
			got, err := decode(bytes.Clone(frame))
			if err != nil {
				t.Fatalf("%s, %s: %v", c.name, name, err)
			}
			sp, dp := smpp.TLV(got, pdutlv.TagSourcePort), smpp.TLV(got, pdutlv.TagDestinationPort)
			if !bytes.Equal(sp, c.src) || !bytes.Equal(dp, c.dst) {
				t.Fatalf("%s, %s: source_port % x, destination_port % x", c.name, name, sp, dp)
			}
			// UserData reads the UDH back from the hot PDU only (go-smpp's
			// maps split it off), which is what qxtd receives with.
			if ud := smpp.UserData(got); name == "hot" && !bytes.Equal(ud, append(slices.Clone(c.o.UDH), c.o.Data...)) {
				t.Fatalf("%s, %s: user data % x", c.name, name, ud)
			}
			if udhi := smpp.Byte(got, pdufield.ESMClass)&0x40 != 0; udhi != (c.o.UDH != nil) {
				t.Fatalf("%s, %s: UDHI %v", c.name, name, udhi)
			}
		}
	}
}

// TestFramePDU: a reply's part (segment.OctetFrames, TextFrames) goes
// with its frame's esm_class, data_coding, short_message and SAR TLVs and
// the reply's port TLVs, read alike by both decoders.
func TestFramePDU(t *testing.T) {
	dst := uint16(9204)
	frames, err := segment.OctetFrames(make([]byte, 200), 0xF5, []byte{4, 0x04, 2, 0x23, 0xF4}, segment.ConcatSAR, 0x0102)
	if err != nil || len(frames) != 2 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
	for i, f := range frames {
		frame, err := smpp.Encode(smpp.NewFramePDU(f, "13712345678", "10657500112", 1, 1, nil, &dst))
		if err != nil {
			t.Fatal(err)
		}
		for name, decode := range map[string]func([]byte) (pdu.Body, error){"hot": smpp.Decode, "go-smpp's codec": smpp.DecodeCodec} {
			got, err := decode(bytes.Clone(frame))
			if err != nil {
				t.Fatalf("part %d, %s: %v", i+1, name, err)
			}
			ref, total, seq := smpp.TLV(got, pdutlv.TagSarMsgRefNum), smpp.TLV(got, pdutlv.TagSarTotalSegments), smpp.TLV(got, pdutlv.TagSarSegmentSeqnum)
			if !bytes.Equal(ref, []byte{1, 2}) || !bytes.Equal(total, []byte{2}) || !bytes.Equal(seq, []byte{byte(i + 1)}) {
				t.Errorf("part %d, %s: SAR % x / % x / % x", i+1, name, ref, total, seq)
			}
			if dp := smpp.TLV(got, pdutlv.TagDestinationPort); !bytes.Equal(dp, []byte{0x23, 0xF4}) || smpp.TLV(got, pdutlv.TagSourcePort) != nil {
				t.Errorf("part %d, %s: destination_port % x", i+1, name, dp)
			}
			if smpp.Byte(got, pdufield.DataCoding) != 0xF5 || smpp.Byte(got, pdufield.ESMClass) != 0x40 {
				t.Errorf("part %d, %s: data_coding 0x%02x esm_class 0x%02x", i+1, name, smpp.Byte(got, pdufield.DataCoding), smpp.Byte(got, pdufield.ESMClass))
			}
			if ud := smpp.UserData(got); name == "hot" && !bytes.Equal(ud, f.ShortMessage) {
				t.Errorf("part %d: user data % x, want % x", i+1, ud, f.ShortMessage)
			}
		}
	}
}
