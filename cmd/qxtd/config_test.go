package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// The configuration fixtures are shared: the repository's top-level
// testdata/config. Every invalid-*.yaml there has its expected error here
// (the key it names), as blackbox_exporter keeps its config/testdata.
const configTestdata = "../../testdata/config"

func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"invalid-unknown-key.yaml":              "smpp.listn: unknown key",
		"invalid-unknown-empty-key.yaml":        "line 4: smpp.tls_lisen: unknown key",
		"invalid-bad-duration.yaml":             "'smpp.idle_timeout' time: unknown unit",
		"invalid-negative-smpp-window.yaml":     "smpp.window: -1 must not be negative",
		"invalid-negative-upstream-window.yaml": "upstreams[0].window: -5 must not be negative",
		"invalid-negative-recording-slots.yaml": "upstreams[0].recording_slots: -1 must not be negative",
		"invalid-negative-retention.yaml":       "store.retention: -1h0m0s must not be negative",
		"invalid-retention-webhooks.yaml":       "store.retention: 12h0m0s is less than webhooks.max_age (24h0m0s)",
		"invalid-commit-delay.yaml":             "store.commit_delay: 1s is more than 100ms",
		"invalid-record-delay.yaml":             "store.record_delay: 1s is more than 100ms",
		"invalid-max-orphans.yaml":              "store.max_orphans: 0 must be positive",
		"invalid-concat.yaml":                   `upstreams[0].concat: segment: bad options: concat mode "udh32"`,
		"invalid-receipt-ids.yaml":              `upstreams[0].receipt_ids: "octal" is not auto, same, decimal or hex`,
		"invalid-acceptd.yaml":                  `upstreams[0].acceptd: "sometimes" is not intermediate or final`,
		"invalid-upstream-no-addr.yaml":         "upstreams[0].addr: required",
		"invalid-bind-mode.yaml":                `upstreams[0].bind_mode: "transmitter+receiver" is not transceiver, transmitter_receiver or transmitter`,
		"invalid-transmitter-no-outbind.yaml":   "upstreams[0].bind_mode: transmitter binds no receiver, and outbind_listen is empty",
		"invalid-outbind-no-password.yaml":      "upstreams[0].outbind_password: required with outbind_listen",
		"invalid-default-alphabet.yaml":         `upstreams[0].default_alphabet: segment: bad options: default alphabet "utf8" (want gsm, latin1 or ascii)`,
		"invalid-receivers-transceiver.yaml":    "upstreams[0].receivers: 2 set, but bind_mode is transceiver",
		"invalid-upstream-carrier.yaml":         `upstreams[0].carriers[1]: "vodafone" is not a carrier`,
		"invalid-no-upstreams.yaml":             "upstreams: at least one is required",
		"invalid-log-level.yaml":                `log.level: "verbose" is not debug, info, warn or error`,
		"invalid-bcrypt-cost.yaml":              "policy.bcrypt_cost: 20 is not 4–16",
		"invalid-log-format.yaml":               `log.format: "yaml" is not auto, json or text`,
		"invalid-account-password.yaml":         "accounts[0].password: 13 characters; SMPP allows at most 8",
		"invalid-account-long-replies.yaml":     `accounts[0].long_replies: "udh7" is not payload, udh8, udh16 or sar`,
		"invalid-cap-yuan.yaml":                 `enterprises[0].cap_yuan: policy: invalid: amount "lots"`,
		"invalid-http-max-conns.yaml":           "http.max_conns_per_addr: 0 must be at least 1",
		"invalid-dlr-window.yaml":               "delivery.dlr_window: 0 must be at least 1",
		"invalid-mo-window.yaml":                "delivery.mo_window: 0 must be at least 1",
		"invalid-failover-after.yaml":           "delivery.failover_after: -5s is negative (0 turns failover off)",
		"invalid-smpp-max-conns.yaml":           "smpp.max_unbound_per_ip: 0 must be at least 1",
		"invalid-binds-per-account.yaml":        "smpp.max_binds_per_account: 0 must be at least 1",
		"invalid-binds-per-enterprise.yaml":     "smpp.max_binds_per_enterprise: 100 is not less than smpp.max_conns (100)",
		"invalid-webhooks-workers.yaml":         "webhooks.workers: must be positive",
		"invalid-webhooks-secret-overlap.yaml":  "webhooks.secret_overlap: 1000h0m0s is not in (0, 720h0m0s]",
		"invalid-optout-keyword.yaml":           `optout.keywords: "。" has no letter or digit once spaces and punctuation are trimmed`,
		"invalid-reassembly-share.yaml":         "smpp.reassembly_max_bytes_per_enterprise: 1048576 is not less than smpp.reassembly_max_bytes (1048576)",
		"invalid-tls-cert-without-key.yaml":     "http.tls_cert_file and http.tls_key_file: set both or neither",
		"invalid-tls-key-without-cert.yaml":     "smpp.tls_cert_file and smpp.tls_key_file: set both or neither",
		"invalid-tls-unreadable.yaml":           "smpp.tls_cert_file: open /nonexistent/qxtd-testdata/smpp.crt: no such file or directory",
		"invalid-upstream-tls-ca.yaml":          "upstreams[0].tls_ca_file: open /nonexistent/qxtd-testdata/ca.pem: no such file or directory",
		"invalid-upstream-tls-ca-device.yaml":   "upstreams[0].tls_ca_file: /dev/zero: not a regular file (a character device)",
		"invalid-tls-device.yaml":               "http.tls_cert_file: /dev/zero: not a regular file (a character device)",
		"invalid-secret-device.yaml":            "upstreams[0].password_file: /dev/zero: not a regular file (a character device)",
		"invalid-upstream-tls-off.yaml":         "upstreams[0].tls_insecure_skip_verify: set, but upstreams[0].tls is false",
		"invalid-ops-listen.yaml":               `http.ops_listen: "127.0.0.1:8080" is http.listen too`,
		"invalid-secret-both.yaml":              "http.admin_token and http.admin_token_file: both set",
		"invalid-secret-missing-file.yaml":      "upstreams[0].password_file: open /nonexistent/qxtd-test/smsc.password: no such file",
		"invalid-cluster-node-id.yaml":          "cluster.node_id: 0 must be 1..65535",
		"invalid-cluster-secret.yaml":           "cluster.secret: required in cluster mode, at least 16 bytes",
		"invalid-cluster-peer-conns.yaml":       "http.max_conns_per_addr: 32 is less than the 64 connections a cluster node opens to another",
		"invalid-cluster-peer-url.yaml":         `cluster.peer_url: required when cluster.peer_listen "0.0.0.0:7101" listens on every address`,
		"invalid-receipt-time-zone.yaml":        "smpp.receipt_time_zone: unknown time zone Mars/Olympus_Mons",
		"invalid-whitelist-max-zero.yaml":       "policy.whitelist_max_entries: 0 must be at least 1",
		"invalid-whitelist-max.yaml":            "policy.whitelist_max_pending: 10000 is more than policy.whitelist_max_entries (5000)",
		"invalid-tenant-share-nan.yaml":         "delivery.tenant_share: NaN is not a fraction in (0,1]",
		"invalid-upstream-tps-nan.yaml":         "upstreams[0].tps: NaN is not a rate",
	}
	files, err := filepath.Glob(filepath.Join(configTestdata, "invalid-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d invalid-*.yaml files, %d expected errors: every file needs one", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			w, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expected error for %s", f)
			}
			_, err := LoadConfig(f)
			if err == nil {
				t.Fatalf("loaded; want an error naming the key: %s", w)
			}
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
			}
		})
	}
}

