package queue_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/queue"
)

// The life of a message: accepted, leased by the sender, accepted by the
// SMSC, delivered, its receipt forwarded to the submitting ESME, billed.
func Example() {
	dir, err := os.MkdirTemp("", "qxtd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := queue.Open(filepath.Join(dir, "qxtd.db"), queue.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

	// The ESME's submit_sm is acknowledged once Enqueue returns: committed.
	m := &queue.Message{
		Account: "esme1", Enterprise: "G1", Source: "10657", Dest: "+8613712345678",
		Upstream: "smsc1", RegisteredDelivery: 1, AcceptedAt: at,
		Parts: []queue.Part{{Body: []byte("【某某公司】会议改到下午三点")}},
	}
	if err := s.Enqueue(ctx, m); err != nil {
		log.Fatal(err)
	}
	fmt.Println("message", m.ID, m.Parts[0].State)

	// The sender takes what is due and submits it upstream.
	jobs, err := s.Due(at, 10, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, j := range jobs {
		fmt.Println("due", j.Key)
		// submit_sm_resp from the SMSC: its message_id.
		if err := s.Submitted(ctx, j.Key, "5F3A01", at.Add(time.Second)); err != nil {
			log.Fatal(err)
		}
	}

	// The SMSC's receipt, matched by its id.
	r, err := s.ApplyDLR(ctx, queue.DLR{Upstream: "smsc1", SMSCID: "5f3a01", State: queue.StateDelivered, ErrCode: "000", DoneAt: at.Add(5 * time.Second)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("receipt", r)

	// The final receipt waits for the ESME until it acknowledges it.
	pending, err := s.PendingDLRs("esme1", 0, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pending {
		fmt.Println("forward receipt of", p.ID, p.Parts[0].State)
		if err := s.AckDLR(ctx, "esme1", p.ID); err != nil {
			log.Fatal(err)
		}
	}

	reserved, charged := s.Usage("G1", queue.BillingMonth(at))
	fmt.Println("November: reserved", reserved, "charged", charged)
	// Output:
	// message 1 accepted
	// due 1/0
	// receipt matched
	// forward receipt of 1 delivered
	// November: reserved 0 charged 1
}

// A daemon keeps the queue and a peer store (the policy package) in one
// file: OpenDB opens it, each store owns its own buckets, and the caller
// closes the file after both. One Backup then holds the whole state, and
// VerifyBackup checks a copy before it is trusted.
func ExampleOpenDB() {
	dir, err := os.MkdirTemp("", "qxtd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := queue.OpenDB(filepath.Join(dir, "qxtd.db"), queue.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close() // after the stores on it
	s, err := queue.New(db, queue.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// The peer: policy.New(db, …) in the daemon; here one bucket of its own.
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("policy_example"))
		if err != nil {
			return err
		}
		return b.Put([]byte("G1"), []byte("某某公司"))
	})
	if err != nil {
		log.Fatal(err)
	}

	backup := filepath.Join(dir, "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("verify:", queue.VerifyBackup(backup))
	// Output:
	// verify: <nil>
}
