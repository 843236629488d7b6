package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestApplicationAcrossRestart: an application accepted (202) survives a
// kill -9 of the real daemon; after the restart the account manager
// approves it, the first password reaches the contact mobile by SMS through
// qxtd itself, and the new admin binds over SMPP with it.
func TestApplicationAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	sim, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	b, _ := os.ReadFile(cfg)
	s := strings.Replace(string(b), "policy: { bcrypt_cost: 4 }",
		"policy: { bcrypt_cost: 4, notify_enterprise: SYS, notify_source: \"10658000\" }", 1)
	s = strings.Replace(s, "enterprises:\n", "enterprises:\n  - { code: SYS, signature: \"【企信通】\", national: true, offnet: true, no_whitelist: true, tps: 1000 }\n", 1)
	if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	code, body := postJSON(t, http.MethodPost, "http://"+d.httpAddr+"/v1/applications", "",
		`{"group_code":"GD0769777","name":"东莞测试公司","contact_mobile":"13712345671","package":2,"signature":"【东莞测试】"}`)
	if code != http.StatusAccepted {
		t.Fatalf("apply: %d %s", code, body)
	}
	var st struct{ Number string }
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Number == "" {
		t.Fatalf("apply: %s %v", body, err)
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d = startDaemon(t, cfg)
	base := "http://" + d.httpAddr
	code, body = postJSON(t, http.MethodGet, base+"/admin/v1/applications", "test-token", "")
	if code != http.StatusOK || !strings.Contains(body, st.Number) {
		t.Fatalf("pending after restart: %d %s", code, body)
	}
	code, body = postJSON(t, http.MethodPost, base+"/admin/v1/applications/"+st.Number+"/approve", "test-token", `{}`)
	if code != http.StatusOK || !strings.Contains(body, `"password_sent":true`) {
		t.Fatalf("approve: %d %s", code, body)
	}
	msgs := waitReceived(t, sim, "13712345671", 20*time.Second)
	frames := make([]segment.Frame, len(msgs))
	for i, m := range msgs {
		frames[i] = segment.Frame{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs}
	}
	text, err := segment.Reassemble(frames, segment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`初始密码：([!-~]+)。`).FindStringSubmatch(text)
	if m == nil || !strings.HasPrefix(text, "【企信通】") {
		t.Fatalf("approval SMS %q", text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: d.smppAddr, SystemID: "GD0769777", Password: m[1], Kind: smpp.BindTransmitter})
	if err != nil {
		t.Fatalf("bind with the first password: %v", err)
	}
	_ = c.Close()
	code, body = postJSON(t, http.MethodGet, base+"/v1/applications/"+st.Number, "", "")
	if code != http.StatusOK || !strings.Contains(body, `"state":"approved"`) {
		t.Fatalf("applicant sees %d %s", code, body)
	}
}
