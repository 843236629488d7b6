package cluster

// Replica: the cluster's shared policy state.
//
// A Replica mirrors a set of top-level buckets of the daemon's bbolt file
// (those match accepts: policy's "policy_*" and the reminder buckets) into
// etcd, which is the source of truth. Every node keeps its local bbolt file
// as the read copy, so the packages that own those buckets read them as
// before (policy keeps its in-memory snapshot); only their writes change:
// they go through Replica.Update, which sends them to etcd, and every node,
// the writer included, applies them to its file from a watch.
//
// # Key layout
//
// Under the prefix P given to OpenReplica:
//
//	P data-init                         present once the data was seeded (value "seeding" then "done")
//	P data-rev                          bumped by every write; its ModRevision orders the writes
//	P data/ b<hex b1>/ … /b<hex bn>/m   marker: the bucket b1/…/bn exists (empty value)
//	P data/ b<hex b1>/ … /b<hex bn>/s   the bucket's sequence (NextSequence), decimal; absent: 0
//	P data/ b<hex b1>/ … /b<hex bn>/k<hex key>  a key of that bucket; the value as is
//
// (without the spaces). Each bucket name and key is lower-case hex, so no
// element contains "/", the type letter tells a bucket path from the final
// element, and the keys of one bucket sort in bbolt's byte order: a bucket
// and everything under it is one etcd range. Every bucket has its marker,
// so an empty nested bucket exists on every node.
//
// # Guarantees
//
//   - Writes are serialised cluster-wide: each etcd transaction commits only
//     if data-rev's ModRevision is the one this node last applied, i.e. fn
//     ran on the latest data. A node that lost the race waits until its
//     watcher has applied the winner's write and runs fn again, for as
//     long as conflictBudget after its first loss (then ErrConflict): a
//     count of attempts let a node lose to another's burst of writes
//     (16 losses in a row to a node writing in a loop, under -race).
//   - Read-your-writes on the writing node: Update returns once the watcher
//     applied the write to the local file and ran the OnChange hooks.
//   - Other nodes apply it when their watch delivers it: typically a few
//     milliseconds, under a second unless etcd is unreachable. A node
//     cut from etcd keeps serving its last applied state and cannot write.
//   - One etcd transaction is applied in one bbolt transaction and one call
//     of the hooks, so a reader sees a write entirely or not at all, except
//     a write split in several transactions (below).
//
// # Costs
//
// Update holds the bbolt write lock while fn runs and while it diffs the
// mirrored buckets against a read transaction opened at the same state:
// the diff walks every key of every mirrored bucket (70–90 ns a key
// without the race detector, TestReplicaDiffCost: 1.7 ms per write beside
// a 20,000-number whitelist, 7 ms beside 100,000). Then one etcd round
// trip per transaction, the watch's delivery and the local apply (a write
// of one record: about 4 ms in all on loopback; a 20,000-number import:
// about 1 s, in 4 transactions of ≤ 1 MiB).
//
// # Caveats
//
//   - fn may run more than once (a conflict runs it again on the newer
//     data), like bbolt's Batch: it must be idempotent and recompute what
//     it returns to its caller on each run. Its transaction is rolled back:
//     whatever it writes outside the mirrored buckets is lost, and its
//     changes reach the file only through etcd.
//   - etcd refuses a transaction of more than --max-txn-ops operations
//     (default 128) or more than --max-request-bytes (default 1.5 MiB). A
//     change bigger than WithMaxTxnOps (default 127 puts/deletes + data-rev)
//     or about 1 MiB is sent as several transactions chained on data-rev:
//     it is no longer atomic (other nodes may see the first part before the
//     rest; a failure in the middle leaves the first part applied, and a
//     conflict in the middle runs fn again over it). Run etcd with
//     --max-txn-ops 1024 so that a whitelist import of 1,000 numbers is one
//     transaction (the tests' etcd does).
//   - A transaction whose answer is lost (etcd unreachable after it
//     committed) returns an error although it was applied; the watch will
//     still bring it.
//   - Nothing else may write the mirrored buckets with db.Update: such a
//     change stays local and is overwritten by the next load.
//   - The data is seeded once, by the first node that finds no data-init
//     key; every other node replaces its local copy of the mirrored buckets
//     with etcd's (and logs a warning with counts if it differed).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of a Replica.
var (
	// ErrConflict: Update kept losing the race to other nodes' writes for
	// conflictBudget.
	ErrConflict = errors.New("cluster: replica write conflicted with other nodes' writes too often")
	// ErrReplicaClosed: the Replica was closed.
	ErrReplicaClosed = errors.New("cluster: replica closed")
)

