package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Batch jobs: package batch keeps its jobs here so that a restart resumes
// a running job where it was, and a finished one is still shown. queue
// stores their records without reading them:
//
//	jobs    id → the job's record (batch's encoding)
//	        id 0x00 chunk → the answer of one of its gateway calls
//
// A chunk's answer is an Answer (AnswerJob: its Key is the chunk's key,
// JobChunkKey) written in the transaction that stores the chunk's
// messages, exactly as an Idempotency-Key's is: a crash leaves both or
// neither, so a resumed job sends no row twice and leaves none out.

var bucketJobs = []byte("jobs")

// MaxJobID bounds a job's id; MaxJobRecord its record.
const (
	MaxJobID     = 64
	MaxJobRecord = 1 << 20
)

// AnswerJob is the Book of a batch job's chunk answers.
const AnswerJob Book = 1

// Book is where an Answer is kept: the Idempotency-Key answers (the zero
// Book) or a batch job's chunks (AnswerJob).
type Book uint8

// JobChunkKey is the key of job id's chunk (say, its first row): the
// answer's Key for AnswerJob.
func JobChunkKey(id string, chunk uint32) string {
	return id + "\x00" + string([]byte{byte(chunk >> 24), byte(chunk >> 16), byte(chunk >> 8), byte(chunk)})
}

func validJobID(id string) error {
	if id == "" || len(id) > MaxJobID || bytes.IndexByte([]byte(id), 0) >= 0 {
		return fmt.Errorf("%w: a job id of %d bytes", ErrInvalid, len(id))
	}
	return nil
}

// SaveJob stores job id's record durably (it returns once committed),
// replacing any before; its chunks' answers stay.
func (s *Store) SaveJob(ctx context.Context, id string, record []byte) error {
	if err := validJobID(id); err != nil {
		return fmt.Errorf("queue: save job: %w", err)
	}
	if len(record) > MaxJobRecord {
		return fmt.Errorf("queue: save job: %w: a record of %d bytes", ErrInvalid, len(record))
	}
	err := s.exec(ctx, func(t *txn) error {
		return t.tx.Bucket(bucketJobs).Put([]byte(id), record)
	})
	if err != nil {
		return fmt.Errorf("queue: save job %s: %w", id, err)
	}
	return nil
}

// FinishJob stores job id's last record and deletes its chunks' answers,
// in one commit: the record then says all they said.
func (s *Store) FinishJob(ctx context.Context, id string, record []byte) error {
	if err := validJobID(id); err != nil {
		return fmt.Errorf("queue: finish job: %w", err)
	}
	if len(record) > MaxJobRecord {
		return fmt.Errorf("queue: finish job: %w: a record of %d bytes", ErrInvalid, len(record))
	}
	err := s.exec(ctx, func(t *txn) error {
		b := t.tx.Bucket(bucketJobs)
		if err := deleteChunks(b, id); err != nil {
			return err
		}
		return b.Put([]byte(id), record)
	})
	if err != nil {
		return fmt.Errorf("queue: finish job %s: %w", id, err)
	}
	return nil
}

// DeleteJobs forgets jobs ids: their records and chunks' answers. It is a
// Record: nobody waits on a forgotten job.
func (s *Store) DeleteJobs(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.exec(s.Record(ctx), func(t *txn) error {
		b := t.tx.Bucket(bucketJobs)
		for _, id := range ids {
			if err := deleteChunks(b, id); err != nil {
				return err
			}
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: delete jobs: %w", err)
	}
	return nil
}

func deleteChunks(b *bolt.Bucket, id string) error {
	prefix := []byte(id + "\x00")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Jobs calls fn with every job's id and record (valid during the call
// only), and the answers of its chunks in key order: what package batch
// reads at start. A chunk's answer that does not decode is left out and
// named in the error (ErrCorrupt), returned after the others.
func (s *Store) Jobs(fn func(id string, record []byte, chunks []*Answer) error) error {
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		for k != nil {
			if bytes.IndexByte(k, 0) >= 0 { // a chunk with no record: skip it
				bad = append(bad, fmt.Errorf("%w: job chunk %q without its job", ErrCorrupt, k))
				k, v = c.Next()
				continue
			}
			id, rec := string(k), v
			var chunks []*Answer
			prefix := append([]byte(id), 0)
			for k, v = c.Next(); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				a, err := decodeAnswer(k, v)
				if err != nil {
					bad = append(bad, fmt.Errorf("job chunk %q: %w", k, err))
					continue
				}
				a.Book = AnswerJob
				chunks = append(chunks, a)
			}
			if err := fn(id, rec, chunks); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: jobs: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("queue: jobs: %w", errors.Join(bad...))
	}
	return nil
}

// checkJobs reports the chunk answers that do not decode or have no job.
func checkJobs(tx *bolt.Tx, bad func(string, ...any)) {
	b := tx.Bucket(bucketJobs)
	if b == nil {
		return // a backup older than kept jobs
	}
	_ = b.ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return nil // a record: batch's
		}
		if b.Get(k[:i]) == nil {
			bad("job chunk %q: no job %q", k, k[:i])
		}
		if _, err := decodeAnswer(k, v); err != nil {
			bad("job chunk %q: %v", k, err)
		}
		return nil
	})
}
