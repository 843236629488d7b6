package main

import (
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Bounds on the configuration file, checked before viper reads it.
//
// A configuration is a few KiB, yet what reads it costs far more than its
// size at some shapes. The YAML decoder's own guard against alias bombs
// ("excessive aliasing") still lets a 12 KiB file expand to some 400,000
// values; viper then spent 4 s and 114 MiB on them, and a few thousand
// aliases of one upstream with a tls_ca_file parsed the bundle once each
// (3 KiB of aliases: 9.5 s, 1.2 GiB allocated). Viper's key lookup costs
// the cube of a key's depth: a 50 KiB file of mappings nested 10,000 deep
// (the decoder's own limit) ran for more than ten minutes. And the
// decoder compares every key of a mapping with every other (a mapping of
// 50,000 keys, 540 KiB: 13 s). The bounds below are far beyond any real
// configuration and keep each of these to milliseconds; past one, the
// file is refused with an error naming the bound and, where there is
// one, the line.
const (
	// maxConfigFile is the largest configuration file read; a path to
	// something else (a log, a device) fails instead of being read whole.
	maxConfigFile = 1 << 20
	// maxConfigNodes bounds the document's values (keys, scalars, lists
	// and mappings) with every alias counted as often as it is used.
	maxConfigNodes = 100_000
	// maxConfigDepth bounds the nesting of lists and mappings; the
	// configuration's deepest key needs 4 (enterprises[].whitelist[]).
	maxConfigDepth = 8
	// maxConfigMappingKeys bounds the keys of one mapping; a section of
	// the configuration has a few dozen.
	maxConfigMappingKeys = 1000
)

// readConfigFile reads path, at most maxConfigFile bytes.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError: "open PATH: …"
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("larger than %d MiB; a configuration is a few KiB", maxConfigFile>>20)
	}
	return b, nil
}

// checkConfigYAML refuses a document past the bounds above. It walks the
// parsed document without expanding its aliases, so that its own cost
// is that of the file. A document that does not parse passes: viper
// reports the syntax error as it always has.
func checkConfigYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	w := yamlWalk{anchored: map[*yaml.Node]yamlShape{}}
	s, err := w.visit(&doc, 0)
	if err != nil {
		return err
	}
	if s.nodes > maxConfigNodes {
		return fmt.Errorf("more than %d values with its aliases (*name) expanded; a configuration has a few hundred", maxConfigNodes)
	}
	return nil
}

// yamlShape is what the bounds need of a node: its values with aliases
// expanded (at most maxConfigNodes+1) and its lists and mappings nested.
type yamlShape struct {
	nodes, height int
}

// yamlWalk remembers the shape of every anchored node, which an alias
// repeats: a node is measured once however often it is used.
type yamlWalk struct {
	anchored map[*yaml.Node]yamlShape
}

// visit measures n, which depth lists and mappings enclose.
func (w *yamlWalk) visit(n *yaml.Node, depth int) (yamlShape, error) {
	switch n.Kind {
	case yaml.AliasNode:
		s, ok := w.anchored[n.Alias]
		if !ok {
			// An alias inside the node it names: the decoder refuses it
			// ("anchor … value contains itself").
			return yamlShape{nodes: 1}, nil
		}
		if depth+s.height > maxConfigDepth {
			return s, fmt.Errorf("line %d: *%s nests lists and mappings more than %d deep; the configuration needs 4", n.Line, n.Value, maxConfigDepth)
		}
		return s, nil
	case yaml.MappingNode, yaml.SequenceNode:
		if depth >= maxConfigDepth {
			return yamlShape{}, fmt.Errorf("line %d: lists and mappings nested more than %d deep; the configuration needs 4", n.Line, maxConfigDepth)
		}
		if n.Kind == yaml.MappingNode && len(n.Content)/2 > maxConfigMappingKeys {
			return yamlShape{}, fmt.Errorf("line %d: a mapping of %d keys; at most %d", n.Line, len(n.Content)/2, maxConfigMappingKeys)
		}
	}
	s := yamlShape{nodes: 1}
	inner := depth
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		inner++
	}
	for _, c := range n.Content {
		cs, err := w.visit(c, inner)
		if err != nil {
			return s, err
		}
		// Saturated: doubling aliases would overflow an int.
		s.nodes = min(s.nodes+cs.nodes, maxConfigNodes+1)
		s.height = max(s.height, cs.height)
	}
	if inner > depth {
		s.height++
	}
	if n.Anchor != "" {
		w.anchored[n] = s
	}
	return s, nil
}
