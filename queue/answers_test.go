package queue

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestAnswers: a kept answer is read back whole after a reopen, Answers
// lists every one without its header and body but with their size,
// DeleteAnswers forgets those named (and not the others), a key too long
// or a status that is none is refused, and a damaged record is named by
// Answers and by Check while the others are still listed.
func TestAnswers(t *testing.T) {
	ts := newStore(t, Options{})
	ctx := context.Background()
	at := time.Unix(1_790_000_000, 7).UTC()
	a := &Answer{Key: "ENT\x00u1\x00/v1/messages\x00k-1", Enterprise: "ENT", At: at, Code: 200, Sum: []byte("0123456789abcdef0123456789abcdef"),
		Header: []byte(`{"Content-Type":["application/json"]}`), Body: []byte(`{"messages":[{"id":"1"}]}`)}
	b := &Answer{Key: "ENT2\x00u2\x00/v1/messages\x00k-1", Enterprise: "ENT2", At: at.Add(time.Second), Code: 429}
	for _, x := range []*Answer{a, b} {
		if err := ts.SaveAnswer(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	ts.reopen()
	got, err := ts.LoadAnswer(a.Key)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("load: %+v, %v; want %+v", got, err, a)
	}
	if _, err := ts.LoadAnswer("ENT\x00u1\x00/v1/messages\x00k-2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	list := func() map[string]int {
		t.Helper()
		out := map[string]int{}
		if err := ts.Answers(func(x *Answer, size int) {
			if x.Header != nil || x.Body != nil || x.At.IsZero() || x.Enterprise == "" || x.Key == a.Key && string(x.Sum) != string(a.Sum) {
				t.Fatalf("listed %+v", x)
			}
			out[x.Key] = size
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got, want := list(), map[string]int{a.Key: a.Size(), b.Key: b.Size()}; !reflect.DeepEqual(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	if err := ts.DeleteAnswers(ctx, []string{b.Key, "none"}); err != nil {
		t.Fatal(err)
	}
	if got, want := list(), map[string]int{a.Key: a.Size()}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after delete, listed %v, want %v", got, want)
	}
	for _, bad := range []*Answer{
		{Key: "", Code: 200},
		{Key: strings.Repeat("k", MaxAnswerKey+1), Code: 200},
		{Key: "k", Code: 0},
		{Key: "k", Code: 1000},
		{Key: "k", Code: 200, Sum: make([]byte, MaxAnswerSum+1)},
	} {
		if err := ts.SaveAnswer(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("saved key of %d bytes, status %d: %v", len(bad.Key), bad.Code, err)
		}
	}

	if err := ts.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIdem).Put([]byte("D"), []byte{answerVersion, 0, 0, 5})
	}); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = ts.Answers(func(*Answer, int) { n++ })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"D"`) || n != 1 {
		t.Fatalf("damaged record: %d listed, err %v", n, err)
	}
	if err := ts.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `answer "D"`) {
		t.Fatalf("check: %v", err)
	}
	if err := ts.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketIdem).Delete([]byte("D")) }); err != nil {
		t.Fatal(err)
	}
}

// TestEnqueueWithAnswer: the answer of WithAnswer is written in the
// enqueue's own transaction, rendered from the messages as stored (their
// ids) and each one's outcome (a quota refusal for the one past the
// limit); one that cannot be stored fails the whole enqueue, nothing of it
// written; a context without it stores none.
func TestEnqueueWithAnswer(t *testing.T) {
	ts := newStore(t, Options{})
	render := func(stored []*Message, errs []error) *Answer {
		var b strings.Builder
		for i, m := range stored {
			if errs[i] != nil {
				b.WriteString("refused;")
				continue
			}
			fmt.Fprintf(&b, "%d;", m.ID)
		}
		return &Answer{Key: "E\x00u\x00/v1/messages\x00k", Enterprise: "E", At: time.Unix(1_790_000_000, 0).UTC(), Code: 200, Body: []byte(b.String())}
	}
	a, b := msg("acct", "13800000001", 1), msg("acct", "13800000002", 2)
	a.Enterprise, b.Enterprise = "E", "E"
	errs, err := ts.EnqueueLimit(WithAnswer(context.Background(), render), 2, a, b) // b's 2 parts pass the limit
	if err != nil || errs[0] != nil || !errors.Is(errs[1], ErrQuota) {
		t.Fatalf("enqueue: %v, %v", errs, err)
	}
	got, err := ts.LoadAnswer("E\x00u\x00/v1/messages\x00k")
	if err != nil || string(got.Body) != fmt.Sprintf("%d;refused;", a.ID) || got.Code != 200 {
		t.Fatalf("the answer stored with the messages: %+v, %v (message id %d)", got, err, a.ID)
	}

	bad := func([]*Message, []error) *Answer { return &Answer{Key: "E\x00u\x00/v1/messages\x00k2", Code: 0} }
	c := msg("acct", "13800000003", 1)
	if _, err := ts.EnqueueLimit(WithAnswer(context.Background(), bad), NoLimit, c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an answer that cannot be stored: %v", err)
	}
	if n := ts.bucketLen(bucketMsg); n != 1 {
		t.Fatalf("%d messages stored, want only the first (the enqueue with a bad answer wrote nothing)", n)
	}
	if err := ts.Enqueue(context.Background(), msg("acct", "13800000004", 1)); err != nil {
		t.Fatal(err)
	}
	if n := ts.bucketLen(bucketIdem); n != 1 {
		t.Fatalf("%d answers stored, want 1", n)
	}
}
