package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/reminder"
)

// TestReplicaReminders: reminders written on one node (ids from the
// bucket's sequence) are read on the other, edits and deletes too.
func TestReplicaReminders(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)
	b := openNode(t, cli, tempPath(t, "b.db"), true)
	svc := func(n *node) *reminder.Service {
		s, err := reminder.New(reminder.Config{DB: n.db, Policy: n.p, Shared: n.rep})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ra, rb := svc(a), svc(b)
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: "A", Name: "甲公司", Signature: "【甲公司】", Package: 1}); err != nil {
		t.Fatal(err)
	}
	owner, err := a.p.CreateUser(operator, policy.NewUser{Enterprise: "A", Name: "甲", SystemID: "alice", Password: "secret1", Mobile: "13712345678"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "alice on b", func() bool { _, err := b.p.User(operator, "alice"); return err == nil })
	view := reminder.Viewer{Enterprise: "A"}
	sp := reminder.Spec{Text: "standup", Rule: reminder.Rule{Freq: reminder.Daily, Start: time.Now().Add(24 * time.Hour)}}
	r1, err := ra.Create(owner, sp)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := rb.Create(owner, sp)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID == r2.ID {
		t.Fatalf("both nodes gave id %d", r1.ID)
	}
	waitFor(t, time.Second, "a's reminder on b", func() bool { _, err := rb.Get(view, r1.ID); return err == nil })
	sp.Text = "retro"
	if _, err := rb.Update(context.Background(), view, r1.ID, sp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "b's edit on a", func() bool { r, err := ra.Get(view, r1.ID); return err == nil && r.Text == "retro" })
	if err := ra.Delete(context.Background(), view, r2.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "a's delete on b", func() bool {
		_, err := rb.Get(view, r2.ID)
		return errors.Is(err, reminder.ErrNotFound)
	})
}
