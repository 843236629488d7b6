package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // billing months follow Asia/Shanghai; minimal machines have no zoneinfo
)

// Bucket names. The layout is described in doc.go.
var (
	bucketMsg   = []byte("msg")
	bucketDue   = []byte("due")
	bucketUDue  = []byte("udue")  // the due keys again, per upstream and enterprise (fair dispatch)
	bucketUPDue = []byte("updue") // the upstream due keys again, of messages sent with priority
	// The per-enterprise due keys of files from before the upstream ones
	// (their keys lacked the upstream): Open builds udue and updue in
	// their place and deletes them.
	legacyEDue, legacyPDue = []byte("edue"), []byte("pdue")
	bucketWait             = []byte("wait")
	bucketSMSC             = []byte("smsc")
	bucketOrphan           = []byte("orphan")
	bucketDLROut           = []byte("dlrout")
	bucketRef              = []byte("ref")
	bucketUsage            = []byte("usage")
	bucketPurged           = []byte("purged") // retention.go
	// Messages the client split itself (fragments.go).
	bucketFrag   = []byte("frag")   // parts waiting for the rest of their message
	bucketFragID = []byte("fragid") // part id → its frag key
	bucketFragN  = []byte("fragn")  // pending groups and bytes, per account and in all
	bucketAlias  = []byte("alias")  // part id → id of the message it was reassembled into
	bucketHook   = []byte("hook")   // receipt webhooks to POST (hooks.go)
	// Each enterprise's last receipt webhook POSTs (hookposts.go).
	bucketHookPost = []byte("hookpost")
	// Parts in the order they became final (final.go).
	bucketFinal     = []byte("final")     // seq → part
	bucketFinalPart = []byte("finalpart") // part → seq

	allBuckets = [][]byte{bucketMsg, bucketDue, bucketUDue, bucketUPDue, bucketWait, bucketSMSC, bucketOrphan, bucketDLROut, bucketRef, bucketUsage, bucketPurged,
		bucketFrag, bucketFragID, bucketFragN, bucketAlias, bucketHook, bucketFinal, bucketFinalPart, bucketHookPost}
)

const (
	sep        = 0x00 // separates a variable-length prefix from the rest of a key
	timeKeyLen = 8 + 8 + 2
	maxField   = 255  // longest Account, Enterprise, Upstream, Dest accepted
	maxSMSCID  = 1024 // longest canonical SMSC id indexed (SMPP allows 65 octets)
)

func msgKey(id uint64) []byte { return appendMsgKey(make([]byte, 0, 8), id) }

func appendMsgKey(b []byte, id uint64) []byte { return binary.BigEndian.AppendUint64(b, id) }

// timeKey is the key of the due and wait buckets: time (Unix ns, big
// endian, clamped at 0) | id | part, so key order is time order.
func timeKey(t time.Time, k Key) []byte { return appendTimeKey(make([]byte, 0, timeKeyLen), t, k) }

func appendTimeKey(b []byte, t time.Time, k Key) []byte {
	n := max(timeNanos(t), 0)
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	b = binary.BigEndian.AppendUint64(b, k.ID)
	return binary.BigEndian.AppendUint16(b, k.Part)
}

func parseTimeKey(b []byte) (int64, Key, bool) {
	if len(b) != timeKeyLen {
		return 0, Key{}, false
	}
	return int64(binary.BigEndian.Uint64(b)), Key{binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint16(b[16:])}, true
}

func partRef(k Key) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 10), k.ID)
	return binary.BigEndian.AppendUint16(b, k.Part)
}

func parsePartRef(b []byte) (Key, bool) {
	if len(b) != 10 {
		return Key{}, false
	}
	return Key{binary.BigEndian.Uint64(b), binary.BigEndian.Uint16(b[8:])}, true
}

// prefixKey is prefix | 0x00 | rest.
func prefixKey(prefix string, rest []byte) []byte {
	return append(appendPrefix(make([]byte, 0, len(prefix)+1+len(rest)), prefix), rest...)
}

// appendPrefix appends the prefix | 0x00 that a prefixKey starts with.
func appendPrefix(b []byte, prefix string) []byte { return append(append(b, prefix...), sep) }

// The keys below are each laid out once, by an append form: the
// transaction builds the hot ones in its buffers (txn.msgKey and the
// others), everything else in a slice of their own.

func smscKey(upstream, canon string) []byte {
	return appendSMSCKey(make([]byte, 0, len(upstream)+1+len(canon)), upstream, canon)
}

