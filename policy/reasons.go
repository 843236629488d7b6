package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Reason is one of the closed set of refusals: qxtd's whole vocabulary for
// "not accepted", the operator's rules (whitelist, scope, quota, …) and the
// gateway's own (undecodable text, no route, split-message trouble, a store
// that cannot write). Each reason has a stable string (HTTP JSON, Prometheus
// label, the error code stored with a rejected message), one SMPP
// command_status and a message for people. This table is the only place
// either is defined. The zero value is not a valid reason.
type Reason uint8

// The refusal reasons. Their strings and command_status values are part of the
// public interface (README, client integrations, dashboards): never renumber.
const (
	_ Reason = iota
	// ReasonNotWhitelisted: the destination is not an approved whitelist entry
	// of the enterprise (absent, still pending approval, or rejected; the
	// Refusal's Detail says which).
	ReasonNotWhitelisted
	// ReasonScopeNational: a China Mobile number outside the home province (or
	// of unknown province) without the national-sending grant (全网发送).
	ReasonScopeNational
	// ReasonScopeOffNet: a number of another carrier (China Unicom, China
	// Telecom, China Broadnet, virtual operators) without the off-net grant (外网发送).
	ReasonScopeOffNet
	// ReasonInvalidNumber: not a Chinese mobile number (malformed, landline,
	// service number, foreign).
	ReasonInvalidNumber
	// ReasonQuotaExceeded: the monthly package / spending cap is exhausted.
	ReasonQuotaExceeded
	// ReasonBinaryRefused: binary, MMS or WAP-push content.
	ReasonBinaryRefused
	// ReasonTooLong: the text including signatures exceeds 500 characters
	// (segment.DefaultMaxChars).
	ReasonTooLong
	// ReasonNoSignature: the enterprise has no enterprise signature yet.
	ReasonNoSignature
	// ReasonAccountDisabled: the enterprise is disabled by the operator,
	// or the user by its enterprise (deleted, moved).
	ReasonAccountDisabled
	// ReasonRateLimited: the enterprise's submission rate is exceeded. This one
	// maps to the standard ESME_RTHROTTLED: clients retry it on their own.
	ReasonRateLimited

	// The gateway's own refusals, with standard command_status values.

	// ReasonBadText: a text that cannot be decoded (odd UCS-2 length, an
	// unsupported data_coding, a malformed header).
	ReasonBadText
	// ReasonNoRoute: no configured upstream serves the destination's carrier
	// (or the upstream a scheduled message was routed to is gone).
	ReasonNoRoute
	// ReasonPresplitUnsupported: submit_multi with a concatenation header.
	ReasonPresplitUnsupported
	// ReasonPartConflict: a part of a message the ESME split itself differs
	// from the part already stored under the same reference and number.
	ReasonPartConflict
	// ReasonReassemblyFull: a new split message beyond the cap on incomplete
	// ones (smpp.reassembly_max_groups / _bytes).
	ReasonReassemblyFull
	// ReasonIncomplete: a split message whose parts did not all arrive
	// within smpp.reassembly_timeout; its acknowledged parts get a failure
	// receipt with this error code.
	ReasonIncomplete
	// ReasonStoreError: the message store could not commit; nothing of the
	// request was accepted.
	ReasonStoreError

	// Two-way SMS: the operator's rules added later, vendor codes again
	// (appended: the numbering above never changes).

	// ReasonBadSource: the source address is not the enterprise's service
	// number (接入号) plus an extension of at most its extension length.
	ReasonBadSource
	// ReasonOptedOut: the recipient is on the enterprise's opt-out list:
	// it replied TD (回复TD退订), or the enterprise or the operator put it
	// there for a customer who asked another way.
	ReasonOptedOut

	numReasons = iota - 1
)

// Standard SMPP 3.4 command_status values (§5.1.3) that refusals map to.
// The policy package does not import the SMPP codec; the gateway turns
// these into its pdu.Status.
const (
	StatusInvalidMsgLen   uint32 = 0x00000001 // ESME_RINVMSGLEN
	StatusSystemError     uint32 = 0x00000008 // ESME_RSYSERR
	StatusInvalidDstAddr  uint32 = 0x0000000B // ESME_RINVDSTADR
	StatusMsgQueueFull    uint32 = 0x00000014 // ESME_RMSGQFUL
	StatusInvalidESMClass uint32 = 0x00000043 // ESME_RINVESMCLASS
	StatusSubmitFailed    uint32 = 0x00000045 // ESME_RSUBMITFAIL
	StatusThrottled       uint32 = 0x00000058 // ESME_RTHROTTLED
)

