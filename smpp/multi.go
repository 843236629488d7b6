package smpp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// go-smpp gets submit_multi wrong both ways, so qxtd codes it here
// (SMPP 3.4 §4.5):
//   - its decoder reads every dest_address as flag, ton, npi, address,
//     but a distribution list entry (dest_flag 2) is flag + dl_name only:
//     one such entry shifts every field after it;
//   - its unsuccess_sme writes error_status_code as a C-string, adding a
//     0x00 after any status whose last octet is not 0x00 (0x00000058 …).

// DestAddress is one entry of submit_multi's dest_address list.
type DestAddress struct {
	DL       bool   // dest_flag 2: a distribution list name
	TON, NPI uint8  // SME address only
	Addr     string // destination_addr or dl_name
}

// DestList is the dest_address field (a pdufield.Body).
type DestList []DestAddress

func (l DestList) Bytes() []byte {
	var b []byte
	for _, d := range l {
		if d.DL {
			b = append(b, 2)
		} else {
			b = append(b, 1, d.TON, d.NPI)
		}
		b = append(append(b, d.Addr...), 0)
	}
	return b
}
func (l DestList) Len() int                      { return len(l.Bytes()) }
func (l DestList) Raw() interface{}              { return l }
func (l DestList) String() string                { return fmt.Sprint([]DestAddress(l)) }
func (l DestList) SerializeTo(w io.Writer) error { _, err := w.Write(l.Bytes()); return err }

// Unsuccess is one entry of submit_multi_resp's unsuccess_sme list.
type Unsuccess struct {
	TON, NPI uint8
	Addr     string
	Status   pdu.Status
}

// UnsuccessList is the unsuccess_sme field (a pdufield.Body).
type UnsuccessList []Unsuccess

func (l UnsuccessList) Bytes() []byte {
	var b []byte
	for _, u := range l {
		b = append(b, u.TON, u.NPI)
		b = append(append(b, u.Addr...), 0)
		b = binary.BigEndian.AppendUint32(b, uint32(u.Status))
	}
	return b
}
func (l UnsuccessList) Len() int                      { return len(l.Bytes()) }
func (l UnsuccessList) Raw() interface{}              { return l }
func (l UnsuccessList) String() string                { return fmt.Sprint([]Unsuccess(l)) }
func (l UnsuccessList) SerializeTo(w io.Writer) error { _, err := w.Write(l.Bytes()); return err }

var (
	multiHead = pdufield.List{pdufield.ServiceType, pdufield.SourceAddrTON, pdufield.SourceAddrNPI,
		pdufield.SourceAddr, pdufield.NumberDests}
	multiTail = pdufield.List{pdufield.ESMClass, pdufield.ProtocolID, pdufield.PriorityFlag,
		pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod, pdufield.RegisteredDelivery,
		pdufield.ReplaceIfPresentFlag, pdufield.DataCoding, pdufield.SMDefaultMsgID,
		pdufield.SMLength, pdufield.ShortMessage}
	multiList = append(append(append(pdufield.List{}, multiHead...), pdufield.DestinationList), multiTail...)
)

// Dests returns a submit_multi's destinations (decoded by Decode).
func Dests(p pdu.Body) DestList {
	if l, ok := p.Fields()[pdufield.DestinationList].(DestList); ok {
		return l
	}
	return nil
}

func decodeSubmitMulti(h pdu.Header, b []byte) (pdu.Body, error) {
	r := bytes.NewBuffer(b)
	f, err := multiHead.Decode(r)
	if err != nil {
		return nil, err
	}
	if len(f) != len(multiHead) {
		return nil, fmt.Errorf("short submit_multi header")
	}
	n := int(Byte(&body{f: f}, pdufield.NumberDests))
	dests := make(DestList, 0, n)
	for range n {
		flag, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("dest_address: %w", err)
		}
		var d DestAddress
		switch flag {
		case 1:
			hdr := r.Next(2)
			if len(hdr) != 2 {
				return nil, fmt.Errorf("dest_address: short")
			}
			d.TON, d.NPI = hdr[0], hdr[1]
		case 2:
			d.DL = true
		default:
			return nil, fmt.Errorf("dest_address: dest_flag %d", flag)
		}
		a, err := r.ReadBytes(0)
		if err != nil {
			return nil, fmt.Errorf("dest_address: unterminated address")
		}
		d.Addr = string(a[:len(a)-1])
		dests = append(dests, d)
	}
	tail, err := multiTail.Decode(r)
	if err != nil {
		return nil, err
	}
	if len(tail) < len(multiTail) {
		return nil, fmt.Errorf("short submit_multi body")
	}
	t, err := pdutlv.DecodeTLV(r)
	if err != nil {
		return nil, err
	}
	for k, v := range tail {
		f[k] = v
	}
	f[pdufield.DestinationList] = dests
	hh := h
	return &body{h: &hh, l: multiList, f: f, t: t}, nil
}

