package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestManagementWriteOnFailingDisk: a change of the policy's (here a
// contact) made while the disk's syncs fail is answered 503 store_error
// with Retry-After, never 500, and the answer says whether it stands:
// one whose commit was written but not synced is in effect (every read
// sees it), one refused while the disk has not confirmed a commit since
// is not. Once a commit syncs again, changes go through.
func TestManagementWriteOnFailingDisk(t *testing.T) {
	var failing atomic.Bool
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond}, syncFault: func() error {
		if failing.Load() {
			return errors.New("fdatasync: input/output error")
		}
		return nil
	}})
	alice := r.keys["alice"]
	names := func() []string {
		t.Helper()
		var list ContactList
		r.must(http.StatusOK, "GET", "/v1/contacts", alice, nil, &list)
		var out []string
		for _, c := range list.Contacts {
			out = append(out, c.Name)
		}
		return out
	}
	add := func(name string, n int) (int, string, http.Header) {
		t.Helper()
		code, body, hdr := keyedPost(t, r.url, "/v1/contacts", alice, "", ContactIn{Name: name, Number: fmt.Sprintf("1370000%04d", n)})
		return code, string(body), hdr
	}
	// The first commit once the disk fails must be the contact's:
	// another write of the daemon's may take it.
	written := ""
	for try := 0; written == ""; try++ {
		if try == 20 {
			t.Fatal("in 20 tries, no contact was the commit whose sync failed")
		}
		name := fmt.Sprintf("客户%d", try)
		failing.Store(true)
		code, body, hdr := add(name, try)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"store_error"`) || hdr.Get("Retry-After") == "" {
			t.Fatalf("a contact, the sync failing: %d %s (Retry-After %q), want 503 store_error with Retry-After", code, body, hdr.Get("Retry-After"))
		}
		stands := slices.Contains(names(), name)
		if says := strings.Contains(body, "in effect"); says != stands {
			t.Fatalf("the answer %s, yet the contact is listed: %v", body, stands)
		}
		if stands {
			written = name
			break
		}
		failing.Store(false)
		if err := r.store.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Sealed: nothing more is written while the disk fails.
	if code, body, _ := add("封存之后", 100); code != http.StatusServiceUnavailable || strings.Contains(body, "in effect") {
		t.Fatalf("a contact after the unsynced commit: %d %s, want 503, not written", code, body)
	}
	if slices.Contains(names(), "封存之后") {
		t.Fatal("the refused contact is listed")
	}
	failing.Store(false)
	if err := r.store.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := add("封存之后", 100); code != http.StatusCreated {
		t.Fatalf("the contact once the disk is back: %d %s", code, body)
	}
	if got := names(); !slices.Contains(got, written) || !slices.Contains(got, "封存之后") {
		t.Fatalf("contacts %v, want %s and 封存之后", got, written)
	}
}
