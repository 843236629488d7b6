package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// secretsBase is a configuration whose four secrets are placeholders:
// each case of the tests below replaces one line.
const secretsBase = `http:
  admin_token: inline-admin
simulator:
  password: inlinesim
upstreams:
  - name: smsc
    addr: 127.0.0.1:2776
    system_id: qxtd
    password: inlineup
accounts:
  - system_id: esme
    password: inlineac
    enterprise: T1
`

// writeSecretsConfig writes secretsBase with old replaced by new (old
// empty: as it is).
func writeSecretsConfig(t *testing.T, dir, old, new string) string {
	t.Helper()
	if old != "" && !strings.Contains(secretsBase, old) {
		t.Fatalf("no %q in the base configuration", old)
	}
	p := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(secretsBase, old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeSecret(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by the umask
		t.Fatal(err)
	}
	return path
}

// TestSecretsFromFileAndEnv: every secret is read from its _file (the
// YAML key, and for scalar keys the QXTD_…_FILE variable), less one
// trailing newline; scalar secrets also from their QXTD_ variable.
func TestSecretsFromFileAndEnv(t *testing.T) {
	t.Parallel()
	get := map[string]func(*Config) string{
		"http.admin_token":      func(c *Config) string { return c.HTTP.AdminToken },
		"simulator.password":    func(c *Config) string { return c.Simulator.Password },
		"upstreams[0].password": func(c *Config) string { return c.Upstreams[0].Password },
		"accounts[0].password":  func(c *Config) string { return c.Accounts[0].Password },
	}
	for _, tc := range []struct {
		name     string
		key      string
		old, new string // the base file's line and its replacement (%s: the secret file)
		env      string // %s: the secret file
		content  string // of the secret file
		want     string
	}{
		{name: "admin token file", key: "http.admin_token", old: "  admin_token: inline-admin\n",
			new: "  admin_token_file: %s\n", content: "tok-from-file\n", want: "tok-from-file"},
		{name: "admin token file from env", key: "http.admin_token", old: "  admin_token: inline-admin\n", new: "",
			env: "QXTD_HTTP_ADMIN_TOKEN_FILE=%s", content: "tok-env-file\r\n", want: "tok-env-file"},
		{name: "admin token from env", key: "http.admin_token", old: "  admin_token: inline-admin\n", new: "",
			env: "QXTD_HTTP_ADMIN_TOKEN=tok-env", want: "tok-env"},
		{name: "simulator password file", key: "simulator.password", old: "  password: inlinesim\n",
			new: "  password_file: %s\n", content: "simpw1\n\n", want: "simpw1\n"}, // one newline only
		{name: "simulator password file from env", key: "simulator.password", old: "  password: inlinesim\n", new: "",
			env: "QXTD_SIMULATOR_PASSWORD_FILE=%s", content: "simpw2", want: "simpw2"},
		{name: "simulator password from env", key: "simulator.password", old: "  password: inlinesim\n", new: "",
			env: "QXTD_SIMULATOR_PASSWORD=simpw3", want: "simpw3"},
		{name: "upstream password file", key: "upstreams[0].password", old: "    password: inlineup\n",
			new: "    password_file: %s\n", content: "up-pw\n", want: "up-pw"},
		{name: "account password file", key: "accounts[0].password", old: "    password: inlineac\n",
			new: "    password_file: %s\n", content: "ac-pw1\n", want: "ac-pw1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			secret := filepath.Join(dir, "secret")
			if tc.content != "" {
				writeSecret(t, secret, tc.content, 0o400)
			}
			new := strings.Replace(tc.new, "%s", secret, 1)
			p := writeSecretsConfig(t, dir, tc.old, new)
			var env []string
			if tc.env != "" {
				env = []string{strings.Replace(tc.env, "%s", secret, 1)}
			}
			cfg, err := loadConfig(p, env)
			if err != nil {
				t.Fatal(err)
			}
			if got := get[tc.key](cfg); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.key, got, tc.want)
			}
			if len(cfg.secretWarnings) != 0 {
				t.Errorf("a 0400 file warned: %v", cfg.secretWarnings)
			}
		})
	}
}