// NewSubmitMultiResp builds submit_multi_resp with the unsuccessful
// destinations coded per §4.5.2.
//
// failed is cut to what the response can carry: no_unsuccess counts 255
// entries at most, and the PDU must fit MaxFrame, the most a peer reading
// as go-smpp (and qxtd) does takes: 254 refusals of 20-digit numbers are
// some 7 KB, and such a client drops the connection instead of reading
// them. The first ones are kept.
//
// An address longer than SMPP 3.4's 21 octets (refused for that) is cut
// to MaxAddrLen: the response keeps the sizes, which a strict client
// holds it to (libsmpp34 reads each into 21 octets).
func NewSubmitMultiResp(messageID string, failed UnsuccessList) pdu.Body {
	for i, u := range failed {
		if len(u.Addr) > MaxAddrLen {
			failed = slices.Clone(failed)
			for j := i; j < len(failed); j++ {
				if len(failed[j].Addr) > MaxAddrLen {
					failed[j].Addr = failed[j].Addr[:MaxAddrLen]
				}
			}
			break
		}
	}
	room := MaxFrame - pdu.HeaderLen - len(messageID) - 1 - 1 // message_id, no_unsuccess
	for i, u := range failed {
		if room -= 2 + len(u.Addr) + 1 + 4; room < 0 || i == 255 {
			failed = failed[:i]
			break
		}
	}
	b := &body{
		h: &pdu.Header{ID: pdu.SubmitMultiRespID},
		l: pdufield.List{pdufield.MessageID, pdufield.NoUnsuccess, pdufield.UnsuccessSme},
		f: make(pdufield.Map),
		t: make(pdutlv.Map),
	}
	_ = b.f.Set(pdufield.MessageID, messageID)
	b.f[pdufield.NoUnsuccess] = &pdufield.Fixed{Data: uint8(len(failed))}
	b.f[pdufield.UnsuccessSme] = failed
	return b
}

// NewSubmitMulti builds a submit_multi (for clients and tests).
func NewSubmitMulti(dests DestList) pdu.Body {
	b := &body{h: &pdu.Header{ID: pdu.SubmitMultiID}, l: multiList, f: make(pdufield.Map), t: make(pdutlv.Map)}
	b.f[pdufield.NumberDests] = &pdufield.Fixed{Data: uint8(len(dests))}
	b.f[pdufield.DestinationList] = dests
	return b
}

// ParseUnsuccess reads a submit_multi_resp's unsuccess_sme from its raw
// body (go-smpp's own decoding of it is wrong, see above).
func ParseUnsuccess(p pdu.Body) (UnsuccessList, error) {
	if l, ok := p.Fields()[pdufield.UnsuccessSme].(UnsuccessList); ok {
		return l, nil
	}
	return nil, fmt.Errorf("no unsuccess_sme decoded")
}

func decodeSubmitMultiResp(h pdu.Header, b []byte) (pdu.Body, error) {
	r := bytes.NewBuffer(b)
	head := pdufield.List{pdufield.MessageID, pdufield.NoUnsuccess}
	f, err := head.Decode(r)
	if err != nil {
		return nil, err
	}
	n := int(Byte(&body{f: f}, pdufield.NoUnsuccess))
	var list UnsuccessList
	for range n {
		hdr := r.Next(2)
		if len(hdr) != 2 {
			return nil, fmt.Errorf("unsuccess_sme: short")
		}
		a, err := r.ReadBytes(0)
		if err != nil {
			return nil, fmt.Errorf("unsuccess_sme: unterminated address")
		}
		st := r.Next(4)
		if len(st) != 4 {
			return nil, fmt.Errorf("unsuccess_sme: short status")
		}
		list = append(list, Unsuccess{TON: hdr[0], NPI: hdr[1], Addr: string(a[:len(a)-1]), Status: pdu.Status(binary.BigEndian.Uint32(st))})
	}
	t, err := pdutlv.DecodeTLV(r)
	if err != nil {
		return nil, err
	}
	f[pdufield.UnsuccessSme] = list
	hh := h
	return &body{h: &hh, l: pdufield.List{pdufield.MessageID, pdufield.NoUnsuccess, pdufield.UnsuccessSme}, f: f, t: t}, nil
}
