package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// Secrets from files, and the environment that cannot be mistyped.
//
// Every password and token of the file (secretRefs) may instead be given
// as <key>_file: a path whose content, less one trailing newline, is the
// value; systemd's LoadCredential= puts such files in
// $CREDENTIALS_DIRECTORY (%d in the unit). A key and its _file both set is
// an error naming both; an unreadable or empty file is an error naming the
// key and the path; a file others than its owner may read is a warning
// naming the file. Errors and warnings never carry a value.
//
// The QXTD_ environment is the daemon's namespace: every QXTD_ variable is
// one of the config's scalar keys (QXTD_ + the key path in upper case,
// dots as underscores, the _file keys included) or one of otherEnv, which
// other parts of qxtd read. Anything else is an error naming it, with the
// closest valid name: a typo (QXTD_SMPP_LISTN) would otherwise be ignored
// while the daemon runs on the default it meant to change.

// otherEnv are the QXTD_ variables that are not config keys, with who
// reads them: the daemon accepts and ignores them, so a shell that exports
// them for the CLI or the tests can still start it. TestOtherEnvListed
// holds this list to the repository's os.Getenv calls.
var otherEnv = map[string]string{
	"QXTD_ADMIN_TOKEN":      "the token of qxtd admin, export, bill and backup (ops.go)",
	"QXTD_TEST_MAIN":        "cmd/qxtd tests: the test binary runs the daemon",
	"QXTD_TEST_NOFILE":      "cmd/qxtd tests: the daemon's descriptor limit",
	"QXTD_SCREENSHOTS":      "console tests: where make screenshots writes",
	"QXTD_CHROMIUM":         "console tests: the browser to drive",
	"QXTD_LOGIN_FLOOD_COST": "api tests: the bcrypt cost of the login flood test",
	"QXTD_BATCH_ROWS":       "api tests: the size of the large batch test",
	"QXTD_DEB_ARCH":         "make deb: the package's architecture (configs/nfpm.yaml)",
	"QXTD_DEB_BINARY":       "make deb: the binary the package ships (configs/nfpm.yaml)",
}

// secretRef is one secret key and its _file companion.
type secretRef struct {
	key         string // "http.admin_token", "upstreams[0].password"
	value, file *string
}

// secretRefs lists every password and token of c. A new secret in Config
// belongs here (TestSecretRefsComplete finds the *_file fields).
func (c *Config) secretRefs() []secretRef {
	refs := []secretRef{
		{"http.admin_token", &c.HTTP.AdminToken, &c.HTTP.AdminTokenFile},
		{"simulator.password", &c.Simulator.Password, &c.Simulator.PasswordFile},
		{"cluster.secret", &c.Cluster.Secret, &c.Cluster.SecretFile},
		{"cluster.etcd_password", &c.Cluster.EtcdPassword, &c.Cluster.EtcdPasswordFile},
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		refs = append(refs, secretRef{fmt.Sprintf("upstreams[%d].password", i), &u.Password, &u.PasswordFile},
			secretRef{fmt.Sprintf("upstreams[%d].outbind_password", i), &u.OutbindPassword, &u.OutbindPasswordFile})
	}
	for i := range c.HTTP.AccountManagers {
		m := &c.HTTP.AccountManagers[i]
		refs = append(refs, secretRef{fmt.Sprintf("http.account_managers[%d].token", i), &m.Token, &m.TokenFile})
	}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		refs = append(refs, secretRef{fmt.Sprintf("accounts[%d].password", i), &a.Password, &a.PasswordFile})
	}
	return refs
}

// secretWarning is a secret file readable by more than its owner.
type secretWarning struct {
	key  string // the _file key
	path string
	mode fs.FileMode
}

// logSecretWarnings writes ws to log, one line a file.
func logSecretWarnings(log *slog.Logger, ws []secretWarning) {
	for _, w := range ws {
		log.Warn("secret file is readable by group or others; make it 0600 or 0400", "key", w.key, "file", w.path, "mode", w.mode.String())
	}
}

