package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Enterprises: create, list, show (with users, whitelist counts and the
// month's usage) and change.

// NewEnterprise is the body of POST /admin/v1/enterprises.
type NewEnterprise struct {
	Code        string `json:"code"`
	Name        string `json:"name"`
	Signature   string `json:"signature"`
	Package     int    `json:"package"`
	National    bool   `json:"national"`
	OffNet      bool   `json:"offnet"`
	CapYuan     string `json:"cap_yuan,omitempty"` // monthly spending cap, "1500.00"; "" or "0" = none
	NoOverage   bool   `json:"no_overage"`
	TPS         int    `json:"tps"`
	NoWhitelist bool   `json:"no_whitelist"`
	MaxUsers    int    `json:"max_users,omitempty"`   // users the enterprise admin may have; 0 = policy.DefaultMaxUsers
	ReceiptURL  string `json:"receipt_url,omitempty"` // receipt webhook of its HTTP sends (http/https)
	ReplyURL    string `json:"reply_url,omitempty"`   // where its replies (MO) are POSTed (http/https)
	// ReceiptBatch is how many receipts one POST may carry: 0 or 1, one
	// a POST (the body one receipt); 2–1000, {"receipts": [...]}.
	ReceiptBatch int `json:"receipt_batch,omitempty"`
	// ReplyBatch is how many replies one POST to reply_url may carry: 0
	// or 1, one a POST (the body one reply); 2–1000, {"replies": [...]}.
	ReplyBatch int `json:"reply_batch,omitempty"`
	// ServiceNumber (接入号) is the source of the enterprise's messages;
	// "" = none (sources relayed as given). ExtLen: extension digits.
	ServiceNumber string `json:"service_number,omitempty"`
	ExtLen        int    `json:"ext_len,omitempty"`
}

// EnterprisePatch is the body of PATCH /admin/v1/enterprises/{code}: only
// the fields present change.
type EnterprisePatch struct {
	Name        *string `json:"name,omitempty"`
	Signature   *string `json:"signature,omitempty"`
	Package     *int    `json:"package,omitempty"`
	National    *bool   `json:"national,omitempty"`
	OffNet      *bool   `json:"offnet,omitempty"`
	CapYuan     *string `json:"cap_yuan,omitempty"` // "" or "0" removes the cap
	NoOverage   *bool   `json:"no_overage,omitempty"`
	TPS         *int    `json:"tps,omitempty"`
	Disabled    *bool   `json:"disabled,omitempty"`
	NoWhitelist *bool   `json:"no_whitelist,omitempty"`
	MaxUsers    *int    `json:"max_users,omitempty"`   // 0 = policy.DefaultMaxUsers
	ReceiptURL  *string `json:"receipt_url,omitempty"` // "" removes it
	ReplyURL    *string `json:"reply_url,omitempty"`   // "" removes it
	// ReceiptBatch: 0 or 1, one receipt a POST again.
	ReceiptBatch *int `json:"receipt_batch,omitempty"`
	// ReplyBatch: 0 or 1, one reply a POST again.
	ReplyBatch *int `json:"reply_batch,omitempty"`
	// ServiceNumber "" removes it (and needs ext_len 0).
	ServiceNumber *string `json:"service_number,omitempty"`
	ExtLen        *int    `json:"ext_len,omitempty"`
}

func (p *EnterprisePatch) empty() bool {
	return p.Name == nil && p.Signature == nil && p.Package == nil && p.National == nil && p.OffNet == nil &&
		p.CapYuan == nil && p.NoOverage == nil && p.TPS == nil && p.Disabled == nil && p.NoWhitelist == nil &&
		p.MaxUsers == nil && p.ReceiptURL == nil && p.ReplyURL == nil && p.ReceiptBatch == nil && p.ReplyBatch == nil && p.ServiceNumber == nil && p.ExtLen == nil
}

// Enterprise is an enterprise as the API shows it.
type Enterprise struct {
	Code        string `json:"code"`
	Name        string `json:"name"`
	Signature   string `json:"signature"`
	Package     int    `json:"package"`
	National    bool   `json:"national"`
	OffNet      bool   `json:"offnet"`
	CapFen      int64  `json:"cap_fen"`  // 0 = no cap
	CapYuan     string `json:"cap_yuan"` // the same, "1500.00"
	NoOverage   bool   `json:"no_overage"`
	TPS         int    `json:"tps"` // 0 = the daemon's default
	Disabled    bool   `json:"disabled"`
	NoWhitelist bool   `json:"no_whitelist"`
	MaxUsers    int    `json:"max_users"` // the cap in force (0 is shown as policy.DefaultMaxUsers)
	// HeldDropped: when the operator dropped the messages the disabled
	// enterprise held (POST …/held/drop); absent when none were.
	HeldDropped *time.Time `json:"held_dropped,omitempty"`
	// ScopeNarrowed: when the operator last withdrew national or offnet
	// (its messages accepted before are checked against its scope again
	// when they go); nil: never.
	ScopeNarrowed *time.Time `json:"scope_narrowed,omitempty"`
	ReceiptURL    string     `json:"receipt_url,omitempty"`
	ReplyURL      string     `json:"reply_url,omitempty"`
	ReceiptSig    bool       `json:"receipt_signed"` // a receipt secret is set (it is never shown again)
	// ReceiptBatch is how many receipts one POST may carry (1: one, the
	// body a receipt; more: {"receipts": [...]}).
	ReceiptBatch int `json:"receipt_batch"`
	// ReplyBatch is how many replies one POST may carry (1: one, the
	// body a reply; more: {"replies": [...]}).
	ReplyBatch int `json:"reply_batch"`
	// ServiceNumber (接入号, "" = none) and ExtLen: see NewEnterprise.
	ServiceNumber string    `json:"service_number"`
	ExtLen        int       `json:"ext_len"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func enterpriseOut(e *policy.Enterprise) Enterprise {
	return Enterprise{Code: e.Code, Name: e.Name, Signature: e.Signature, Package: e.Package,
		National: e.National, OffNet: e.OffNet, CapFen: e.CapFen, CapYuan: policy.FormatFen(e.CapFen),
		NoOverage: e.NoOverage, TPS: e.TPS, Disabled: e.Disabled, NoWhitelist: e.NoWhitelist, MaxUsers: e.UserCap(),
		ReceiptURL: e.Receipt.URL, ReplyURL: e.Receipt.ReplyURL, ReceiptSig: e.Receipt.Secret != "", ReceiptBatch: max(e.Receipt.Batch, 1),
		ReplyBatch:    max(e.Receipt.ReplyBatch, 1),
		ServiceNumber: e.ServiceNumber, ExtLen: e.ExtLen, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
		HeldDropped: timeOrNil(e.HeldDropped), ScopeNarrowed: timeOrNil(e.ScopeNarrowed)}
}

// dropHeld answers POST /admin/v1/enterprises/{code}/held/drop: the
// messages the disabled enterprise holds (accepted, not yet sent) are
// failed rejected account_disabled by every node's housekeeping, within
// its maintain interval (a minute), for as long as it stays disabled.
// 400 invalid if it is not disabled.
func (s *Server) dropHeld(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	e, err := s.cfg.Policy.DropHeld(a, code)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "held messages dropped", "enterprise", code)
	writeJSON(w, http.StatusOK, enterpriseOut(e))
}

// EnterpriseList is the answer of GET /admin/v1/enterprises.
type EnterpriseList struct {
	Enterprises []Enterprise `json:"enterprises"`
}

// EnterpriseDetail is the answer of GET /admin/v1/enterprises/{code}.
type EnterpriseDetail struct {
	Enterprise  Enterprise      `json:"enterprise"`
	PackageInfo *policy.Package `json:"package_info"` // the package's tier; null if not in the table
	Users       int             `json:"users"`
	Whitelist   WhitelistCounts `json:"whitelist"`
	OptOuts     int             `json:"optouts"` // numbers on its opt-out list (GET /admin/v1/optouts?enterprise= lists them)
	Usage       Usage           `json:"usage"`
	Receipts    ReceiptStatus   `json:"receipts"` // its pushed receipts (v1_receipts.go)
	Replies     ReceiptStatus   `json:"replies"`  // its pushed replies, in the same terms (reply_status of GET /v1/receipt-webhook)
}

// WhitelistCounts counts an enterprise's whitelist entries per state.
type WhitelistCounts struct {
	Pending  int `json:"pending"`
	Approved int `json:"approved"`
	Rejected int `json:"rejected"`
}

// Usage is an enterprise's segment usage in one billing month.
type Usage struct {
	Month    string `json:"month"`    // "2006-01", Asia/Shanghai
	Reserved int64  `json:"reserved"` // accepted, no final outcome yet
	Charged  int64  `json:"charged"`  // delivered (billable)
	Limit    int64  `json:"limit"`    // reserved + charged allowed per month under the current settings; -1 = no limit
	Missing
}

func parseCap(s string) (int64, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	v, err := policy.ParseYuan(s)
	var fe *policy.FieldError
	if errors.As(err, &fe) {
		fe.Field = "cap_yuan"
	}
	return v, err
}

func (s *Server) createEnterprise(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in NewEnterprise
	if !s.readJSON(w, r, &in) {
		return
	}
	capFen, err := parseCap(in.CapYuan)
	if err != nil {
		writeErr(w, err)
		return
	}
	e, err := s.cfg.Policy.CreateEnterprise(a, policy.Enterprise{Code: in.Code, Name: in.Name,
		Signature: in.Signature, Package: in.Package, National: in.National, OffNet: in.OffNet,
		CapFen: capFen, NoOverage: in.NoOverage, TPS: in.TPS, NoWhitelist: in.NoWhitelist, MaxUsers: in.MaxUsers,
		Receipt: policy.ReceiptHook{URL: in.ReceiptURL, ReplyURL: in.ReplyURL, Batch: in.ReceiptBatch, ReplyBatch: in.ReplyBatch}, ServiceNumber: in.ServiceNumber, ExtLen: in.ExtLen})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "enterprise created", "enterprise", e.Code)
	w.Header().Set("Location", "/admin/v1/enterprises/"+url.PathEscape(e.Code))
	writeJSON(w, http.StatusCreated, enterpriseOut(e))
}

func (s *Server) listEnterprises(a policy.Actor, w http.ResponseWriter, _ *http.Request) {
	out := EnterpriseList{Enterprises: []Enterprise{}}
	for _, e := range s.cfg.Policy.Enterprises(a) {
		out.Enterprises = append(out.Enterprises, enterpriseOut(&e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showEnterprise(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	month := r.URL.Query().Get("month")
	if month == "" {
		month = policy.MonthOf(time.Now())
	} else if _, err := time.Parse("2006-01", month); err != nil {
		writeErr(w, invalidZH("month", monthZH, "month %q: want YYYY-MM", month))
		return
	}
	p := s.cfg.Policy
	e, err := p.Enterprise(a, code)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := EnterpriseDetail{Enterprise: enterpriseOut(e)}
	out.Receipts, out.Replies = s.hookStatus(r.Context(), e.Code)
	if pkg, ok := p.Packages().Lookup(e.Package); ok {
		out.PackageInfo = &pkg
	}
	// Users are listed to enterprise admins and the operator only; a plain
	// user's detail leaves the count at 0.
	if users, err := p.Users(a, code); err == nil {
		out.Users = len(users)
	} else if !errors.Is(err, policy.ErrForbidden) {
		writeErr(w, err)
		return
	}
	counts, err := p.WhitelistCounts(a, code)
	if err != nil {
		writeErr(w, err)
		return
	}
	out.Whitelist = WhitelistCounts{Pending: counts[policy.WhitelistPending],
		Approved: counts[policy.WhitelistApproved], Rejected: counts[policy.WhitelistRejected]}
	out.OptOuts = p.OptOutCount(e.Code)
	out.Usage = Usage{Month: month, Limit: p.Limit(e)}
	if s.cfg.Store != nil {
		u, partial, err := s.enterpriseUsage(r.Context(), code, month)
		if err != nil {
			writeUsageErr(w, err)
			return
		}
		out.Usage.Reserved, out.Usage.Charged, out.Usage.Missing = u.Reserved, u.Charged, partial
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) updateEnterprise(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in EnterprisePatch
	if !s.readJSON(w, r, &in) {
		return
	}
	if in.empty() {
		writeErr(w, invalidZH("", "没有要修改的内容", "nothing to change"))
		return
	}
	var capFen int64
	if in.CapYuan != nil {
		var err error
		if capFen, err = parseCap(*in.CapYuan); err != nil {
			writeErr(w, err)
			return
		}
	}
	e, err := s.cfg.Policy.UpdateEnterprise(a, r.PathValue("code"), func(e *policy.Enterprise) error {
		set(&e.Name, in.Name)
		set(&e.Signature, in.Signature)
		set(&e.Package, in.Package)
		set(&e.National, in.National)
		set(&e.OffNet, in.OffNet)
		if in.CapYuan != nil {
			e.CapFen = capFen
		}
		set(&e.NoOverage, in.NoOverage)
		set(&e.TPS, in.TPS)
		set(&e.Disabled, in.Disabled)
		set(&e.NoWhitelist, in.NoWhitelist)
		set(&e.MaxUsers, in.MaxUsers)
		set(&e.Receipt.URL, in.ReceiptURL)
		set(&e.Receipt.ReplyURL, in.ReplyURL)
		set(&e.Receipt.Batch, in.ReceiptBatch)
		set(&e.Receipt.ReplyBatch, in.ReplyBatch)
		set(&e.ServiceNumber, in.ServiceNumber)
		set(&e.ExtLen, in.ExtLen)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "enterprise updated", "enterprise", e.Code, "fields", patchFields(&in))
	writeJSON(w, http.StatusOK, enterpriseOut(e))
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// patchFields names the fields of a patch, for the audit log.
func patchFields(p *EnterprisePatch) string {
	b, _ := json.Marshal(p)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}
