package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Config is the whole YAML file. Every scalar key can be overridden from
// the environment: QXTD_ + the key path in upper case with dots as
// underscores (QXTD_SMPP_LISTEN); any other QXTD_ variable is an error
// (secrets.go). Lists (upstreams, accounts) come from the file only.
// Every password and token may be given as <key>_file instead.
type Config struct {
	SMPP        SMPPConfig         `mapstructure:"smpp"`
	HTTP        HTTPConfig         `mapstructure:"http"`
	Store       StoreConfig        `mapstructure:"store"`
	Simulator   SimulatorConfig    `mapstructure:"simulator"`
	Upstreams   []UpstreamConfig   `mapstructure:"upstreams"`
	Accounts    []AccountConfig    `mapstructure:"accounts"`
	Enterprises []EnterpriseConfig `mapstructure:"enterprises"`
	Policy      PolicyConfig       `mapstructure:"policy"`
	Delivery    DeliveryConfig     `mapstructure:"delivery"`
	Log         LogConfig          `mapstructure:"log"`
	Reminders   RemindersConfig    `mapstructure:"reminders"`
	Webhooks    WebhooksConfig     `mapstructure:"webhooks"`
	OptOut      OptOutConfig       `mapstructure:"optout"`
	Cluster     ClusterConfig      `mapstructure:"cluster"`

	// secretWarnings: secret files readable by more than their owner,
	// logged once the logger exists (secrets.go).
	secretWarnings []secretWarning
}

// OptOutConfig is the opt-out of replies (回复TD退订, policy.IsOptOut).
type OptOutConfig struct {
	// Keywords are the replies that put their sender on the enterprise's
	// opt-out list, compared case-insensitively after trimming spaces and
	// punctuation.
	Keywords []string `mapstructure:"keywords"`
	// MaxEntries bounds the numbers on one enterprise's opt-out list for
	// its own additions (policy.Config.MaxOptOuts); replies always add.
	MaxEntries int `mapstructure:"max_entries"`
}

// WebhooksConfig is the receipt webhooks' sender (package webhook).
type WebhooksConfig struct {
	// AllowPrivate lets receipts go to loopback and private addresses
	// (refused by default: SSRF, see package webhook).
	AllowPrivate  bool          `mapstructure:"allow_private"`
	Workers       int           `mapstructure:"workers"`
	PerEnterprise int           `mapstructure:"per_enterprise"`
	Timeout       time.Duration `mapstructure:"timeout"`
	MaxAge        time.Duration `mapstructure:"max_age"`
	// SecretOverlap is how long a rotated-out receipt secret goes on
	// signing X-Qxtd-Signature-Previous beside the new one.
	SecretOverlap time.Duration `mapstructure:"secret_overlap"`
}

// RemindersConfig is the reminders' scheduler (package reminder).
type RemindersConfig struct {
	// Grace: an occurrence due while the daemon was down is sent at start
	// if at most this late, else marked missed.
	Grace time.Duration `mapstructure:"grace"`
	// Ahead: occurrences become scheduled messages of the outbox this long
	// before their send time.
	Ahead time.Duration `mapstructure:"ahead"`
}

type SMPPConfig struct {
	// ReassemblyTimeout: parts of a message the ESME split itself wait
	// this long for the rest, then are rejected (receipts REJECTD).
	ReassemblyTimeout time.Duration `mapstructure:"reassembly_timeout"`
	Listen            string        `mapstructure:"listen"`
	SystemID          string        `mapstructure:"system_id"`
	Window            int           `mapstructure:"window"`
	Idle              time.Duration `mapstructure:"idle_timeout"`
	// MaxConns caps open SMPP connections in all, MaxUnboundPerIP those
	// from one source address that have not bound yet (a network four
	// times as many, smpp.PrefixTimes); one more is closed at once, except
	// that at MaxConns the one unbound the longest (a second or more,
	// smpp.EvictGrace) is closed to make room for it.
	MaxConns        int `mapstructure:"max_conns"`
	MaxUnboundPerIP int `mapstructure:"max_unbound_per_ip"`
	// MaxBindsPerAccount caps the binds one account holds at once,
	// MaxBindsPerEnterprise those of all of one enterprise's accounts (0: a
	// quarter of MaxConns, bindsPerEnterprise); one more is refused
	// ESME_RBINDFAIL. Bound connections are not strangers' and do not count
	// per address: without these one tenant could hold every connection.
	MaxBindsPerAccount    int `mapstructure:"max_binds_per_account"`
	MaxBindsPerEnterprise int `mapstructure:"max_binds_per_enterprise"`
	// Reassembly caps for messages the ESME split itself: incomplete
	// messages per account, their text in all and per enterprise.
	ReassemblyMaxGroups             int   `mapstructure:"reassembly_max_groups"`
	ReassemblyMaxBytes              int64 `mapstructure:"reassembly_max_bytes"`
	ReassemblyMaxBytesPerEnterprise int64 `mapstructure:"reassembly_max_bytes_per_enterprise"`
	// Replies the SMSC split (long MO): parts wait MOReassemblyTimeout for
	// the rest, then the parts that came are stored as one reply; an
	// upstream keeps at most MOReassemblyMaxParts parts (of
	// MOReassemblyMaxBytes of text) waiting, a part past either is stored
	// as a reply of its own.
	MOReassemblyTimeout  time.Duration `mapstructure:"mo_reassembly_timeout"`
	MOReassemblyMaxParts int           `mapstructure:"mo_reassembly_max_parts"`
	MOReassemblyMaxBytes int64         `mapstructure:"mo_reassembly_max_bytes"`
	// TLSListen is a second listener, SMPP over TLS, of the same server
	// (max_conns counts both listeners together); empty = none. Its
	// certificate and key (PEM) are reloaded on SIGHUP (tls.go).
	TLSListen   string `mapstructure:"tls_listen"`
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
	// ReceiptTimeZone is the zone of the dates in receipts to ESMEs (an
	// IANA name, or Local for the machine's): their text has no zone.
	ReceiptTimeZone string `mapstructure:"receipt_time_zone"`
}

