package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestJobs: a job's record, its chunks' answers written with their
// messages, FinishJob folding them away and DeleteJobs forgetting it.
func TestJobs(t *testing.T) {
	ts := newStore(t, Options{})
	ctx := context.Background()
	if err := ts.SaveJob(ctx, "7", []byte("running")); err != nil {
		t.Fatal(err)
	}
	chunk := func(job string, row uint32, body string) context.Context {
		return WithAnswer(ctx, func(stored []*Message, errs []error) *Answer {
			return &Answer{Key: JobChunkKey(job, row), Enterprise: "E", At: time.Unix(1_790_000_000, 0).UTC(), Code: 200, Body: []byte(body), Book: AnswerJob}
		})
	}
	// Chunks stored out of their rows' order, as a job's calls run at once.
	for _, c := range []struct {
		row  uint32
		body string
	}{{65, "second"}, {1, "first"}, {300, "third"}} {
		if _, err := ts.EnqueueLimit(chunk("7", c.row, c.body), NoLimit, msg("acct", "13800000001", 1)); err != nil {
			t.Fatal(err)
		}
	}
	// A chunk of no job fails its enqueue: nothing is written.
	if _, err := ts.EnqueueLimit(chunk("8", 1, "x"), NoLimit, msg("acct", "13800000002", 1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a chunk of no job: %v", err)
	}
	if n := ts.bucketLen(bucketMsg); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	if err := ts.SaveAnswer(ctx, &Answer{Key: JobChunkKey("7", 2), Code: 200, Book: AnswerJob}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a chunk saved alone: %v, want ErrInvalid (chunks go with their messages)", err)
	}
	if err := ts.SaveJob(ctx, "9", []byte("other")); err != nil {
		t.Fatal(err)
	}
	type job struct {
		rec    string
		chunks []string
	}
	jobs := func() map[string]job {
		t.Helper()
		out := map[string]job{}
		err := ts.Jobs(func(id string, rec []byte, chunks []*Answer) error {
			j := job{rec: string(rec)}
			for _, a := range chunks {
				if a.Book != AnswerJob {
					t.Errorf("chunk %q: book %d", a.Key, a.Book)
				}
				j.chunks = append(j.chunks, string(a.Body))
			}
			out[id] = j
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := jobs()
	if j := got["7"]; len(got) != 2 || j.rec != "running" || len(j.chunks) != 3 || j.chunks[0] != "first" || j.chunks[1] != "second" || j.chunks[2] != "third" {
		t.Fatalf("jobs: %+v", got)
	}
	// The Idempotency-Key answers do not see the chunks.
	n := 0
	if err := ts.Answers(func(*Answer, int) { n++ }); err != nil || n != 0 {
		t.Errorf("answers: %d, %v", n, err)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}

	if err := ts.FinishJob(ctx, "7", []byte("done")); err != nil {
		t.Fatal(err)
	}
	if j := jobs()["7"]; j.rec != "done" || len(j.chunks) != 0 {
		t.Fatalf("finished: %+v", j)
	}
	if err := ts.DeleteJobs(ctx, []string{"7"}); err != nil {
		t.Fatal(err)
	}
	if got := jobs(); len(got) != 1 || got["9"].rec != "other" {
		t.Fatalf("after delete: %+v", got)
	}
	for _, id := range []string{"", "a\x00b", string(make([]byte, MaxJobID+1))} {
		if err := ts.SaveJob(ctx, id, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("job id %q: %v", id, err)
		}
	}
}
