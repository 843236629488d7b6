GO ?= go
BIN := bin/qxtd

.PHONY: build run test soak lint bench bench-e2e bench-retention fuzz vet clean check-configs screenshots

build:
	$(GO) build -o $(BIN) ./cmd/qxtd

run: build
	./$(BIN) serve --config configs/qxtd.yaml

vet:
	$(GO) vet ./...

# gofmt, go vet and staticcheck (pinned as a tool in go.mod: `go tool`
# builds it from the module cache, nothing to install).
lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) tool staticcheck ./...

test: lint
	$(GO) test -race -count=1 -timeout 8m ./...

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
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin data

# Validate the alert rules and run their unit tests (configs/alerts_test.yml)
# with promtool (apt-get install -y --no-install-recommends prometheus; .ci/run
# installs it, and make test runs the same through gateway's TestAlertRules).
check-configs:
	promtool check rules configs/alerts.yml
	promtool test rules configs/alerts_test.yml
