package queue

import (
	"bufio"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ExportSkew is how far a message's AcceptedAt may lag behind id order
// (the store does not require AcceptedAt to grow with the id) and the
// export still be exact. Ids grow with commits; AcceptedAt is taken by the
// caller (the gateway: time.Now just before Enqueue) or by Enqueue, before
// the commit, so a message can get a higher id than one accepted slightly
// later: by the time it waited for its commit, or a backward step of the
// system clock. ExportParts starts its scan at the first id accepted
// ExportSkew before the window and stops at the first id accepted
// ExportSkew after it, filtering exactly on AcceptedAt in between; it is
// exact as long as, for any ids i < j, AcceptedAt(j) > AcceptedAt(i) -
// ExportSkew. The price is reading ExportSkew of traffic on each side of
// the window.
const ExportSkew = 15 * time.Minute

// Export chunking: each read-only transaction reads at most this many
// messages (or stops after a message that brings the chunk to this many
// rows). The rows are handed to the callback after the transaction has
// ended, so a slow consumer never holds a transaction open.
const (
	exportChunkMsgs = 1000
	exportChunkRows = 4096
)

// Row is one part (segment on the air) of one message, as exported for
// billing and reconciliation.
type Row struct {
	ID          uint64    // our message id (as returned in submit_sm_resp)
	Part        int       // 1-based part number, as in the concatenation header
	Parts       int       // parts of the message
	Enterprise  string    // billing owner (group code)
	Account     string    // user (SMPP system_id) that submitted it
	Source      string    // source address
	Dest        string    // destination number
	Upstream    string    // upstream the message was routed to; SMSC ids are unique per upstream
	SMSCID      string    // the SMSC's message id for this part ("" before submit_sm_resp)
	AcceptedAt  time.Time // accepted by qxtd (submit); decides the billing month
	SubmittedAt time.Time // accepted by the SMSC (zero if not yet)
	DoneAt      time.Time // final state reached (DLR done date or failure; zero while in flight)
	State       State
	ErrCode     string // SMSC error code (DLR err:, or submit_sm_resp status "0x%08x")
	Billed      bool   // State == StateDelivered: the part is billable
	// Segments is how many billable segments the part stands for: 1, or
	// more for a message_payload part the SMSC splits. A bill is the sum
	// of Segments over billed rows.
	Segments int64
}

// ExportParts calls fn with one Row per part of every message accepted in
// [from, to) — by AcceptedAt, the time the bill is by (a zero from means
// since the first message, a zero to means up to the last) — and, if
// enterprise is not "", of that enterprise only. Rows come in message id
// order, then part order, so a window exported twice gives the same rows
// as long as its messages do not change state (a message whose parts are
// all final never changes again).
//
// Memory is bounded: messages are read in chunks of at most 1000 messages
// (4096 rows) per read-only transaction, resuming with a cursor Seek on
// the next id; fn runs between transactions. Each chunk is a consistent
// snapshot; chunks are not consistent with one another, so during live
// traffic a message still in flight shows the state it had when its chunk
// was read, and parts that become final later show their final state in a
// later export. Messages Purge deleted are not exported (their delivered
// segments stay in Usage, see UsageByMonth).
//
// The start is found by binary search over ids (O(log n) point reads, no
// index to keep); see ExportSkew for why that is exact. If fn returns an
// error the export stops and returns it.
func (s *Store) ExportParts(from, to time.Time, enterprise string, fn func(Row) error) error {
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return fmt.Errorf("queue: export: %w: window ends (%v) before it starts (%v)", ErrInvalid, to, from)
	}
	var next uint64
	if !from.IsZero() {
		var err error
		if next, err = s.searchAccepted(from.Add(-ExportSkew)); err != nil {
			return fmt.Errorf("queue: export: %w", err)
		}
	}
	var stopAt time.Time
	if !to.IsZero() {
		stopAt = to.Add(ExportSkew)
	}
	var rows []Row // grows to one chunk at most: exportChunkRows + maxParts
	for {
		rows = rows[:0]
		done := false
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketMsg).Cursor()
			n := 0
			for k, v := c.Seek(msgKey(next)); k != nil; k, v = c.Next() {
				if n >= exportChunkMsgs || len(rows) >= exportChunkRows {
					return nil
				}
				if len(k) != 8 {
					return fmt.Errorf("%w: message key %x", ErrCorrupt, k)
				}
				id := binary.BigEndian.Uint64(k)
				m, err := DecodeMessage(v)
				if err != nil {
					return fmt.Errorf("message %d: %w", id, err)
				}
				n++
				next = id + 1
				if !stopAt.IsZero() && !m.AcceptedAt.Before(stopAt) {
					done = true // every later id was accepted at or after to (ExportSkew)
					return nil
				}
				if (from.IsZero() || !m.AcceptedAt.Before(from)) && (to.IsZero() || m.AcceptedAt.Before(to)) &&
					(enterprise == "" || m.Enterprise == enterprise) {
					rows = appendRows(rows, m)
				}
			}
			done = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("queue: export: %w", err)
		}
		for i := range rows {
			if err := fn(rows[i]); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

func appendRows(rows []Row, m *Message) []Row {
	for i := range m.Parts {
		rows = append(rows, partRow(m, i))
	}
	return rows
}

// partRow is the Row of part i of m.
func partRow(m *Message, i int) Row {
	p := &m.Parts[i]
	return Row{
		ID: m.ID, Part: i + 1, Parts: len(m.Parts),
		Enterprise: m.Enterprise, Account: m.Account, Source: m.Source, Dest: m.Dest,
		Upstream: m.Upstream, SMSCID: p.SMSCID,
		AcceptedAt: m.AcceptedAt, SubmittedAt: p.SubmittedAt, DoneAt: p.DoneAt,
		State: p.State, ErrCode: p.ErrCode, Billed: p.State == StateDelivered,
		Segments: m.PartWeight(),
	}
}

// searchAccepted returns an id such that every message with a lower id
// was accepted before t (given ExportSkew), by binary search over the id
// range with cursor seeks (ids of purged messages are skipped).
//
// Invariant: the first message at or after lo-1 was accepted before t (or
// lo is 1); no message at or after hi exists, or the first one was
// accepted at or after t.
func (s *Store) searchAccepted(t time.Time) (uint64, error) {
	var lo uint64
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsg)
		c := b.Cursor()
		lo = 1
		hi := b.Sequence() + 1
		for lo < hi {
			mid := lo + (hi-lo)/2
			k, v := c.Seek(msgKey(mid))
			if k == nil {
				hi = mid
				continue
			}
			m, err := DecodeMessage(v)
			if err != nil {
				return fmt.Errorf("message %x: %w", k, err)
			}
			if m.AcceptedAt.Before(t) {
				lo = max(mid, m.ID) + 1
			} else {
				hi = mid
			}
		}
		return nil
	})
	return lo, err
}