// TestSecretErrors: both a value and a file, an unreadable and an empty
// file are errors naming the keys (and the variables they came from) and
// the path, never a value.
func TestSecretErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := writeSecret(t, filepath.Join(dir, "empty"), "\n", 0o600)
	good := writeSecret(t, filepath.Join(dir, "good"), "filepw1\n", 0o600)
	for _, tc := range []struct {
		name     string
		old, new string
		env      []string
		want     string
	}{
		{name: "value and file in the file", old: "    password: inlineup\n",
			new:  "    password: inlineup\n    password_file: " + good + "\n",
			want: "upstreams[0].password and upstreams[0].password_file: both set"},
		{name: "value from env, file in the file", old: "  admin_token: inline-admin\n",
			new: "  admin_token_file: " + good + "\n", env: []string{"QXTD_HTTP_ADMIN_TOKEN=env-token"},
			want: "http.admin_token (QXTD_HTTP_ADMIN_TOKEN) and http.admin_token_file: both set"},
		{name: "value in the file, file from env",
			env:  []string{"QXTD_SIMULATOR_PASSWORD_FILE=" + good},
			want: "simulator.password and simulator.password_file (QXTD_SIMULATOR_PASSWORD_FILE): both set"},
		{name: "missing file", old: "    password: inlineac\n", new: "    password_file: " + filepath.Join(dir, "nope") + "\n",
			want: "accounts[0].password_file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "a directory", old: "    password: inlineac\n", new: "    password_file: " + dir + "\n",
			want: "accounts[0].password_file: " + dir + ": not a regular file (a directory)"},
		{name: "empty file", old: "    password: inlineup\n", new: "    password_file: " + empty + "\n",
			want: "upstreams[0].password_file: " + empty + ": empty"},
		{name: "empty file from env", old: "  admin_token: inline-admin\n", new: "",
			env:  []string{"QXTD_HTTP_ADMIN_TOKEN_FILE=" + empty},
			want: "http.admin_token_file (QXTD_HTTP_ADMIN_TOKEN_FILE): " + empty + ": empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeSecretsConfig(t, t.TempDir(), tc.old, tc.new)
			_, err := loadConfig(p, tc.env)
			if err == nil {
				t.Fatalf("loaded; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			for _, v := range []string{"inline-admin", "inlinesim", "inlineup", "inlineac", "env-token", "filepw1"} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("the error shows the secret %q: %v", v, err)
				}
			}
			if strings.Contains(err.Error(), ": required") {
				t.Errorf("a secret that could not be read is also reported as missing: %v", err)
			}
		})
	}
}

// TestSecretFileModeWarning: a secret file its group or others may read
// is loaded, with a warning naming the key and the file.
func TestSecretFileModeWarning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o640, 0o604, 0o600, 0o400} {
		secret := writeSecret(t, filepath.Join(dir, "up-"+mode.String()), "up-pw\n", mode)
		p := writeSecretsConfig(t, dir, "    password: inlineup\n", "    password_file: "+secret+"\n")
		cfg, err := loadConfig(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []secretWarning(nil)
		if mode&0o044 != 0 {
			want = []secretWarning{{key: "upstreams[0].password_file", path: secret, mode: mode}}
		}
		if !reflect.DeepEqual(cfg.secretWarnings, want) {
			t.Errorf("mode %v: warnings %v, want %v", mode, cfg.secretWarnings, want)
		}
	}
}

