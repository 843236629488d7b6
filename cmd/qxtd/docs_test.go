package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestAdminDocCommands holds api/ADMIN.md's table of `qxtd admin`
// commands to the command tree: every command documented exists, and
// every command that exists is documented.
func TestAdminDocCommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../api/ADMIN.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### CLI: `qxtd admin`")
	if !ok {
		t.Fatal("api/ADMIN.md has no CLI section")
	}
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " | ")
		for _, m := range backticked.FindAllStringSubmatch(first, -1) {
			words := strings.Fields(m[1])
			if len(words) < 2 {
				t.Errorf("ADMIN.md: %q is not `group command …`", m[1])
				continue
			}
			for _, leaf := range strings.Split(words[1], `\|`) {
				documented = append(documented, words[0]+" "+leaf)
			}
		}
	}
	var tree []string
	for _, g := range adminCmd().Commands() {
		for _, l := range g.Commands() {
			if l.IsAvailableCommand() {
				tree = append(tree, g.Name()+" "+l.Name())
			}
		}
	}
	slices.Sort(documented)
	slices.Sort(tree)
	if !slices.Equal(documented, tree) {
		t.Errorf("api/ADMIN.md documents\n  %s\nthe command tree has\n  %s", strings.Join(documented, ", "), strings.Join(tree, ", "))
	}
}

// TestReadmeCommands holds the README's command table to the tree's
// top-level commands.
func TestReadmeCommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Command line\n")
	if !ok {
		t.Fatal("README has no Command line section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `qxtd ") {
			continue
		}
		documented = append(documented, strings.TrimRight(strings.Fields(strings.TrimPrefix(line, "| `qxtd "))[0], "`,"))
	}
	tree := []string{"completion"} // added by cobra when the tree runs
	for _, c := range newRootCmd().Commands() {
		tree = append(tree, c.Name())
	}
	slices.Sort(documented)
	slices.Sort(tree)
	if !slices.Equal(documented, tree) {
		t.Errorf("the README documents %v; the command tree has %v", documented, tree)
	}
}
