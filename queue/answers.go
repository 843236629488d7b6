package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Kept answers: what an HTTP send answered, kept under the client's
// Idempotency-Key so that a retry after a lost answer gets the first
// answer back instead of sending again — also after a restart or a crash,
// which is when answers get lost. Package api decides what a key is, how
// long an answer is kept and how many are; here they are only stored:
//
//	idem    key (api's: enterprise, user, route, the client's key) → version | at | enterprise | code | sum | header | body
//
// A send's answer is written in the transaction that stores its messages
// (WithAnswer: the caller renders it there, once the ids and the quota's
// outcomes are known), so a crash leaves both or neither: a retry never
// sends again what was stored. Other answers (a refusal, nothing stored)
// are saved on their own (SaveAnswer) before the client hears them.
// Nothing else can make a key that was answered be forgotten before api
// drops it.

var bucketIdem = []byte("idem")

const answerVersion = 1

// MaxAnswerKey bounds a kept answer's key (api's keys are at most some
// 900 bytes: a 128-byte client key, a system id, a route, an enterprise).
const MaxAnswerKey = 2048

// MaxAnswerSum bounds an answer's Sum.
const MaxAnswerSum = 64

// Answer is one kept answer.
type Answer struct {
	Key        string
	Enterprise string    // whose share of the kept answers it counts in
	At         time.Time // when its request came
	Code       int       // HTTP status
	// Sum is the request's fingerprint (api's: a hash of its body, at
	// most MaxAnswerSum bytes), so that a key used again for another
	// request is told apart from a retry. Answers lists it.
	Sum    []byte
	Header []byte // opaque to queue (api's encoding of the headers)
	Body   []byte
	// Book is where it is kept: the Idempotency-Key answers (zero) or a
	// batch job's chunks (AnswerJob, written by WithAnswer only).
	Book Book
}

// Size is the bytes an answer takes in memory beyond a fixed overhead:
// what api's bounds count.
func (a *Answer) Size() int { return len(a.Key) + len(a.Header) + len(a.Body) }

func encodeAnswer(a *Answer) []byte {
	e := encoder{make([]byte, 0, 24+len(a.Enterprise)+len(a.Header)+len(a.Body))}
	e.u8(answerVersion)
	e.time(a.At)
	e.str(a.Enterprise)
	e.uvarint(uint64(max(a.Code, 0)))
	e.bytes(a.Sum)
	e.bytes(a.Header)
	e.bytes(a.Body)
	return e.b
}

// decodeAnswer decodes the record of key k; it refuses with ErrCorrupt
// what encodeAnswer did not write.
func decodeAnswer(k, v []byte) (*Answer, error) {
	a, _, err := decodeAnswerAs(k, v, true)
	return a, err
}

// decodeAnswerAs is decodeAnswer; without whole, Header and Body are
// left nil (not copied), and size (Answer.Size) counts them all the same.
func decodeAnswerAs(k, v []byte, whole bool) (a *Answer, size int, err error) {
	d := newDecoder(v)
	d.version(answerVersion, "answer")
	a = &Answer{Key: string(k), At: d.time("at"), Enterprise: d.str("enterprise")}
	code := d.uvarint("code")
	a.Sum = d.bytes("sum")
	hi, hj := d.span("header")
	bi, bj := d.span("body")
	d.end("answer")
	switch {
	case d.err != nil:
	case code < 100 || code > 999:
		d.fail("answer: status %d", code)
	case len(a.Sum) > MaxAnswerSum:
		d.fail("answer: a sum of %d bytes", len(a.Sum))
	}
	if d.err != nil {
		return nil, 0, d.err
	}
	a.Code = int(code)
	if whole && hj > hi {
		a.Header = bytes.Clone(d.b[hi:hj])
	}
	if whole && bj > bi {
		a.Body = bytes.Clone(d.b[bi:bj])
	}
	return a, len(a.Key) + (hj - hi) + (bj - bi), nil
}

