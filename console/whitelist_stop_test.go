package console

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
)

// TestStoppedOffWhitelist: a scheduled message whose number the
// enterprise's admin deletes from 白名单维护 before its time is not sent;
// the delete's notice says so, and the message's detail says why, not
// FAQ 6's causes, and links to the whitelist (the desk's: to the
// enterprise).
func TestStoppedOffWhitelist(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "周末大促", SendAt: time.Now().Add(24 * time.Hour).Format(time.RFC3339)})[0]
	amy := r.client()
	amy.login("amy")
	amy.get("/whitelist").wantPage(t, "删除号码后，发往该号码、还没有发出的短信")
	a := amy.submit("/whitelist", "/whitelist/"+numA2+"/delete", url.Values{})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("delete: %d %s", a.Status, a.Body)
	}
	amy.get(a.Location).wantPage(t, "已从白名单删除 "+numA2+"；发往该号码、还没有发出的短信也不再发出")
	mine, desk := stoppedAtItsTime(t, r, key, id, "not_whitelisted")
	mine.wantPage(t, "这个号码在这条短信发出之前已从本企业的白名单中删除", "本平台的错误码：not_whitelisted（", `href="/whitelist"`, "没有发出的短信不收费")
	desk.wantPage(t, "已从本企业的白名单中删除", `href="/ops/enterprises/A"`)
}
