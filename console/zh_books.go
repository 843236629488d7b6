package console

import (
	"strings"

	"github.com/qxtd/qxtd/policy"
)

// The Chinese of the row reasons of address-book and whitelist imports
// (policy's row reasons), and the reminders' words. Kept beside the pages
// that show them; reasonZH finds them in reasonText.
func init() {
	funcs["national"] = national
	for k, v := range map[string]string{
		policy.RowInvalidName:     "姓名为空、过长或无效",
		policy.RowInvalidGroup:    "分组名称过长或无效，或分组过多",
		policy.RowContactsLimit:   "通讯录已满",
		policy.RowAlreadyListed:   "号码已在白名单中（或与前面的行重复）",
		policy.RowNumberTruncated: "号码被 Excel 显示为科学计数法，位数已丢失：请将该列设为文本格式后重新输入号码",
		policy.RowEmptyText:       "短信内容为空",
		policy.RowEmptyField:      "模板中的字段在此行为空",
	} {
		if _, ok := reasonText[k]; !ok {
			reasonText[k] = v
		}
	}
}

// whitelistStateZH is the Chinese of a whitelist entry's state.
func whitelistStateZH(st policy.WhitelistState) string {
	switch st {
	case policy.WhitelistPending:
		return "待审批"
	case policy.WhitelistApproved:
		return "已通过"
	case policy.WhitelistRejected:
		return "已拒绝"
	}
	return st.String()
}

// whitelistStateClass is the badge colour of a whitelist entry's state.
func whitelistStateClass(st policy.WhitelistState) string {
	switch st {
	case policy.WhitelistApproved:
		return "ok"
	case policy.WhitelistRejected:
		return "fail"
	}
	return "wait"
}

// national is a Chinese number without its +86 (as people write it).
func national(e164 string) string { return strings.TrimPrefix(e164, "+86") }
