package queue

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// The transaction's reused cursors (get, has, del) answer as bbolt's own
// Get and Delete do, mixed with writes in one transaction, across page
// splits, for keys present, absent, past the last key and deleted, and
// with nil values written in the same transaction.
func TestTxnCursorLookups(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte { return fmt.Appendf(nil, "k%05d", rng.IntN(3000)) }
	for round := range 3 { // the later rounds start from pages on disk
		err := db.Update(func(tx *bolt.Tx) error {
			ours, err := tx.CreateBucketIfNotExists([]byte("ours"))
			if err != nil {
				return err
			}
			twin, err := tx.CreateBucketIfNotExists([]byte("twin"))
			if err != nil {
				return err
			}
			tn := &txn{tx: tx}
			for i := range 20000 {
				k := key()
				switch op := rng.IntN(10); {
				case op < 4:
					var v []byte
					if op > 0 {
						v = bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(200))
					}
					for _, b := range []*bolt.Bucket{ours, twin} {
						if err := b.Put(k, v); err != nil {
							return err
						}
					}
				case op < 6:
					if err := tn.del(ours, k); err != nil {
						return err
					}
					if err := twin.Delete(k); err != nil {
						return err
					}
				default:
					got, want := tn.get(ours, k), twin.Get(k)
					if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
						return fmt.Errorf("round %d op %d: get %s = %q, bbolt %q", round, i, k, got, want)
					}
					wk, _ := twin.Cursor().Seek(k)
					if has := tn.has(ours, k); has != bytes.Equal(wk, k) {
						return fmt.Errorf("round %d op %d: has %s = %v", round, i, k, has)
					}
				}
			}
			// The same keys and values in both, in order.
			a, b := ours.Cursor(), twin.Cursor()
			ka, va := a.First()
			kb, vb := b.First()
			for ka != nil || kb != nil {
				if !bytes.Equal(ka, kb) || !bytes.Equal(va, vb) {
					return fmt.Errorf("round %d: bucket differs at %q / %q", round, ka, kb)
				}
				ka, va = a.Next()
				kb, vb = b.Next()
			}
			if got := tn.get(ours, []byte("zzz")); got != nil {
				return fmt.Errorf("past the last key: %q", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