func appendSMSCKey(b []byte, upstream, canon string) []byte {
	return append(appendPrefix(b, upstream), canon...)
}

func udueKey(upstream, enterprise string, at time.Time, k Key) []byte {
	return appendUdueKey(make([]byte, 0, len(upstream)+1+len(enterprise)+1+timeKeyLen), upstream, enterprise, at, k)
}

func appendUdueKey(b []byte, upstream, enterprise string, at time.Time, k Key) []byte {
	return appendTimeKey(appendPrefix(appendPrefix(b, upstream), enterprise), at, k)
}

// splitUdueKey is the upstream, enterprise, due time and part of an
// upstream due key; ok is false for one that is malformed.
func splitUdueKey(kb []byte) (upstream, enterprise []byte, ts int64, k Key, ok bool) {
	i := bytes.IndexByte(kb, sep)
	if i < 0 {
		return nil, nil, 0, Key{}, false
	}
	j := bytes.IndexByte(kb[i+1:], sep)
	if j < 0 {
		return nil, nil, 0, Key{}, false
	}
	ts, k, ok = parseTimeKey(kb[i+1+j+1:])
	return kb[:i], kb[i+1 : i+1+j], ts, k, ok
}

func dlroutKey(account string, id uint64) []byte {
	return appendDLROutKey(make([]byte, 0, len(account)+1+8), account, id)
}

func appendDLROutKey(b []byte, account string, id uint64) []byte {
	return appendMsgKey(appendPrefix(b, account), id)
}

func usageKey(enterprise, month string) string { return enterprise + "\x00" + month }

var shanghai = loadShanghai()

func loadShanghai() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*3600) // no DST since 1991: the same offsets
}

// BillingMonth is the month, in Asia/Shanghai, that t is billed in, as
// "2006-01". Usage is keyed by the BillingMonth of a message's AcceptedAt.
func BillingMonth(t time.Time) string { return t.In(shanghai).Format("2006-01") }

// CanonicalSMSCID normalises an SMSC message id for matching: surrounding
// white space and NULs trimmed, lowercased, leading zeros stripped ("0" when
// the id is all zeros). It returns "" for an empty id.
func CanonicalSMSCID(id string) string {
	id = strings.ToLower(strings.Trim(id, " \t\r\n\x00"))
	if id == "" {
		return ""
	}
	t := strings.TrimLeft(id, "0")
	if t == "" {
		return "0"
	}
	return t
}

// smscCandidates lists the canonical forms an id may be stored under, most
// specific first: the canonical id itself; if it is all decimal digits, the
// hex form of its value; if it is all hex digits, the decimal form of its
// value. SMSCs disagree on hex vs decimal between submit_sm_resp and the
// DLR; the exact form always wins over a conversion (see doc.go).
func smscCandidates(id string) []string {
	c := CanonicalSMSCID(id)
	if c == "" {
		return nil
	}
	out := []string{c}
	dec, hex := true, true
	for i := 0; i < len(c); i++ {
		switch ch := c[i]; {
		case ch >= '0' && ch <= '9':
		case ch >= 'a' && ch <= 'f':
			dec = false
		default:
			dec, hex = false, false
		}
	}
	// Ids that fit in 64 bits (nearly all) convert without big.Int's
	// allocations: this runs for every receipt and every acceptance.
	if dec {
		if u, err := strconv.ParseUint(c, 10, 64); err == nil {
			out = appendNew(out, strconv.FormatUint(u, 16))
		} else if v, ok := new(big.Int).SetString(c, 10); ok {
			out = appendNew(out, v.Text(16))
		}
	}
	if hex {
		if u, err := strconv.ParseUint(c, 16, 64); err == nil {
			out = appendNew(out, strconv.FormatUint(u, 10))
		} else if v, ok := new(big.Int).SetString(c, 16); ok {
			out = appendNew(out, v.Text(10))
		}
	}
	return out
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// keyField is a string that becomes part of a key, named for errors.
type keyField struct {
	name, v  string
	required bool // must not be empty
}

// checkKeyFields refuses key fields that are too long, contain the key
// separator, or are required and empty.
func checkKeyFields(fields ...keyField) error {
	for _, f := range fields {
		if len(f.v) > maxField {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, f.name, maxField)
		}
		if strings.IndexByte(f.v, sep) >= 0 {
			return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, f.name)
		}
		if f.required && f.v == "" {
			return fmt.Errorf("%w: %s is required", ErrInvalid, f.name)
		}
	}
	return nil
}
