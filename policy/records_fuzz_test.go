package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// policyRecord is where one record of the policy's buckets lives in the
// file: the bucket path and the key.
type policyRecord struct {
	path [][]byte
	key  []byte
}

// policyRecords lists every record (not bucket) under the policy_
// buckets of db, in the file's order.
func policyRecords(t testing.TB, db *bolt.DB) (recs []policyRecord, vals [][]byte) {
	t.Helper()
	var walk func(b *bolt.Bucket, path [][]byte) error
	walk = func(b *bolt.Bucket, path [][]byte) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil { // a nested bucket
				return walk(b.Bucket(k), append(slices.Clone(path), slices.Clone(k)))
			}
			recs = append(recs, policyRecord{path: path, key: slices.Clone(k)})
			vals = append(vals, slices.Clone(v))
			return nil
		})
	}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !bytes.HasPrefix(name, []byte("policy_")) {
				return nil
			}
			return walk(b, [][]byte{slices.Clone(name)})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs, vals
}

// fuzzFixture is newFixture with a record in every kind of bucket the
// policy keeps: whitelist entries pending and approved, an override, an
// opt-out, a signature request, an application, contacts in both books,
// an enterprise with a service number and a receipt webhook.
func fuzzFixture(t testing.TB) *fixture {
	t.Helper()
	f := newFixture(t)
	p := f.p
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := p.AddWhitelist(op, entA, []string{"13712345678", "13802412345"})
	must(err)
	_, err = p.Approve(op, entA, "+8613712345678")
	must(err)
	must(p.SetOverride(op, Override{Prefix: "1701234", Carrier: ChinaMobile, Province: "北京"}))
	_, err = p.OptOut(entA, "13923412345", 7, f.clk.Now())
	must(err)
	_, err = p.RequestSignature(f.aAdmin, entA, "【甲新】")
	must(err)
	_, err = p.SubmitApplication(NewApplication{GroupCode: "GD0755010", Name: "丙公司", ContactMobile: "13923412345",
		Package: 1, Signature: "【丙公司】"})
	must(err)
	_, err = p.AddContact(f.aUser, Book{Enterprise: entA, User: "a_user"}, ContactInput{Name: "王五", Number: "13923412345", Groups: []string{"客户"}})
	must(err)
	_, err = p.AddContact(f.aAdmin, EnterpriseBook(entA), ContactInput{Name: "赵六", Number: "13712345678", Groups: []string{"员工"}})
	must(err)
	_, err = p.UpdateEnterprise(op, entA, func(e *Enterprise) error {
		e.ServiceNumber = "1069012345"
		return nil
	})
	must(err)
	_, err = p.SetReceiptHook(op, entA, func(h *ReceiptHook) error {
		h.URL = "https://example.com/dlr"
		return nil
	})
	must(err)
	return f
}

// FuzzStoreRecords: any record of the policy's file, any bytes (a damaged
// disk, or a file written by another release), under its own key or
// another: opening the policy refuses the file with an error, or opens it
// and every reader and a write of each kind answer (with an error or not)
// without a panic. The policy's records are JSON (and a whitelist entry's
// state byte), read at open into the snapshot or from the file on demand
// (address books, applications, signature requests, opt-out lists).
//
// slot picks the record (modulo their number in fuzzFixture), key, when
// not empty, is the key it is written under instead (a second record in
// that bucket), val its value.
func FuzzStoreRecords(f *testing.F) {
	base := fuzzFixture(f)
	recs, vals := policyRecords(f, base.db)
	kinds := map[string]bool{}
	for _, r := range recs {
		kinds[string(r.path[0])] = true
	}
	for _, b := range [][]byte{bucketMeta, bucketEnterprises, bucketUsers, bucketWhitelist, bucketOverrides,
		bucketOptOuts, bucketSignatures, bucketApplications, bucketContacts} {
		if !kinds[string(b)] {
			f.Fatalf("the fixture holds no record in %s: want one of every kind", b)
		}
	}
	for i, v := range vals {
		f.Add(uint8(i), []byte(nil), v)                         // the record as it is
		f.Add(uint8(i), []byte(nil), v[:len(v)/2])              // cut short
		f.Add(uint8(i), []byte("+8613700000000"), []byte(`{}`)) // another, empty
	}
	// Each input starts from a copy of the fixture's file: building it
	// again (a commit and fsync a write) took 0.1 s an input.
	var file bytes.Buffer
	if err := base.db.View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&file); return err }); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, slot uint8, key, val []byte) {
		path := filepath.Join(t.TempDir(), "qxtd.db")
		if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		r := recs[int(slot)%len(recs)]
		if len(key) == 0 {
			key = r.key
		}
		if len(key) > bolt.MaxKeySize {
			key = key[:bolt.MaxKeySize]
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(r.path[0])
			for _, name := range r.path[1:] {
				b = b.Bucket(name)
			}
			if b.Bucket(key) != nil {
				return errors.New("a bucket's key") // not a record: bbolt refuses to overwrite it
			}
			return b.Put(key, val)
		})
		if err != nil {
			return
		}
		clk := newClock()
		cfg := testConfig(clk)
		cfg.BcryptCost = DefaultBcryptCost // its dummy hash is written out, not made at each open
		p, err := New(db, cfg)
		if err != nil {
			if bytes.Equal(key, r.key) && bytes.Equal(val, vals[int(slot)%len(vals)]) {
				t.Fatalf("the fixture's own record %q %q refused: %v", r.path, r.key, err)
			}
			return // refused at open, with an error: what a damaged file should get
		}
		exercisePolicy(p, clk)
	})
}