// TestUnknownEnv: a QXTD_ variable that is no key is an error naming it,
// with the closest valid name; the names other parts of qxtd read pass.
func TestUnknownEnv(t *testing.T) {
	t.Parallel()
	p := filepath.Join(configTestdata, "valid-minimal.yaml")
	for _, tc := range []struct {
		env  []string
		want string // empty: loads
	}{
		{[]string{"QXTD_SMPP_LISTN=0.0.0.0:2775"},
			"environment variable QXTD_SMPP_LISTN: not a configuration key; did you mean QXTD_SMPP_LISTEN?"},
		{[]string{"QXTD_HTTP_ADMIN_TOKEN_FIEL=/x"}, "QXTD_HTTP_ADMIN_TOKEN_FIEL: not a configuration key; did you mean QXTD_HTTP_ADMIN_TOKEN_FILE?"},
		{[]string{"QXTD_LOGLEVEL=debug"}, "did you mean QXTD_LOG_LEVEL?"},
		{[]string{"QXTD_UPSTREAMS_0_PASSWORD=x"}, "QXTD_UPSTREAMS_0_PASSWORD: not a configuration key; lists come from the file only"},
		{[]string{"QXTD_SOMETHING_ELSE_ENTIRELY=1"}, "QXTD_SOMETHING_ELSE_ENTIRELY: not a configuration key; QXTD_ variables are config keys"},
		{[]string{"QXTD_SMPP_LISTN=", "QXTD_B=1"}, "QXTD_B: not a configuration key"}, // empty: still a typo
		{[]string{"QXTD_ADMIN_TOKEN=t", "QXTD_TEST_MAIN=1", "QXTD_SCREENSHOTS=/tmp", "QXTD_CHROMIUM=/usr/bin/chromium",
			"QXTD_LOG_LEVEL=debug", "QXTD_SMPP_WINDOW=", "HOME=/root", "qxtd_smpp_listn=lower case is not ours"}, ""},
	} {
		_, err := loadConfig(p, tc.env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.want != "" && err == nil:
			t.Errorf("%v: loaded, want %q", tc.env, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%v: error\n%v\nwant it to contain\n%s", tc.env, err, tc.want)
		}
	}
	// Both typos are named at once, and the known variables still apply.
	_, err := loadConfig(p, []string{"QXTD_SMPP_LISTN=", "QXTD_B=1"})
	if err == nil || !strings.Contains(err.Error(), "QXTD_SMPP_LISTN") {
		t.Errorf("not every unknown variable named: %v", err)
	}
	cfg, err := loadConfig(p, []string{"QXTD_LOG_LEVEL=debug", "QXTD_SMPP_WINDOW=", "QXTD_OPTOUT_KEYWORDS=TD,退订"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" || cfg.SMPP.Window != 64 || !slices.Equal(cfg.OptOut.Keywords, []string{"TD", "退订"}) {
		t.Errorf("environment not applied: level %q, window %d (an empty variable is unset), keywords %v",
			cfg.Log.Level, cfg.SMPP.Window, cfg.OptOut.Keywords)
	}
}

// TestEnvKeys: every scalar key has its variable, and it applies (a
// value of the wrong type fails naming the key, so the variable reached
// it).
func TestEnvKeys(t *testing.T) {
	t.Parallel()
	keys := envKeys()
	for _, k := range configKeys(reflect.TypeOf(Config{}), "") {
		if strings.Contains(k, "[]") { // lists: the file only
			continue
		}
		name := "QXTD_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
		if keys[name] != k {
			t.Errorf("%s: no variable %s", k, name)
		}
	}
	if _, ok := keys["QXTD_HTTP_ADMIN_TOKEN_FILE"]; !ok {
		t.Error("QXTD_HTTP_ADMIN_TOKEN_FILE is not a variable")
	}
	if n := len(keys); n < 50 {
		t.Errorf("only %d variables", n)
	}
	for name := range otherEnv {
		if _, ok := keys[name]; ok {
			t.Errorf("%s is both a configuration key and another part's variable", name)
		}
	}
}

// TestSecretRefsComplete: every *_file key of Config is read by
// resolveSecrets, and every key named like a secret has a _file.
func TestSecretRefsComplete(t *testing.T) {
	t.Parallel()
	cfg := Config{Upstreams: make([]UpstreamConfig, 1), Accounts: make([]AccountConfig, 1)}
	cfg.HTTP.AccountManagers = make([]AccountManagerConfig, 1)
	var refs []string
	for _, r := range cfg.secretRefs() {
		refs = append(refs, strings.NewReplacer("[0]", "[]").Replace(r.key))
	}
	keys := configKeys(reflect.TypeOf(Config{}), "")
	for _, k := range keys {
		// A _file key with a value key beside it is a secret's companion
		// (tls_cert_file and the like are files by nature, not companions).
		if base, ok := strings.CutSuffix(k, "_file"); ok && slices.Contains(keys, base) && !slices.Contains(refs, base) {
			t.Errorf("%s is not in secretRefs", k)
		}
		if strings.HasSuffix(k, "password") || strings.HasSuffix(k, "token") || strings.HasSuffix(k, "secret") {
			if !slices.Contains(keys, k+"_file") {
				t.Errorf("%s has no %s_file", k, k)
			}
		}
	}
}

// TestOtherEnvListed: every QXTD_ variable the repository reads (os.Getenv,
// os.LookupEnv, t.Setenv, the Makefile, .ci/run) is a configuration key or
// in otherEnv, so the daemon never refuses a variable qxtd itself sets;
// and otherEnv lists nothing that is no longer read.
func TestOtherEnvListed(t *testing.T) {
	t.Parallel()
	read := regexp.MustCompile(`(?:Getenv|LookupEnv|Setenv)\("(QXTD_[A-Z0-9_]+)"|"(QXTD_[A-Z0-9_]+)=`)
	assign := regexp.MustCompile(`\b(QXTD_[A-Z0-9_]+)=`)
	keys := envKeys()
	used := map[string]string{}
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		re := read
		switch {
		case d.IsDir():
			return nil
		case strings.HasSuffix(path, ".go") && !strings.HasPrefix(filepath.Base(path), "secrets_"): // their typos are deliberate
		case d.Name() == "Makefile" || path == filepath.Join("../..", ".ci", "run"):
			re = assign
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// The regexp only on the lines that name a QXTD_ variable: over
		// all of the tree's Go under -race it took seconds of CPU.
		for line := range bytes.Lines(b) {
			if !bytes.Contains(line, []byte("QXTD_")) {
				continue
			}
			for _, m := range re.FindAllSubmatch(line, -1) {
				for _, name := range m[1:] {
					if len(name) > 0 {
						used[string(name)] = path
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"QXTD_ADMIN_TOKEN", "QXTD_TEST_MAIN", "QXTD_SCREENSHOTS"} {
		if used[name] == "" {
			t.Fatalf("the scan missed %s: %v", name, used)
		}
	}
	for name, path := range used {
		if _, ok := keys[name]; !ok && otherEnv[name] == "" {
			t.Errorf("%s (read in %s) is neither a configuration key nor in otherEnv: the daemon would refuse it", name, path)
		}
	}
	for name := range otherEnv {
		if used[name] == "" {
			t.Errorf("otherEnv lists %s, which nothing reads", name)
		}
	}
}
