package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Service numbers (接入号): the source of an enterprise's messages and the
// address its replies come back to.

// MaxAddrLen is the longest source or destination address: SMPP 3.4's
// source_addr is a C-Octet String of at most 21 octets with its NUL.
const MaxAddrLen = 20

func validServiceNumber(e *Enterprise) error {
	if e.ServiceNumber == "" {
		if e.ExtLen != 0 {
			return invalidField("ext_len", "没有接入号时扩展位数须为 0", "enterprise %s: ext_len %d without a service number", e.Code, e.ExtLen)
		}
		return nil
	}
	if len(e.ServiceNumber) < 3 || len(e.ServiceNumber) > MaxAddrLen || !allDigits(e.ServiceNumber) {
		return invalidField("service_number", fmt.Sprintf("接入号须为 3–%d 位数字", MaxAddrLen), "enterprise %s: service number %q: 3–%d digits", e.Code, e.ServiceNumber, MaxAddrLen)
	}
	if e.ExtLen < 0 || len(e.ServiceNumber)+e.ExtLen > MaxAddrLen {
		return invalidField("ext_len", fmt.Sprintf("扩展位数须为 0–%d（接入号 %s 加扩展最多 %d 位）", MaxAddrLen-len(e.ServiceNumber), e.ServiceNumber, MaxAddrLen), "enterprise %s: ext_len %d: 0–%d with service number %s", e.Code, e.ExtLen, MaxAddrLen-len(e.ServiceNumber), e.ServiceNumber)
	}
	return nil
}

// serviceNumberTaken refuses a service number that equals or prefixes
// (or is prefixed by) another enterprise's: a reply's destination must
// name one enterprise. It reads the transaction (Seed writes several).
func serviceNumberTaken(tx *bolt.Tx, e *Enterprise) error {
	if e.ServiceNumber == "" {
		return nil
	}
	return tx.Bucket(bucketEnterprises).ForEach(func(k, v []byte) error {
		if string(k) == e.Code {
			return nil
		}
		var o Enterprise
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		if o.ServiceNumber != "" && (strings.HasPrefix(o.ServiceNumber, e.ServiceNumber) || strings.HasPrefix(e.ServiceNumber, o.ServiceNumber)) {
			return fmt.Errorf("%w: service number %s overlaps enterprise %s's %s", ErrExists, e.ServiceNumber, o.Code, o.ServiceNumber)
		}
		return nil
	})
}

// extensionsFit refuses an enterprise change that leaves a user's
// extension longer than ExtLen.
func extensionsFit(tx *bolt.Tx, e *Enterprise) error {
	return tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		if u.Enterprise == e.Code && u.Extension != "" && (e.ServiceNumber == "" || len(u.Extension) > e.ExtLen) {
			return invalidField("ext_len", fmt.Sprintf("用户 %s 的分机号 %s 将放不下（扩展位数 %d 或没有接入号）：请先改该用户的分机号", u.SystemID, u.Extension, e.ExtLen), "enterprise %s: user %s has extension %s: ext_len %d or no service number leaves it out", e.Code, u.SystemID, u.Extension, e.ExtLen)
		}
		return nil
	})
}

// extensionTaken checks a user's extension against its enterprise (digits,
// at most ExtLen, a service number to extend) and its other users (unique).
func extensionTaken(tx *bolt.Tx, u *User) error {
	if u.Extension == "" {
		return nil
	}
	e, err := loadEnterprise(tx, u.Enterprise)
	if err != nil || e == nil {
		return err
	}
	if !allDigits(u.Extension) || e.ServiceNumber == "" || len(u.Extension) > e.ExtLen {
		return invalidField("extension", fmt.Sprintf("分机号须为数字，最多 %d 位（企业的扩展位数），且企业须有接入号", e.ExtLen), "user %s: extension %q: digits, at most the enterprise's ext_len (%d), and a service number to extend", u.SystemID, u.Extension, e.ExtLen)
	}
	return tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error {
		var o User
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		if o.Enterprise == u.Enterprise && o.Extension == u.Extension && o.SystemID != u.SystemID {
			return fmt.Errorf("%w: extension %s in enterprise %s (user %s)", ErrExists, u.Extension, u.Enterprise, o.SystemID)
		}
		return nil
	})
}

// Source returns the source address a message of this enterprise goes out
// with, given the source the client asked for (SMPP source_addr, HTTP
// "source") and the sending user's extension:
//
//   - an enterprise without a service number: given, unchanged (relayed
//     as before service numbers existed);
//   - an empty given: the service number plus the user's extension;
//   - the service number followed by at most ExtLen digits: given;
//   - anything else: a bad_source refusal.
func Source(serviceNumber string, extLen int, userExt, given string) (string, error) {
	if serviceNumber == "" {
		return given, nil
	}
	g := strings.TrimSpace(given)
	if g == "" {
		return serviceNumber + userExt, nil
	}
	ext, ok := strings.CutPrefix(g, serviceNumber)
	if !ok || len(ext) > extLen || !allDigits(ext) {
		return "", refuseZH(ReasonBadSource, fmt.Sprintf("source %q: want %s plus at most %d digits", given, serviceNumber, extLen),
			fmt.Sprintf("发送号码“%s”：应为接入号 %s 加至多 %d 位扩展号", given, serviceNumber, extLen))
	}
	return g, nil
}

// ReplyOwner is whom a mobile-originated message belongs to: the
// enterprise whose service number its destination starts with, the
// extension after it, and the user with that extension ("" if none).
type ReplyOwner struct {
	Enterprise string
	Extension  string
	SystemID   string
	ReplyURL   string // the enterprise's reply webhook ("" = none): ReceiptHook.ReplyURL
}

// ReplyTo finds the owner of a reply sent to dest (service number plus
// extension; "86" / "+86" in front is ignored), from memory. An extension
// longer than the enterprise's ExtLen still belongs to the enterprise
// (the carrier passes through what the handset dialled), to no user.
func (s *Store) ReplyTo(dest string) (ReplyOwner, bool) {
	snap := s.snap.Load()
	d := strings.TrimSpace(dest)
	for _, cand := range []string{d, strings.TrimPrefix(strings.TrimPrefix(d, "+"), "86")} {
		for n := min(len(cand), MaxAddrLen); n >= 3; n-- {
			code, ok := snap.bySvc[cand[:n]]
			if !ok {
				continue
			}
			o := ReplyOwner{Enterprise: code, Extension: cand[n:], ReplyURL: snap.ents[code].ent.Receipt.ReplyURL}
			if u := snap.byExt[code][o.Extension]; u != nil && o.Extension != "" {
				o.SystemID = u.SystemID
			}
			return o, true
		}
	}
	return ReplyOwner{}, false
}

// indexServiceNumbers maps every service number to its enterprise.
func indexServiceNumbers(snap *snapshot) {
	snap.bySvc = make(map[string]string, len(snap.ents))
	for code, es := range snap.ents {
		if es.ent.ServiceNumber != "" {
			snap.bySvc[es.ent.ServiceNumber] = code
		}
	}
}
