package console

import (
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/api"
)

// "为什么没有收到？" — the answer a message's detail page gives (FAQ 6, 17,
// 18): what its state means, what the SMSC's error code says, the common
// causes, and whether it is charged. The words are all here, in these
// tables; the page (templates/message.html) only shows them.

// whyAnswer is the explanation of one message's outcome.
type whyAnswer struct {
	Verdict string   // what the state means, in one or two sentences
	Code    string   // the error code and its meaning ("" = none)
	Causes  []string // the common causes to check (failures only)
	Charge  string   // whether it is charged
	Failed  bool     // a failed final state (接收失败 and the like)
	// OptedOut: the number opted out after the message was accepted,
	// and qxtd did not send it; the page links to the number's opt-out.
	OptedOut bool
	// Unlisted: the number left the enterprise's whitelist after the
	// message was accepted, and qxtd did not send it; the page links to
	// the whitelist.
	Unlisted bool
}

// stoppedWhy says why qxtd did not send a message it had accepted, by
// the error it was rejected with (gateway.Stops): the number opted out,
// left the whitelist, or is out of the scope since a grant was withdrawn,
// while the message waited (a scheduled one, a retry).
var stoppedWhy = map[string]string{
	"opted_out":       "未发出：对方在这条短信发出之前已退订（回复了 TD，或通过其他方式要求退订而被加入了退订名单），本平台按退订规定没有发出它。",
	"not_whitelisted": "未发出：这个号码在这条短信发出之前已从本企业的白名单中删除（或其白名单审批被客户经理改为拒绝），本平台按白名单规定没有发出它。",
	"scope_national":  "未发出：这条短信发出之前，运营方取消了本企业的全网发送权限，这个号码已不在发送范围内，本平台没有发出它。如需继续发送，请联系客户经理。",
	"scope_offnet":    "未发出：这条短信发出之前，运营方取消了本企业的外网发送权限，这个号码已不在发送范围内，本平台没有发出它。如需继续发送，请联系客户经理。",
}

// stateWhy says what each message state means to the person who sent it.
var stateWhy = map[string]string{
	"scheduled":     "定时待发：短信将在设定的发送时间发出；发出前可以在“定时发件箱”中修改或删除。",
	"accepted":      "等待发送：短信已保存，正在排队提交到短信中心。",
	"submitted":     "发送中：短信已提交到短信中心，正在等待对方手机的状态回执。对方手机关机或不在服务区时，短信中心会在有效期内继续尝试。",
	"delivered":     "接收成功：短信中心的回执表明对方手机已经收到这条短信。",
	"undeliverable": "接收失败：短信中心报告这条短信无法送达对方手机。",
	"expired":       "已过期：在有效期内没能送达，通常是对方手机长时间关机或不在服务区（信号覆盖范围外）。",
	"rejected":      "被拒绝：短信中心或本平台拒绝了这条短信，它没有发到对方手机。",
	"unknown":       "状态未知：在规定时间内没有收到短信中心的状态回执，无法确认对方是否收到。",
	"cancelled":     "已取消：这条定时短信在发送前被删除，没有发出。",
}

// partStateZH names a part's state (the API names the message's, state_zh).
var partStateZH = map[string]string{
	"accepted": "等待发送", "submitted": "已发送，等待回执", "delivered": "接收成功",
	"undeliverable": "接收失败", "expired": "已过期", "rejected": "被拒绝",
	"unknown": "状态未知", "cancelled": "已取消",
}

// codeWhy is the meaning of the error codes a message part can carry:
// submit_sm_resp statuses ("0x…", lower case), the delivery receipt's
// err: field, and the gateway's own codes. Others are shown as they are.
var codeWhy = map[string]string{
	// Delivery receipt err: codes.
	"000": "无错误",
	"001": "号码无法送达（空号、停机或手机异常）",
	"002": "有效期内未能送达（手机关机或不在服务区）",
	// submit_sm_resp command_status.
	"0x00000001": "短信长度无效",
	"0x00000008": "短信中心系统错误",
	"0x0000000a": "发送号码无效",
	"0x0000000b": "接收号码无效",
	"0x00000014": "短信中心队列已满（系统会自动重试）",
	"0x00000045": "短信中心拒绝提交",
	"0x00000058": "发送过快，被短信中心限流（系统会自动重试）",
	"0x00000061": "定时发送时间无效",
	"0x00000062": "有效期无效",
	// The gateway's own.
	"validity": "超过有效期仍未发出",
	"frame":    "短信内容无法按短信格式编码",
	"timeout":  "短信中心未及时应答（系统会自动重试）",
}

// failCauses are FAQ 6's common causes of a message not received.
var failCauses = []string{
	"对方手机内存已满，无法再存新短信；",
	"对方手机不在发送范围：关机、不在服务区，或号码不在本企业可发送的范围内（如外省、其他运营商）；",
	"对方手机异常：停机、欠费或故障；",
	"本账号没有向该号码发送的权限（如号码不在白名单中）；",
	"对方手机或号码屏蔽了短信（拦截软件、黑名单）。",
}

// codeZH is the Chinese of an error code: "001（号码无法送达…）", a policy
// refusal's text, or the code itself; "" for none.
func codeZH(code string) string {
	if code == "" {
		return ""
	}
	if w, ok := codeWhy[strings.ToLower(code)]; ok {
		return code + "（" + w + "）"
	}
	if w := reasonZH(code); w != "" {
		return code + "（" + w + "）"
	}
	return code
}

// whyFor explains message m's outcome.
func whyFor(m api.Message) whyAnswer {
	st := m.State
	if m.Scheduled {
		st = "scheduled"
	}
	a := whyAnswer{Verdict: stateWhy[st]}
	if a.Verdict == "" {
		a.Verdict = m.StateZH
	}
	switch st {
	case "delivered":
		a.Charge = "接收成功的短信按条收费：这条短信计 " + strconv.Itoa(m.Segments) + " 条。"
	case "undeliverable", "expired", "rejected", "unknown":
		a.Failed = true
		a.Causes = failCauses
		a.Charge = "发送失败或对方没有收到的短信不收费，只有接收成功的短信收费。"
	case "cancelled":
		a.Charge = "没有发出的短信不收费。"
	default:
		a.Charge = "只有接收成功的短信收费；若最终没有收到，不收费。"
	}
	if m.ErrorCode != "" {
		a.Code = "短信中心返回的错误码：" + codeZH(m.ErrorCode)
	}
	if m.Held == "account_disabled" {
		// Not sent while the operator has the enterprise disabled
		// (gateway.Disabling): it goes once enabled again.
		held := "企业账号已被停用：停用期间这条短信不会发出；账号恢复使用后继续发送（超过有效期的不再发出）。"
		if st == "scheduled" {
			a.Verdict += "但" + held
		} else {
			a.Verdict = "暂停发送：" + held
		}
		a.Code = "本平台的错误码：" + codeZH(m.Held)
		a.Charge = "没有发出的短信不收费；恢复发送后，只有接收成功的短信收费。"
	}
	if v, ok := stoppedWhy[m.ErrorCode]; ok && st == "rejected" {
		// Not the SMSC's, and none of FAQ 6's causes: a refused
		// submission is never stored, so this one was accepted, and
		// qxtd did not send it because a new message to its number
		// would have been refused when its turn came (gateway.Stops).
		a.Verdict, a.Code, a.Causes = v, "本平台的错误码："+codeZH(m.ErrorCode), nil
		a.Charge = "没有发出的短信不收费。"
		a.OptedOut, a.Unlisted = m.ErrorCode == "opted_out", m.ErrorCode == "not_whitelisted"
	}
	return a
}
