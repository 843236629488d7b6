package smpp

import (
	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// SMPP 3.4 gives every C-Octet String of a PDU a size in octets, its
// terminating NUL included (§4, "Var. max 21"; §5.2). The decoders read a
// string of any length up to its NUL, as go-smpp's do (a peer's over-long
// field is still read where it is); what an ESME sends to the server is
// held to the sizes by checkRequest, and refused with the command_status
// §5.1.3 names for the field.

// MaxAddrLen is the most octets of an SME address (source_addr,
// destination_addr of submit_sm, submit_multi, query_sm, cancel_sm,
// replace_sm and deliver_sm) or a distribution list name (dl_name), its
// NUL not counted: "Var. max 21" (§4.4.1, §4.5.1).
const MaxAddrLen = 20

// MaxShortMessage is the most octets of short_message: sm_length 0–254
// (§4.4.1, §4.5.1, §4.10.1; a longer text goes in message_payload).
const MaxShortMessage = 254

// Sizes of §4 with the NUL, for fieldLimits.
const (
	addrSize       = MaxAddrLen + 1
	dataSMAddrSize = 65 // data_sm's source_addr and destination_addr (§4.7.1)
	messageIDSize  = 65 // §4.8.1, §4.9.1, §4.10.1
	serviceSize    = 6  // service_type (§5.2.11)
	timeSize       = 17 // schedule_delivery_time, validity_period (§7.1.1: 16 characters)
	systemIDSize   = 16 // bind_*'s system_id (§4.1.1)
	passwordSize   = 9
)

// fieldLimit is a C-Octet String of a request, its size with the NUL, and
// the command_status a longer one is refused with.
type fieldLimit struct {
	name pdufield.Name
	size int
	st   pdu.Status
}

var (
	// A bind is held to the sizes of the fields qxtd reads. system_type
	// and address_range are not read: an ESME sending them too long (Kannel
	// only warns about a long system-type, and sends it) still binds, as
	// it did before the check.
	bindLimits = []fieldLimit{
		{pdufield.SystemID, systemIDSize, StatusInvalidSystemID},
		{pdufield.Password, passwordSize, StatusInvalidPassword},
	}
	serviceLimit   = fieldLimit{pdufield.ServiceType, serviceSize, StatusInvalidServiceType}
	srcLimit       = fieldLimit{pdufield.SourceAddr, addrSize, StatusInvalidSrcAddr}
	dstLimit       = fieldLimit{pdufield.DestinationAddr, addrSize, StatusInvalidDstAddr}
	scheduleLimit  = fieldLimit{pdufield.ScheduleDeliveryTime, timeSize, StatusInvalidSchedule}
	validityLimit  = fieldLimit{pdufield.ValidityPeriod, timeSize, StatusInvalidExpiry}
	messageIDLimit = fieldLimit{pdufield.MessageID, messageIDSize, StatusInvalidMsgID}
)

// requestLimits are the C-Octet Strings of each request an ESME sends, in
// wire order (§4.1.1, §4.4.1, §4.5.1, §4.7.1, §4.8.1, §4.9.1, §4.10.1).
// submit_multi's dest_address entries are refused one by one, in
// unsuccess_sme, by whoever serves the request (MaxAddrLen).
var requestLimits = map[pdu.ID][]fieldLimit{
	pdu.BindTransmitterID: bindLimits,
	pdu.BindReceiverID:    bindLimits,
	pdu.BindTransceiverID: bindLimits,
	pdu.SubmitSMID:        {serviceLimit, srcLimit, dstLimit, scheduleLimit, validityLimit},
	pdu.SubmitMultiID:     {serviceLimit, srcLimit, scheduleLimit, validityLimit},
	DataSMID: {
		serviceLimit,
		{pdufield.SourceAddr, dataSMAddrSize, StatusInvalidSrcAddr},
		{pdufield.DestinationAddr, dataSMAddrSize, StatusInvalidDstAddr},
	},
	pdu.QuerySMID: {messageIDLimit, srcLimit},
	CancelSMID:    {serviceLimit, messageIDLimit, srcLimit, dstLimit},
	ReplaceSMID:   {messageIDLimit, srcLimit, scheduleLimit, validityLimit},
}

// RefusedField is a command and one of its fields that checkRequest holds
// to a bound (ServerOptions.OnFieldRefused).
type RefusedField struct{ Command, Field string }

// RefusedFields lists every command and field checkRequest may refuse.
func RefusedFields() []RefusedField {
	var out []RefusedField
	for id, ls := range requestLimits {
		for _, l := range ls {
			out = append(out, RefusedField{id.String(), string(l.name)})
		}
		switch id {
		case pdu.SubmitSMID, ReplaceSMID:
			out = append(out, RefusedField{id.String(), string(pdufield.ShortMessage)})
		case pdu.SubmitMultiID:
			out = append(out, RefusedField{id.String(), string(pdufield.ShortMessage)}, RefusedField{id.String(), string(pdufield.NumberDests)})
		}
	}
	return out
}

// MaxDests is the most dest_address entries one submit_multi may carry
// (SMPP 3.4 §4.5.1, number_of_dests).
const MaxDests = 254

// checkRequest holds a request decoded from an ESME to the sizes of SMPP
// 3.4: the first C-Octet String (in wire order) longer than its size gives
// its status, then a submit_multi's number_of_dests of 0 or over MaxDests
// ESME_RINVNUMDESTS, then a short_message over 254 octets ESME_RINVMSGLEN.
// ok when every field fits; field names the one that does not.
func checkRequest(p pdu.Body) (field pdufield.Name, st pdu.Status, ok bool) {
	id := p.Header().ID
	for _, l := range requestLimits[id] {
		if cstrLen(p, l.name) >= l.size {
			return l.name, l.st, false
		}
	}
	if id == pdu.SubmitMultiID {
		if n := len(Dests(p)); n == 0 || n > MaxDests {
			return pdufield.NumberDests, StatusInvalidNumDests, false
		}
	}
	switch id {
	case pdu.SubmitSMID, pdu.SubmitMultiID, ReplaceSMID:
		if len(Bytes(p, pdufield.ShortMessage)) > MaxShortMessage {
			return pdufield.ShortMessage, StatusInvalidMsgLen, false
		}
	}
	return "", StatusOK, true
}

// cstrLen is the length of a C-Octet String field without its NUL, 0 when
// absent; from a hot PDU's frame without a copy.
func cstrLen(p pdu.Body, k pdufield.Name) int {
	if fp, ok := p.(fastPDU); ok {
		if f, ok := fp.field(k); ok {
			if f.kind == fieldVariable {
				return len(f.b) - 1
			}
			return 0
		}
	}
	return len(Str(p, k))
}