type reasonInfo struct {
	name    string
	status  uint32
	message string
	zh      string
}

var reasonTable = [numReasons + 1]reasonInfo{
	ReasonNotWhitelisted:  {"not_whitelisted", 0x400, "destination is not an approved whitelist entry of the enterprise", "号码不在已审批的白名单内"},
	ReasonScopeNational:   {"scope_national", 0x401, "China Mobile number outside the home province requires the national-sending grant", "省外移动号码需开通全网发送"},
	ReasonScopeOffNet:     {"scope_offnet", 0x402, "number of another carrier requires the off-net sending grant", "非移动号码需开通外网发送"},
	ReasonInvalidNumber:   {"invalid_number", 0x403, "not a valid Chinese mobile number", "不是有效的中国手机号码"},
	ReasonQuotaExceeded:   {"quota_exceeded", 0x404, "monthly package or spending cap exhausted", "已超出本月套餐或消费上限"},
	ReasonBinaryRefused:   {"binary_refused", 0x405, "binary, MMS and WAP-push content is not supported", "不支持彩信、二进制或WAP推送"},
	ReasonTooLong:         {"too_long", 0x406, "message longer than 500 characters including signatures", "短信超过500个字（含签名）"},
	ReasonNoSignature:     {"no_signature", 0x407, "the enterprise has no enterprise signature", "企业未设置企业签名"},
	ReasonAccountDisabled: {"account_disabled", 0x408, "the account is disabled (the enterprise, or the user)", "账号已停用（企业或用户）"},
	ReasonRateLimited:     {"rate_limited", StatusThrottled, "submission rate limit exceeded, retry later", "提交速度超限，请稍后重试"},

	ReasonBadText:             {"bad_text", StatusInvalidMsgLen, "text that cannot be decoded (odd UCS-2 length, unsupported data_coding, malformed header)", "短信内容无法解码"},
	ReasonNoRoute:             {"no_route", StatusInvalidDstAddr, "no upstream serves the destination's carrier", "没有可发往该号码运营商的通道"},
	ReasonPresplitUnsupported: {"presplit_unsupported", StatusInvalidESMClass, "submit_multi with a concatenation header: send each part with submit_sm", "群发不支持自行拆分的长短信"},
	ReasonPartConflict:        {"part_conflict", StatusSubmitFailed, "a part of a split message differs from the part already received under the same reference and sequence number", "长短信分段与已收到的同序号分段不一致"},
	ReasonReassemblyFull:      {"reassembly_full", StatusMsgQueueFull, "too many split messages are waiting for their parts", "等待拼接的长短信过多"},
	ReasonIncomplete:          {"incomplete", StatusSubmitFailed, "not every part of a split message arrived in time", "长短信分段未按时到齐"},
	ReasonStoreError:          {"store_error", StatusSystemError, "the message store failed: nothing was accepted; retry later", "存储失败，未接收，请稍后重试"},

	ReasonBadSource: {"bad_source", 0x409, "the source is not the enterprise's service number plus an allowed extension", "发送号码不是本企业的接入号（或其扩展号）"},
	ReasonOptedOut:  {"opted_out", 0x40A, "the recipient is on the enterprise's opt-out list (it replied TD, or asked another way)", "该号码已退订"},
}

// Vendor reports whether r's command_status is one of qxtd's own in the
// vendor-specific range 0x400–0x4FF (the operator's rules); the others map
// to standard SMPP codes.
func (r Reason) Vendor() bool {
	st := r.Status()
	return st >= 0x400 && st <= 0x4FF
}

// Reasons returns every reason in numbering order (for docs and metrics: pre-create
// one label value per reason).
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons)
	for r := Reason(1); r <= numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Valid reports whether r is one of the defined reasons.
func (r Reason) Valid() bool { return r >= 1 && r <= numReasons }

// String returns the stable name, e.g. "not_whitelisted" ("unknown" if invalid).
func (r Reason) String() string {
	if !r.Valid() {
		return "unknown"
	}
	return reasonTable[r].name
}

// Status returns the SMPP command_status: vendor-specific 0x400–0x4FF for the
// operator's rules, a standard code for the others (ESME_RTHROTTLED for
// ReasonRateLimited, …), ESME_RSYSERR (0x08) for an invalid reason.
func (r Reason) Status() uint32 {
	if !r.Valid() {
		return StatusSystemError
	}
	return reasonTable[r].status
}

