package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// call sends a JSON request with a bearer token to the ops env's server and
// decodes a 2xx answer into out; it returns the status and the body.
func (e *opsEnv) call(method, path, token string, body, out any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, b
}

// must is call that fails the test unless the answer is want (and, for an
// error, the reason).
func (e *opsEnv) must(want int, reason, method, path, token string, body, out any) {
	e.t.Helper()
	code, b := e.call(method, path, token, body, out)
	var eb errorBody
	if code/100 != 2 {
		_ = json.Unmarshal(b, &eb)
	}
	if code != want || eb.Error.Reason != reason {
		e.t.Fatalf("%s %s: %d %s, want %d %q", method, path, code, b, want, reason)
	}
}

// user creates a user of ent and returns its API key.
func (e *opsEnv) user(ent, sid, name, mobile string, role policy.Role) string {
	e.t.Helper()
	op := policy.OperatorActor("test")
	if _, err := e.pol.CreateUser(op, policy.NewUser{Enterprise: ent, SystemID: sid, Name: name, Mobile: mobile,
		Password: "pw" + sid[:min(len(sid), 6)], Role: role}); err != nil {
		e.t.Fatal(err)
	}
	key, err := e.pol.IssueAPIKey(op, sid)
	if err != nil {
		e.t.Fatal(err)
	}
	return key
}

// FAQ 16, 18: this month's usage and past bills, each month with the package
// in force in it; a package change leaves past months' bills as they were,
// for the enterprise and for the operator's bill alike.
func TestUsageAndBills(t *testing.T) {
	e := newOpsEnv(t) // 2026-10-15
	e.enterprise("G1", "一号公司", 1)
	e.enterprise("G2", "二号公司", 2)
	g1admin := e.user("G1", "g1admin", "管理员", "13712345678", policy.RoleAdmin)
	g1user := e.user("G1", "g1user", "员工", "13712345679", policy.RoleUser)
	g2admin := e.user("G2", "g2admin", "乙管理员", "13712345670", policy.RoleAdmin)
	D, A := queue.StateDelivered, queue.StateAccepted
	oct := time.Date(2026, 10, 20, 0, 0, 0, 0, shanghai)
	nov := time.Date(2026, 11, 10, 0, 0, 0, 0, shanghai)
	e.send("G1", oct, oct.Add(time.Minute), D, D, D, D, D, D, D) // 7: 5 included + 2 × 0.10
	e.send("G1", oct, oct.Add(time.Minute), queue.StateUndeliverable)

	var octBill BillLine
	e.must(http.StatusOK, "", "GET", "/v1/bills?month=2026-10", g1admin, nil, &octBill)
	if octBill.Package != 1 || octBill.Delivered != 7 || octBill.TotalFen != 20_20 || octBill.TotalYuan != "20.20" {
		t.Fatalf("October so far: %+v", octBill)
	}

	// November: the operator moves G1 to package 2.
	e.clock.Set(nov)
	e.must(http.StatusOK, "", "PATCH", "/admin/v1/enterprises/G1", opsToken, map[string]any{"package": 2}, nil)
	e.send("G1", nov, nov.Add(time.Minute), D, D, D)
	e.send("G1", nov, nov, A)

	var again BillLine
	e.must(http.StatusOK, "", "GET", "/v1/bills?month=2026-10", g1admin, nil, &again)
	if !reflect.DeepEqual(again, octBill) {
		t.Errorf("October after the package change:\n%+v\nwant\n%+v", again, octBill)
	}
	resp := e.get("/admin/v1/bill", map[string][]string{"month": {"2026-10"}, "enterprise": {"G1"}})
	var lines []BillLine
	if err := json.NewDecoder(resp.Body).Decode(&lines); err != nil || len(lines) != 1 || !reflect.DeepEqual(lines[0], octBill) {
		t.Errorf("operator's October bill: %+v %v, want %+v", lines, err, octBill)
	}

	var u MonthUsage
	e.must(http.StatusOK, "", "GET", "/v1/usage", g1user, nil, &u) // every member sees usage
	if u.Month != "2026-11" || u.Package != 2 || u.Included != 100 || u.Delivered != 3 || u.Reserved != 1 ||
		u.Overage != 0 || u.FeeFen != 50_00 || u.TotalYuan != "50.00" || u.Limit != -1 || u.Remaining != -1 {
		t.Errorf("November usage: %+v", u)
	}
	// A cap shows as the month's limit: (60 − 50) CNY / 0.09 = 111 overage segments.
	e.must(http.StatusOK, "", "PATCH", "/admin/v1/enterprises/G1", opsToken, map[string]any{"cap_yuan": "60"}, nil)
	e.must(http.StatusOK, "", "GET", "/v1/usage", g1admin, nil, &u)
	if u.Limit != 211 || u.Remaining != 207 || u.OverageRateFen != 9 {
		t.Errorf("usage with a cap: %+v", u)
	}

	var list BillList
	e.must(http.StatusOK, "", "GET", "/v1/bills", g1admin, nil, &list)
	if len(list.Bills) != 1 || !reflect.DeepEqual(list.Bills[0], octBill) {
		t.Errorf("past bills in November: %+v", list.Bills)
	}
	e.clock.Set(nov.AddDate(0, 1, 0))
	e.must(http.StatusOK, "", "GET", "/v1/bills", g1admin, nil, &list)
	if len(list.Bills) != 2 || !reflect.DeepEqual(list.Bills[1], octBill) || list.Bills[0].Month != "2026-11" ||
		list.Bills[0].Package != 2 || list.Bills[0].TotalFen != 50_00 || list.Bills[0].Pending != 1 {
		t.Errorf("past bills in December: %+v", list.Bills)
	}

	// Bad input and isolation.
	e.must(http.StatusBadRequest, "invalid", "GET", "/v1/bills?month=2026-13", g1admin, nil, nil)
	e.must(http.StatusBadRequest, "invalid", "GET", "/v1/bills?month=26-10", g1admin, nil, nil)
	e.must(http.StatusNotFound, "not_found", "GET", "/v1/bills?month=2026-09", g1admin, nil, nil) // before the enterprise
	e.must(http.StatusNotFound, "not_found", "GET", "/v1/bills?month=2027-01", g1admin, nil, nil) // the future
	e.must(http.StatusForbidden, "forbidden", "GET", "/v1/bills", g1user, nil, nil)
	e.must(http.StatusUnauthorized, "unauthorized", "GET", "/v1/usage", "qxtd_nope", nil, nil)
	var g2 BillLine
	e.must(http.StatusOK, "", "GET", "/v1/bills?month=2026-10", g2admin, nil, &g2)
	if g2.Enterprise != "G2" || g2.Delivered != 0 || g2.Package != 2 || g2.TotalFen != 50_00 {
		t.Errorf("G2's October: %+v", g2)
	}
}
