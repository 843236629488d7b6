package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reloading the configuration file on SIGHUP (an SSH logout or a
// reload-style unit sends it; by default it would kill the daemon).
//
// The file is read and validated as at start; an invalid file is logged
// and ignored, and the running configuration stays. Of a valid one, the
// keys that changed since the running configuration are applied where
// the running daemon can take them:
//
//   - log.level;
//   - upstreams[].tps, for an upstream started with a cap (0 lifts it);
//   - enterprises, accounts and policy.overrides, seeded as at start and
//     never with policy.seed_force: what does not exist yet is created,
//     what exists is kept as the admins left it;
//   - http.account_managers (after the seeding, so that a manager may be
//     given an enterprise the same file opens), unless http.admin_token
//     changed too: a manager's token is checked against the admin
//     token's, and that one needs a restart. A manager taken out or
//     given another token loses the sessions it opened (api.SetManagers).
//
// Every other changed key (listen addresses, the store, timeouts, the
// upstreams' addresses and credentials, …) is logged as needing a restart,
// at this and every later reload until the daemon restarts. A reload is
// all or nothing: if seeding fails, nothing of the file is applied.
// blackbox_exporter's gauges tell whether the last reload worked.

// reloadMetrics are the gauges of the last reload.
type reloadMetrics struct {
	ok, at prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) reloadMetrics {
	m := reloadMetrics{
		ok: promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "qxtd_config_last_reload_successful",
			Help: "Whether the last configuration reload (SIGHUP) succeeded; 1 at start.",
		}),
		at: promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "qxtd_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully (start or SIGHUP), in Unix seconds.",
		}),
	}
	m.ok.Set(1)
	m.at.SetToCurrentTime()
	return m
}

// reload re-reads path and applies what it can (see above). It never
// stops the daemon.
func (d *daemon) reload(ctx context.Context, path string) {
	start := time.Now()
	err := d.applyConfig(ctx, path)
	// Certificates, keys and CA bundles are read again from the files the
	// running configuration names, whether or not the file changed or
	// loaded (tls.go): renewing a certificate is a SIGHUP.
	tlsOK := d.tls.reload(d.log)
	if err != nil {
		d.reloadMetrics.ok.Set(0)
		d.log.Error("configuration reload failed; the running configuration stays", "config", path, "err", err)
		return
	}
	if !tlsOK {
		d.reloadMetrics.ok.Set(0)
		return
	}
	d.reloadMetrics.ok.Set(1)
	d.reloadMetrics.at.SetToCurrentTime()
	d.log.Debug("configuration reload took", "elapsed", time.Since(start).Round(time.Millisecond).String())
}

