package reminder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSeries holds every series: enterprise 0x00 id (8 BE) → JSON
// Reminder. The id comes from the bucket's sequence.
var bucketSeries = []byte("reminder_series")

// Errors of the reminders' store.
var (
	// ErrNotFound: no such reminder or occurrence for the caller (another
	// enterprise's, or another user's for a plain user, alike).
	ErrNotFound = errors.New("reminder: not found")
	// ErrSent: the occurrence's message is sent or being sent; it can no
	// longer be changed.
	ErrSent = errors.New("reminder: occurrence already sent")
	// ErrLimit: a user or an enterprise has as many series as it may
	// (Config.MaxPerUser, MaxPerEnterprise), or a series as many changed
	// or deleted occurrences (MaxExceptions). Its message says which.
	ErrLimit = errors.New("reminder: limit reached")
)

// Book names of Reminder.Book (as the address books of the user API).
const (
	BookPersonal   = "personal"
	BookEnterprise = "enterprise"
)

// Reminder is one series as stored.
type Reminder struct {
	ID         uint64    `json:"id"`
	Enterprise string    `json:"enterprise"`
	Account    string    `json:"account"` // the owner (system_id): the messages are its own
	Text       string    `json:"text"`
	To         []string  `json:"to,omitempty"`     // numbers
	Groups     []string  `json:"groups,omitempty"` // address-book groups, expanded when each occurrence is sent
	Book       string    `json:"book,omitempty"`   // personal (default) | enterprise
	Source     string    `json:"source,omitempty"` // sender extension
	Rule       Rule      `json:"rule"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// From: occurrences whose message was due earlier are none of this
	// series' (its creation, or the last change of its rule).
	From       time.Time            `json:"from"`
	Exceptions map[string]Exception `json:"exceptions,omitempty"` // by occurrence Date
	Occ        map[string]OccState  `json:"occ,omitempty"`        // by occurrence Date: what the scheduler did
}

// Exception is one occurrence changed or deleted by its owner.
type Exception struct {
	Deleted bool      `json:"deleted,omitempty"`
	At      time.Time `json:"at,omitzero"`    // the event moved (zero: as the rule says)
	Text    string    `json:"text,omitempty"` // "" = the series' text
}

// Occurrence states (OccState.State, and the listing's).
const (
	StatePending   = "pending"   // not yet handed to the gateway
	StateScheduled = "scheduled" // handed over: MessageIDs are in the outbox
	StateMissed    = "missed"    // due while the daemon was down, past the grace period
	StateRefused   = "refused"   // the gateway refused every recipient (Reason)
)

// OccState is what became of one occurrence.
type OccState struct {
	State  string    `json:"state"`
	SendAt time.Time `json:"send_at"`
	IDs    []uint64  `json:"ids,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// occKeep is how long an occurrence's record is kept after its send time.
const occKeep = 400 * 24 * time.Hour

func key(enterprise string, id uint64) []byte {
	k := make([]byte, 0, len(enterprise)+9)
	k = append(append(k, enterprise...), 0)
	return binary.BigEndian.AppendUint64(k, id)
}

func getTx(tx *bolt.Tx, enterprise string, id uint64) (*Reminder, error) {
	v := tx.Bucket(bucketSeries).Get(key(enterprise, id))
	if v == nil {
		return nil, fmt.Errorf("%w: reminder %d", ErrNotFound, id)
	}
	var r Reminder
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("reminder %d: %w", id, err)
	}
	return &r, nil
}

func putTx(tx *bolt.Tx, r *Reminder, now time.Time) error {
	r.prune(now)
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSeries).Put(key(r.Enterprise, r.ID), v)
}

// prune drops the records of occurrences and the exceptions older than
// occKeep.
func (r *Reminder) prune(now time.Time) {
	for d, o := range r.Occ {
		if o.SendAt.Before(now.Add(-occKeep)) {
			delete(r.Occ, d)
		}
	}
	for d := range r.Exceptions {
		if t, err := time.ParseInLocation(Date, d, Shanghai); err == nil && t.Before(now.Add(-occKeep)) {
			delete(r.Exceptions, d)
		}
	}
}

// each calls fn with every series of enterprise ("" = all), in key order.
func each(tx *bolt.Tx, enterprise string, fn func(*Reminder) error) error {
	return eachAs(tx, enterprise, fn)
}

// eachAs calls fn with every series of enterprise ("" = all), in key
// order, decoded as a T: a Reminder, or a part of one (head) whose
// decoding skips what it does not name.
func eachAs[T any](tx *bolt.Tx, enterprise string, fn func(*T) error) error {
	c := tx.Bucket(bucketSeries).Cursor()
	var prefix []byte
	if enterprise != "" {
		prefix = append([]byte(enterprise), 0)
	}
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("reminder %x: %w", k, err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

// countTx counts the series of enterprise, and those of its user account.
// Only the head of each stored series is read (ownerOf): a create past
// the limits costs no decoding of a thousand texts.
func countTx(tx *bolt.Tx, enterprise, account string) (ent, user int, err error) {
	prefix := append([]byte(enterprise), 0)
	c := tx.Bucket(bucketSeries).Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		ent++
		owner, err := ownerOf(v)
		if err != nil {
			return 0, 0, fmt.Errorf("reminder %x: %w", k, err)
		}
		if owner == account {
			user++
		}
	}
	return ent, user, nil
}

// ownerOf is the account of a stored series, read token by token up to
// its "account" field (the third that json.Marshal writes, after id and
// enterprise), so the rest of the value is not scanned.
func ownerOf(v []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	if _, err := dec.Token(); err != nil { // the opening brace
		return "", err
	}
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return "", err
		}
		if name == "account" {
			var a string
			err := dec.Decode(&a)
			return a, err
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", err
		}
	}
	return "", errors.New("no account")
}

func hasPrefix(k, p []byte) bool { return len(k) >= len(p) && string(k[:len(p)]) == string(p) }
