GO ?= go
BIN := bin/qxtd

.PHONY: cluster build run test soak lint bench bench-e2e bench-retention fuzz vet clean check-configs screenshots deb

# What make build stamps into the binary (qxtd version, qxtd_build_info);
# each can be given on the command line (make build VERSION=1.2.0, and
# make deb reuses them). Outside a git checkout the version is "dev".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
BRANCH ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# := so that the shell commands run once per make, not once per use.
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.branch=$(BRANCH) -X main.buildDate=$(BUILD_DATE)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/qxtd

run: build
	./$(BIN) serve --config configs/qxtd.yaml

# Three nodes sharing one etcd on loopback (README "Cluster"); needs etcd
# on PATH (Debian: apt-get install etcd-server). Data in $(CLUSTER_DIR).
CLUSTER_DIR ?= data/cluster
cluster: build
	./configs/cluster.sh ./$(BIN) $(CLUSTER_DIR)

vet:
	$(GO) vet ./...

# gofmt, go vet and staticcheck (pinned as a tool in go.mod: `go tool`
# builds it from the module cache, nothing to install). The soaks (make
# soak) are built only with their tag: vet them too, so that a change that
# breaks one fails here, not on the next soak. So is the generator of the
# upgrade test's stores (cmd/qxtd/upgradegen_test.go).
lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) tool staticcheck ./...
	$(GO) vet -tags soak ./...
	$(GO) vet -tags upgradegen ./cmd/qxtd/

# node-smpp (npm smpp), the JavaScript ESME and SMSC of gateway's
# TestInteropNodeSMPP tests, pinned in its package-lock.json: npm ci
# installs it once, again only when the lock file changes.
NODESMPP := gateway/testdata/nodesmpp
$(NODESMPP)/node_modules/.package-lock.json: $(NODESMPP)/package-lock.json
	npm ci --no-audit --no-fund --prefix $(NODESMPP)

# go test starts the packages in the order given (./... adds the rest,
# each once): the longest first, so that none of them starts late and
# runs alone at the end. One package more than the cores: much of the
# suite waits on daemons, timers and sockets, and on 2 cores a third
# package fills that (make test 9:14 → 6:45–7:03 wall); more tests at
# once within a package (-parallel 4) only slowed the longest (7:58).
TESTPKGS := ./cmd/qxtd ./gateway ./console ./cluster ./api ./queue ./cmd/qxtd-bench ./webhook ./...
TESTP ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
test: lint $(NODESMPP)/node_modules/.package-lock.json
	$(GO) test -race -count=1 -p $(TESTP) -timeout 8m $(TESTPKGS)

# A PNG of every console page (desktop and phone sizes), written by the
# browser suite in headless Chromium, for a reviewer to look at.
SHOTS ?= screenshots
screenshots:
	rm -rf $(SHOTS) && mkdir -p $(SHOTS)
	QXTD_SCREENSHOTS=$(abspath $(SHOTS)) $(GO) test -count=1 -run 'Browser' ./console/
	@ls $(SHOTS)

# The hostile-world tests that take longer or measure time and memory at
# production settings (files with //go:build soak, test names TestSoak*):
# not part of make test, and without -race, which would distort them.
soak:
	$(GO) test -count=1 -tags soak -run '^TestSoak' -timeout 30m -v ./...

# Benchmarks come in pairs with a baseline measured in the same run
# (see each package's bench_test.go); compare runs with benchstat.
bench:
	$(GO) test -run '^$$' -bench . -skip 'SteadyTrafficWithPurge' -benchmem -count 5 ./...

# End to end: one SMPP load client and one SMSC peer (cmd/qxtd-bench, on
# go-smpp's codec) directly and with qxtd between them, with and without
# receipts, side by side (see cmd/qxtd-bench/doc.go for how to read the
# table); BENCH_FLAGS="-n 5000 -offered 5000 -json bench.jsonl" to vary.
BENCH_FLAGS ?=
bench-e2e:
	$(GO) build -o $(BIN) ./cmd/qxtd
	$(GO) build -o bin/qxtd-bench ./cmd/qxtd-bench
	./bin/qxtd-bench -qxtd $(BIN) -config configs/qxtd.yaml $(BENCH_FLAGS)

# The retention soak: file size per round under steady load with purge.
bench-retention:
	$(GO) test -run '^$$' -bench SteadyTrafficWithPurge -benchtime 1x -v ./queue/

# Short fuzzing pass over every fuzz target; FUZZTIME=1m make fuzz for longer.
FUZZTIME ?= 10s
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" as -fuzztime ends (golang/go#75804, fixed in 1.27):
# a run that failed that way and wrote no failing input, nor failed on a
# seed, found nothing, and is reported as such instead of stopping the pass.
fuzz:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then \
	      cat $$out; \
	      if grep -q '^    context deadline exceeded$$' $$out && ! grep -q 'Failing input written\|seed corpus' $$out; then \
	        echo "== $$f: stopped by Go's fuzz coordinator at -fuzztime (golang/go#75804), no failing input: not a finding"; \
	      else exit 1; fi; \
	    else tail -n 3 $$out; fi; \
	  done; \
	done

clean:
	rm -rf bin data dist

# The Debian package: $(DIST)/qxtd_<version>_<arch>.deb, built by nfpm
# (pinned in go.mod as a tool) from configs/nfpm.yaml with a static binary;
# README "Install on a server". VERSION (git describe) becomes a Debian
# version: the leading v goes, -dirty and git describe's -N-gHASH become
# +dirty and +N.gHASH (after the tag), any other - becomes ~ (a tag's
# pre-release sorts before the release), and a bare commit (no tag yet)
# becomes 0.0.0+git<commit>. GOARCH=arm64 make deb cross-builds.
DEB_VERSION = $(shell echo '$(VERSION)' | sed -e 's/^v//' -e 's/-dirty$$/+dirty/' \
  -e 's/-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)/+\1.g\2/' -e 's/-/~/g' -e '/^[0-9][0-9]*\./!s/^/0.0.0+git/')
GOARCH ?= $(shell $(GO) env GOARCH)
DIST ?= dist
# A reproducible package: file times are the commit's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
deb:
	mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath \
	  -ldflags '$(LDFLAGS) -X main.version=$(DEB_VERSION)' -o $(DIST)/qxtd-linux-$(GOARCH) ./cmd/qxtd
	env -u GOARCH VERSION='$(DEB_VERSION)' QXTD_DEB_ARCH=$(GOARCH) QXTD_DEB_BINARY=$(DIST)/qxtd-linux-$(GOARCH) \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) tool nfpm pkg --config configs/nfpm.yaml --packager deb --target $(DIST)/
# Validate the alert rules and run their unit tests (configs/alerts_test.yml)
# with promtool (apt-get install -y --no-install-recommends prometheus; .ci/run
# installs it, and make test runs the same through gateway's TestAlertRules).
check-configs:
	promtool check rules configs/alerts.yml
	promtool test rules configs/alerts_test.yml