const (
	conflictBudget   = 10 * time.Second
	defaultMaxOps    = 128
	defaultMaxBytes  = 1 << 20 // below etcd's default 1.5 MiB request limit
	loadPage         = 1000
	watchRetryMin    = 50 * time.Millisecond
	watchRetryMax    = 5 * time.Second
	opOverheadBytes  = 16 // per operation, for the request size estimate
	markerTail       = "m"
	sequenceTail     = "s"
	keyTail          = 'k'
	bucketTag        = 'b'
	initSeeding      = "seeding"
	initDone         = "done"
	dataPrefixSuffix = "data/"
)

// ReplicaOption changes a default of OpenReplica.
type ReplicaOption func(*Replica)

// WithMaxTxnOps sets how many operations one etcd transaction may hold
// (etcd's --max-txn-ops; default 128), data-rev's included.
func WithMaxTxnOps(n int) ReplicaOption {
	return func(r *Replica) {
		if n >= 2 {
			r.maxOps = n
		}
	}
}

// WithMaxTxnBytes sets the size above which a change is split in several
// transactions (default 1 MiB; etcd's --max-request-bytes is 1.5 MiB).
func WithMaxTxnBytes(n int) ReplicaOption {
	return func(r *Replica) {
		if n > 0 {
			r.maxBytes = n
		}
	}
}

// WithWrite makes the Replica write the local file through write instead
// of db.Update (the daemon's: queue.Store.Update, which the writers of
// the one state file go through so that none writes a page after a
// commit whose sync failed before the disk has confirmed one again). A
// change it refuses is applied again from etcd on the watch's next try.
func WithWrite(write func(ctx context.Context, fn func(tx *bolt.Tx) error) error) ReplicaOption {
	return func(r *Replica) {
		if write != nil {
			r.write = write
		}
	}
}

// Replica mirrors bbolt buckets through etcd (see the top of this file).
type Replica struct {
	cli      *clientv3.Client
	prefix   string
	db       *bolt.DB
	match    func(bucket []byte) bool
	log      *slog.Logger
	maxOps   int
	maxBytes int
	write    func(ctx context.Context, fn func(tx *bolt.Tx) error) error // WithWrite; db.Update by default

	writeMu sync.Mutex // one Update of this node at a time

	mu      sync.Mutex
	applied int64         // the etcd revision the local file reflects
	dataRev int64         // data-rev's ModRevision as of applied
	advance chan struct{} // closed (and replaced) when applied moves
	hooks   []func(tx *bolt.Tx, changed [][][]byte)

	cancel context.CancelFunc
	done   chan struct{} // closed when the watcher stopped
}

// op is one change of etcd's data: a put, or a delete when del.
type op struct {
	key string
	val []byte
	del bool
}

// OpenReplica loads the mirrored buckets — the top-level buckets of db for
// which match is true — from etcd under prefix (seeding etcd from db if it
// holds no data yet), then keeps db in step with etcd until Close. ctx
// bounds the initial load only. The caller owns client and db and closes
// them after the Replica.
func OpenReplica(ctx context.Context, client *clientv3.Client, prefix string, db *bolt.DB,
	match func(bucket []byte) bool, log *slog.Logger, opts ...ReplicaOption) (*Replica, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Replica{cli: client, prefix: prefix, db: db, match: match, log: log,
		maxOps: defaultMaxOps, maxBytes: defaultMaxBytes, advance: make(chan struct{}), done: make(chan struct{})}
	r.write = func(_ context.Context, fn func(tx *bolt.Tx) error) error { return db.Update(fn) }
	for _, o := range opts {
		o(r)
	}
	if err := r.seed(ctx); err != nil {
		return nil, err
	}
	if err := r.load(ctx, false); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.watch(wctx)
	return r, nil
}

// Close stops the watcher; Update fails with ErrReplicaClosed after it.
func (r *Replica) Close() error {
	r.cancel()
	<-r.done
	return nil
}

