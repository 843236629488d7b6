package main

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// emptyKeys are the keys of a configuration document whose value is empty
// ("key:" with nothing after it, or "~"), by path: "smpp.listn",
// "upstreams[].tls". Viper drops such keys before the decoder that
// reports unknown keys sees them, so a misspelt key left empty (or set to
// ~ to mean "off") would pass unnoticed; parseConfig checks them against
// Config's own keys instead.
type emptyKey struct {
	path []string // "[]" for a list's entries
	line int
}

func (k emptyKey) String() string { return strings.ReplaceAll(strings.Join(k.path, "."), ".[]", "[]") }

// emptyKeys walks data (already within checkConfigYAML's bounds; aliases
// are not followed: an alias to an empty value is the anchor's key).
func emptyKeys(data []byte) []emptyKey {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return nil // viper reports the syntax error
	}
	var out []emptyKey
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, append(path[:len(path):len(path)], "[]"))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(path[:len(path):len(path)], strings.ToLower(k.Value))
				if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					out = append(out, emptyKey{path: p, line: k.Line})
					continue
				}
				walk(v, p)
			}
		}
	}
	walk(&doc, nil)
	return out
}

// knownKey reports whether path names a key of t (Config): a field by its
// mapstructure name (or lower-cased name) in a struct, "[]" into a list.
func knownKey(t reflect.Type, path []string) bool {
	for _, seg := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			if seg != "[]" {
				return false
			}
			t = t.Elem()
		case reflect.Map:
			t = t.Elem() // any key
		case reflect.Struct:
			f, ok := fieldByKey(t, seg)
			if !ok {
				return false
			}
			t = f.Type
		default:
			return false // a value has no keys
		}
	}
	return true
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// unknownEmptyKeys is the "unknown key" error of every empty key of data
// that Config does not have.
func unknownEmptyKeys(data []byte) []error {
	var errs []error
	for _, k := range emptyKeys(data) {
		if !knownKey(reflect.TypeFor[Config](), k.path) {
			errs = append(errs, fmt.Errorf("line %d: %s: unknown key", k.line, k))
		}
	}
	return errs
}
