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
	sim, path := replyDaemonConfig(t)
	d := startDaemon(t, path)
	injectUntilAnswered(t, sim, "Y")
	injectUntilAnswered(t, sim, "N")
	if n := moCounted(t, d, "matched"); n != 2 {
		t.Fatalf("stored %v replies before the kill, want 2", n)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d2 := startDaemon(t, path)
	injectUntilAnswered(t, sim, "N") // the SMSC's resends, its answers lost
	injectUntilAnswered(t, sim, "Y")
	injectUntilAnswered(t, sim, "Y") // the handset's own repeat, on the bind that is up
	injectUntilAnswered(t, sim, "Z")
	if again, stored := moCounted(t, d2, "again"), moCounted(t, d2, "matched"); again != 2 || stored != 2 {
		t.Errorf("after the start: %v taken for resends, %v stored; want 2 and 2", again, stored)
	}
	if texts, want := inboxTexts(t, d2), []string{"N", "Y", "Y", "Z"}; !slices.Equal(texts, want) {
		t.Errorf("inbox %q, want %q", texts, want)
	}
}

// TestReplyRepeatedAfterCleanStop: a SIGTERM whose unbinds the SMSC
// answered delivered every answer, and records so: after the start, the
// same reply again is the handset's, and stored.
func TestReplyRepeatedAfterCleanStop(t *testing.T) {
	sim, path := replyDaemonConfig(t)
	d := startDaemon(t, path)
	injectUntilAnswered(t, sim, "Y")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d2 := startDaemon(t, path)
	injectUntilAnswered(t, sim, "Y")
	if again, stored := moCounted(t, d2, "again"), moCounted(t, d2, "matched"); again != 0 || stored != 1 {
		t.Errorf("after the start: %v taken for resends, %v stored; want 0 and 1", again, stored)
	}
	if texts, want := inboxTexts(t, d2), []string{"Y", "Y"}; !slices.Equal(texts, want) {
		t.Errorf("inbox %q, want %q", texts, want)
	}
}

// replyDaemonConfig is a simulator and a daemon's configuration whose
// enterprise takes replies to 1065901 + extension.
func replyDaemonConfig(t *testing.T) (*smpp.Simulator, string) {
	t.Helper()
	sim, simAddr := startSim(t, smpp.SimOptions{})
	rcv, _ := hookReceiver(t)
	return sim, writeReplyConfig(t, simAddr, rcv.URL+"/mo", "webhooks: { allow_private: true }\n")
}

// injectUntilAnswered sends a reply from the handset until the daemon
// answers it: its upstream binds come up after its start, and the
// simulator may still hold a killed daemon's, as an SMSC does. No event
// to wait on: the bind is the simulator's.
func injectUntilAnswered(t *testing.T, sim *smpp.Simulator, text string) {
	t.Helper()
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

func moCounted(t *testing.T, d *proc, result string) float64 {
	t.Helper()
	return metricSum(t, d, `qxtd_mo_received_total{result="`+result+`"}`)
}

// inboxTexts is the texts of the daemon's inbox, sorted, as an admin of
// the enterprise reads them.
func inboxTexts(t *testing.T, d *proc) []string {
	t.Helper()
	if code, body := postJSON(t, "PATCH", "http://"+d.httpAddr+"/admin/v1/users/esme", "test-token", `{"role":"admin"}`); code != http.StatusOK {
		t.Fatalf("make esme an admin (it reads every reply): %d %s", code, body)
	}
	tok := login(t, d.httpAddr, "esme", "secret1")
	code, body := postJSON(t, http.MethodGet, "http://"+d.httpAddr+"/v1/inbox", tok, "")
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
	return texts
}