// OnChange registers fn, called after every batch of changes applied to
// the local file (one etcd transaction, or a full reload), in the
// watcher's goroutine, with a read transaction opened right after the
// apply committed, so fn sees exactly the applied state. changed lists
// what changed: each element is a bucket path (bucket names from the top
// level) followed by the key that was put or deleted, or a bucket path
// alone when the bucket itself was created, deleted or had its sequence
// set; nil means anything may have changed (a reload). fn must not call
// Update (Update waits for the hooks) and should return quickly: the
// writer's Update returns after the hooks of its write ran.
func (r *Replica) OnChange(fn func(tx *bolt.Tx, changed [][][]byte)) {
	r.mu.Lock()
	r.hooks = append(r.hooks, fn)
	r.mu.Unlock()
}

// Applied returns the etcd revision the local file reflects.
func (r *Replica) Applied() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied
}

// Update runs fn in a local read-write transaction, sends what it changed
// in the mirrored buckets to etcd and returns once the local file (and the
// OnChange hooks) reflect that write. fn's own transaction is rolled back.
// An error of fn is returned as is and nothing is written; an etcd failure
// changes nothing locally and is returned wrapped. fn may run more than
// once and must be idempotent (see Caveats).
func (r *Replica) Update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	select {
	case <-r.done:
		return ErrReplicaClosed
	default:
	}
	var lostSince time.Time // the first conflict
	for {
		if !lostSince.IsZero() && time.Since(lostSince) > conflictBudget {
			return ErrConflict
		}
		ops, expect, err := r.prepare(fn)
		if err != nil {
			return err
		}
		if len(ops) == 0 {
			return nil
		}
		rev, cur, err := r.commit(ctx, ops, expect)
		if err != nil {
			return fmt.Errorf("cluster: replica write: %w", err)
		}
		if rev == 0 { // another node wrote first: apply it, then run fn again
			if lostSince.IsZero() {
				lostSince = time.Now()
			}
			if err := r.wait(ctx, func() bool { return r.dataRev >= cur }); err != nil {
				return err
			}
			continue
		}
		return r.wait(ctx, func() bool { return r.applied >= rev })
	}
}

// prepare runs fn in a write transaction it rolls back and returns the
// changes to the mirrored buckets, and the data-rev they were made on.
func (r *Replica) prepare(fn func(tx *bolt.Tx) error) ([]op, int64, error) {
	wtx, err := r.db.Begin(true)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = wtx.Rollback() }()
	// No commit can happen while wtx is open, so the read transaction and
	// wtx start from the same state, and that state includes the apply of
	// every data-rev read now (the watcher records it after its commit).
	rtx, err := r.db.Begin(false)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = rtx.Rollback() }()
	r.mu.Lock()
	expect := r.dataRev
	r.mu.Unlock()
	if err := fn(wtx); err != nil {
		return nil, 0, err
	}
	var ops []op
	r.diffTx(rtx, wtx, &ops)
	return ops, expect, nil
}

// commit sends ops in transactions chained on data-rev. It returns the
// revision of the last one, or 0 and data-rev's current ModRevision if
// another node's write came first.
func (r *Replica) commit(ctx context.Context, ops []op, expect int64) (rev, cur int64, err error) {
	revKey := r.prefix + "data-rev"
	for i, chunk := range r.chunks(ops, 1) {
		tops := make([]clientv3.Op, 0, len(chunk)+1)
		for _, o := range chunk {
			if o.del {
				tops = append(tops, clientv3.OpDelete(o.key))
			} else {
				tops = append(tops, clientv3.OpPut(o.key, string(o.val)))
			}
		}
		tops = append(tops, clientv3.OpPut(revKey, ""))
		resp, err := r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(revKey), "=", expect)).
			Then(tops...).
			Else(clientv3.OpGet(revKey)).Commit()
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("after %d of its transactions: %w", i, err)
			}
			return 0, 0, err
		}
		if !resp.Succeeded {
			if gr := resp.Responses[0].GetResponseRange(); gr != nil && len(gr.Kvs) > 0 {
				cur = gr.Kvs[0].ModRevision
			}
			if i > 0 {
				r.log.Warn("cluster: a write split in several etcd transactions was interrupted by another node's; running it again",
					"sent", i)
			}
			return 0, cur, nil
		}
		expect = resp.Header.Revision
	}
	return expect, 0, nil
}

