package gateway

import (
	"errors"
	"fmt"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// quotaRefusal is the quota_exceeded refusal of err (a queue.ErrQuota)
// under the enterprise's monthly limit, with what the sender needs to
// know in its detail: the month's limit, what is left of it and what the
// message needs ("本月可发 1000 条，剩余 12 条，本条需 15 条"). The
// figures are those the store refused on (queue.QuotaError), so an
// answer rendered in the commit and the one returned say the same. In a
// cluster the store checked this node's claim, not the enterprise's
// whole month, so what is left is not told there.
func (g *Gateway) quotaRefusal(err error, limit int64) error {
	var qe *queue.QuotaError
	if !errors.As(err, &qe) || limit < 0 {
		return policy.NewRefusal(policy.ReasonQuotaExceeded, "")
	}
	left := max(limit-qe.Reserved-qe.Charged, 0)
	switch {
	case qe.Need == 0: // known used up before the message was whole (a split message's part)
		return policy.NewRefusalZH(policy.ReasonQuotaExceeded,
			fmt.Sprintf("%d segments this month, none left", limit),
			fmt.Sprintf("本月可发 %d 条，已用完", limit))
	case g.cfg.Cluster != nil:
		return policy.NewRefusalZH(policy.ReasonQuotaExceeded,
			fmt.Sprintf("%d segments this month, not enough left for the %d this message needs", limit, qe.Need),
			fmt.Sprintf("本月可发 %d 条，剩余不足本条所需的 %d 条", limit, qe.Need))
	case qe.More:
		return policy.NewRefusalZH(policy.ReasonQuotaExceeded,
			fmt.Sprintf("%d segments this month, %d left; the new text needs %d more", limit, left, qe.Need),
			fmt.Sprintf("本月可发 %d 条，剩余 %d 条，改后的内容多需 %d 条", limit, left, qe.Need))
	}
	return policy.NewRefusalZH(policy.ReasonQuotaExceeded,
		fmt.Sprintf("%d segments this month, %d left; the message needs %d", limit, left, qe.Need),
		fmt.Sprintf("本月可发 %d 条，剩余 %d 条，本条需 %d 条", limit, left, qe.Need))
}