// EnterpriseUsage is one enterprise's segment counters for one billing
// month.
type EnterpriseUsage struct {
	Enterprise string
	Reserved   int64 // accepted, no final outcome yet
	Charged    int64 // delivered: billable
	// PurgedCharged is how many of Charged belong to messages Purge has
	// deleted: the export of the month lacks them. Charged (the bill) is
	// unchanged by retention.
	PurgedCharged int64
}

// UsageByMonth returns the counters of every enterprise with traffic in
// month ("2006-01", see BillingMonth), sorted by enterprise. Reserved and
// Charged come from the in-memory mirror (as Usage); PurgedCharged from a
// short read of the purged bucket.
func (s *Store) UsageByMonth(month string) ([]EnterpriseUsage, error) {
	suffix := "\x00" + month
	byEnt := make(map[string]*EnterpriseUsage)
	get := func(ent string) *EnterpriseUsage {
		u := byEnt[ent]
		if u == nil {
			u = &EnterpriseUsage{Enterprise: ent}
			byEnt[ent] = u
		}
		return u
	}
	s.memMu.RLock()
	for k, u := range s.usage {
		if ent, ok := strings.CutSuffix(k, suffix); ok && u != (usage{}) {
			e := get(ent)
			e.Reserved, e.Charged = u.Reserved, u.Charged
		}
	}
	s.memMu.RUnlock()
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPurged).ForEach(func(k, v []byte) error {
			ent, ok := strings.CutSuffix(string(k), suffix)
			if !ok {
				return nil
			}
			p, err := decodePurged(v)
			if err != nil {
				return fmt.Errorf("purged %q: %w", k, err)
			}
			if p.Delivered != 0 {
				get(ent).PurgedCharged = p.Delivered
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: usage by month: %w", err)
	}
	out := make([]EnterpriseUsage, 0, len(byEnt))
	for _, u := range byEnt {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b EnterpriseUsage) int { return strings.Compare(a.Enterprise, b.Enterprise) })
	return out, nil
}

// Export formats.
const (
	FormatCSV   = "csv"   // RFC 4180, header row, ExportColumns order
	FormatJSONL = "jsonl" // JSON Lines: one object per row, keys ExportColumns
)

