package gateway

import "github.com/qxtd/qxtd/policy"

// AccountFor is the gateway account of a policy user of ent: the same for
// an SMPP bind and an HTTP call (API key or console login), so a message
// is owned, billed and signed alike whatever the ingress.
func AccountFor(u *policy.User, ent *policy.Enterprise) *Account {
	a := &Account{SystemID: u.SystemID, Enterprise: ent.Code, Signature: ent.Signature, ReceiptURL: ent.Receipt.URL,
		ServiceNumber: ent.ServiceNumber, ExtLen: ent.ExtLen, Extension: u.Extension, LongReplies: u.LongReplies}
	if u.ShowSignature {
		a.UserSignature = policy.UserSignatureSeparator + u.Name
	}
	return a
}