func (d *daemon) applyConfig(ctx context.Context, path string) error {
	next, err := LoadConfig(path)
	if err != nil {
		return err
	}
	logSecretWarnings(d.log, next.secretWarnings)
	cur := *d.cfg
	cur.Upstreams = slices.Clone(cur.Upstreams)
	var applied, restart, ignored []string
	seed := false
	diff := configDiff(d.cfg, next)
	var managers []string // the changed keys of http.account_managers
	for _, k := range diff {
		switch {
		case hasKeyPrefix(k, "http.account_managers") && !slices.Contains(diff, "http.admin_token"):
			managers = append(managers, k)
		case k == "log.level":
			applied = append(applied, k)
		case k == "policy.seed_force":
			ignored = append(ignored, k) // a one-off for a start, never a reload
		case hasKeyPrefix(k, "enterprises"), hasKeyPrefix(k, "accounts"), hasKeyPrefix(k, "policy.overrides"):
			seed = true
		case strings.HasPrefix(k, "upstreams[") && strings.HasSuffix(k, "].tps"):
			// applied below, by upstream name
		default:
			restart = append(restart, k)
		}
	}

	// Seeding first: it is the one step that can fail, and nothing else
	// is applied until it has worked.
	var seeded []any
	if seed {
		sd, err := seedData(next)
		if err != nil {
			return err
		}
		sd.Force = false
		rep, err := d.policy.Seed(ctx, sd)
		if err != nil {
			return fmt.Errorf("seeding enterprises and accounts from the configuration: %w", err)
		}
		cur.Enterprises, cur.Accounts, cur.Policy.Overrides = next.Enterprises, next.Accounts, next.Policy.Overrides
		applied = append(applied, "seed")
		seeded = []any{"enterprises_created", rep.EnterprisesCreated, "enterprises_kept", rep.EnterprisesKept,
			"users_created", rep.UsersCreated, "users_kept", rep.UsersKept,
			"whitelist_added", rep.WhitelistAdded, "whitelist_kept", rep.WhitelistKept,
			"overrides_added", rep.OverridesAdded, "overrides_kept", rep.OverridesKept}
	}
	if len(managers) > 0 {
		d.api.SetManagers(d.managers(next))
		cur.HTTP.AccountManagers = next.HTTP.AccountManagers
		applied = append(applied, managers...)
		if d.cluster != nil {
			// The other nodes compare it with theirs (GET /admin/v1/status's
			// config_differs): a node not reloaded yet shows.
			if err := d.cluster.node.PublishDigest(digestManagers, managersDigest([]byte(d.cfg.Cluster.Secret), next.HTTP.AccountManagers)); err != nil {
				d.log.Warn("reload: the account managers' digest not published to the cluster; the other nodes compare an old one until the next reload", "err", err)
			}
		}
	}
	if slices.Contains(applied, "log.level") {
		var lv slog.Level
		_ = lv.UnmarshalText([]byte(strings.ToUpper(next.Log.Level))) // validated
		d.level.Set(lv)
		cur.Log.Level = next.Log.Level
	}
	for i, u := range next.Upstreams {
		j := slices.IndexFunc(cur.Upstreams, func(c UpstreamConfig) bool { return c.Name == u.Name })
		if j < 0 || cur.Upstreams[j].TPS == u.TPS {
			continue // a new upstream is in restart already
		}
		key := fmt.Sprintf("upstreams[%d].tps", i)
		if err := d.gw.SetUpstreamTPS(u.Name, u.TPS); err != nil {
			restart = append(restart, key)
			d.log.Warn("upstream tps not changed at run time", "upstream", u.Name, "err", err)
			continue
		}
		cur.Upstreams[j].TPS = u.TPS
		applied = append(applied, key)
	}
	d.cfg = &cur

	args := []any{"config", path, "applied", wholeEntries(applied), "restart_required", wholeEntries(restart)}
	if len(ignored) > 0 {
		args = append(args, "ignored", ignored)
	}
	d.log.Info("configuration reloaded", append(args, seeded...)...)
	if seed {
		d.log.Info("seeding on reload creates what is missing; changes to existing enterprises, users and whitelist entries go through the admin API")
	}
	if len(restart) > 0 {
		d.log.Warn("changed configuration keys take effect only after a restart", "keys", restart)
	}
	return nil
}

// hasKeyPrefix reports whether key is prefix or inside it ("accounts",
// "accounts[2].password").
func hasKeyPrefix(key, prefix string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// configDiff lists the keys whose values differ between a and b, sorted:
// "log.level", "upstreams[1].tps", "accounts[3]" (an entry only one side
// has), "enterprises[0].whitelist" (a list of values, compared whole).
func configDiff(a, b *Config) []string {
	fa, fb := map[string]any{}, map[string]any{}
	flattenValues(reflect.ValueOf(*a), "", fa)
	flattenValues(reflect.ValueOf(*b), "", fb)
	var out []string
	for k, va := range fa {
		vb, ok := fb[k]
		if !ok || !reflect.DeepEqual(va, vb) {
			out = append(out, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// wholeEntries leaves out of keys those of the fields of a list entry
// that is in keys itself (added or taken out whole): the log names
// "http.account_managers[2]", not each of its fields besides.
func wholeEntries(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		whole := slices.ContainsFunc(keys, func(e string) bool {
			return strings.HasSuffix(e, "]") && strings.HasPrefix(k, e+".")
		})
		if !whole {
			out = append(out, k)
		}
	}
	return out
}

// flattenValues maps every leaf key of v to its value; an entry of a
// list of structs is one key ("upstreams[0]") that holds its fields'
// keys ("upstreams[0].tps").
func flattenValues(v reflect.Value, prefix string, out map[string]any) {
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		k := prefix + f.Tag.Get("mapstructure")
		switch {
		case !f.IsExported(): // not a key (Config.secretWarnings)
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			flattenValues(fv, k+".", out)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			for j := range fv.Len() {
				ek := fmt.Sprintf("%s[%d]", k, j)
				out[ek] = true // present
				flattenValues(fv.Index(j), ek+".", out)
			}
		default:
			out[k] = fv.Interface()
		}
	}
}
