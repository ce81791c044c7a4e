# ledgerq — make verbs. `make run` starts the broker on ./data with no Redis;
# `make test` runs everything CI runs, with the race detector.

GO      ?= go
BIN     ?= bin/ledgerq
DATA    ?= ./data
ADDR    ?= 127.0.0.1:8080
PKGS    ?= ./...
# Fuzz targets run a fixed number of inputs each in `make test` (a count,
# not a duration: Go 1.26's time-limited fuzzing can end with a spurious
# "context deadline exceeded", golang/go#75804). FUZZTIME=30s for longer runs.
FUZZTIME ?= 5000x

export CGO_ENABLED := 1

.PHONY: all build run test test-short test-race test-faults fuzz lint fmt bench bench-compare deps clean

all: build

# deps: say plainly what is missing instead of failing with a cgo error.
deps:
	@command -v $(GO) >/dev/null 2>&1 || { echo "ledgerq: Go is missing. Install Go 1.26 or later: https://go.dev/doc/install"; exit 1; }
	@command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || { echo "ledgerq: a C compiler is missing (SQLite is built with cgo). Install it: sudo apt-get install -y gcc   (macOS: xcode-select --install)"; exit 1; }

build: deps
	$(GO) build -trimpath -o $(BIN) ./cmd/ledgerq

run: build
	$(BIN) serve --addr $(ADDR) --data $(DATA)

# test: everything CI runs. Tests that need Redis start their own redis-server
# on a free port; without the binary they fail under CI=true and are skipped
# (with an install hint) otherwise.
test: deps
	@command -v redis-server >/dev/null 2>&1 || echo "ledgerq: redis-server not found; Redis tests will be skipped (CI=true fails them). Install it: sudo apt-get install -y redis-server"
	$(GO) build -o $(BIN) ./cmd/ledgerq
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	@$(MAKE) --no-print-directory fuzz

test-short: deps
	$(GO) test -short -count=1 $(PKGS)

test-race: test

# test-faults: the long fault runs — 25 SIGKILLs under load and a 60 s soak
# (the short versions run in `make test`).
test-faults: deps
	LEDGERQ_CRASH_KILLS=25 $(GO) test -count=1 -run Crash -v ./tests/reliability
	LEDGERQ_SOAK=60s $(GO) test -count=1 -run Soak -v -timeout 10m ./tests/reliability

# A fuzz run that fails without writing a new crasher to testdata/ is
# retried once: Go 1.26's fuzzer can end with "context deadline exceeded"
# on its own (golang/go#75804).
fuzz: deps
	@set -e; for f in $$(git grep -l '^func Fuzz' -- '*_test.go'); do \
		dir=./$$(dirname $$f); \
		for name in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
			echo "fuzz $$dir $$name ($(FUZZTIME))"; \
			if ! $(GO) test -run='^$$' -fuzz="^$${name}\$$" -fuzztime=$(FUZZTIME) $$dir; then \
				if [ -n "$$(git status --porcelain --untracked-files=all -- $$dir/testdata)" ]; then \
					echo "fuzz: $$name found a crasher, kept in $$dir/testdata/fuzz/$$name"; exit 1; \
				fi; \
				echo "fuzz: $$name failed without a crasher; retrying once"; \
				$(GO) test -run='^$$' -fuzz="^$${name}\$$" -fuzztime=$(FUZZTIME) $$dir; \
			fi; \
		done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# bench: Go benchmarks of the event store, commands and projections.
bench: deps
	$(GO) test -run='^$$' -bench=. -benchtime=2s -benchmem ./eventstore/ ./commands/ ./projections/

# bench-compare: the side-by-side table of docs/benchmarks.md (a running
# RabbitMQ and NATS are used when reachable).
bench-compare: build
	$(BIN) bench --compare --out docs/benchmarks.md

clean:
	rm -rf bin
