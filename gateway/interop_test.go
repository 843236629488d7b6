package gateway_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmpp "github.com/fiorix/go-smpp/smpp"
	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestInteropGoSMPPClient binds with a standard third-party client
// library (go-smpp's Transceiver, its own session code, not ours),
// submits GSM and UCS-2 text and receives both receipts.
func TestInteropGoSMPPClient(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	receipts := make(chan pdu.Body, 4)
	tc := &gosmpp.Transceiver{
		Addr: r.addr, User: "esme", Passwd: "pw",
		RespTimeout: 5 * time.Second,
		Handler: func(p pdu.Body) {
			if p.Header().ID == pdu.DeliverSMID {
				receipts <- p
			}
		},
	}
	status := tc.Bind()
	select {
	case st := <-status:
		if st.Status() != gosmpp.Connected {
			t.Fatalf("go-smpp bind: %v %v", st.Status(), st.Error())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("go-smpp did not bind")
	}
	defer tc.Close()

	ids := map[string]bool{}
	for _, text := range []pdutext.Codec{pdutext.Raw("hello from go-smpp"), pdutext.UCS2("中文短信")} {
		sm, err := tc.Submit(&gosmpp.ShortMessage{
			Src: "10690001", Dst: "13800138000", Text: text, Register: pdufield.FinalDeliveryReceipt,
		})
		if err != nil {
			t.Fatalf("go-smpp submit: %v", err)
		}
		ids[sm.RespID()] = true
	}
	deadline := time.After(15 * time.Second)
	for len(ids) > 0 {
		select {
		case p := <-receipts:
			rc, err := smpp.ParseReceipt(p)
			if err != nil {
				t.Fatalf("receipt: %v", err)
			}
			if !ids[rc.ID] {
				t.Fatalf("receipt for unknown id %q", rc.ID)
			}
			if rc.State != smpp.StateDelivered {
				t.Fatalf("receipt state %s", rc.State.Stat())
			}
			// go-smpp decodes deliver_sm with the #73 layout in mind: the
			// text must still start where the receipt text starts.
			if sm := smpp.Bytes(p, pdufield.ShortMessage); len(sm) < 3 || string(sm[:3]) != "id:" {
				t.Fatalf("short_message %q does not start with id:", sm)
			}
			delete(ids, rc.ID)
		case <-deadline:
			t.Fatalf("receipts missing for %v", ids)
		}
	}
}

// TestInteropGoSMPPSubmitLongMsg: go-smpp's own splitter (16-bit UDH
// reference, byte slices of 132 octets that can cut a UTF-16 surrogate
// pair in two) sends a long text with an emoji across a cut; qxtd
// reassembles it, signs and re-segments it, and answers one receipt per
// part id.
func TestInteropGoSMPPSubmitLongMsg(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	receipts := make(chan pdu.Body, 8)
	tc := &gosmpp.Transceiver{
		Addr: r.addr, User: "esme", Passwd: "pw", RespTimeout: 5 * time.Second,
		Handler: func(p pdu.Body) {
			if p.Header().ID == pdu.DeliverSMID {
				receipts <- p
			}
		},
	}
	if st := <-tc.Bind(); st.Status() != gosmpp.Connected {
		t.Fatalf("go-smpp bind: %v", st.Error())
	}
	defer tc.Close()
	// 65 Chinese characters then an emoji: octets 130–133 hold the
	// surrogate pair, which go-smpp's 132-octet cut splits.
	text := strings.Repeat("长", 65) + "😀" + strings.Repeat("文", 20)
	parts, err := tc.SubmitLongMsg(&gosmpp.ShortMessage{
		Src: "10690001", Dst: "13800138000", Text: pdutext.UCS2(text), Register: pdufield.FinalDeliveryReceipt,
	})
	if err != nil {
		t.Fatalf("SubmitLongMsg: %v", err)
	}
	ids := map[string]bool{}
	for i := range parts {
		ids[parts[i].RespID()] = true
	}
	if len(ids) != 2 {
		t.Fatalf("go-smpp sent %d parts with ids %v, want 2", len(parts), ids)
	}
	deadline := time.After(15 * time.Second)
	for len(ids) > 0 {
		select {
		case p := <-receipts:
			rc, err := smpp.ParseReceipt(p)
			if err != nil || !ids[rc.ID] || rc.State != smpp.StateDelivered {
				t.Fatalf("receipt %+v, %v (waiting for %v)", rc, err, ids)
			}
			delete(ids, rc.ID)
		case <-deadline:
			t.Fatalf("receipts missing for %v", ids)
		}
	}
	var frames []segment.Frame
	for _, m := range r.sim.Received() {
		frames = append(frames, segment.Frame{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs})
	}
	got, err := segment.Reassemble(frames, segment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "【测试】" + text; got != want {
		t.Fatalf("the SMSC got %q\nwant           %q", got, want)
	}
}

// TestInteropNetSMPP: an ESME written with Perl's Net::SMPP (Debian's
// libnet-smpp-perl, another independent implementation; .ci/run installs
// it) binds, submits GSM and UCS-2 text, a text by data_sm and a submit_multi to a number it
// may reach and one it may not (refused in unsuccess_sme with qxtd's
// code), gets every receipt with receipted_message_id and message_state
// as its library decodes them, queries a message, and unbinds cleanly
// (testdata/netsmpp_esme.pl).
func TestInteropNetSMPP(t *testing.T) {
	if err := exec.Command("perl", "-MNet::SMPP", "-e", "1").Run(); err != nil {
		t.Fatalf("perl with Net::SMPP: %v (apt-get install libnet-smpp-perl; .ci/run installs it)", err)
	}
	// carol's enterprise has no service number: her source goes out as given.
	// The receipts come once the client submitted all (within 0.1 s):
	// Net::SMPP drops a deliver_sm that comes while it waits for a
	// response, unanswered, and qxtd sends it again only after its
	// response timeout (10 s), which is not what this test is about.
	r, _ := twoWayRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 500 * time.Millisecond}})
	host, port, err := net.SplitHostPort(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "perl", "testdata/netsmpp_esme.pl", host, port, "carol", "secret3",
		"13712345678", "13800000000").CombinedOutput()
	if err != nil {
		t.Fatalf("Net::SMPP client: %v\n%s", err, out)
	}
	t.Logf("Net::SMPP client:\n%s", out)
	submitted := map[string]bool{}
	receipts, query, unbound := 0, "", ""
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, " ", 4)
		switch f[0] {
		case "submitted", "data":
			submitted[f[1]] = true
		case "multi":
			// One recipient taken, the other (another province's China
			// Mobile number) refused: scope_national.
			if len(f) != 4 || f[2] != "1" || f[3] != "13800000000:0x00000401" {
				t.Errorf("submit_multi: %q, want one refused, 13800000000 with 0x00000401", line)
			}
			submitted[f[1]] = true
		case "receipt":
			if len(f) < 4 || !submitted[f[1]] || f[2] != strconv.Itoa(int(smpp.StateDelivered)) ||
				!strings.HasPrefix(f[3], "id:"+f[1]+" ") || !strings.Contains(f[3], "stat:DELIVRD") {
				t.Errorf("receipt line %q: want a DELIVRD receipt of a submitted id", line)
			}
			receipts++
		case "query":
			query = line
		case "unbound":
			unbound = f[1]
		}
	}
	if len(submitted) != 4 || receipts != 4 || unbound != "0x00000000" {
		t.Fatalf("Net::SMPP client: %d submitted, %d receipts, unbind status %q; its output:\n%s", len(submitted), receipts, unbound, out)
	}
	// query_sm: OK, DELIVERED (2), a final_date in SMPP's absolute format.
	if f := strings.Fields(query); len(f) != 5 || f[2] != "0x00000000" || f[3] != "2" || len(f[4]) != 16 {
		t.Errorf("query_sm: %q, want status 0, state 2 and a 16-character final_date", query)
	}
}

