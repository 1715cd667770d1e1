# screenpop: `make help` lists the targets.
GO       ?= go
PKG      := ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin
FUZZTIME ?= 60s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# A nats-server older than 2.11 (no per-key TTLs), for the tests of the
# daemon's fallback (bridge/bus/bustest). go install pkg@version leaves
# go.mod alone; the binary is built once, into bin/ (git ignores it).
OLD_NATS_VERSION := v2.10.27
OLD_NATS := $(BIN)/nats-server-$(OLD_NATS_VERSION)/nats-server

.PHONY: help build test demo bench soak fuzz lint fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/screenpopd and bin/screenpop-bench
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# -p 4: four packages at once on two cores. The long packages spend most of
# their time waiting (outages, backoffs, rate windows; CI's CPU was busy a
# quarter of the time at -p 2), and the longest, cmd/screenpopd, sets the
# run's length.
test: $(OLD_NATS) ## everything CI runs: gofmt check, go vet, go test -race -count=1 ./... and the memory tests without -race (browser tests need chromium; builds an old nats-server into bin/)
	@files=$$(git ls-files '*.go' 2>/dev/null); [ -n "$$files" ] || files=$$(find . -name '*.go' -not -path './bin/*'); unformatted=$$(gofmt -l $$files); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKG)
	SCREENPOP_TEST_OLD_NATS_SERVER=$(CURDIR)/$(OLD_NATS) $(GO) test -race -count=1 -p 4 -timeout 15m $(PKG)
	$(GO) test -count=1 -run '^TestIdleConnection_' ./push/ # memory figures the race detector would inflate

$(OLD_NATS):
	GOBIN=$(CURDIR)/$(@D) $(GO) install github.com/nats-io/nats-server/v2@$(OLD_NATS_VERSION)

# Built, then run (not go run: the go command exits 1 on Ctrl-C, and make
# would report the clean stop as "Error 1").
demo: ## run screenpopd demo: emulated Genesys and Dataverse, simulated calls, a live agent page
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/screenpopd ./cmd/screenpopd
	$(BIN)/screenpopd demo

bench: ## the load tool and the Go benchmarks; results under bench-results/ (git ignores it); BENCHFLAGS=-pin etc. go to the load tool
	@mkdir -p bench-results
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./bridge/... ./dataverse/... ./push/... | tee bench-results/go-bench.txt
	@if [ -d cmd/screenpop-bench ]; then $(GO) run ./cmd/screenpop-bench -out bench-results $(BENCHFLAGS); fi

soak: ## the long runs CI does not do: the Genesys load test at full length (drops, handovers)
	$(GO) test -race -count=1 -timeout 30m -run 'TestClient_Load' -v ./notifications/ -args -soak

fuzz: ## fuzz the normalizer and the phone parser, FUZZTIME (60s) each
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./bridge
	$(GO) test -run '^$$' -fuzz '^FuzzParsePhone$$' -fuzztime $(FUZZTIME) ./bridge

# The daemon and the load tool build on every platform, and the tests
# compile on macOS (developers' laptops); they run on Linux (CI, root for
# a few: README).
lint: ## go vet and staticcheck; the tests vetted for macOS, everything built for Windows
	$(GO) vet $(PKG)
	$(GO) run $(STATICCHECK) $(PKG)
	GOOS=darwin $(GO) vet $(PKG)
	GOOS=windows $(GO) build $(PKG)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build outputs and bench results
	rm -rf $(BIN) bench-results