// ExportColumns is the export's column set, in CSV column order; the JSON
// Lines keys are the same. The set and order are stable: columns may be
// added at the end, never removed, renamed or reordered.
var ExportColumns = []string{
	"id", "part", "parts", "enterprise", "account", "source", "dest", "upstream", "smsc_id",
	"accepted_at", "submitted_at", "done_at", "state", "err_code", "billed", "segments", "node",
}

// ExportTimeLayout is the export's time format: RFC 3339 with milliseconds
// in Asia/Shanghai ("2026-11-25T14:59:03.123+08:00"). A zero time is an
// empty CSV field and null in JSON Lines.
const ExportTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// RowWriter encodes rows as CSV or JSON Lines, buffered: call Flush at the
// end (and whenever the output should reach the reader).
type RowWriter struct {
	bw   *bufio.Writer
	csv  *csv.Writer
	json *json.Encoder
	rec  []string
}

// NewRowWriter returns a writer of format (FormatCSV or FormatJSONL) on w.
// A CSV writer writes its header row first (buffered).
func NewRowWriter(w io.Writer, format string) (*RowWriter, error) {
	rw := &RowWriter{bw: bufio.NewWriterSize(w, 64<<10)}
	switch format {
	case FormatCSV:
		rw.csv = csv.NewWriter(rw.bw)
		rw.rec = make([]string, len(ExportColumns))
		if err := rw.csv.Write(ExportColumns); err != nil {
			return nil, err
		}
	case FormatJSONL:
		rw.json = json.NewEncoder(rw.bw)
		rw.json.SetEscapeHTML(false)
	default:
		return nil, fmt.Errorf("%w: export format %q (want %s or %s)", ErrInvalid, format, FormatCSV, FormatJSONL)
	}
	return rw, nil
}

func exportTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(shanghai).Format(ExportTimeLayout)
}

func exportTimePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := exportTime(t)
	return &s
}

// jsonRow is a Row in JSON Lines; field order = ExportColumns.
type jsonRow struct {
	ID          uint64  `json:"id"`
	Part        int     `json:"part"`
	Parts       int     `json:"parts"`
	Enterprise  string  `json:"enterprise"`
	Account     string  `json:"account"`
	Source      string  `json:"source"`
	Dest        string  `json:"dest"`
	Upstream    string  `json:"upstream"`
	SMSCID      string  `json:"smsc_id"`
	AcceptedAt  *string `json:"accepted_at"`
	SubmittedAt *string `json:"submitted_at"`
	DoneAt      *string `json:"done_at"`
	State       string  `json:"state"`
	ErrCode     string  `json:"err_code"`
	Billed      bool    `json:"billed"`
	Segments    int64   `json:"segments"`
	Node        uint16  `json:"node"`
}

// Write encodes one row.
func (rw *RowWriter) Write(r Row) error {
	if rw.json != nil {
		return rw.json.Encode(jsonRow{
			ID: r.ID, Part: r.Part, Parts: r.Parts, Enterprise: r.Enterprise, Account: r.Account,
			Source: r.Source, Dest: r.Dest, Upstream: r.Upstream, SMSCID: r.SMSCID,
			AcceptedAt: exportTimePtr(r.AcceptedAt), SubmittedAt: exportTimePtr(r.SubmittedAt),
			DoneAt: exportTimePtr(r.DoneAt), State: r.State.String(), ErrCode: r.ErrCode, Billed: r.Billed,
			Segments: r.Segments, Node: NodeOf(r.ID),
		})
	}
	rec := rw.rec
	rec[0] = strconv.FormatUint(r.ID, 10)
	rec[1] = strconv.Itoa(r.Part)
	rec[2] = strconv.Itoa(r.Parts)
	rec[3] = r.Enterprise
	rec[4] = r.Account
	rec[5] = r.Source
	rec[6] = r.Dest
	rec[7] = r.Upstream
	rec[8] = r.SMSCID
	rec[9] = exportTime(r.AcceptedAt)
	rec[10] = exportTime(r.SubmittedAt)
	rec[11] = exportTime(r.DoneAt)
	rec[12] = r.State.String()
	rec[13] = r.ErrCode
	rec[14] = strconv.FormatBool(r.Billed)
	rec[15] = strconv.FormatInt(r.Segments, 10)
	rec[16] = strconv.FormatUint(uint64(NodeOf(r.ID)), 10)
	return rw.csv.Write(rec)
}

// Flush writes out everything buffered.
func (rw *RowWriter) Flush() error {
	if rw.csv != nil {
		rw.csv.Flush()
		if err := rw.csv.Error(); err != nil {
			return err
		}
	}
	return rw.bw.Flush()
}
