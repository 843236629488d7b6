package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// queryAnswer is what query_sm_resp says of a message.
type queryAnswer struct {
	state     uint8
	finalDate string
	errorCode uint8
}

func querySM(ctx context.Context, c *smpp.Conn, id string) (queryAnswer, error) {
	p := pdu.NewQuerySM()
	_ = p.Fields().Set(pdufield.MessageID, id)
	resp, err := c.Request(ctx, p)
	if err != nil {
		return queryAnswer{}, err
	}
	return queryAnswer{smpp.Byte(resp, pdufield.MessageState), smpp.Str(resp, pdufield.FinalDate), smpp.Byte(resp, pdufield.ErrorCode)}, nil
}

func cancelSM(ctx context.Context, c *smpp.Conn, id string) error {
	p := smpp.NewPDU(smpp.CancelSMID)
	_ = p.Fields().Set(pdufield.MessageID, id)
	_, err := c.Request(ctx, p)
	return err
}

func replaceSM(ctx context.Context, c *smpp.Conn, id, schedule, text string) error {
	p := smpp.NewPDU(smpp.ReplaceSMID)
	_ = p.Fields().Set(pdufield.MessageID, id)
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, schedule)
	_ = p.Fields().Set(pdufield.ShortMessage, []byte(text))
	_, err := c.Request(ctx, p)
	return err
}

// submitScheduled submits a message due in 10 minutes.
func submitScheduled(ctx context.Context, t *testing.T, c *smpp.Conn, dst, text string) string {
	t.Helper()
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, "10690001")
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.ShortMessage, []byte(text))
	_ = f.Set(pdufield.ScheduleDeliveryTime, "000000001000000R")
	resp, err := c.Request(ctx, p)
	if err != nil {
		t.Fatalf("scheduled submit: %v", err)
	}
	return smpp.Str(resp, pdufield.MessageID)
}