// Message returns an English explanation for people.
func (r Reason) Message() string {
	if !r.Valid() {
		return "unknown policy refusal"
	}
	return reasonTable[r].message
}

// MessageZH returns the Chinese explanation shown to enterprise users.
func (r Reason) MessageZH() string {
	if !r.Valid() {
		return "未知原因"
	}
	return reasonTable[r].zh
}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, bool) {
	for r := Reason(1); r <= numReasons; r++ {
		if reasonTable[r].name == s {
			return r, true
		}
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler (JSON uses the stable string).
func (r Reason) MarshalText() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("policy: invalid reason %d", uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Reason) UnmarshalText(b []byte) error {
	v, ok := ParseReason(string(b))
	if !ok {
		return fmt.Errorf("policy: unknown reason %q", b)
	}
	*r = v
	return nil
}

// Refusal is a policy refusal: a Reason plus a detail for this occurrence (the
// number, the limit, …). It implements error; get the reason back with ReasonOf.
type Refusal struct {
	Reason
	Detail string
	// DetailZH is Detail for the people who read the consoles, in
	// Chinese; "" where none is written (they show Detail then).
	DetailZH string
}

func (e *Refusal) Error() string {
	if e.Detail == "" {
		return e.Reason.String() + ": " + e.Reason.Message()
	}
	return e.Reason.String() + ": " + e.Detail
}

// Is makes errors.Is(err, &Refusal{Reason: r}) match any refusal with reason r.
func (e *Refusal) Is(target error) bool {
	t, ok := target.(*Refusal)
	return ok && t.Reason == e.Reason && t.Detail == ""
}

func refuse(r Reason, detail string) error { return &Refusal{Reason: r, Detail: detail} }

// refuseZH is refuse with the detail in Chinese too (Refusal.DetailZH).
func refuseZH(r Reason, detail, zh string) error {
	return &Refusal{Reason: r, Detail: detail, DetailZH: zh}
}

// DetailZH is err's detail in Chinese: a refusal's (Refusal.DetailZH) or
// a field's rule (FieldError.ZH); "" for neither, or one without.
func DetailZH(err error) string {
	var ref *Refusal
	if errors.As(err, &ref) {
		return ref.DetailZH
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.ZH
	}
	return ""
}

// ReasonOf returns the reason of the first *Refusal in err's chain.
func ReasonOf(err error) (Reason, bool) {
	var r *Refusal
	if errors.As(err, &r) && r.Reason.Valid() {
		return r.Reason, true
	}
	return 0, false
}

// ReasonTable returns the markdown table of all reasons (reason, command_status,
// meaning), the README's "Error codes" table.
func ReasonTable() string {
	var b strings.Builder
	b.WriteString("| reason | command_status | meaning |\n|---|---|---|\n")
	for _, r := range Reasons() {
		fmt.Fprintf(&b, "| `%s` | `0x%08X` | %s (%s) |\n", r, r.Status(), r.Message(), r.MessageZH())
	}
	return b.String()
}

// NewRefusal returns a *Refusal, for layers that detect a refusal themselves
// (the queue's quota check → ReasonQuotaExceeded, segment's length count →
// ReasonTooLong, the gateway's routing → ReasonNoRoute, …).
func NewRefusal(r Reason, detail string) error { return refuse(r, detail) }

// NewRefusalZH is NewRefusal with the detail in Chinese too, for a
// refusal its sender may see in a console (Refusal.DetailZH).
func NewRefusalZH(r Reason, detail, zh string) error { return refuseZH(r, detail, zh) }

// Describe is how the outcome of a send appears to its sender (an HTTP
// answer, a batch row error): the refusal's reason, its command_status
// ("0x00000400") and its message with the detail. An error that is no
// refusal is reason "internal", ESME_RSYSERR, with the error's own text.
func Describe(err error) (reason, code, msg string) {
	var ref *Refusal
	if errors.As(err, &ref) && ref.Reason.Valid() {
		msg = ref.Reason.Message()
		if ref.Detail != "" {
			msg += ": " + ref.Detail
		}
		return ref.Reason.String(), fmt.Sprintf("0x%08x", ref.Status()), msg
	}
	return "internal", fmt.Sprintf("0x%08x", StatusSystemError), err.Error()
}

// Row reasons: a row of an uploaded file (batch and templated sends,
// address books, whitelist imports) refused before it became a submission
// or an entry — over HTTP only, in each import's per-row errors, never an
// SMPP answer. A row the gateway refuses carries that refusal's Reason
// instead, and an empty or invalid number is ReasonInvalidNumber's
// "invalid_number". This list is the only place they are defined.
const (
	RowEmptyText       = "empty_text"        // batch: column B (the text) is empty
	RowEmptyField      = "empty_field"       // templated send: a {column} of the template is empty
	RowNumberTruncated = "number_truncated"  // the number is in scientific notation that lost digits
	RowInvalidName     = "invalid_name"      // address book: the name is too long or not text
	RowInvalidGroup    = "invalid_group"     // address book: a group name is invalid, or too many groups
	RowContactsLimit   = "contacts_limit"    // address book: the book is full
	RowAlreadyListed   = "already_listed"    // whitelist: the number is already on it (or repeated in the input)
	RowWhitelistLimit  = "whitelist_limit"   // whitelist: the enterprise's whitelist is full (StoreOptions.MaxWhitelist)
	RowPendingLimit    = "pending_limit"     // whitelist: too many of its entries await approval (StoreOptions.MaxPendingWhitelist)
	RowOptedOut        = "already_opted_out" // opt-outs: the number is already on the list (or repeats an earlier row)
	RowOptOutLimit     = "optout_limit"      // opt-outs: the enterprise added the most numbers it may itself (StoreOptions.MaxOptOuts)
)

var rowReasons = []struct{ name, message, zh string }{
	{RowEmptyText, "empty text (column B of a batch file)", "短信内容为空"},
	{RowEmptyField, "a field of the template is empty in this row", "本行的模板字段为空"},
	{RowNumberTruncated, "the number is in scientific notation with digits missing (1.38001E+10): Excel cut it short; format the column as text and type the numbers again", "号码被Excel显示为科学计数法而缺少位数，请将该列设为文本格式后重新输入"},
	{RowInvalidName, "the contact's name is too long or invalid", "联系人姓名过长或无效"},
	{RowInvalidGroup, "a group name is too long or invalid, or the contact has too many groups", "分组名称过长或无效，或联系人分组过多"},
	{RowContactsLimit, "the address book is full", "通讯录已满"},
	{RowAlreadyListed, "the number is already on the whitelist (the detail says in which state) or repeats an earlier row", "号码已在白名单中或与前面的行重复"},
	{RowWhitelistLimit, "the enterprise's whitelist holds the most numbers it may, pending, approved and rejected together: remove numbers no longer needed first", "白名单号码已达上限（含待审批、已通过和已拒绝的号码），请先删除不再需要的号码"},
	{RowPendingLimit, "the most numbers an enterprise may have awaiting the account manager's approval: add more once some are decided", "待审批的号码已达上限，请待客户经理审批后再添加"},
	{RowOptedOut, "the number is already on the opt-out list (the detail says since when) or repeats an earlier row", "号码已在退订名单中或与前面的行重复"},
	{RowOptOutLimit, "the opt-out list holds the most numbers an enterprise may add itself: ask the account manager", "退订名单号码已达上限，请联系客户经理"},
}

// RowReasons returns the row reasons, each with its meaning.
func RowReasons() [][2]string {
	out := make([][2]string, len(rowReasons))
	for i, r := range rowReasons {
		out[i] = [2]string{r.name, r.message}
	}
	return out
}

// RowReasonZH returns the Chinese explanation of a row reason shown to
// enterprise users ("未知原因" for an unknown name), as Reason.MessageZH.
func RowReasonZH(name string) string {
	if zh, ok := LookupRowReasonZH(name); ok {
		return zh
	}
	return "未知原因"
}

// LookupRowReasonZH is RowReasonZH that tells whether name is a row reason.
func LookupRowReasonZH(name string) (string, bool) {
	for _, r := range rowReasons {
		if r.name == name {
			return r.zh, true
		}
	}
	return "", false
}

// TruncatedDetail is the message of a RowNumberTruncated row error for
// the cell value v.
func TruncatedDetail(v string) string {
	return fmt.Sprintf("%q is in scientific notation with digits missing: Excel cut the number short; format the column as text and type the numbers again", v)
}

// TruncatedDetailZH is TruncatedDetail in Chinese.
func TruncatedDetailZH(v string) string {
	return fmt.Sprintf("“%s”是科学计数法，缺了后面的数字：Excel 把号码截短了；请把这一列设为文本格式，再重新输入号码", v)
}
