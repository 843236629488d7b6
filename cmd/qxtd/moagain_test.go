package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestReplyResentAfterKill9: the replies stored just before a kill -9,
// whose answers the kill may have cut, are known after the start: the
// SMSC's resends of them on its first bind are answered and not stored
// again. A handset's own repeat once the bind is up, and a new reply,
// are stored. Before, each resend was a second copy in the inbox, at the
// receiver and at the reply webhook.
func TestReplyResentAfterKill9(t *testing.T) {
	sim, simAddr := startSim(t, smpp.SimOptions{})
	rcv, _ := hookReceiver(t)
	path := writeReplyConfig(t, simAddr, rcv.URL+"/mo", "webhooks: { allow_private: true }\n")
	inject := func(text string) {
		t.Helper()
		// The daemon's upstream binds come up after its start, and the
		// simulator may still hold the killed one's: sent until answered,
		// as an SMSC does. No event to wait on: the bind is the simulator's.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := sim.InjectMO("13712345678", "106590112", text)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("inject %q: %v", text, err)
			}
		}
	}
	counted := func(d *proc, result string) float64 {
		return metricSum(t, d, `qxtd_mo_received_total{result="`+result+`"}`)
	}

	d := startDaemon(t, path)
	inject("Y")
	inject("N")
	if n := counted(d, "matched"); n != 2 {
		t.Fatalf("stored %v replies before the kill, want 2", n)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d2 := startDaemon(t, path)
	inject("N") // the SMSC's resends, its answers lost
	inject("Y")
	inject("Y") // the handset's own repeat, on the bind that is up
	inject("Z")
	if again, stored := counted(d2, "again"), counted(d2, "matched"); again != 2 || stored != 2 {
		t.Errorf("after the start: %v taken for resends, %v stored; want 2 and 2", again, stored)
	}
	if code, body := postJSON(t, "PATCH", "http://"+d2.httpAddr+"/admin/v1/users/esme", "test-token", `{"role":"admin"}`); code != http.StatusOK {
		t.Fatalf("make esme an admin (it reads every reply): %d %s", code, body)
	}
	tok := login(t, d2.httpAddr, "esme", "secret1")
	code, body := postJSON(t, http.MethodGet, "http://"+d2.httpAddr+"/v1/inbox", tok, "")
	var inbox struct {
		Replies []struct{ Text string } `json:"replies"`
	}
	if err := json.Unmarshal([]byte(body), &inbox); code != http.StatusOK || err != nil {
		t.Fatalf("inbox: %d %s (%v)", code, body, err)
	}
	var texts []string
	for _, it := range inbox.Replies {
		texts = append(texts, it.Text)
	}
	slices.Sort(texts)
	if want := []string{"N", "Y", "Y", "Z"}; !slices.Equal(texts, want) {
		t.Errorf("inbox %q, want %q", texts, want)
	}
}
