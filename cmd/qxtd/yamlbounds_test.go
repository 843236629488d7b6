package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// tunedAliasesYAML passes the YAML decoder's own guard against aliases
// ("excessive aliasing"): 4,000 values written, and mappings of 7 keys
// nested levels deep by aliases (6 levels: some 270,000 values, nested 8
// deep in all).
func tunedAliasesYAML(levels int) string {
	var b strings.Builder
	b.WriteString("optout:\n  keywords: [")
	b.WriteString(strings.Repeat("TD, ", 4000))
	b.WriteString("]\nreminders:\n  x0: &a0 {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1}\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "  x%d: &a%d {a: *a%[3]d, b: *a%[3]d, c: *a%[3]d, d: *a%[3]d, e: *a%[3]d, f: *a%[3]d, g: *a%[3]d}\n", i, i, i-1)
	}
	return b.String()
}

// TestConfigYAMLBounds: a document past a bound of yamlbounds.go is
// refused with an error naming the bound (and the line, where there is
// one) before the decoder or viper expands it; each of these took
// seconds to minutes or gigabytes before.
func TestConfigYAMLBounds(t *testing.T) {
	t.Parallel()
	var block strings.Builder
	for i := range maxConfigDepth + 1 {
		fmt.Fprintf(&block, "%s- \n", strings.Repeat("  ", i))
	}
	block.WriteString(strings.Repeat("  ", maxConfigDepth+1) + "- 1\n")
	for _, c := range []struct {
		name, doc, want string
	}{
		{"billion laughs", laughsYAML(7), "more than 100000 values with its aliases (*name) expanded"},
		{"aliases under the decoder's ratio", tunedAliasesYAML(6), "more than 100000 values with its aliases (*name) expanded"},
		{"flow nesting", "smpp: " + strings.Repeat("{a: ", 9000) + "1" + strings.Repeat("}", 9000) + "\n",
			"line 1: lists and mappings nested more than 8 deep"},
		{"block nesting", block.String(), "line 9: lists and mappings nested more than 8 deep"},
		{"nesting by an alias", "a: &a [[[[1]]]]\nb: [[[[*a]]]]\n", "line 2: *a nests lists and mappings more than 8 deep"},
		{"wide mapping", wideMappingYAML(maxConfigMappingKeys + 1), "line 1: a mapping of 1001 keys; at most 1000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig("bomb.yaml", []byte(c.doc), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want one containing %q", err, c.want)
			}
		})
	}

	// At the bounds the document is YAML like any other: the errors are
	// the configuration's own.
	for _, c := range []struct {
		name, doc, want string
	}{
		{"nested 8 deep", "policy: {packages: [{id: [[[[1]]]]}]}\n", "'policy.packages[0].id' expected type 'int'"},
		{"1000 keys", wideMappingYAML(maxConfigMappingKeys), "smpp.k0: unknown key"},
		{"aliases within the bound", tunedAliasesYAML(5), "reminders.x0: unknown key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig("bound.yaml", []byte(c.doc), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want one containing %q", err, c.want)
			}
		})
	}
}

// TestConfigFileSize: a file of exactly maxConfigFile bytes loads, one
// byte more is refused unread.
func TestConfigFileSize(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile(filepath.Join(configTestdata, "valid-minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// base, then one comment line that makes it n bytes.
	pad := func(n int) string {
		b := bytes.Clone(base)
		b = append(b, '#')
		b = append(b, bytes.Repeat([]byte("x"), n-len(b)-1)...)
		b = append(b, '\n')
		p := filepath.Join(dir, fmt.Sprintf("%d.yaml", n))
		writeFile(t, p, b)
		if fi, err := os.Stat(p); err != nil || fi.Size() != int64(n) {
			t.Fatalf("padded file %v, %v; want %d bytes", fi.Size(), err, n)
		}
		return p
	}
	if _, err := LoadConfig(pad(maxConfigFile)); err != nil {
		t.Errorf("%d bytes: %v", maxConfigFile, err)
	}
	_, err = LoadConfig(pad(maxConfigFile + 1))
	if want := "larger than 1 MiB"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%d bytes: error %v; want %q", maxConfigFile+1, err, want)
	}
}

// TestConfigAnchorsLoad: anchors, aliases and merge keys of a real file
// load as they did.
func TestConfigAnchorsLoad(t *testing.T) {
	t.Parallel()
	doc := `upstreams:
  - &smsc {name: a, addr: "127.0.0.1:2776", system_id: qxtd, password: qxtd, binds: 3, carriers: &carriers [china_mobile]}
  - <<: *smsc
    name: b
    carriers: *carriers
`
	cfg, err := parseConfig("anchors.yaml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 2 || cfg.Upstreams[1].Name != "b" || cfg.Upstreams[1].Binds != 3 || cfg.Upstreams[1].Addr != "127.0.0.1:2776" ||
		len(cfg.Upstreams[1].Carriers) != 1 {
		t.Errorf("upstreams %+v", cfg.Upstreams)
	}
}

// TestConfigSecretFileReadOnce: accounts that name one password file
// share one copy of it: a few bytes of YAML aliases a copy, each of up
// to 64 KiB, held 482 MiB for a 30 KiB file before.
func TestConfigSecretFileReadOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := writeSecret(t, filepath.Join(dir, "esme.password"), "secret1\n", 0o600)
	var b strings.Builder
	fmt.Fprintf(&b, "upstreams: [{name: s, addr: '127.0.0.1:2776', system_id: q, password_file: %q}]\naccounts:\n", secret)
	for i := range 1000 {
		fmt.Fprintf(&b, "  - {system_id: esme%d, password_file: %q}\n", i, secret)
	}
	cfg, err := parseConfig("secrets.yaml", []byte(b.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := unsafe.StringData(cfg.Upstreams[0].Password)
	for i, a := range cfg.Accounts {
		if a.Password != "secret1" || unsafe.StringData(a.Password) != first {
			t.Fatalf("accounts[%d].password %q: not the one copy of the file", i, a.Password)
		}
	}
}

// TestConfigCABundleParsedOnce: upstreams that name one CA bundle have it
// parsed once. 3 KiB of aliases of an upstream with the system's bundle
// allocated 1.2 GiB before (9.5 s); here 2,000 of a 300-certificate
// bundle would allocate some 2 GiB.
func TestConfigCABundleParsedOnce(t *testing.T) {
	// Not parallel: it measures the process's allocations.
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	one, err := os.ReadFile(ca.file)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, bytes.Repeat(one, 300))
	doc := fmt.Sprintf("upstreams: [&u {name: s, addr: '127.0.0.1:2776', system_id: q, password: q, tls: true, tls_ca_file: %q}%s]\n",
		bundle, strings.Repeat(", *u", 2000))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = parseConfig("ca.yaml", []byte(doc), nil)
	runtime.ReadMemStats(&after)
	// Validation went through every upstream: each name but the first is
	// a duplicate, and nothing else is wrong.
	if want := `upstreams[2000].name: "s" used twice`; err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "tls_ca_file") {
		t.Fatalf("error %v; want duplicates only, up to %q", err, want)
	}
	if mib := (after.TotalAlloc - before.TotalAlloc) >> 20; mib > 256 {
		t.Errorf("%d MiB allocated for 2,000 upstreams naming one CA bundle; want it parsed once", mib)
	}
}