// chunks splits ops (deletes first) into transactions within the limits,
// leaving room for reserve more operations in each.
func (r *Replica) chunks(ops []op, reserve int) [][]op {
	slices.SortStableFunc(ops, func(a, b op) int {
		switch {
		case a.del == b.del:
			return 0
		case a.del:
			return -1
		}
		return 1
	})
	var out [][]op
	start, size := 0, 0
	for i, o := range ops {
		n := len(o.key) + len(o.val) + opOverheadBytes
		if i > start && (i-start >= r.maxOps-reserve || size+n > r.maxBytes) {
			out = append(out, ops[start:i])
			start, size = i, 0
		}
		size += n
	}
	return append(out, ops[start:])
}

// wait returns when cond (called with r.mu held) is true.
func (r *Replica) wait(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		ok, ch := cond(), r.advance
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return ErrReplicaClosed
		}
	}
}

// setApplied records that the file reflects rev (and data-rev's dataRev).
func (r *Replica) setApplied(rev, dataRev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev > r.applied {
		r.applied = rev
	}
	if dataRev > r.dataRev {
		r.dataRev = dataRev
	}
	close(r.advance)
	r.advance = make(chan struct{})
}

// runHooks calls the hooks with a read transaction of the current state.
func (r *Replica) runHooks(changed [][][]byte) {
	r.mu.Lock()
	hooks := slices.Clone(r.hooks)
	r.mu.Unlock()
	if len(hooks) == 0 {
		return
	}
	err := r.db.View(func(tx *bolt.Tx) error {
		for _, h := range hooks {
			h(tx, changed)
		}
		return nil
	})
	if err != nil {
		r.log.Error("cluster: replica hooks", "err", err)
	}
}

