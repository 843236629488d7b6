package console

import (
	"strings"

	"github.com/qxtd/qxtd/policy"
)

// Template helpers of the books pages.
func init() { funcs["national"] = national }

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
