GO ?= go
BIN := bin/qxtd

.PHONY: build run test bench fuzz vet clean

build:
	$(GO) build -o $(BIN) ./cmd/qxtd

run: build
	./$(BIN) serve --config configs/qxtd.yaml

vet:
	$(GO) vet ./...

test: vet
	$(GO) test -race -count=1 -timeout 8m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./...

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