// seed uploads the local mirrored buckets if etcd holds no data yet. Of
// two nodes seeding at once, the first transaction wins; the loser loads.
func (r *Replica) seed(ctx context.Context) error {
	initKey, revKey := r.prefix+"data-init", r.prefix+"data-rev"
	resp, err := r.cli.Get(ctx, initKey)
	if err != nil {
		return fmt.Errorf("cluster: replica: read %s: %w", initKey, err)
	}
	if resp.Count > 0 {
		return nil
	}
	var ops []op
	err = r.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if r.match(name) {
				r.emitBucket(b, [][]byte{name}, false, &ops)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for i, chunk := range r.chunks(ops, 2) {
		tops := []clientv3.Op{clientv3.OpPut(revKey, "")}
		if i == 0 {
			tops = append(tops, clientv3.OpPut(initKey, initSeeding))
		}
		for _, o := range chunk {
			tops = append(tops, clientv3.OpPut(o.key, string(o.val)))
		}
		txn := r.cli.Txn(ctx)
		if i == 0 {
			txn = txn.If(clientv3.Compare(clientv3.CreateRevision(initKey), "=", 0))
		}
		resp, err := txn.Then(tops...).Commit()
		if err != nil {
			return fmt.Errorf("cluster: replica: seed etcd: %w", err)
		}
		if !resp.Succeeded {
			return nil // another node seeds: load its data
		}
	}
	if _, err := r.cli.Put(ctx, initKey, initDone); err != nil {
		return fmt.Errorf("cluster: replica: seed etcd: %w", err)
	}
	r.log.Info("cluster: replica seeded etcd from the local file", "keys", len(ops))
	return nil
}

// load replaces the local mirrored buckets with etcd's data. notify
// tells the hooks that everything may have changed (a reload after a
// compaction); without it a difference is logged (the first load).
func (r *Replica) load(ctx context.Context, notify bool) error {
	start := r.prefix + dataPrefixSuffix
	end := clientv3.GetPrefixRangeEnd(start)
	remote := map[string][]byte{}
	var rev, dataRev int64
	for key := start; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.cli.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("cluster: replica: load: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			remote[string(kv.Key)] = kv.Value
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	resp, err := r.cli.Get(ctx, r.prefix+"data-rev", clientv3.WithRev(rev))
	if err != nil {
		return fmt.Errorf("cluster: replica: load: %w", err)
	}
	if len(resp.Kvs) > 0 {
		dataRev = resp.Kvs[0].ModRevision
	}

	var onlyLocal, onlyRemote, differ int
	err = r.write(ctx, func(tx *bolt.Tx) error {
		var local []op
		var names [][]byte
		err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if r.match(name) {
				names = append(names, slices.Clone(name))
				r.emitBucket(b, [][]byte{name}, false, &local)
			}
			return nil
		})
		if err != nil {
			return err
		}
		seen := 0
		for _, o := range local {
			v, ok := remote[o.key]
			switch {
			case !ok:
				onlyLocal++
			case !bytes.Equal(v, o.val):
				differ++
				seen++
			default:
				seen++
			}
		}
		for k := range remote {
			if p, ok := r.decode(k); !ok || !r.match(p.buckets[0]) {
				delete(remote, k)
			}
		}
		onlyRemote = len(remote) - seen
		if onlyLocal+onlyRemote+differ == 0 {
			return nil
		}
		for _, n := range names {
			if err := tx.DeleteBucket(n); err != nil {
				return err
			}
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range remote {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			if _, err := r.applyPut(tx, k, remote[k]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: replica: load into the local file: %w", err)
	}
	if onlyLocal+differ > 0 && !notify {
		r.log.Warn("cluster: replica: the local copy differed from the cluster's and was replaced",
			"local_only", onlyLocal, "cluster_only", onlyRemote, "different", differ, "keys", len(remote))
	}
	if notify {
		r.runHooks(nil)
	}
	r.setApplied(rev, dataRev)
	return nil
}

// watch applies etcd's changes to the local file until ctx ends.
func (r *Replica) watch(ctx context.Context) {
	defer close(r.done)
	backoff := watchRetryMin
	for ctx.Err() == nil {
		r.mu.Lock()
		from := r.applied + 1
		r.mu.Unlock()
		reload := false
		wctx, stop := context.WithCancel(ctx) // ends this watch when the loop leaves it
		wch := r.cli.Watch(clientv3.WithRequireLeader(wctx), r.prefix+"data", clientv3.WithPrefix(), clientv3.WithRev(from))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				r.log.Warn("cluster: replica watch compacted; reloading everything", "from", from, "compacted", resp.CompactRevision)
				reload = true
				break
			}
			if err := resp.Err(); err != nil {
				r.log.Warn("cluster: replica watch", "err", err)
				break
			}
			if len(resp.Events) == 0 {
				continue
			}
			if err := r.apply(ctx, resp.Events); err != nil {
				if errors.Is(err, errLocalWrite) {
					// The file refused the write (a failing disk): the
					// next try watches again from what was applied.
					r.log.Warn("cluster: replica: the local file refused the change; retrying", "err", err)
					break
				}
				r.log.Error("cluster: replica: apply to the local file; reloading", "err", err)
				reload = true
				break
			}
			backoff = watchRetryMin
		}
		stop()
		if reload && ctx.Err() == nil {
			if err := r.load(ctx, true); err != nil {
				r.log.Error("cluster: replica reload", "err", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !pause(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

// errLocalWrite marks an apply that the local file's writer refused (or
// whose commit failed) while the change itself applied.
var errLocalWrite = errors.New("cluster: replica: local write")

// apply applies the events of one watch response in one transaction,
// then runs the hooks.
func (r *Replica) apply(ctx context.Context, events []*clientv3.Event) error {
	var changed [][][]byte
	var rev, dataRev int64
	revKey := r.prefix + "data-rev"
	var fnErr error
	err := r.write(ctx, func(tx *bolt.Tx) (err error) {
		defer func() { fnErr = err }()
		for _, ev := range events {
			k := string(ev.Kv.Key)
			rev = max(rev, ev.Kv.ModRevision)
			if k == revKey {
				dataRev = ev.Kv.ModRevision
				continue
			}
			if !strings.HasPrefix(k, r.prefix+dataPrefixSuffix) {
				continue
			}
			var path [][]byte
			var err error
			if ev.Type == clientv3.EventTypeDelete {
				path, err = r.applyDelete(tx, k)
			} else {
				path, err = r.applyPut(tx, k, ev.Kv.Value)
			}
			if err != nil {
				return err
			}
			if path != nil {
				changed = append(changed, path)
			}
		}
		return nil
	})
	if err != nil && fnErr == nil {
		return fmt.Errorf("%w: %w", errLocalWrite, err)
	}
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		r.runHooks(changed)
	}
	r.setApplied(rev, dataRev)
	return nil
}