// exercisePolicy calls every reader of p and a write of each kind of
// record; their errors are not the point (the record may be damaged),
// a panic is.
func exercisePolicy(p *Policy, clk *fakeClock) {
	const number = "13712345678"
	if ent, ok := p.Lookup(entA); ok {
		_ = p.CheckEnterprise(ent)
		_, _ = p.CheckRecipient(ent, number)
		_, _ = p.CheckRecipient(ent, "13802412345")
	}
	p.Enterprises(op)
	_, _ = p.Enterprise(op, entA)
	p.Held(func(string, time.Time) {})
	_ = p.Disabled(entA)
	_, _ = p.ReplyTo("1069012345")
	_, _ = p.ReplyTo("106901234501")

	_ = p.Allowed(entA, "+8613712345678")
	_, _ = p.WhitelistStatus(entA, "+8613802412345")
	for _, st := range []WhitelistState{0, WhitelistPending, WhitelistApproved, WhitelistRejected} {
		_, _, _ = p.ListWhitelist(op, entA, st, "", 100)
	}
	_, _ = p.WhitelistCounts(op, entA)
	_, _, _ = p.ListPending(op, "", 100)
	p.PendingStats()

	_, _ = p.Users(op, entA)
	_, _ = p.User(op, "a_user")
	_, _, _ = p.Authenticate("a_user", "secret2")
	_, _, _ = p.Authenticate("a_admin", "wrong")
	_, _, _ = p.AuthenticateAPIKey("qxk_0123456789")

	_, _ = p.Overrides(op)
	_, _ = p.Classifier().Classify("17012345678")

	_ = p.OptedOut(entA, "+8613923412345")
	_ = p.OptOutCount(entA)
	_, _, _ = p.ListOptOuts(op, entA, "", 100)
	_ = p.ExportOptOuts(op, entA, func(OptOutEntry) error { return nil })
	_, _ = p.FindOptOut(op, entA, "13923412345")
	_, _ = p.OptOutsOf(op, "13923412345")

	_, _ = p.SignatureRequests(op, entA, "")
	_, _ = p.Applications(op, "", 100)
	if apps, err := p.Applications(op, "", 1); err == nil && len(apps) > 0 {
		_, _ = p.LookupApplication(apps[0].Number)
	}

	for _, b := range []Book{EnterpriseBook(entA), {Enterprise: entA, User: "a_user"}} {
		_, _ = p.Contacts(op, b, "")
		_, _ = p.ContactGroups(op, b)
		_, _ = p.GroupNumbers(op, b, []string{"客户", "员工"})
	}

	// A write of each kind: each reads what it changes back from the file.
	_, _ = p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Name = "甲公司（新）"; return nil })
	_, _ = p.AddWhitelist(op, entA, []string{"13712345679"})
	_, _ = p.Approve(op, entA, "+8613802412345")
	_, _ = p.UpdateUser(op, "a_user", UserUpdate{})
	_, _ = p.OptOut(entA, "13712345678", 8, clk.Now())
	_ = p.RemoveOptOut(op, entA, "13923412345")
	_, _ = p.AddContact(Actor{Enterprise: entA, Admin: true, Name: "a_admin"}, EnterpriseBook(entA), ContactInput{Name: "钱七", Number: "13802412345"})
	_ = p.SetOverride(op, Override{Prefix: "1701235", Carrier: ChinaMobile, Province: "北京"})
	if reqs, err := p.SignatureRequests(op, entA, ""); err == nil && len(reqs) > 0 {
		_, _ = p.DecideSignature(op, reqs[0].ID, true, "")
	}
}
