package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// configSeeds are hand-written files for FuzzConfig beside the
// repository's: YAML's corners (anchors, merge keys, tags, keys that are
// not strings, several documents), numbers that are no number, and
// documents just inside and past the bounds of yamlbounds.go.
var configSeeds = []string{
	"",
	"---\n...\n",
	"~\n",
	"[]\n",
	"- a\n- b\n",
	"smpp: [1, 2]\n",
	"smpp: ~\nhttp:\n",
	"upstreams: {name: a}\n",
	"upstreams: [[1]]\n",
	"upstreams:\n  - &u {name: a, addr: '127.0.0.1:2776', system_id: q, password: q}\n  - {<<: *u, name: b}\n",
	"upstreams:\n  - &u {name: a, addr: '127.0.0.1:2776', system_id: q, password: q}\n  - *u\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q, tps: .nan}\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q, tps: .inf, window: 1e400}\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q}\ndelivery: {tenant_share: .nan}\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q}\nsimulator: {enabled: true, undeliv_rate: .nan, throttle_rate: -.inf}\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q, resp_timeout: 99999999999999999h}\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q, binds: 9223372036854775808}\n",
	"upstreams:\n  - {name: a, addr: '127.0.0.1:2776', system_id: q, password: q}\nsmpp: {idle_timeout: 10, window: '64', max_conns: 0x10}\n",
	"upstreams:\n  - {name: !!binary aGVsbG8=, addr: !!str 1, system_id: !!int 1, password: !!timestamp 2001-12-14}\n",
	"? [a, b]\n: c\n? {a: b}\n: d\n",
	"smpp: {? [listen]: x}\n",
	"1: 2\ntrue: false\n.nan: 1\n",
	"&a a: *a\n",
	"a: &a [*a]\n",
	"smpp: &s {listen: *s}\n",
	"optout: {keywords: TD,T}\n",
	"optout: {keywords: [[TD]]}\n",
	"cluster: {etcd_endpoints: '127.0.0.1:2379', node_id: 1, peer_listen: '0.0.0.0:7101', secret: 0123456789abcdef}\n",
	"http: {listen: '[::1]:0', ops_listen: '[::1]:0'}\n",
	"smpp: {receipt_time_zone: ../../../../etc/passwd}\n",
	"a: 1\n---\nb: 2\n",
	"smpp:\n\tlisten: x\n",
	"\ufeffsmpp: {listen: '127.0.0.1:1'}\n",
	"x: " + strings.Repeat("[", maxConfigDepth) + strings.Repeat("]", maxConfigDepth) + "\n",
	"x: " + strings.Repeat("{a: ", maxConfigDepth+1) + "1" + strings.Repeat("}", maxConfigDepth+1) + "\n",
	"a: &a [[[[[1]]]]]\nb: [[[[*a]]]]\n",
	laughsYAML(9),
	wideMappingYAML(maxConfigMappingKeys + 1),
}

// laughsYAML is the billion laughs: n levels of lists of ten aliases of
// the level below, 10^n values from a few hundred bytes.
func laughsYAML(n int) string {
	var b strings.Builder
	b.WriteString("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	return b.String()
}

// wideMappingYAML is a section of n keys.
func wideMappingYAML(n int) string {
	var b strings.Builder
	b.WriteString("smpp: {")
	for i := range n {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	b.WriteString("}\n")
	return b.String()
}

// FuzzConfig: any bytes as the configuration file, through what the
// daemon's start and SIGHUP do with them (bounds, YAML, viper, secrets,
// validation) with no QXTD_ environment: a Config that converts to the
// policy's and the seed's without error and has every number a number,
// or an error that names the file and says something; never a panic.
// Nothing is written: validation only opens the files a config names.
func FuzzConfig(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(configTestdata, "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "../../configs/qxtd.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	const name = "fuzz.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(name, data, nil)
		if err != nil {
			if cfg != nil {
				t.Fatalf("a Config and an error: %v", err)
			}
			msg, ok := strings.CutPrefix(err.Error(), "config "+name+": ")
			if !ok || strings.TrimSpace(msg) == "" {
				t.Fatalf("error does not name the file or says nothing: %q", err)
			}
			return
		}
		if cfg == nil {
			t.Fatal("no Config and no error")
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded, yet Validate again: %v", err)
		}
		if _, err := policyConfig(cfg); err != nil {
			t.Fatalf("loaded, yet policyConfig: %v", err)
		}
		if _, err := seedData(cfg); err != nil {
			t.Fatalf("loaded, yet seedData: %v", err)
		}
		// A simulator that is off is not validated, its rates included
		// (testdata/fuzz/FuzzConfig/024ebcc231ed7eb9): nothing reads them.
		checked := *cfg
		if !checked.Simulator.Enabled {
			checked.Simulator = SimulatorConfig{}
		}
		if k := nanField(reflect.ValueOf(checked), ""); k != "" {
			t.Fatalf("loaded with %s NaN", k)
		}
	})
}

// nanField names a float of v that is NaN, or is "".
func nanField(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if math.IsNaN(v.Float()) {
			return path
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				if k := nanField(v.Field(i), path+"."+f.Tag.Get("mapstructure")); k != "" {
					return k
				}
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if k := nanField(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); k != "" {
				return k
			}
		}
	}
	return ""
}