// SaveAnswer stores a durably: it returns nil once it is committed.
func (s *Store) SaveAnswer(ctx context.Context, a *Answer) error {
	if a.Key == "" || len(a.Key) > MaxAnswerKey || a.Code < 100 || a.Code > 999 || len(a.Sum) > MaxAnswerSum || a.Book != 0 {
		return fmt.Errorf("queue: save answer: %w: key of %d bytes, status %d, sum of %d bytes", ErrInvalid, len(a.Key), a.Code, len(a.Sum))
	}
	k, v := []byte(a.Key), encodeAnswer(a) // encoded outside the commit loop
	err := s.exec(ctx, func(t *txn) error {
		return t.tx.Bucket(bucketIdem).Put(k, v)
	})
	if err != nil {
		return fmt.Errorf("queue: save answer: %w", err)
	}
	return nil
}

// answerKey carries WithAnswer's function in a context.
type answerKey struct{}

// WithAnswer returns a context whose Enqueue (EnqueueLimit) also stores
// the answer that answer renders from the messages as stored (their ids
// set) and each one's outcome (nil, or the quota's refusal), in the same
// transaction: the answer of the request that sends them. answer runs in
// the store's commit loop, and again if the transaction is run again: it
// must be quick and change nothing it captured. A nil answer stores
// nothing.
func WithAnswer(ctx context.Context, answer func(stored []*Message, errs []error) *Answer) context.Context {
	return context.WithValue(ctx, answerKey{}, answer)
}

// putAnswer stores the answer of ctx's WithAnswer, if any, for the
// messages of an enqueue.
func (t *txn) putAnswer(ctx context.Context, stored []*Message, errs []error) error {
	f, _ := ctx.Value(answerKey{}).(func([]*Message, []error) *Answer)
	if f == nil {
		return nil
	}
	a := f(stored, errs)
	if a == nil {
		return nil
	}
	if a.Key == "" || len(a.Key) > MaxAnswerKey || a.Code < 100 || a.Code > 999 || len(a.Sum) > MaxAnswerSum {
		// After the messages were written: the whole operation fails.
		return fmt.Errorf("%w: an answer with a key of %d bytes, status %d", ErrInvalid, len(a.Key), a.Code)
	}
	if a.Book == AnswerJob {
		return t.putChunk(a)
	}
	return t.tx.Bucket(bucketIdem).Put([]byte(a.Key), encodeAnswer(a))
}

// LoadAnswer reads the answer kept under key: ErrNotFound if there is
// none.
func (s *Store) LoadAnswer(key string) (*Answer, error) {
	a, err := s.readAnswer(key, []byte(key), func(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket(bucketIdem) })
	if err != nil {
		return nil, fmt.Errorf("queue: answer: %w", err)
	}
	return a, nil
}

// readAnswer decodes the answer kept under k in the bucket in gives
// (nil: none), as the answer of key: ErrNotFound if there is none.
func (s *Store) readAnswer(key string, k []byte, in func(*bolt.Tx) *bolt.Bucket) (*Answer, error) {
	var a *Answer
	err := s.view(func(tx *bolt.Tx) error {
		b := in(tx)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get(k)
		if v == nil {
			return ErrNotFound
		}
		var err error
		a, err = decodeAnswer([]byte(key), v)
		return err
	})
	return a, err
}

// DeleteAnswers forgets the answers kept under keys (those there are), in
// one store operation. It is a Record: nobody waits on a forgotten answer.
func (s *Store) DeleteAnswers(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.exec(s.Record(ctx), func(t *txn) error {
		b := t.tx.Bucket(bucketIdem)
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: delete answers: %w", err)
	}
	return nil
}

// Answers calls fn with every kept answer, without its Header and Body
// (size counts them): what api loads at start to know its keys and their
// bounds, leaving the answers themselves on disk until a retry asks. A
// record that does not decode is left out and named in the error
// (ErrCorrupt), returned after the others.
func (s *Store) Answers(fn func(a *Answer, size int)) error {
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdem)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			a, size, err := decodeAnswerAs(k, v, false) // the answers stay on disk
			if err != nil {
				bad = append(bad, fmt.Errorf("key %q: %w", k, err))
				return nil
			}
			fn(a, size)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("queue: answers: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("queue: answers: %w", errors.Join(bad...))
	}
	return nil
}

// checkAnswers reports the kept answers that do not decode.
func checkAnswers(tx *bolt.Tx, bad func(string, ...any)) {
	b := tx.Bucket(bucketIdem)
	if b == nil {
		return // a backup older than kept answers
	}
	_ = b.ForEach(func(k, v []byte) error {
		if _, err := decodeAnswer(k, v); err != nil {
			bad("answer %q: %v", k, err)
		}
		return nil
	})
}
