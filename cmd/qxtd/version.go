package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Stamped by make build with -ldflags "-X main.version=… -X main.commit=…
// -X main.branch=… -X main.buildDate=…" (see the Makefile). They are
// link-time constants, never written at run time; empty means not stamped
// (go build, go test), and readBuild falls back to what the Go toolchain
// recorded in the binary.
var (
	version   string
	commit    string
	branch    string
	buildDate string
)

// buildInfo is what runs: printed by qxtd version and --version, logged
// at start and exported as qxtd_build_info.
type buildInfo struct {
	Version   string // git describe --tags --always --dirty, the module version, or "dev"
	Revision  string // the full commit hash, "" when unknown
	Branch    string // "" when unknown
	Date      string // the build time (RFC 3339, UTC), or the commit's time without make build
	GoVersion string
	OS, Arch  string
	Tags      string // go build -tags, "" when none
}

// currentBuild is the binary's build information.
func currentBuild() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return readBuild(buildInfo{Version: version, Revision: commit, Branch: branch, Date: buildDate}, bi)
}

// readBuild completes the -ldflags values in stamped with what the
// toolchain recorded (bi, nil when there is none): go build in a git
// checkout records vcs.revision, vcs.time and vcs.modified and, since Go
// 1.24, a pseudo-version of the module; go test and -buildvcs=false record
// neither, and the version is then "dev".
func readBuild(stamped buildInfo, bi *debug.BuildInfo) buildInfo {
	b := stamped
	b.GoVersion, b.OS, b.Arch = runtime.Version(), runtime.GOOS, runtime.GOARCH
	if bi != nil {
		var rev, at string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "-tags":
				b.Tags = s.Value
			}
		}
		if b.Revision == "" && rev != "" {
			b.Revision = rev
			if modified {
				b.Revision += "-dirty"
			}
		}
		if b.Date == "" {
			b.Date = at
		}
		if v := bi.Main.Version; b.Version == "" && v != "" && v != "(devel)" {
			b.Version = v
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

// shortRevision is the revision as git log --oneline would show it (a
// "-dirty" suffix kept).
func (b buildInfo) shortRevision() string {
	if b.Revision == "" {
		return "unknown"
	}
	const n = 12
	hash, suffix := b.Revision, ""
	if len(hash) > 6 && hash[len(hash)-6:] == "-dirty" {
		hash, suffix = hash[:len(hash)-6], "-dirty"
	}
	if len(hash) > n {
		hash = hash[:n]
	}
	return hash + suffix
}

// details is everything after the version in `qxtd version`.
func (b buildInfo) details() string {
	date := b.Date
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("(commit %s, built %s, %s %s/%s)", b.shortRevision(), date, b.GoVersion, b.OS, b.Arch)
}

// String is the line `qxtd version` and `qxtd --version` print.
func (b buildInfo) String() string { return "qxtd " + b.Version + " " + b.details() }

// newBuildInfoCollector is qxtd_build_info, a gauge of 1 labelled like
// client_golang's collectors/version.NewCollector (the prometheus/common
// version convention), built here because that one reads the version from
// package variables of prometheus/common that qxtd would have to set.
func newBuildInfoCollector(b buildInfo) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "qxtd",
		Name:      "build_info",
		Help:      "A metric with a constant '1' value labeled by version, revision, branch, goversion from which qxtd was built, and the goos and goarch for the build.",
		ConstLabels: prometheus.Labels{
			"version":   b.Version,
			"revision":  b.Revision,
			"branch":    b.Branch,
			"goversion": b.GoVersion,
			"goos":      b.OS,
			"goarch":    b.Arch,
			"tags":      b.Tags,
		},
	}, func() float64 { return 1 })
}