func TestConfigValid(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(configTestdata, "valid-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../configs/qxtd.yaml") // what `make run` starts with
	if len(files) < 3 {
		t.Fatalf("fixtures missing: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := LoadConfig(f); err != nil {
				t.Fatal(err)
			}
		})
	}
	// What a file leaves out takes the defaults, in lists too.
	cfg, err := LoadConfig(filepath.Join(configTestdata, "valid-minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Upstreams[0]
	if u.Binds != gateway.DefaultBinds || u.Window != gateway.DefaultWindow || u.RespTimeout != gateway.DefaultRespTimeout ||
		u.EnquireLink != gateway.DefaultEnquireLink || u.Concat != "udh8" || u.ReceiptIDs != "auto" || u.MORespTimeout != 2*time.Second {
		t.Errorf("upstream defaults: %+v", u)
	}
	if cfg.Delivery.MOWindow != gateway.DefaultMOWindow {
		t.Errorf("delivery.mo_window %d, want %d", cfg.Delivery.MOWindow, gateway.DefaultMOWindow)
	}
	full, err := LoadConfig(filepath.Join(configTestdata, "valid-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if full.Upstreams[0].MORespTimeout != 5*time.Second || full.Delivery.MOWindow != 16 {
		t.Errorf("valid-full: mo_resp_timeout %v, mo_window %d; want the file's 5s, 16", full.Upstreams[0].MORespTimeout, full.Delivery.MOWindow)
	}
	if cfg.Store.Retention != 2160*time.Hour || cfg.Delivery.Validity != gateway.DefaultValidity || cfg.SMPP.Window != 64 ||
		cfg.SMPP.ReceiptTimeZone != "Asia/Shanghai" {
		t.Errorf("defaults: %+v %+v %+v", cfg.Store, cfg.Delivery, cfg.SMPP)
	}
}

// TestConfigWhitelistBounds: the whitelist bounds of the file reach the
// policy's Config.
func TestConfigWhitelistBounds(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(filepath.Join(configTestdata, "valid-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := policyConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxWhitelist != 500_000 || pc.MaxPendingWhitelist != 20_000 {
		t.Errorf("policy.Config bounds %d, %d; want the file's 500000, 20000", pc.MaxWhitelist, pc.MaxPendingWhitelist)
	}
}

// TestSeedAccountLongReplies: accounts[].long_replies reaches the user
// the file seeds as accounts[].extension does: when the user is created,
// or over the store's with seed_force; a user that exists keeps its own
// (the admin API's changes are not undone at the next start).
func TestSeedAccountLongReplies(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(filepath.Join(configTestdata, "valid-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Accounts[0]; a.SystemID != "demo" || a.LongReplies != "UDH16" {
		t.Fatalf("accounts[0] as read: %+v", a)
	}
	cfg.Enterprises[0].ServiceNumber, cfg.Enterprises[0].ExtLen = "1065901", 2
	cfg.Accounts[0].Extension = "12"
	_, pol := adminServer(t)
	seed := func(force bool) *policy.User {
		t.Helper()
		sd, err := seedData(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sd.Force = force
		if _, err := pol.Seed(context.Background(), sd); err != nil {
			t.Fatal(err)
		}
		u, err := pol.User(policy.OperatorActor("t"), "demo")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := seed(false); u.LongReplies != "udh16" || u.Extension != "12" {
		t.Fatalf("created: long_replies %q, extension %q; want udh16, 12", u.LongReplies, u.Extension)
	}
	cfg.Accounts[0].LongReplies, cfg.Accounts[0].Extension = "sar", "34"
	if u := seed(false); u.LongReplies != "udh16" || u.Extension != "12" {
		t.Errorf("seeded again: long_replies %q, extension %q; want both kept (udh16, 12)", u.LongReplies, u.Extension)
	}
	if u := seed(true); u.LongReplies != "sar" || u.Extension != "34" {
		t.Errorf("seed_force: long_replies %q, extension %q; want the file's (sar, 34)", u.LongReplies, u.Extension)
	}
	cfg.Accounts[0].LongReplies = "payload"
	if u := seed(true); u.LongReplies != "" {
		t.Errorf("seed_force, payload: long_replies %q, want the default stored as \"\"", u.LongReplies)
	}
}

// TestReadmeConfigTable holds the README's configuration table to the
// code: every key of Config has a row (or, for a list documented in one
// row, is named in it), every row is a key, and every default in the
// table is the code's.
func TestReadmeConfigTable(t *testing.T) {
	t.Parallel()
	rows := readmeConfigRows(t)

	// The defaults as the code has them: a file with nothing in it, and
	// one upstream entry with nothing in it.
	v := viper.New()
	defaults(v)
	def, err := decode(v)
	if err != nil {
		t.Fatal(err)
	}
	withUpstream := *def
	withUpstream.Upstreams = []UpstreamConfig{{}}
	withUpstream.Upstreams[0].setDefaults()
	values := map[string]reflect.Value{}
	flattenConfig(reflect.ValueOf(withUpstream), "", values)
	for _, list := range []string{"upstreams[]", "enterprises[]", "accounts[]", "policy.packages[]", "policy.overrides[]", "http.account_managers[]"} {
		values[list] = listValue(reflect.ValueOf(*def), list)
	}
	keys := configKeys(reflect.TypeOf(Config{}), "")

	documented := map[string]bool{}
	for _, r := range rows {
		for i, k := range r.keys {
			documented[k] = true
			val, ok := values[k]
			if !ok {
				t.Errorf("README row %q: no such key in Config", k)
				continue
			}
			checkDefault(t, k, r.defaults, i, len(r.keys), val)
		}
	}
	for _, k := range keys {
		if documented[k] {
			continue
		}
		list, field, isElem := strings.Cut(k, "[].")
		if isElem && documented[list+"[]"] && strings.Contains(rowOf(rows, list+"[]").meaning, "`"+field+"`") {
			continue
		}
		t.Errorf("key %s is not in the README's configuration table", k)
	}
}

type configRow struct {
	keys     []string
	defaults string // the default cell as written
	meaning  string
}

func rowOf(rows []configRow, key string) configRow {
	for _, r := range rows {
		if slices.Contains(r.keys, key) {
			return r
		}
	}
	return configRow{}
}

var backticked = regexp.MustCompile("`([^`]*)`")

// readmeConfigRows parses the table under "## Configuration".
func readmeConfigRows(t *testing.T) []configRow {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []configRow
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("README configuration row with %d cells, want 3: %s", len(cells), line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		r := configRow{defaults: cells[1], meaning: cells[2]}
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			k := m[1]
			if strings.HasPrefix(k, ".") { // `upstreams[].system_id`, `.password`
				k = r.keys[0][:strings.LastIndex(r.keys[0], ".")] + k
			}
			r.keys = append(r.keys, k)
		}
		rows = append(rows, r)
	}
	if len(rows) < 30 {
		t.Fatalf("only %d rows in the README's configuration table", len(rows))
	}
	return rows
}

// checkDefault compares the README's default cell (for the i-th of n keys
// of its row) with the code's value.
func checkDefault(t *testing.T, key, cell string, i, n int, val reflect.Value) {
	t.Helper()
	if val.Kind() == reflect.Slice && (val.Len() == 0 || val.Type().Elem().Kind() != reflect.String) {
		if val.Len() != 0 {
			t.Errorf("%s: the code has a default list, the README says %q", key, cell)
		}
		return
	}
	quoted := backticked.FindAllStringSubmatch(cell, -1)
	switch {
	case len(quoted) == 0:
		if cell != "required" && !strings.HasPrefix(cell, "empty") {
			t.Errorf("%s: README default %q: want `value`, required or empty", key, cell)
		} else if !val.IsZero() {
			t.Errorf("%s: README says %s, the code's default is %s", key, cell, formatDefault(val))
		}
	case len(quoted) == n || len(quoted) == 1:
		want := quoted[0][1]
		if len(quoted) == n {
			want = quoted[i][1]
		}
		if got := formatDefault(val); got != want {
			t.Errorf("%s: README default %q, code %q", key, want, got)
		}
	default:
		t.Errorf("%s: README default %q: %d values for %d keys", key, cell, len(quoted), n)
	}
}

// formatDefault writes a value as the README does (durations as 2160h,
// 30m, 1s).
func formatDefault(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		s := x.String() // 2160h0m0s, 30m0s, 1s, 0s
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []string: // a default list of words: [TD, T, 退订]
		return "[" + strings.Join(x, ", ") + "]"
	}
	return strings.TrimSpace(strings.ReplaceAll(reflectString(v), "\n", " "))
}

func reflectString(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	}
	return v.String()
}

// configKeys lists the YAML keys of t: "smpp.listen", "upstreams[].addr".
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		k := prefix + f.Tag.Get("mapstructure")
		switch {
		case !f.IsExported(): // not read from the file (Config.secretWarnings)
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			keys = append(keys, configKeys(f.Type, k+".")...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(f.Type.Elem(), k+"[].")...)
		default:
			keys = append(keys, k)
		}
	}
	return keys
}

// flattenConfig maps every leaf key of v to its value; a list of structs
// contributes its first entry's fields.
func flattenConfig(v reflect.Value, prefix string, out map[string]reflect.Value) {
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		k := prefix + f.Tag.Get("mapstructure")
		switch {
		case !f.IsExported():
		case f.Type.Kind() == reflect.Struct:
			flattenConfig(fv, k+".", out)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			if fv.Len() > 0 {
				flattenConfig(fv.Index(0), k+"[].", out)
			}
		default:
			out[k] = fv
		}
	}
}

