package api

import (
	"net/http"

	"github.com/qxtd/qxtd/policy"
)

// Number overrides: a prefix's carrier or province where the number
// library is wrong.

// OverrideList is the answer of GET /admin/v1/overrides.
type OverrideList struct {
	Overrides []policy.Override `json:"overrides"`
}

// OverrideSet is the body of PUT /admin/v1/overrides/{prefix}.
type OverrideSet struct {
	Carrier  string `json:"carrier,omitempty"`  // china_mobile, china_unicom, china_telecom, china_broadnet (or 中国移动, cmcc, …); "" keeps the library's
	Province string `json:"province,omitempty"` // "广东省", "广东", "Guangdong"; "" keeps the library's
}

func (s *Server) listOverrides(a policy.Actor, w http.ResponseWriter, _ *http.Request) {
	ovs, err := s.cfg.Policy.Overrides(a)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, OverrideList{Overrides: nonNil(ovs)})
}

func (s *Server) setOverride(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in OverrideSet
	if !s.readJSON(w, r, &in) {
		return
	}
	o := policy.Override{Prefix: r.PathValue("prefix"), Province: in.Province}
	if in.Carrier != "" {
		if err := o.Carrier.UnmarshalText([]byte(in.Carrier)); err != nil {
			writeErr(w, err) // a FieldError: field carrier, its rule in Chinese
			return
		}
	}
	if err := s.cfg.Policy.SetOverride(a, o); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "override set", "prefix", o.Prefix, "carrier", o.Carrier.String(), "province", o.Province)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) removeOverride(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	prefix := r.PathValue("prefix")
	if err := s.cfg.Policy.RemoveOverride(a, prefix); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "override removed", "prefix", prefix)
	w.WriteHeader(http.StatusNoContent)
}
