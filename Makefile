# feedbridge developer targets. `make test` is the one test command (README).

GO ?= go
# version and commit stamped into the binary (bridge version, feedbridge_build_info)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BIN ?= bin/bridge

.PHONY: test test-deps vet build bench fuzz run

## test: install missing test servers (Debian packages), vet, build the release binary, then run every test with the race detector
test: test-deps vet build
	$(GO) test -race -count=1 ./...

## build: the static release binary, exactly as the Dockerfile builds it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/bridge

test-deps:
	@./scripts/test-deps.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

## bench: the benchmarks recorded in docs/benchmarks.md (needs wrk for the REST ones)
bench:
	@./scripts/test-deps.sh --bench
	$(GO) test -run '^$$' -bench 'PublishThroughput|JobCycle' -benchtime 1x -count 5 ./core/thoonk/
	$(GO) test -run '^$$' -bench 'PublishAllocs|DeliverEvent' -benchmem ./core/thoonk/
	$(GO) test -run '^$$' -bench BenchmarkFeed -benchtime 2s -count 3 ./bridges/atom/
	$(GO) test -run '^$$' -bench BenchmarkWebSubFanOut -benchtime 5x -count 3 ./bridges/atom/
	$(GO) test -run '^$$' -bench BenchmarkREST -benchtime 1x ./integration/
	$(GO) test -run '^$$' -bench BenchmarkXMPP -benchtime 3x ./integration/
	$(GO) test -run '^$$' -bench BenchmarkXMPPResyncCatchUp -benchtime 3x -count 2 ./bridges/xmpp/
	$(GO) test -run '^$$' -bench 'PublishJournal' -benchtime 1x -count 5 ./core/thoonk/
	$(GO) test -run '^$$' -bench SSEReplay -benchtime 20x -count 5 ./bridges/rest/
	$(GO) test -run '^$$' -bench FleetCommandsPerItem -benchtime 1x ./integration/
	$(GO) test -run '^$$' -bench BenchmarkIRC -benchtime 500x ./integration/

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

run:
	$(GO) run ./cmd/bridge
