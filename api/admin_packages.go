package api

import (
	"net/http"

	"github.com/qxtd/qxtd/policy"
)

// GET /admin/v1/packages: the configured package table (FAQ 16), so that
// a client (the account manager's desk) offers the packages the daemon
// knows instead of a copy of its own.

// PackageList is the answer of GET /admin/v1/packages.
type PackageList struct {
	Packages []PackageOut `json:"packages"`
}

// PackageOut is one package (套餐) of the table, money in fen and yuan.
type PackageOut struct {
	policy.Package
	FeeYuan     string `json:"fee_yuan"`
	OverageYuan string `json:"overage_yuan"`
}

func (s *Server) listPackages(_ policy.Actor, w http.ResponseWriter, _ *http.Request) {
	out := PackageList{Packages: []PackageOut{}}
	for _, p := range s.cfg.Policy.Packages() {
		out.Packages = append(out.Packages, PackageOut{Package: p,
			FeeYuan: policy.FormatFen(p.FeeFen), OverageYuan: policy.FormatFen(p.OverageFen)})
	}
	writeJSON(w, http.StatusOK, out)
}
