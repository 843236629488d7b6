package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Batch jobs: package batch keeps its jobs here so that a restart resumes
// a running job where it was, and a finished one is still shown. queue
// stores their records without reading them:
//
//	jobs       id → the job's record (batch's encoding)
//	jobchunks  id (a bucket of its own) → chunk → the answer of one of its gateway calls
//
// A chunk's answer is an Answer (AnswerJob: its Key is JobChunkKey)
// written in the transaction that stores the chunk's messages, exactly as
// an Idempotency-Key's is: a crash leaves both or neither, so a resumed
// job sends no row twice and leaves none out. A job whose rows each have
// their own text makes a chunk a row; its chunks are a bucket of their own
// so that dropping them when it ends frees their pages in one step: key
// by key, 100,000 of them held the commit loop for seconds.

var (
	bucketJobs      = []byte("jobs")
	bucketJobChunks = []byte("jobchunks")
)

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
	return id + "\x00" + string(binary.BigEndian.AppendUint32(nil, chunk))
}

// splitChunkKey is JobChunkKey's job id and chunk key.
func splitChunkKey(key string) (id string, chunk []byte, ok bool) {
	id, c, ok := strings.Cut(key, "\x00")
	if !ok || validJobID(id) != nil || len(c) != 4 {
		return "", nil, false
	}
	return id, []byte(c), true
}

// putChunk stores a job chunk's answer (putAnswer).
func (t *txn) putChunk(a *Answer) error {
	id, chunk, ok := splitChunkKey(a.Key)
	if !ok || t.tx.Bucket(bucketJobs).Get([]byte(id)) == nil {
		return fmt.Errorf("%w: a job chunk's answer %q of no job saved", ErrInvalid, a.Key)
	}
	b, err := t.tx.Bucket(bucketJobChunks).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	return b.Put(chunk, encodeAnswer(a))
}

func validJobID(id string) error {
	if id == "" || len(id) > MaxJobID || bytes.IndexByte([]byte(id), 0) >= 0 {
		return fmt.Errorf("%w: a job id of %d bytes", ErrInvalid, len(id))
	}
	return nil
}

// JobChunk reads the answer stored for job id's chunk (JobChunkKey's
// chunk): ErrNotFound if there is none. A call whose commit failed may
// have stored it all the same (ErrNotSynced): its rows were taken then.
func (s *Store) JobChunk(id string, chunk uint32) (*Answer, error) {
	key := JobChunkKey(id, chunk)
	_, c, _ := splitChunkKey(key)
	a, err := s.readAnswer(key, c, func(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket(bucketJobChunks).Bucket([]byte(id)) })
	if err != nil {
		return nil, fmt.Errorf("queue: job chunk: %w", err)
	}
	return a, nil
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
		if err := deleteChunks(t.tx, id); err != nil {
			return err
		}
		return t.tx.Bucket(bucketJobs).Put([]byte(id), record)
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
		for _, id := range ids {
			if err := deleteChunks(t.tx, id); err != nil {
				return err
			}
			if err := t.tx.Bucket(bucketJobs).Delete([]byte(id)); err != nil {
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

// deleteChunks drops job id's chunks, if it has any.
func deleteChunks(tx *bolt.Tx, id string) error {
	err := tx.Bucket(bucketJobChunks).DeleteBucket([]byte(id))
	if errors.Is(err, berrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

// Jobs calls fn with every job's id and record (valid during the call
// only), and the answers of its chunks in key order: what package batch
// reads at start. A chunk's answer that does not decode is left out and
// named in the error (ErrCorrupt), returned after the others.
func (s *Store) Jobs(fn func(id string, record []byte, chunks []*Answer) error) error {
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		jobs, all := tx.Bucket(bucketJobs), tx.Bucket(bucketJobChunks)
		if jobs == nil || all == nil {
			return nil
		}
		return jobs.ForEach(func(k, rec []byte) error {
			id := string(k)
			var chunks []*Answer
			if b := all.Bucket(k); b != nil {
				err := b.ForEach(func(ck, v []byte) error {
					key := id + "\x00" + string(ck)
					a, err := decodeAnswer([]byte(key), v)
					if err != nil {
						bad = append(bad, fmt.Errorf("job chunk %q: %w", key, err))
						return nil
					}
					a.Book = AnswerJob
					chunks = append(chunks, a)
					return nil
				})
				if err != nil {
					return err
				}
			}
			return fn(id, rec, chunks)
		})
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
	jobs, all := tx.Bucket(bucketJobs), tx.Bucket(bucketJobChunks)
	if jobs == nil || all == nil {
		return // a backup older than kept jobs
	}
	_ = all.ForEach(func(id, v []byte) error {
		b := all.Bucket(id)
		if b == nil {
			bad("job chunks %q: not a bucket", id)
			return nil
		}
		if jobs.Get(id) == nil {
			bad("job chunks %q: no such job", id)
		}
		return b.ForEach(func(ck, v []byte) error {
			key := string(id) + "\x00" + string(ck)
			if _, err := decodeAnswer([]byte(key), v); err != nil {
				bad("job chunk %q: %v", key, err)
			}
			return nil
		})
	})
}