// TestInteropNetSMPPUpstream: qxtd's upstream binds to an SMSC written
// with Perl's Net::SMPP (testdata/netsmpp_smsc.pl: hex message ids, a
// receipt in Appendix B text only, sent at once): messages go out, GSM
// signed into UCS-2 and a long one in concatenated parts, and every
// receipt comes back to the ESME as DELIVRD.
func TestInteropNetSMPPUpstream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	smsc := startScript(t, ctx, ".", "perl", "testdata/netsmpp_smsc.pl", "up", "uppw")
	port := smsc.listening()
	r := newRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds = "127.0.0.1:"+port, 1 // it takes one connection
	}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ids := submitThreeKinds(t, ctx, e, "1069", "13800138000", "hello Net::SMPP")
	wantReceipts(t, e, ids, smpp.StateDelivered)
	// The signature is Chinese: every message goes out in UCS-2; the long
	// one (【测试】 and 168 characters) in 3 parts with a UDH.
	smsc.wantUCS2Submits(t, 6, 0)
	r.stop() // qxtd unbinds: the SMSC ends
	if l := smsc.next(); l != "closed" {
		t.Errorf("the SMSC said %q after qxtd stopped, want closed", l)
	}
	if err := smsc.wait(); err != nil {
		t.Errorf("the Net::SMPP SMSC: %v", err)
	}
}

// submitThreeKinds submits, from src to dst, a GSM text (hello), a UCS-2
// one and a long one in message_payload (in parts to the SMSC), each
// asking for a receipt: the upstream interop tests' messages. It returns
// their ids.
func submitThreeKinds(t *testing.T, ctx context.Context, e *esme, src, dst, hello string) []string {
	t.Helper()
	texts := []string{hello, "中文短信", strings.Repeat("a long text in parts ", 8)}
	var ids []string
	for i, text := range texts {
		p := submitSM(src, dst, text)
		switch i {
		case 1:
			_ = p.Fields().Set(pdufield.DataCoding, uint8(0x08))
			_ = p.Fields().Set(pdufield.ShortMessage, ucs2(t, text))
		case 2:
			p = payloadSM(t, dst, text) // longer than a short_message
			_ = p.Fields().Set(pdufield.SourceAddr, src)
		}
		id, err := e.submit(ctx, p)
		if err != nil {
			t.Fatalf("submit %q: %v", text, err)
		}
		ids = append(ids, id)
	}
	return ids
}
