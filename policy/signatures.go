package policy

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Signature change requests (FAQ 7): an enterprise has exactly one
// signature; its admin asks for another one, and the account manager
// approves or rejects the request. Until approval the old signature stays
// in force; the approval sets it in the same transaction.

// Signature request states.
const (
	SignaturePending    = "pending"
	SignatureApproved   = "approved"
	SignatureRejected   = "rejected"
	SignatureSuperseded = "superseded" // replaced by a newer request of the enterprise before a decision
)

// SignatureRequest is one request to change an enterprise's signature.
type SignatureRequest struct {
	ID          string    `json:"id"` // decimal, unique in the store
	Enterprise  string    `json:"enterprise"`
	Signature   string    `json:"signature"` // the requested one, "【…】"
	Previous    string    `json:"previous"`  // the signature in force when it was requested
	State       string    `json:"state"`
	Reason      string    `json:"reason,omitempty"` // why it was rejected
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	DecidedBy   string    `json:"decided_by,omitempty"`
	DecidedAt   time.Time `json:"decided_at,omitzero"`
}

var bucketSignatures = []byte("policy_signatures") // big-endian uint64 id → JSON SignatureRequest

// MaxSignatureRequests is how many requests an enterprise keeps, the
// latest: an older one is deleted as a new one is made (it is decided by
// then: a new request supersedes a pending one).
const MaxSignatureRequests = 100

func sigKey(id string) ([]byte, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
		return nil, false
	}
	return binary.BigEndian.AppendUint64(nil, n), true
}

// RequestSignature records a request to change the enterprise's signature
// (its admins, or the operator). The signature is validated as the operator's
// are (ValidSignature: 【…】 and its length); the one in force, or empty, is
// invalid. A pending request of the enterprise becomes superseded.
func (s *Store) RequestSignature(a Actor, code, sig string) (*SignatureRequest, error) {
	if !a.admin(code) {
		return nil, ErrForbidden
	}
	if sig == "" {
		return nil, invalidField("signature", "请填写签名，例如【某某公司】", "signature: required, e.g. 【某某公司】")
	}
	if err := ValidSignature(sig); err != nil {
		return nil, err
	}
	req := SignatureRequest{Enterprise: code, Signature: sig, State: SignaturePending,
		RequestedBy: a.who(), RequestedAt: s.now()}
	err := s.update(func(tx *bolt.Tx, _ *change) error {
		e, err := loadEnterprise(tx, code)
		if err != nil {
			return err
		}
		if e == nil {
			return fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
		}
		if e.Signature == sig {
			return invalidField("signature", sig+" 已是企业的签名", "signature %s is already the enterprise's", sig)
		}
		req.Previous = e.Signature
		b := tx.Bucket(bucketSignatures)
		c := b.Cursor()
		var kept [][]byte // the enterprise's requests, oldest first
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var old SignatureRequest
			if err := json.Unmarshal(v, &old); err != nil {
				return err
			}
			if old.Enterprise != code {
				continue
			}
			kept = append(kept, slices.Clone(k))
			if old.State == SignaturePending {
				old.State, old.DecidedBy, old.DecidedAt = SignatureSuperseded, a.who(), req.RequestedAt
				if err := putJSON(b, string(k), &old); err != nil {
					return err
				}
			}
		}
		// Each enterprise keeps its latest MaxSignatureRequests: every
		// request is read by the next one's scan, in the write
		// transaction the message store shares, and by the listing, so
		// an admin asking again and again would slow both for everyone
		// (10,000 requests: 60 ms each new one, a 2.2 MB listing).
		for _, k := range kept[:max(0, len(kept)+1-MaxSignatureRequests)] {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		req.ID = strconv.FormatUint(n, 10)
		return putJSON(b, string(binary.BigEndian.AppendUint64(nil, n)), &req)
	})
	if err != nil {
		return nil, err
	}
	return &req, nil
}

// SignatureRequests lists requests, newest first: for the operator of every
// enterprise it serves (code "") or of one, for an enterprise's members of
// their own;
// state "" lists every state.
func (s *Store) SignatureRequests(a Actor, code, state string) ([]SignatureRequest, error) {
	if code == "" && !a.Operator || code != "" && !a.member(code) {
		return nil, ErrForbidden
	}
	switch state {
	case "", SignaturePending, SignatureApproved, SignatureRejected, SignatureSuperseded:
	default:
		return nil, invalidField("state", "状态须为 pending（待审批）、approved（已通过）、rejected（已拒绝）或 superseded（已被新申请取代）", "state %q: pending, approved, rejected or superseded", state)
	}
	out := []SignatureRequest{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSignatures).ForEach(func(_, v []byte) error {
			var r SignatureRequest
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if (code == "" && a.member(r.Enterprise) || r.Enterprise == code) && (state == "" || r.State == state) {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, dbErr(err)
	}
	slices.Reverse(out)
	return out, nil
}

// DecideSignature approves (setting the enterprise's signature in the same
// transaction) or rejects, with a reason, a pending request (its
// enterprise's operator only).
// A request that is not pending is ErrInvalid.
func (s *Store) DecideSignature(a Actor, id string, approve bool, reason string) (*SignatureRequest, error) {
	if !a.Operator {
		return nil, ErrForbidden
	}
	if !approve {
		if err := validText(reasonField, reason, 1, 200); err != nil {
			return nil, err
		}
	}
	key, ok := sigKey(id)
	if !ok {
		return nil, fmt.Errorf("%w: signature request %q", ErrNotFound, id)
	}
	var out SignatureRequest
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketSignatures)
		v := b.Get(key)
		if v == nil {
			return fmt.Errorf("%w: signature request %s", ErrNotFound, id)
		}
		if err := json.Unmarshal(v, &out); err != nil {
			return err
		}
		if !a.Serves(out.Enterprise) {
			return fmt.Errorf("%w: enterprise %s", ErrForbidden, out.Enterprise)
		}
		if out.State != SignaturePending {
			return invalidField("", "该签名申请已处理（"+signatureStateZH[out.State]+"），不再待审批", "signature request %s is %s, not pending", id, out.State)
		}
		out.DecidedBy, out.DecidedAt = a.who(), s.now()
		if approve {
			e, err := loadEnterprise(tx, out.Enterprise)
			if err != nil {
				return err
			}
			if e == nil {
				return fmt.Errorf("%w: enterprise %s", ErrNotFound, out.Enterprise)
			}
			e.Signature, e.UpdatedAt = out.Signature, out.DecidedAt
			if err := putJSON(tx.Bucket(bucketEnterprises), e.Code, e); err != nil {
				return err
			}
			ch.ents = append(ch.ents, e.Code)
			out.State = SignatureApproved
		} else {
			out.State, out.Reason = SignatureRejected, reason
		}
		return putJSON(b, string(key), &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// signatureStateZH names a signature request's state in Chinese.
var signatureStateZH = map[string]string{
	SignaturePending: "待审批", SignatureApproved: "已通过", SignatureRejected: "已拒绝", SignatureSuperseded: "已被新的申请取代",
}
