package console

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The console speaks Chinese. A refusal of the operator's rules or the
// gateway's, and a refused row of an upload, has its Chinese text in
// policy's reason tables (the one vocabulary); the API's other error
// reasons are named here.

// reasonText is the Chinese of the API's error reasons that are not
// refusals (api/errors.go and the handlers).
var reasonText = map[string]string{
	"invalid":                "输入有误",
	"not_found":              "未找到：记录不存在，或不属于您的企业",
	"forbidden":              "无权执行此操作",
	"exists":                 "已存在",
	"unauthorized":           "用户名或密码错误",
	"wrong_password":         "原密码错误",
	"invalid_password":       "密码须为 6–8 位字母、数字或英文符号，不能有空格或中文",
	"notifier_unavailable":   "系统暂不能发送短信，无法在线重置密码，请联系客户经理",
	"too_large":              "文件或内容太大",
	"unsupported_media_type": "不支持的文件格式，请上传 CSV 或 XLSX 文件",
	"too_many_jobs":          "同时进行的发送任务过多，请稍后再试",
	"too_many_uploads":       "待处理的上传文件过多，请先发送或删除已上传的文件",
	"too_many_requests":      "操作太频繁，请稍后再试",
	"not_scheduled":          "短信已发出，不能再修改或删除",
	"reminders_limit":        "日程提醒已达上限，请先删除不再需要的提醒",
	"finished":               "任务已结束",
	"file_limit":             "超出上限",
	"busy":                   "系统繁忙，请稍后再试",
	"already_decided":        "已审批过",
	"unknown_field":          "模板中的字段在文件中不存在",
	"unavailable":            "服务暂不可用",
	// A send form posted again (its once value) with other content, and
	// one posted again while the first post still runs on another node.
	"idempotency_key_reused": "这份表单已经提交过，这次的内容（文件、号码或内容）与第一次不同，所以没有发送；请核对后重新提交",
	"in_progress":            "这份表单刚刚提交过，仍在处理中，请稍后在发送记录中查看结果",
	"internal":               "系统内部错误，请稍后再试或联系客户经理",
	// Why a batch job ended failed (batch, api).
	"shutdown":     "系统正在重启，任务将在重启后从中断处继续发送",
	"account_gone": "任务所属的用户或企业已停用或删除，其余未发送的行不再发送",
	"file_gone":    "系统重启后无法再读取上传的文件，其余未发送的行没有发送",
}

// reasonZH is the Chinese text of an API reason string ("" if unknown).
func reasonZH(reason string) string {
	if r, ok := policy.ParseReason(reason); ok {
		return r.MessageZH()
	}
	if zh, ok := policy.LookupRowReasonZH(reason); ok {
		return zh
	}
	return reasonText[reason]
}

// noDetail are the reasons whose Chinese says all the API's English
// message does.
var noDetail = []string{"unauthorized", "not_found", "idempotency_key_reused", "in_progress"}

// zhError is the Chinese text of an error of an API call, with the API's
// own detail after it where it says more (a limit, the field, the number).
func zhError(err error) string {
	var ae *api.APIError
	if !errors.As(err, &ae) {
		return "系统内部错误，请稍后再试"
	}
	zh := reasonZH(ae.Reason)
	switch {
	case zh == "" && ae.Status == http.StatusTooManyRequests:
		zh = reasonText["too_many_requests"]
	case zh == "":
		zh = reasonText["internal"]
		if ae.Status < 500 {
			zh = reasonText["invalid"]
		}
	}
	if d := refusalDetail(ae.Reason, ae.Message, ae.DetailZH); d != "" && !slices.Contains(noDetail, ae.Reason) {
		return zh + "（" + d + "）"
	}
	return zh
}

// refusalDetail is what a console shows after a refusal's Chinese reason:
// the API's Chinese detail (detail_zh), else the English detail beyond
// the reason's own English message (a number, a limit), never the reason
// said again in English ("已超出本月套餐或消费上限（monthly package or
// spending cap exhausted）").
func refusalDetail(reason, msg, zh string) string {
	if zh != "" {
		return zh
	}
	d := detail(msg)
	if r, ok := policy.ParseReason(reason); ok {
		d = strings.TrimPrefix(d, r.String()+": ")
		if rest, cut := strings.CutPrefix(d, r.Message()); cut {
			d = strings.TrimPrefix(rest, ": ")
		}
	}
	return d
}

// detail is the part of an API message that says more than its reason:
// the number, the limit, the field — without the Go error's package and
// category prefixes ("policy: invalid: signature …" → "signature …").
func detail(msg string) string {
	for {
		rest, ok := "", false
		for _, p := range []string{"policy: ", "queue: ", "gateway: ", "segment: ", "batch: ", "invalid: ", "invalid argument: "} {
			if r, cut := strings.CutPrefix(msg, p); cut {
				rest, ok = r, true
				break
			}
		}
		if !ok {
			msg = strings.TrimSpace(msg)
			if msg == "invalid" || msg == "invalid argument" {
				return "" // the reason says it already
			}
			return msg
		}
		msg = rest
	}
}

// stateClass is the colour class of a message state in lists: ok
// (接收成功), fail (接收失败 and the other final failures), wait (发送中).
func stateClass(state string) string {
	switch state {
	case "delivered":
		return "ok"
	case "undeliverable", "expired", "rejected", "unknown":
		return "fail"
	case "cancelled":
		return "muted"
	default:
		return "wait"
	}
}

// actorZH is who added or decided a whitelist entry, as the pages show
// it: the admin token's own name and the configuration's seeding in
// Chinese; a user's system_id and an account manager's name as they are.
func actorZH(name string) string {
	switch name {
	case api.OperatorName:
		return "客户经理"
	case policy.SeedActor:
		return "开户导入"
	}
	return name
}