// listValue is the list at key "a.b[]" of v.
func listValue(v reflect.Value, key string) reflect.Value {
	for _, name := range strings.Split(strings.TrimSuffix(key, "[]"), ".") {
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("mapstructure") == name {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

// TestConfigEmptyKeys: a key left empty (or ~) is checked like any other:
// one of Config's passes, with its default; an unknown one, in a section
// or in a list's entry, is an error naming it and its line.
func TestConfigEmptyKeys(t *testing.T) {
	const up = "upstreams:\n  - name: smsc\n    addr: 127.0.0.1:2776\n    system_id: qxtd\n    password: qxtd\n"
	for _, c := range []struct {
		doc, err string
	}{
		{"smpp:\n  tls_listen:\n  idle_timeout: ~\n" + up, ""},
		{up + "    reconnect_max:\n", ""},
		{up + "    recnnect_max:\n", "line 6: upstreams[].recnnect_max: unknown key"},
		{"smpp: ~\n" + up, ""},
		{"smtp: ~\n" + up, "line 1: smtp: unknown key"},
		{"smpp:\n  listen:\n    nested: ~\n" + up, "line 3: smpp.listen.nested: unknown key"},
	} {
		_, err := parseConfig("qxtd.yaml", []byte(c.doc), nil)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.doc, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: %v, want %q", c.doc, err, c.err)
		}
	}
}
