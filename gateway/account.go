package gateway

import "github.com/qxtd/qxtd/policy"

// AccountFor is the gateway account of a policy user of ent: the same for
// an SMPP bind and an HTTP call (API key or console login), so a message
// is owned, billed and signed alike whatever the ingress.
func AccountFor(u *policy.User, ent *policy.Enterprise) *Account {
	return &Account{SystemID: u.SystemID, Enterprise: ent.Code, Signature: ent.Signature, UserSignature: userSignature(u),
		ReceiptURL: ent.Receipt.URL, ServiceNumber: ent.ServiceNumber, ExtLen: ent.ExtLen, Extension: u.Extension,
		LongReplies: u.LongReplies}
}

// userSignature is Account.UserSignature of u: its name after the
// separator where it is shown, else "".
func userSignature(u *policy.User) string {
	if u.ShowSignature {
		return policy.UserSignatureSeparator + u.Name
	}
	return ""
}
