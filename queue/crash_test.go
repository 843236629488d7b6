package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// TestKillNineLosesNothingAcknowledged runs writers in a child process,
// kills it with SIGKILL while commits are in flight, and checks that every
// message whose Enqueue had returned (and every Submitted) is in the file,
// and that the file is consistent.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	if path := os.Getenv("QUEUE_CRASH_CHILD"); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "queue.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillNineLosesNothingAcknowledged$")
	cmd.Env = append(os.Environ(), "QUEUE_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := make(map[uint64]bool) // id → submitted too
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 3000 {
		var kind string
		var id uint64
		if _, err := fmt.Sscanf(sc.Text(), "%s %d", &kind, &id); err != nil {
			continue // test framework output
		}
		acked[id] = acked[id] || kind == "submitted"
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child acknowledged only %d messages", len(acked))
	}

	s := openStoreAt(t, path, Options{})
	if err := s.Check(); err != nil {
		t.Fatalf("after kill -9: %v", err)
	}
	submitted := 0
	for id, sub := range acked {
		m, err := s.Get(id)
		if err != nil {
			t.Fatalf("acknowledged message %d lost: %v", id, err)
		}
		if sub {
			submitted++
			if m.Parts[0].State != StateSubmitted {
				t.Errorf("message %d: Submitted acknowledged, state %s", id, m.Parts[0].State)
			}
		}
	}
	t.Logf("%d acknowledged messages (%d submitted) all present after kill -9", len(acked), submitted)
}

// crashChild enqueues from 32 writers and marks every other message
// Submitted, printing each acknowledgement, until it is killed.
func crashChild(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	say := func(kind string, id uint64) {
		mu.Lock()
		fmt.Fprintf(w, "%s %d\n", kind, id)
		w.Flush()
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := 0; ; j++ {
				m := msg("alice", strconv.Itoa(i), 1)
				if err := s.Enqueue(context.Background(), m); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				say("enqueued", m.ID)
				if j%2 == 0 {
					if err := s.Submitted(context.Background(), Key{m.ID, 0}, strconv.FormatUint(m.ID, 16), m.AcceptedAt); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					say("submitted", m.ID)
				}
			}
		})
	}
	wg.Wait()
}