type HTTPConfig struct {
	Listen     string `mapstructure:"listen"`
	AdminToken string `mapstructure:"admin_token"` // operator token for /admin/v1; empty disables it
	// OpsListen, when set, is a second listener for the operators: it
	// serves /metrics, /admin/v1 and the account manager's desk (/ops/),
	// which Listen then no longer serves. Empty: everything on Listen.
	OpsListen string `mapstructure:"ops_listen"`
	// Bounds on every connection (net/http's Server timeouts): a request's
	// headers, a whole request (headers and body), writing an answer (a
	// streaming export or backup extends it as it goes), and an idle
	// keep-alive connection.
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`
	WriteTimeout      time.Duration `mapstructure:"write_timeout"`
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`
	// MaxConns caps open connections in all, MaxConnsPerAddr those from
	// one source address (a network four times as many, smpp.PrefixTimes);
	// a connection beyond either is answered 503 and closed at once,
	// except that at MaxConns the one idle the longest (a second or more)
	// is closed to make room for it (connlimit.go).
	MaxConns        int `mapstructure:"max_conns"`
	MaxConnsPerAddr int `mapstructure:"max_conns_per_addr"`
	// MaxImports caps the uploaded files (batch sends, address books,
	// whitelist imports) being read at once, in all and per enterprise;
	// one more is answered 429 too_many_imports.
	MaxImports              int `mapstructure:"max_imports"`
	MaxImportsPerEnterprise int `mapstructure:"max_imports_per_enterprise"`
	// TLSCertFile and TLSKeyFile (PEM), both set: the HTTP listener serves
	// HTTPS only; reloaded on SIGHUP (tls.go).
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`

	// AdminTokenFile holds AdminToken instead: a path (secrets.go).
	AdminTokenFile string `mapstructure:"admin_token_file"`
	// AccountManagers are the operator's people, each with a token of
	// their own: the same powers as AdminToken, but what they decide
	// (a whitelist entry, an application, a signature) and do is
	// recorded under their name, not "admin-api".
	AccountManagers []AccountManagerConfig `mapstructure:"account_managers"`
}

// AccountManagerConfig is one account manager (客户经理): the name the
// records show and the token the desk's login takes.
type AccountManagerConfig struct {
	Name  string `mapstructure:"name"`
	Token string `mapstructure:"token"`
	// TokenFile holds Token instead: a path (secrets.go).
	TokenFile string `mapstructure:"token_file"`
	// Enterprises are the group codes the manager serves (its
	// portfolio): it is the operator of those only. None: of every
	// enterprise, as the admin token.
	Enterprises []string `mapstructure:"enterprises"`
	// ReadOnly: the manager may look at what it serves and change
	// nothing (客服 answering complaints, an auditor).
	ReadOnly bool `mapstructure:"read_only"`
}

// maxManagerName bounds an account manager's name (in characters): it is
// shown beside every decision.
const maxManagerName = 32

// maxCommitDelay bounds store.commit_delay: past a few milliseconds a
// longer wait saves little more CPU (the batch fills first under any load
// where the wait helps) and only delays answers.
const maxCommitDelay = 100 * time.Millisecond

// maxSecretOverlap bounds webhooks.secret_overlap: a month is time enough
// for the slowest receiver to deploy a new secret.
const maxSecretOverlap = 30 * 24 * time.Hour

type StoreConfig struct {
	Path      string        `mapstructure:"path"`
	Retention time.Duration `mapstructure:"retention"` // keep finished messages this long; 0 = forever
	// CommitDelay is queue.Options.CommitDelay: the longest a store
	// operation whose sender has room in its window may be held back for
	// others to share its commit (CPU and disk writes against latency at
	// a moderate rate).
	CommitDelay time.Duration `mapstructure:"commit_delay"`
	// RecordDelay is queue.Options.RecordDelay: the longest a write no
	// ESME's answer waits on (the record of an SMSC's submit_sm_resp or of
	// an ESME's deliver_sm_resp, an SMSC's receipt or reply while it has
	// room) may be held back for an operation that commits at once to
	// carry it.
	RecordDelay time.Duration `mapstructure:"record_delay"`
	// MaxOrphans is queue.Options.MaxOrphans: per upstream, the receipts
	// kept that matched no message; past it the SMSC is asked to send
	// them again later.
	MaxOrphans int `mapstructure:"max_orphans"`
}

type SimulatorConfig struct {
	Enabled  bool          `mapstructure:"enabled"`
	Listen   string        `mapstructure:"listen"`
	SystemID string        `mapstructure:"system_id"`
	Password string        `mapstructure:"password"`
	DLRDelay time.Duration `mapstructure:"dlr_delay"`
	Undeliv  float64       `mapstructure:"undeliv_rate"`
	Throttle float64       `mapstructure:"throttle_rate"`
	IDFormat string        `mapstructure:"id_format"`
	// MaxBinds refuses binds past this many per system_id, as a carrier
	// does (0: no cap): make cluster shows the nodes sharing them.
	MaxBinds int `mapstructure:"max_binds"`

	// PasswordFile holds Password instead: a path (secrets.go).
	PasswordFile string `mapstructure:"password_file"`
}

type UpstreamConfig struct {
	Name       string `mapstructure:"name"`
	Addr       string `mapstructure:"addr"`
	SystemID   string `mapstructure:"system_id"`
	Password   string `mapstructure:"password"`
	SystemType string `mapstructure:"system_type"`
	Binds      int    `mapstructure:"binds"`
	// BindMode: transceiver (the binds send and receive),
	// transmitter_receiver (the binds send; Receivers more receive) or
	// transmitter (the binds send; the SMSC outbinds to deliver).
	BindMode    string        `mapstructure:"bind_mode"`
	Receivers   int           `mapstructure:"receivers"`
	Window      int           `mapstructure:"window"`
	TPS         float64       `mapstructure:"tps"`
	RespTimeout time.Duration `mapstructure:"resp_timeout"`
	// MORespTimeout: how long the SMSC waits for our deliver_sm_resp to a
	// reply before it sends it again (gateway.UpstreamConfig.MORespTimeout).
	MORespTimeout time.Duration `mapstructure:"mo_resp_timeout"`
	EnquireLink   time.Duration `mapstructure:"enquire_link"`
	// RecordingSlots: gateway.UpstreamConfig.RecordingSlots.
	RecordingSlots int `mapstructure:"recording_slots"`
	// ReconnectMax caps the wait between attempts to bind again.
	ReconnectMax time.Duration `mapstructure:"reconnect_max"`
	Concat       string        `mapstructure:"concat"`     // udh8 | udh16 | sar | payload
	GSMPacked    bool          `mapstructure:"gsm_packed"` // pack GSM 7-bit septets
	// DefaultAlphabet: segment.Alphabet (gsm | latin1 | ascii), what the
	// SMSC takes data_coding 0x00 to be.
	DefaultAlphabet string   `mapstructure:"default_alphabet"`
	PassPriority    bool     `mapstructure:"pass_priority"` // priority_flag 1 to the SMSC for a message sent with priority
	Carriers        []string `mapstructure:"carriers"`      // carriers it serves; empty: any
	// ReceiptIDs: gateway.ReceiptIDs (auto | same | decimal | hex).
	ReceiptIDs string `mapstructure:"receipt_ids"`
	// Acceptd: what a receipt with stat ACCEPTD is, intermediate (the
	// default) or final (gateway.UpstreamConfig.AcceptedFinal).
	Acceptd string `mapstructure:"acceptd"`
	// TLS binds over TLS, verifying the SMSC's certificate against
	// TLSCAFile (PEM bundle; empty: the system's roots) and TLSServerName
	// (empty: the host of addr). TLSInsecureSkipVerify turns verification
	// off (warned at start).
	TLS                   bool   `mapstructure:"tls"`
	TLSCAFile             string `mapstructure:"tls_ca_file"`
	TLSServerName         string `mapstructure:"tls_server_name"`
	TLSInsecureSkipVerify bool   `mapstructure:"tls_insecure_skip_verify"`

	// PasswordFile holds Password instead: a path (secrets.go).
	PasswordFile string `mapstructure:"password_file"`

	// OutbindListen is where the SMSC connects to outbind (empty: no
	// outbinds taken); its outbind must carry OutbindSystemID (empty:
	// any) and OutbindPassword (or OutbindPasswordFile).
	OutbindListen       string `mapstructure:"outbind_listen"`
	OutbindSystemID     string `mapstructure:"outbind_system_id"`
	OutbindPassword     string `mapstructure:"outbind_password"`
	OutbindPasswordFile string `mapstructure:"outbind_password_file"`
}

// AccountConfig is a user seeded from the file (an SMPP login).
type AccountConfig struct {
	SystemID      string `mapstructure:"system_id"`
	Password      string `mapstructure:"password"`
	Enterprise    string `mapstructure:"enterprise"` // group code; default: the system_id
	Signature     string `mapstructure:"signature"`  // for an enterprise not listed under enterprises
	Name          string `mapstructure:"name"`       // user name (the user signature); default: system_id
	Mobile        string `mapstructure:"mobile"`     // registered mobile (password reset)
	ShowSignature bool   `mapstructure:"show_signature"`
	Admin         bool   `mapstructure:"admin"`     // enterprise admin
	Extension     string `mapstructure:"extension"` // of its enterprise's service number; empty = none
	// LongReplies is how a reply too long for one SMS reaches its SMPP
	// binds (policy.User.LongReplies): payload (empty: the default),
	// udh8, udh16 or sar.
	LongReplies string `mapstructure:"long_replies"`

	// PasswordFile holds Password instead: a path (secrets.go).
	PasswordFile string `mapstructure:"password_file"`
}

// EnterpriseConfig is an enterprise seeded from the file.
type EnterpriseConfig struct {
	Code        string   `mapstructure:"code"`
	Name        string   `mapstructure:"name"`
	Signature   string   `mapstructure:"signature"`
	Package     int      `mapstructure:"package"`
	National    bool     `mapstructure:"national"`
	OffNet      bool     `mapstructure:"offnet"`
	CapYuan     string   `mapstructure:"cap_yuan"` // monthly spending cap, e.g. "300.00"; empty = none
	NoOverage   bool     `mapstructure:"no_overage"`
	TPS         int      `mapstructure:"tps"`
	NoWhitelist bool     `mapstructure:"no_whitelist"`
	MaxUsers    int      `mapstructure:"max_users"`   // users its admin may have; 0 = 50 (policy.DefaultMaxUsers)
	ReceiptURL  string   `mapstructure:"receipt_url"` // receipt webhook of its HTTP sends
	ReplyURL    string   `mapstructure:"reply_url"`   // where its replies (MO) are POSTed
	Whitelist   []string `mapstructure:"whitelist"`   // approved numbers
	// ReceiptBatch is how many receipts one POST to it may carry (0 or 1:
	// one, the body a receipt; up to 1000: {"receipts": [...]}).
	ReceiptBatch int `mapstructure:"receipt_batch"`
	// ReplyBatch is the same for replies to reply_url (up to 1000:
	// {"replies": [...]}).
	ReplyBatch int `mapstructure:"reply_batch"`
	// ServiceNumber (接入号) is the source of its messages and where replies
	// come; empty = none (sources relayed as given). ExtLen: extension digits.
	ServiceNumber string `mapstructure:"service_number"`
	ExtLen        int    `mapstructure:"ext_len"`
}

// PolicyConfig is the operator's rules that are not per enterprise.
type PolicyConfig struct {
	HomeProvince string           `mapstructure:"home_province"`
	DefaultTPS   int              `mapstructure:"default_tps"`
	BcryptCost   int              `mapstructure:"bcrypt_cost"`
	Packages     []PackageConfig  `mapstructure:"packages"` // empty: the FAQ's 12 tiers
	Overrides    []OverrideConfig `mapstructure:"overrides"`
	SeedForce    bool             `mapstructure:"seed_force"`
	// NotifyEnterprise is the group code of the operator's own enterprise
	// whose messages carry password resets (qxtd sends them itself);
	// empty disables password reset by SMS.
	NotifyEnterprise string `mapstructure:"notify_enterprise"`
	NotifySource     string `mapstructure:"notify_source"` // source address of those SMS
	// Whitelist entries per enterprise: in any state, and pending
	// (policy.Config.MaxWhitelist, MaxPendingWhitelist).
	WhitelistMaxEntries int `mapstructure:"whitelist_max_entries"`
	WhitelistMaxPending int `mapstructure:"whitelist_max_pending"`
}

type PackageConfig struct {
	ID          int    `mapstructure:"id"`
	FeeYuan     string `mapstructure:"fee_yuan"`
	Included    int64  `mapstructure:"included"`
	OverageYuan string `mapstructure:"overage_yuan"`
}

// OverrideConfig marks ported numbers (携号转网) or whole number blocks.
type OverrideConfig struct {
	Prefix   string `mapstructure:"prefix"`
	Carrier  string `mapstructure:"carrier"` // china_mobile | china_unicom | china_telecom | china_broadnet
	Province string `mapstructure:"province"`
}

type DeliveryConfig struct {
	Validity time.Duration `mapstructure:"validity"`
	RetryMin time.Duration `mapstructure:"retry_min"`
	RetryMax time.Duration `mapstructure:"retry_max"`
	DLRRetry time.Duration `mapstructure:"dlr_retry"`
	// DLRWindow bounds the receipts sent to one account's binds and not
	// yet answered with deliver_sm_resp.
	DLRWindow int `mapstructure:"dlr_window"`
	// MOWindow bounds the replies (MO) sent to one enterprise's binds and
	// not yet answered (gateway.Config.MOWindow).
	MOWindow int `mapstructure:"mo_window"`
	// TenantShare is the most of all upstream windows one enterprise's
	// segments may hold while others have segments due, in (0, 1].
	TenantShare float64 `mapstructure:"tenant_share"`
	// FailoverAfter is how long an upstream may have no bind up before
	// new messages for its carriers go to the next upstream serving
	// them; 0 turns failover off.
	FailoverAfter time.Duration `mapstructure:"failover_after"`
	// FailoverQueued moves the messages queued for an upstream routed
	// around to the upstream new messages go to (gateway.Config).
	FailoverQueued bool `mapstructure:"failover_queued"`
}

type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // auto | json | text (logFormat)
}

// defaultFailoverAfter is delivery.failover_after's default: long enough
// that a bind dropped and bound again (within upstreams[].reconnect_max,
// 2 s) sends nothing elsewhere, short enough that an SMSC outage does not
// hold new messages for long.
const defaultFailoverAfter = 30 * time.Second

// defaultValues are the defaults of the file's scalar keys, the one place
// they are written: the README's configuration table is tested against
// them, and configs/qxtd.yaml loads with them. Keys the gateway also
// defaults take the gateway's exported values, so that a key left out of
// the file and a gateway.Config field left zero mean the same.
func defaultValues() map[string]any {
	return map[string]any{
		"smpp.listen":                              "127.0.0.1:2775",
		"smpp.system_id":                           "qxtd",
		"smpp.window":                              64,
		"smpp.idle_timeout":                        gateway.DefaultESMEIdle,
		"smpp.reassembly_timeout":                  gateway.DefaultReassemblyTimeout,
		"smpp.max_conns":                           smpp.DefaultMaxConns,
		"smpp.max_unbound_per_ip":                  smpp.DefaultMaxUnboundPerIP,
		"smpp.max_binds_per_account":               gateway.DefaultMaxBindsPerAccount,
		"smpp.max_binds_per_enterprise":            0, // a quarter of smpp.max_conns
		"smpp.reassembly_max_groups":               queue.DefaultMaxFragmentGroups,
		"smpp.reassembly_max_bytes":                queue.DefaultMaxFragmentBytes,
		"smpp.reassembly_max_bytes_per_enterprise": int64(0), // a quarter of smpp.reassembly_max_bytes
		"smpp.mo_reassembly_timeout":               gateway.DefaultReassemblyTimeout,
		"smpp.mo_reassembly_max_parts":             queue.DefaultMaxMOParts,
		"smpp.mo_reassembly_max_bytes":             queue.DefaultMaxMOPartBytes,
		"smpp.tls_listen":                          "", // no SMPP over TLS
		"smpp.tls_cert_file":                       "",
		"smpp.tls_key_file":                        "",
		"smpp.receipt_time_zone":                   "Asia/Shanghai", // the enterprises' clock, whatever the server's
		"http.listen":                              "127.0.0.1:8080",
		"http.tls_cert_file":                       "", // both empty: plain HTTP
		"http.tls_key_file":                        "",
		"http.admin_token":                         "",
		"http.ops_listen":                          "", // empty: metrics, admin API and desk on http.listen
		"http.admin_token_file":                    "",
		"http.read_header_timeout":                 10 * time.Second,
		"http.read_timeout":                        2 * time.Minute,
		"http.write_timeout":                       2 * time.Minute,
		"http.idle_timeout":                        2 * time.Minute,
		"http.max_conns":                           1024,
		"http.max_conns_per_addr":                  64,
		"http.max_imports":                         api.DefaultUploadLimits.Total,
		"http.max_imports_per_enterprise":          api.DefaultUploadLimits.PerEnterprise,
		"store.path":                               "./data/qxtd.db",
		"store.retention":                          90 * 24 * time.Hour, // 0 keeps finished messages forever
		"store.record_delay":                       time.Duration(0),    // off: a crash would repeat a few more segments and receipts (README Performance)
		"store.commit_delay":                       time.Duration(0),    // commit at once: a delay keeps records in flight longer, so a crash duplicates more (README Performance)
		"store.max_orphans":                        queue.DefaultMaxOrphans,
		"reminders.grace":                          reminder.DefaultGrace,
		"reminders.ahead":                          reminder.DefaultAhead,
		"simulator.enabled":                        false,
		"simulator.listen":                         "127.0.0.1:2776",
		"simulator.system_id":                      "",
		"simulator.password":                       "",
		"simulator.password_file":                  "",
		"simulator.dlr_delay":                      time.Second,
		"simulator.undeliv_rate":                   0.0,
		"simulator.throttle_rate":                  0.0,
		"simulator.id_format":                      "hex",
		"simulator.max_binds":                      0,
		"delivery.validity":                        gateway.DefaultValidity,
		"delivery.retry_min":                       gateway.DefaultRetryMin,
		"delivery.retry_max":                       gateway.DefaultRetryMax,
		"delivery.dlr_retry":                       gateway.DefaultDLRRetry,
		"delivery.dlr_window":                      gateway.DefaultDLRWindow,
		"delivery.mo_window":                       gateway.DefaultMOWindow,
		"delivery.tenant_share":                    gateway.DefaultTenantShare,
		"delivery.failover_after":                  defaultFailoverAfter,
		"delivery.failover_queued":                 true,
		"policy.home_province":                     "广东省",
		"policy.default_tps":                       200,
		"policy.bcrypt_cost":                       10,
		"policy.seed_force":                        false,
		"policy.notify_enterprise":                 "",
		"policy.notify_source":                     "10658000",
		"policy.whitelist_max_entries":             policy.DefaultMaxWhitelist,
		"policy.whitelist_max_pending":             policy.DefaultMaxPendingWhitelist,
		"webhooks.allow_private":                   false,
		"webhooks.workers":                         64,
		"webhooks.per_enterprise":                  16,
		"webhooks.timeout":                         10 * time.Second,
		"webhooks.max_age":                         24 * time.Hour,
		"webhooks.secret_overlap":                  policy.ReceiptSecretOverlap,
		"optout.keywords":                          slices.Clone(policy.DefaultOptOutKeywords),
		"optout.max_entries":                       policy.DefaultMaxOptOuts,
		"cluster.etcd_endpoints":                   []string{}, // empty: one node, no etcd
		"cluster.node_id":                          0,
		"cluster.name":                             "",
		"cluster.peer_listen":                      "",
		"cluster.peer_url":                         "",
		"cluster.secret":                           "",
		"cluster.secret_file":                      "",
		"cluster.prefix":                           "/qxtd/",
		"cluster.lease_ttl":                        10 * time.Second,
		"cluster.quota_block":                      int64(500),
		"cluster.etcd_username":                    "",
		"cluster.etcd_password":                    "",
		"cluster.etcd_password_file":               "",
		"log.level":                                "info",
		"log.format":                               "auto",
	}
}

func defaults(v *viper.Viper) {
	for k, val := range defaultValues() {
		v.SetDefault(k, val)
	}
}

// The values of upstreams[].bind_mode.
const (
	bindModeTransceiver = "transceiver"
	bindModeTxRx        = "transmitter_receiver"
	bindModeTx          = "transmitter"
)

// The values of upstreams[].acceptd.
const (
	acceptdIntermediate = "intermediate"
	acceptdFinal        = "final"
)

// receivers is the gateway's UpstreamConfig.Receivers: 0 for transceivers.
func (u UpstreamConfig) receivers() int {
	if u.BindMode == bindModeTxRx {
		return u.Receivers
	}
	return 0
}

// setDefaults fills the keys of an upstreams[] entry that the file leaves
// out or sets to 0 (viper's defaults do not reach into lists): the
// gateway's defaults, named here so that the file's meaning is complete.
func (u *UpstreamConfig) setDefaults() {
	if u.Binds == 0 {
		u.Binds = gateway.DefaultBinds
	}
	if u.BindMode == "" {
		u.BindMode = bindModeTransceiver
	}
	if u.BindMode == bindModeTxRx && u.Receivers == 0 {
		u.Receivers = 1
	}
	if u.Window == 0 {
		u.Window = gateway.DefaultWindow
	}
	if u.RespTimeout == 0 {
		u.RespTimeout = gateway.DefaultRespTimeout
	}
	if u.MORespTimeout == 0 {
		u.MORespTimeout = gateway.DefaultMORespTimeout
	}
	if u.EnquireLink == 0 {
		u.EnquireLink = gateway.DefaultEnquireLink
	}
	if u.ReconnectMax == 0 {
		u.ReconnectMax = gateway.DefaultReconnectMax
	}
	if u.Concat == "" {
		u.Concat = segment.ConcatUDH8.String()
	}
	if u.ReceiptIDs == "" {
		u.ReceiptIDs = string(gateway.ReceiptIDsAuto)
	}
	if u.Acceptd == "" {
		u.Acceptd = acceptdIntermediate
	}
	if u.DefaultAlphabet == "" {
		u.DefaultAlphabet = segment.AlphabetGSM.String()
	}
}

// LoadConfig reads path (if not empty), applies the process's QXTD_*
// overrides, reads the secret files and validates. Unknown keys and
// unknown QXTD_ variables are errors naming them.
func LoadConfig(path string) (*Config, error) {
	return loadConfig(path, os.Environ())
}

// loadConfig is LoadConfig with the environment given (KEY=value).
func loadConfig(path string, environ []string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = readConfigFile(path); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	return parseConfig(path, data, environ)
}

// parseConfig is loadConfig of the file's content, data; with path empty
// there is no file and data is not read.
func parseConfig(path string, data []byte, environ []string) (*Config, error) {
	v := viper.New()
	defaults(v)
	if path != "" {
		// The bounds first: viper and the YAML decoder would otherwise
		// spend minutes or gigabytes on a small file (yamlbounds.go).
		if err := checkConfigYAML(data); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if errs := unknownEmptyKeys(data); len(errs) > 0 {
			return nil, fmt.Errorf("config %s: %w", path, errors.Join(errs...))
		}
	}
	// The environment is applied by name, not by viper's AutomaticEnv,
	// so that a QXTD_ variable that is no key is an error (secrets.go).
	fromEnv, err := applyEnv(v, environ)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := decode(v)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	// Secrets before validation: "required" and length checks see the
	// file's value. A secret that could not be read is reported alone,
	// without the "required" it would also cause.
	if cfg.secretWarnings, err = cfg.resolveSecrets(fromEnv); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// decode turns v into a Config; unknown keys are errors. List entries get
// their defaults.
func decode(v *viper.Viper) (*Config, error) {
	var cfg Config
	var md mapstructure.Metadata
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.Metadata = &md // unknown keys are reported below, by their full name
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return nil, err
	}
	if len(md.Unused) > 0 {
		slices.Sort(md.Unused)
		var errs []error
		for _, k := range md.Unused {
			errs = append(errs, fmt.Errorf("%s: unknown key", k))
		}
		return nil, errors.Join(errs...)
	}
	for i := range cfg.Upstreams {
		cfg.Upstreams[i].setDefaults()
	}
	return &cfg, nil
}

// bindsPerEnterprise is smpp.max_binds_per_enterprise, its 0 made a
// quarter of smpp.max_conns (at least 1), as an enterprise's share of the
// other shared bounds (reassembly, idempotency keys).
func (c SMPPConfig) bindsPerEnterprise() int {
	if c.MaxBindsPerEnterprise > 0 {
		return c.MaxBindsPerEnterprise
	}
	return max(1, c.MaxConns/4)
}

// receiptZone loads smpp.receipt_time_zone.
func (c SMPPConfig) receiptZone() (*time.Location, error) {
	if c.ReceiptTimeZone == "" {
		return nil, errors.New("smpp.receipt_time_zone: required (an IANA zone such as Asia/Shanghai, or Local)")
	}
	loc, err := time.LoadLocation(c.ReceiptTimeZone)
	if err != nil {
		return nil, fmt.Errorf("smpp.receipt_time_zone: %w", err)
	}
	return loc, nil
}

// Validate checks values; every error names its key.
func (c *Config) Validate() error {
	var errs []error
	addr := func(key, v string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: required", key))
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: bad address %q: %w", key, v, err))
		}
	}
	addr("smpp.listen", c.SMPP.Listen)
	if _, err := c.SMPP.receiptZone(); err != nil {
		errs = append(errs, err)
	}
	if c.SMPP.Window < 0 {
		errs = append(errs, fmt.Errorf("smpp.window: %d must not be negative", c.SMPP.Window))
	}
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"smpp.max_conns", int64(c.SMPP.MaxConns)}, {"smpp.max_unbound_per_ip", int64(c.SMPP.MaxUnboundPerIP)},
		{"smpp.max_binds_per_account", int64(c.SMPP.MaxBindsPerAccount)},
		{"smpp.reassembly_max_groups", int64(c.SMPP.ReassemblyMaxGroups)}, {"smpp.reassembly_max_bytes", c.SMPP.ReassemblyMaxBytes},
		{"smpp.mo_reassembly_max_parts", int64(c.SMPP.MOReassemblyMaxParts)}, {"smpp.mo_reassembly_max_bytes", c.SMPP.MOReassemblyMaxBytes},
		{"delivery.dlr_window", int64(c.Delivery.DLRWindow)}, {"delivery.mo_window", int64(c.Delivery.MOWindow)},
	} {
		if n.v < 1 {
			errs = append(errs, fmt.Errorf("%s: %d must be at least 1", n.key, n.v))
		}
	}
	if c.Store.MaxOrphans <= 0 {
		errs = append(errs, fmt.Errorf("store.max_orphans: %d must be positive", c.Store.MaxOrphans))
	}
	if c.SMPP.MaxBindsPerEnterprise < 0 {
		errs = append(errs, fmt.Errorf("smpp.max_binds_per_enterprise: %d must not be negative", c.SMPP.MaxBindsPerEnterprise))
	}
	if c.SMPP.MaxBindsPerEnterprise >= c.SMPP.MaxConns && c.SMPP.MaxConns > 0 {
		errs = append(errs, fmt.Errorf("smpp.max_binds_per_enterprise: %d is not less than smpp.max_conns (%d): one enterprise could hold every connection",
			c.SMPP.MaxBindsPerEnterprise, c.SMPP.MaxConns))
	}
	if c.SMPP.ReassemblyMaxBytesPerEnterprise < 0 {
		errs = append(errs, fmt.Errorf("smpp.reassembly_max_bytes_per_enterprise: %d must not be negative", c.SMPP.ReassemblyMaxBytesPerEnterprise))
	}
	if c.SMPP.ReassemblyMaxBytesPerEnterprise >= c.SMPP.ReassemblyMaxBytes {
		errs = append(errs, fmt.Errorf("smpp.reassembly_max_bytes_per_enterprise: %d is not less than smpp.reassembly_max_bytes (%d): one enterprise could fill the buffer",
			c.SMPP.ReassemblyMaxBytesPerEnterprise, c.SMPP.ReassemblyMaxBytes))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"smpp.idle_timeout", c.SMPP.Idle}, {"smpp.reassembly_timeout", c.SMPP.ReassemblyTimeout}, {"smpp.mo_reassembly_timeout", c.SMPP.MOReassemblyTimeout},
		{"store.retention", c.Store.Retention}, {"store.commit_delay", c.Store.CommitDelay}, {"store.record_delay", c.Store.RecordDelay}, {"simulator.dlr_delay", c.Simulator.DLRDelay},
		{"delivery.validity", c.Delivery.Validity}, {"delivery.retry_min", c.Delivery.RetryMin},
		{"delivery.retry_max", c.Delivery.RetryMax}, {"delivery.dlr_retry", c.Delivery.DLRRetry},
		{"http.read_header_timeout", c.HTTP.ReadHeaderTimeout}, {"http.read_timeout", c.HTTP.ReadTimeout},
		{"http.write_timeout", c.HTTP.WriteTimeout}, {"http.idle_timeout", c.HTTP.IdleTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %v must not be negative", d.key, d.v))
		}
	}
	if c.Store.CommitDelay > maxCommitDelay {
		errs = append(errs, fmt.Errorf("store.commit_delay: %v is more than %v: every answer at a moderate rate would wait that long", c.Store.CommitDelay, maxCommitDelay))
	}
	if c.Store.RecordDelay > maxCommitDelay {
		errs = append(errs, fmt.Errorf("store.record_delay: %v is more than %v: at a low rate an upstream worker and the receipts' records would wait that long", c.Store.RecordDelay, maxCommitDelay))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"reminders.grace", c.Reminders.Grace}, {"reminders.ahead", c.Reminders.Ahead}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: %v must be positive", d.key, d.v))
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"webhooks.workers", int64(c.Webhooks.Workers)}, {"webhooks.per_enterprise", int64(c.Webhooks.PerEnterprise)},
		{"webhooks.timeout", int64(c.Webhooks.Timeout)}, {"webhooks.max_age", int64(c.Webhooks.MaxAge)},
	} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", n.key))
		}
	}
	if o := c.Webhooks.SecretOverlap; o <= 0 || o > maxSecretOverlap {
		errs = append(errs, fmt.Errorf("webhooks.secret_overlap: %v is not in (0, %v]", o, maxSecretOverlap))
	}
	// Retention purges a reply (MO) whatever its reply webhook still owes
	// (a finished message waits for its receipt's webhook: purgeable), so
	// a shorter retention than the webhooks' retries would drop replies
	// the endpoint has not taken yet.
	if r := c.Store.Retention; r > 0 && c.Webhooks.MaxAge > 0 && r < c.Webhooks.MaxAge {
		errs = append(errs, fmt.Errorf("store.retention: %v is less than webhooks.max_age (%v): replies (MO) still retried for their reply webhook would be purged", r, c.Webhooks.MaxAge))
	}
	if c.Webhooks.PerEnterprise > c.Webhooks.Workers {
		errs = append(errs, fmt.Errorf("webhooks.per_enterprise: %d is more than webhooks.workers (%d)", c.Webhooks.PerEnterprise, c.Webhooks.Workers))
	}
	if c.OptOut.MaxEntries < 1 {
		errs = append(errs, fmt.Errorf("optout.max_entries: %d, want at least 1", c.OptOut.MaxEntries))
	}
	if len(c.OptOut.Keywords) == 0 {
		errs = append(errs, errors.New("optout.keywords: at least one keyword (replies could not opt out)"))
	}
	for _, k := range c.OptOut.Keywords {
		if !policy.IsOptOut(k, []string{k}) {
			errs = append(errs, fmt.Errorf("optout.keywords: %q has no letter or digit once spaces and punctuation are trimmed", k))
		}
	}
	// Written so that NaN (YAML's .nan, or "nan" from the environment)
	// fails too: every comparison with it is false, and the gateway then
	// held each enterprise to one slot of the windows.
	if c.Delivery.FailoverAfter < 0 {
		errs = append(errs, fmt.Errorf("delivery.failover_after: %v is negative (0 turns failover off)", c.Delivery.FailoverAfter))
	}
	if !(c.Delivery.TenantShare > 0 && c.Delivery.TenantShare <= 1) {
		errs = append(errs, fmt.Errorf("delivery.tenant_share: %v is not a fraction in (0,1]", c.Delivery.TenantShare))
	}
	addr("http.listen", c.HTTP.Listen)
	if c.HTTP.OpsListen != "" {
		addr("http.ops_listen", c.HTTP.OpsListen)
		if c.HTTP.OpsListen == c.HTTP.Listen && !strings.HasSuffix(c.HTTP.Listen, ":0") {
			errs = append(errs, fmt.Errorf("http.ops_listen: %q is http.listen too; give the operators another port", c.HTTP.OpsListen))
		}
	}
	if c.HTTP.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("http.max_conns: %d must be at least 1", c.HTTP.MaxConns))
	}
	if c.HTTP.MaxImports < 1 {
		errs = append(errs, fmt.Errorf("http.max_imports: %d must be at least 1", c.HTTP.MaxImports))
	}
	if c.HTTP.MaxImportsPerEnterprise < 1 {
		errs = append(errs, fmt.Errorf("http.max_imports_per_enterprise: %d must be at least 1", c.HTTP.MaxImportsPerEnterprise))
	}
	if c.HTTP.MaxConnsPerAddr < 1 {
		errs = append(errs, fmt.Errorf("http.max_conns_per_addr: %d must be at least 1", c.HTTP.MaxConnsPerAddr))
	} else if c.Cluster.Enabled() && c.HTTP.MaxConnsPerAddr < cluster.PeerConnsPerNode {
		// It caps the peer listener too, and a node keeps up to that
		// many connections to each other node.
		errs = append(errs, fmt.Errorf("http.max_conns_per_addr: %d is less than the %d connections a cluster node opens to another", c.HTTP.MaxConnsPerAddr, cluster.PeerConnsPerNode))
	}
	if c.Store.Path == "" {
		errs = append(errs, errors.New("store.path: required"))
	}
	if c.Simulator.Enabled {
		addr("simulator.listen", c.Simulator.Listen)
		if c.Simulator.IDFormat != "hex" && c.Simulator.IDFormat != "dec" {
			errs = append(errs, fmt.Errorf("simulator.id_format: %q is not hex or dec", c.Simulator.IDFormat))
		}
		for k, r := range map[string]float64{"simulator.undeliv_rate": c.Simulator.Undeliv, "simulator.throttle_rate": c.Simulator.Throttle} {
			if !(r >= 0 && r <= 1) { // NaN fails too
				errs = append(errs, fmt.Errorf("%s: %v is not a fraction in [0,1]", k, r))
			}
		}
	}
	if len(c.Upstreams) == 0 {
		errs = append(errs, errors.New("upstreams: at least one is required"))
	}
	names := map[string]bool{}
	for i, u := range c.Upstreams {
		k := fmt.Sprintf("upstreams[%d]", i)
		if u.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", k))
		} else if names[u.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q used twice", k, u.Name))
		}
		names[u.Name] = true
		addr(k+".addr", u.Addr)
		if u.SystemID == "" {
			errs = append(errs, fmt.Errorf("%s.system_id: required", k))
		}
		if u.Password == "" {
			errs = append(errs, fmt.Errorf("%s.password: required", k))
		}
		for _, n := range []struct {
			key string
			v   any
			neg bool
		}{
			{"binds", u.Binds, u.Binds < 0}, {"window", u.Window, u.Window < 0}, {"tps", u.TPS, u.TPS < 0},
			{"resp_timeout", u.RespTimeout, u.RespTimeout < 0}, {"enquire_link", u.EnquireLink, u.EnquireLink < 0},
			{"reconnect_max", u.ReconnectMax, u.ReconnectMax < 0}, {"recording_slots", u.RecordingSlots, u.RecordingSlots < 0},
			{"receivers", u.Receivers, u.Receivers < 0}, {"mo_resp_timeout", u.MORespTimeout, u.MORespTimeout < 0},
		} {
			if n.neg {
				errs = append(errs, fmt.Errorf("%s.%s: %v must not be negative", k, n.key, n.v))
			}
		}
		if math.IsNaN(u.TPS) {
			// Every comparison with NaN is false: it passed the check
			// above and meant no cap, as 0 does, without saying so.
			errs = append(errs, fmt.Errorf("%s.tps: NaN is not a rate (0: no cap)", k))
		}
		switch {
		case u.BindMode != bindModeTransceiver && u.BindMode != bindModeTxRx && u.BindMode != bindModeTx:
			errs = append(errs, fmt.Errorf("%s.bind_mode: %q is not %s, %s or %s", k, u.BindMode, bindModeTransceiver, bindModeTxRx, bindModeTx))
		case u.BindMode != bindModeTxRx && u.Receivers != 0:
			// Said rather than ignored: the operator meant receivers that
			// this mode would not bind.
			errs = append(errs, fmt.Errorf("%s.receivers: %d set, but bind_mode is %s; set bind_mode: %s for receivers of their own",
				k, u.Receivers, u.BindMode, bindModeTxRx))
		case u.BindMode == bindModeTx && u.OutbindListen == "":
			errs = append(errs, fmt.Errorf("%s.bind_mode: %s binds no receiver, and outbind_listen is empty: no receipt or reply would ever come; set outbind_listen, or bind_mode: %s",
				k, bindModeTx, bindModeTxRx))
		}
		if u.OutbindListen != "" {
			addr(k+".outbind_listen", u.OutbindListen)
			if u.OutbindPassword == "" {
				errs = append(errs, fmt.Errorf("%s.outbind_password: required with outbind_listen (the SMSC's outbind must prove itself)", k))
			}
		} else if u.OutbindSystemID != "" || u.OutbindPassword != "" {
			errs = append(errs, fmt.Errorf("%s.outbind_system_id and outbind_password: set, but outbind_listen is empty", k))
		}
		if _, err := parseConcat(u.Concat); err != nil {
			errs = append(errs, fmt.Errorf("%s.concat: %w", k, err))
		}
		if a, err := segment.ParseAlphabet(u.DefaultAlphabet); err != nil {
			errs = append(errs, fmt.Errorf("%s.default_alphabet: %w", k, err))
		} else if a != segment.AlphabetGSM && u.GSMPacked {
			errs = append(errs, fmt.Errorf("%s.gsm_packed: set, but default_alphabet is %s: packing is for GSM septets", k, a))
		}
		if _, ok := gateway.ParseReceiptIDs(u.ReceiptIDs); !ok {
			errs = append(errs, fmt.Errorf("%s.receipt_ids: %q is not auto, same, decimal or hex", k, u.ReceiptIDs))
		}
		if u.Acceptd != acceptdIntermediate && u.Acceptd != acceptdFinal {
			errs = append(errs, fmt.Errorf("%s.acceptd: %q is not intermediate or final", k, u.Acceptd))
		}
		for j, c := range u.Carriers {
			if _, ok := policy.ParseCarrier(c); !ok {
				errs = append(errs, fmt.Errorf("%s.carriers[%d]: %q is not a carrier (china_mobile, china_unicom, china_telecom, china_broadnet, unknown)", k, j, c))
			}
		}
	}
	errs = append(errs, c.HTTP.validateManagers()...)
	ids := map[string]bool{}
	for i, a := range c.Accounts {
		k := fmt.Sprintf("accounts[%d]", i)
		if a.SystemID == "" {
			errs = append(errs, fmt.Errorf("%s.system_id: required", k))
		} else if ids[a.SystemID] {
			errs = append(errs, fmt.Errorf("%s.system_id: %q used twice", k, a.SystemID))
		}
		ids[a.SystemID] = true
		if a.Password == "" {
			errs = append(errs, fmt.Errorf("%s.password: required", k))
		}
		if len(a.SystemID) > 15 {
			errs = append(errs, fmt.Errorf("%s.system_id: %d characters; SMPP allows at most 15", k, len(a.SystemID)))
		}
		if len(a.Password) > 8 {
			errs = append(errs, fmt.Errorf("%s.password: %d characters; SMPP allows at most 8", k, len(a.Password)))
		}
		if _, ok := policy.ParseLongReplies(a.LongReplies); !ok {
			errs = append(errs, fmt.Errorf("%s.long_replies: %q is not payload, udh8, udh16 or sar", k, a.LongReplies))
		}
	}
	codes := map[string]bool{}
	for i, e := range c.Enterprises {
		k := fmt.Sprintf("enterprises[%d]", i)
		if e.Code == "" {
			errs = append(errs, fmt.Errorf("%s.code: required", k))
		} else if codes[e.Code] {
			errs = append(errs, fmt.Errorf("%s.code: %q used twice", k, e.Code))
		}
		codes[e.Code] = true
		if e.CapYuan != "" {
			if _, err := policy.ParseYuan(e.CapYuan); err != nil {
				errs = append(errs, fmt.Errorf("%s.cap_yuan: %w", k, err))
			}
		}
	}
	for i, p := range c.Policy.Packages {
		k := fmt.Sprintf("policy.packages[%d]", i)
		if _, err := policy.ParseYuan(p.FeeYuan); err != nil {
			errs = append(errs, fmt.Errorf("%s.fee_yuan: %w", k, err))
		}
		if _, err := policy.ParseYuan(p.OverageYuan); err != nil {
			errs = append(errs, fmt.Errorf("%s.overage_yuan: %w", k, err))
		}
	}
	for i, o := range c.Policy.Overrides {
		if _, ok := policy.ParseCarrier(o.Carrier); !ok && o.Carrier != "" {
			errs = append(errs, fmt.Errorf("policy.overrides[%d].carrier: %q is not a known carrier", i, o.Carrier))
		}
	}
	switch p := c.Policy; {
	case p.WhitelistMaxEntries < 1: // 0 would read as "no bound", which the file does not offer
		errs = append(errs, fmt.Errorf("policy.whitelist_max_entries: %d must be at least 1", p.WhitelistMaxEntries))
	case p.WhitelistMaxPending < 1:
		errs = append(errs, fmt.Errorf("policy.whitelist_max_pending: %d must be at least 1", p.WhitelistMaxPending))
	case p.WhitelistMaxPending > p.WhitelistMaxEntries:
		// Pending entries are entries: the larger bound could never be met.
		errs = append(errs, fmt.Errorf("policy.whitelist_max_pending: %d is more than policy.whitelist_max_entries (%d)", p.WhitelistMaxPending, p.WhitelistMaxEntries))
	}
	if b := c.Policy.BcryptCost; b != 0 && (b < policy.MinBcryptCost || b > policy.MaxBcryptCost) {
		errs = append(errs, fmt.Errorf("policy.bcrypt_cost: %d is not %d–%d", b, policy.MinBcryptCost, policy.MaxBcryptCost))
	}
	if _, ok := policy.NormalizeProvince(c.Policy.HomeProvince); !ok {
		errs = append(errs, fmt.Errorf("policy.home_province: %q is not a province", c.Policy.HomeProvince))
	}
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.Cluster.validate()...)
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not auto, json or text", c.Log.Format))
	}
	return errors.Join(errs...)
}

// validateManagers checks http.account_managers: a name each, shown as
// it is (printable, at most maxManagerName characters, not the admin
// API's own "admin-api"), told apart from the others; a token each, of
// minManagerToken characters or more and no one else's, and only with
// the admin API on (an empty admin_token disables it, managers included);
// its enterprises, if any, group codes each listed once (whether they
// exist is the store's: serve warns of those that do not).
func (h *HTTPConfig) validateManagers() []error {
	var errs []error
	if len(h.AccountManagers) > 0 && h.AdminToken == "" {
		errs = append(errs, errors.New("http.account_managers: set, but http.admin_token is empty (the admin API and the desk are off)"))
	}
	names := map[string]bool{}
	tokens := map[string]bool{h.AdminToken: true}
	for i, m := range h.AccountManagers {
		k := fmt.Sprintf("http.account_managers[%d]", i)
		switch n := utf8.RuneCountInString(m.Name); {
		case strings.TrimSpace(m.Name) == "":
			errs = append(errs, fmt.Errorf("%s.name: required", k))
		case n > maxManagerName:
			errs = append(errs, fmt.Errorf("%s.name: %d characters, at most %d", k, n, maxManagerName))
		case strings.IndexFunc(m.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
			errs = append(errs, fmt.Errorf("%s.name: %q has a character that is not printable", k, m.Name))
		case m.Name == api.OperatorName:
			errs = append(errs, fmt.Errorf("%s.name: %q is the admin token's own name", k, m.Name))
		case names[m.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q used twice", k, m.Name))
		}
		names[m.Name] = true
		switch {
		case len(m.Token) < minManagerToken:
			errs = append(errs, fmt.Errorf("%s.token: %d characters, at least %d (a long random one: openssl rand -hex 24)", k, len(m.Token), minManagerToken))
		case tokens[m.Token]:
			errs = append(errs, fmt.Errorf("%s.token: the same as another manager's or http.admin_token: each needs its own", k))
		}
		tokens[m.Token] = true
		seen := map[string]bool{}
		for j, code := range m.Enterprises {
			switch err := policy.ValidGroupCode(code); {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s.enterprises[%d]: %w", k, j, err))
			case seen[code]:
				errs = append(errs, fmt.Errorf("%s.enterprises[%d]: %q listed twice", k, j, code))
			}
			seen[code] = true
		}
	}
	return errs
}

// minManagerToken is the shortest account manager's token taken: a
// token is the whole of the credential.
const minManagerToken = 16
