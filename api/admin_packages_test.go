package api

import (
	"net/http"
	"testing"
)

func TestAdminPackages(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	var out PackageList
	if err := e.c.Do(http.MethodGet, "/admin/v1/packages", nil, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Packages) != 12 {
		t.Fatalf("%d packages, want the FAQ's 12: %+v", len(out.Packages), out.Packages)
	}
	p1, p12 := out.Packages[0], out.Packages[11]
	if p1.ID != 1 || p1.FeeFen != 2000 || p1.Included != 220 || p1.FeeYuan != "20.00" || p1.OverageYuan != "0.10" {
		t.Errorf("package 1: %+v", p1)
	}
	if p12.ID != 12 || p12.FeeYuan != "50000.00" || p12.Included != 1000000 || p12.OverageYuan != "0.05" {
		t.Errorf("package 12: %+v", p12)
	}
}