// resolveSecrets reads every _file into its key. envName maps a key set
// from the environment to its variable, for the errors.
func (c *Config) resolveSecrets(envName map[string]string) ([]secretWarning, error) {
	var errs []error
	var warns []secretWarning
	named := func(key string) string {
		if n, ok := envName[key]; ok {
			return key + " (" + n + ")"
		}
		return key
	}
	// Each file is read once: a list of accounts that all name one file
	// (a YAML alias repeats an entry at three bytes a copy) would
	// otherwise hold one copy of it, up to kindSecret's bound, per account.
	type secretFile struct {
		s    string
		mode fs.FileMode
		err  error
	}
	read := map[string]secretFile{}
	for _, r := range c.secretRefs() {
		if *r.file == "" {
			continue
		}
		fk := r.key + "_file"
		if *r.value != "" {
			errs = append(errs, fmt.Errorf("%s and %s: both set; give the value or the file, not both", named(r.key), named(fk)))
			continue
		}
		f, ok := read[*r.file]
		if !ok {
			f.s, f.mode, f.err = readSecretFile(*r.file)
			read[*r.file] = f
		}
		s, mode, err := f.s, f.mode, f.err
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", named(fk), err))
			continue
		}
		if mode.Perm()&0o044 != 0 {
			warns = append(warns, secretWarning{key: fk, path: *r.file, mode: mode.Perm()})
		}
		*r.value = s
	}
	return warns, errors.Join(errs...)
}

// readSecretFile is path's content less one trailing newline (what echo
// and editors add), and its mode. Errors name the path, never the
// content; the file is bounded as kindSecret (namedfiles.go).
func readSecretFile(path string) (string, fs.FileMode, error) {
	b, mode, err := readNamedFile(path, kindSecret)
	if err != nil {
		return "", 0, err
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", 0, fmt.Errorf("%s: empty", path)
	}
	return s, mode, nil
}

// envKeys maps every QXTD_ variable of the config to its key: the scalar
// keys of Config (lists of structs come from the file only).
func envKeys() map[string]string {
	m := map[string]string{}
	for _, k := range scalarKeys(reflect.TypeOf(Config{}), "") {
		m["QXTD_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	return m
}

// scalarKeys lists the keys of t outside lists of structs.
func scalarKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		k := prefix + f.Tag.Get("mapstructure")
		switch {
		case !f.IsExported():
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			keys = append(keys, scalarKeys(f.Type, k+".")...)
		default:
			keys = append(keys, k)
		}
	}
	return keys
}

// listEnvPrefixes are the QXTD_ prefixes of the config's lists
// (QXTD_UPSTREAMS_), which the environment cannot set.
func listEnvPrefixes(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		k := prefix + f.Tag.Get("mapstructure")
		switch {
		case !f.IsExported():
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, "QXTD_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"_")
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			out = append(out, listEnvPrefixes(f.Type, k+".")...)
		}
	}
	return out
}

// applyEnv sets v's keys from environ's QXTD_ variables (an empty one is
// unset, as viper's AutomaticEnv had it) and returns which key came from
// which variable. Any other QXTD_ variable is an error naming it.
//
// The values are merged into the file's layer rather than set with
// v.Set: an override shadows a section the file leaves empty ("http:"),
// and that section's defaults with it.
func applyEnv(v *viper.Viper, environ []string) (map[string]string, error) {
	keys := envKeys()
	from := map[string]string{}
	set := map[string]any{}
	var unknown []string
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "QXTD_") {
			continue
		}
		key, ok := keys[name]
		switch {
		case ok && val != "":
			m := set
			path := strings.Split(key, ".")
			for _, p := range path[:len(path)-1] {
				sub, _ := m[p].(map[string]any)
				if sub == nil {
					sub = map[string]any{}
					m[p] = sub
				}
				m = sub
			}
			m[path[len(path)-1]] = val
			from[key] = name
		case ok:
		case otherEnv[name] != "":
		default:
			unknown = append(unknown, name)
		}
	}
	if len(set) > 0 {
		if err := v.MergeConfigMap(set); err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
	}
	slices.Sort(unknown)
	var errs []error
	for _, name := range unknown {
		errs = append(errs, fmt.Errorf("environment variable %s: not a configuration key%s", name, envHint(name, keys)))
	}
	return from, errors.Join(errs...)
}

// envHint says what name probably meant.
func envHint(name string, keys map[string]string) string {
	for _, p := range listEnvPrefixes(reflect.TypeOf(Config{}), "") {
		if strings.HasPrefix(name, p) {
			return "; lists come from the file only (their passwords from password_file)"
		}
	}
	best, bestD := "", -1
	for _, cands := range []map[string]string{keys, otherEnv} {
		for c := range cands {
			if d := editDistance(name, c); bestD < 0 || d < bestD || d == bestD && c < best {
				best, bestD = c, d
			}
		}
	}
	// Beyond a few edits the closest name is a guess, not a typo.
	if bestD >= 0 && bestD <= 3 {
		return "; did you mean " + best + "?"
	}
	return "; QXTD_ variables are config keys: QXTD_ + the key path in upper case, dots as underscores"
}

// editDistance is the Levenshtein distance of a and b, by bytes (the
// names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