func wantSMPPStatus(t *testing.T, what string, err error, want pdu.Status) {
	t.Helper()
	var st pdu.Status
	if !errors.As(err, &st) || st != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

func login(t *testing.T, httpAddr, systemID, password string) string {
	t.Helper()
	code, body := postJSON(t, "POST", "http://"+httpAddr+"/v1/login", "", `{"system_id":"`+systemID+`","password":"`+password+`"}`)
	var lr struct{ Token string }
	if err := json.Unmarshal([]byte(body), &lr); code != http.StatusOK || err != nil || lr.Token == "" {
		t.Fatalf("login %s: %d %s", systemID, code, body)
	}
	return lr.Token
}

// TestClusterRouteToOwner: every operation on a message reaches the node
// that owns it. Three nodes; the messages are accepted on node 1; an ESME
// on node 2 queries, cancels and replaces them, the API of node 3 shows,
// changes and deletes them, exactly as node 1 would; another enterprise
// finds nothing; with node 1 killed the answers are temporary failures,
// not "not found".
func TestClusterRouteToOwner(t *testing.T) {
	t.Parallel()
	const binds = 3
	nodes, _, _ := startCluster(t, 3, binds, smpp.SimOptions{DLRDelay: 50 * time.Millisecond}, writeClusterConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	on1 := dialAs(t, nodes[0].proc.smppAddr, "esme", "secret1", newSink().handler())
	on2 := dialAs(t, nodes[1].proc.smppAddr, "esme", "secret1", newSink().handler())
	other := dialAs(t, nodes[1].proc.smppAddr, "esme2", "secret2", newSink().handler())
	http1, http3 := "http://"+nodes[0].proc.httpAddr, "http://"+nodes[2].proc.httpAddr
	token := login(t, nodes[0].proc.httpAddr, "esme", "secret1")
	otherToken := login(t, nodes[2].proc.httpAddr, "esme2", "secret2")

	sent, err := submit(ctx, on1, "13800138101", "routed")
	if err != nil {
		t.Fatal(err)
	}
	kept := submitScheduled(ctx, t, on1, "13800138102", "old text")
	dropped := submitScheduled(ctx, t, on1, "13800138103", "never sent")
	deleted := submitScheduled(ctx, t, on1, "13800138104", "deleted over HTTP")
	for _, id := range []string{sent, kept, dropped, deleted} {
		if n, err := strconv.ParseUint(id, 10, 64); err != nil || queue.NodeOf(n) != 1 {
			t.Fatalf("id %s: node %d (%v), want node 1's", id, queue.NodeOf(n), err)
		}
	}

	t.Run("query_sm on node 2 gets the owner's answer", func(t *testing.T) {
		var got queryAnswer
		waitCond(t, 15*time.Second, "the message delivered, as node 2 sees it", func() bool {
			got, err = querySM(ctx, on2, sent)
			return err == nil && got.state == uint8(smpp.StateDelivered)
		})
		want, err := querySM(ctx, on1, sent)
		if err != nil || got != want || got.finalDate == "" {
			t.Errorf("node 2 answers %+v, node 1 %+v (%v)", got, want, err)
		}
	})

	t.Run("query_sm on node 2 of one part of a message split by its ESME", func(t *testing.T) {
		p := pdu.NewSubmitSM(nil)
		f := p.Fields()
		_ = f.Set(pdufield.SourceAddr, "10690001")
		_ = f.Set(pdufield.DestinationAddr, "13800138106")
		_ = f.Set(pdufield.ESMClass, uint8(0x40))
		_ = f.Set(pdufield.ShortMessage, append([]byte{5, 0, 3, 0x42, 2, 1}, "first half, the second never comes"...))
		resp, err := on1.Request(ctx, p)
		if err != nil {
			t.Fatalf("part 1 of 2: %v", err)
		}
		part := smpp.Str(resp, pdufield.MessageID)
		want, err1 := querySM(ctx, on1, part)
		got, err2 := querySM(ctx, on2, part)
		if err1 != nil || err2 != nil || got != want || got.state != uint8(smpp.StateEnroute) {
			t.Errorf("query_sm of a waiting part: node 2 %+v (%v), node 1 %+v (%v), want ENROUTE from both", got, err2, want, err1)
		}
	})

	t.Run("cancel_sm on node 2 cancels at the owner", func(t *testing.T) {
		if err := cancelSM(ctx, on2, dropped); err != nil {
			t.Fatalf("cancel_sm: %v", err)
		}
		code, body := postJSON(t, "GET", http1+"/v1/messages/"+dropped, token, "")
		if code != http.StatusOK || !strings.Contains(body, `"state":"cancelled"`) {
			t.Errorf("node 1 shows %d %s, want it cancelled", code, body)
		}
		// Again: as on the owner (cancelling is idempotent there).
		if err1, err2 := cancelSM(ctx, on1, dropped), cancelSM(ctx, on2, dropped); err2 != nil || err1 != nil {
			t.Errorf("cancel_sm again: node 2 %v, node 1 %v", err2, err1)
		}
		// Of a message already sent: the owner's ESME_RCANCELFAIL.
		wantSMPPStatus(t, "cancel_sm of a sent message", cancelSM(ctx, on2, sent), smpp.StatusCancelFailed)
	})

	t.Run("replace_sm on node 2 changes the message at the owner", func(t *testing.T) {
		if err := replaceSM(ctx, on2, kept, "000000002000000R", "new text"); err != nil {
			t.Fatalf("replace_sm: %v", err)
		}
		code, body := postJSON(t, "GET", http1+"/v1/messages/"+kept, token, "")
		var m struct {
			Text      string
			Scheduled bool
			SendAt    time.Time `json:"send_at"`
		}
		if err := json.Unmarshal([]byte(body), &m); code != http.StatusOK || err != nil {
			t.Fatalf("node 1: %d %s", code, body)
		}
		if m.Text != "【测试】new text" || !m.Scheduled || time.Until(m.SendAt) < 15*time.Minute {
			t.Errorf("node 1 shows %+v, want the new text, due in 20 minutes", m)
		}
		wantSMPPStatus(t, "replace_sm of a sent message", replaceSM(ctx, on2, sent, "", "late"), smpp.StatusReplaceFailed)
	})

	t.Run("GET on node 3 renders the owner's message as node 1 does", func(t *testing.T) {
		for _, id := range []string{sent, kept, dropped} {
			c1, b1 := postJSON(t, "GET", http1+"/v1/messages/"+id, token, "")
			c3, b3 := postJSON(t, "GET", http3+"/v1/messages/"+id, token, "")
			if c1 != http.StatusOK || c3 != c1 || b3 != b1 {
				t.Errorf("message %s:\nnode 1: %d %s\nnode 3: %d %s", id, c1, b1, c3, b3)
			}
		}
	})

	t.Run("PATCH and DELETE on node 3 act at the owner", func(t *testing.T) {
		code, body := postJSON(t, "PATCH", http3+"/v1/messages/"+deleted, token, `{"text":"patched"}`)
		if code != http.StatusOK || !strings.Contains(body, `"text":"【测试】patched"`) {
			t.Fatalf("PATCH on node 3: %d %s", code, body)
		}
		code, body = postJSON(t, "DELETE", http3+"/v1/messages/"+deleted, token, "")
		_, b1 := postJSON(t, "GET", http1+"/v1/messages/"+deleted, token, "")
		if code != http.StatusOK || !strings.Contains(body, `"state":"cancelled"`) || body != b1 {
			t.Errorf("DELETE on node 3: %d %s\nnode 1 shows %s", code, body, b1)
		}
		// A second DELETE, and a PATCH of the cancelled message: node 3
		// answers as node 1 does.
		for _, req := range []struct{ method, body string }{{"DELETE", ""}, {"PATCH", `{"text":"too late"}`}} {
			c3, b3 := postJSON(t, req.method, http3+"/v1/messages/"+deleted, token, req.body)
			c1, b1 := postJSON(t, req.method, http1+"/v1/messages/"+deleted, token, req.body)
			if c3 != c1 || b3 != b1 {
				t.Errorf("%s of the cancelled message: node 3 %d %s, node 1 %d %s", req.method, c3, b3, c1, b1)
			}
		}
		// PATCH of a message already sent: the owner's 409 not_scheduled.
		c3, b3 := postJSON(t, "PATCH", http3+"/v1/messages/"+sent, token, `{"text":"too late"}`)
		c1, b1 := postJSON(t, "PATCH", http1+"/v1/messages/"+sent, token, `{"text":"too late"}`)
		if c3 != http.StatusConflict || c3 != c1 || b3 != b1 {
			t.Errorf("PATCH of a sent message: node 3 %d %s, node 1 %d %s", c3, b3, c1, b1)
		}
	})

	t.Run("another enterprise finds nothing", func(t *testing.T) {
		_, err := querySM(ctx, other, sent)
		wantSMPPStatus(t, "query_sm", err, smpp.StatusQueryFailed)
		wantSMPPStatus(t, "cancel_sm", cancelSM(ctx, other, kept), smpp.StatusCancelFailed)
		wantSMPPStatus(t, "replace_sm", replaceSM(ctx, other, kept, "", "hijack"), smpp.StatusReplaceFailed)
		for _, m := range []string{"GET", "DELETE"} {
			if code, body := postJSON(t, m, http3+"/v1/messages/"+kept, otherToken, ""); code != http.StatusNotFound {
				t.Errorf("%s by T2 on node 3: %d %s, want 404", m, code, body)
			}
		}
		if code, body := postJSON(t, "GET", http1+"/v1/messages/"+kept, token, ""); !strings.Contains(body, "new text") {
			t.Errorf("the message changed: %d %s", code, body)
		}
	})

	t.Run("owner down: a temporary failure, not not-found", func(t *testing.T) {
		owner := nodes[0]
		if err := owner.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-owner.proc.exited
		check := func(when string) {
			_, err := querySM(ctx, on2, sent)
			wantSMPPStatus(t, when+": query_sm", err, smpp.StatusSystemError)
			wantSMPPStatus(t, when+": cancel_sm", cancelSM(ctx, on2, kept), smpp.StatusSystemError)
			wantSMPPStatus(t, when+": replace_sm", replaceSM(ctx, on2, kept, "", "x"), smpp.StatusSystemError)
			if code, body := postJSON(t, "GET", http3+"/v1/messages/"+sent, token, ""); code != http.StatusServiceUnavailable {
				t.Errorf("%s: GET on node 3: %d %s, want 503", when, code, body)
			}
		}
		check("just killed (still a member: refused connections)")
		// Once its lease (4 s) expired it is no longer a member.
		waitCond(t, 15*time.Second, "node 1 gone from the membership of nodes 2 and 3", func() bool {
			return metricLine(t, "http://"+nodes[1].proc.httpAddr, "qxtd_cluster_members ") == "qxtd_cluster_members 2" &&
				metricLine(t, http3, "qxtd_cluster_members ") == "qxtd_cluster_members 2"
		})
		check("gone from the membership")
		// Node 2's own messages still answer locally.
		own, err := submit(ctx, on2, "13800138105", "local")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := querySM(ctx, on2, own); err != nil {
			t.Errorf("query_sm of node 2's own message: %v", err)
		}
	})
}

// metricLine is the first line of base's /metrics that starts with prefix.
func metricLine(t *testing.T, base, prefix string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
