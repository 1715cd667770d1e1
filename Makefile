# screenpop: `make help` lists the targets.
GO       ?= go
PKG      := ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin
FUZZTIME ?= 60s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build test demo bench soak fuzz lint fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/screenpopd and bin/screenpop-bench
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

test: ## everything CI runs: gofmt check, go vet, go test -race -count=1 ./... (browser tests need chromium)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKG)
	$(GO) test -race -count=1 -timeout 15m $(PKG)

demo: ## run screenpopd demo: emulated Genesys and Dataverse, simulated calls, a live agent page
	$(GO) run ./cmd/screenpopd demo

bench: ## the load tool and the Go benchmarks; results under bench-results/ (git ignores it); BENCHFLAGS=-pin etc. go to the load tool
	@mkdir -p bench-results
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./bridge/... ./dataverse/... ./push/... | tee bench-results/go-bench.txt
	@if [ -d cmd/screenpop-bench ]; then $(GO) run ./cmd/screenpop-bench -out bench-results $(BENCHFLAGS); fi

soak: ## the long runs CI does not do: the Genesys load test at full length (drops, handovers)
	$(GO) test -race -count=1 -timeout 30m -run 'TestClient_Load' -v ./notifications/ -args -soak

fuzz: ## fuzz the normalizer and the phone parser, $(FUZZTIME) each
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./bridge
	$(GO) test -run '^$$' -fuzz '^FuzzParsePhone$$' -fuzztime $(FUZZTIME) ./bridge

lint: ## go vet and staticcheck
	$(GO) vet $(PKG)
	$(GO) run $(STATICCHECK) $(PKG)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build outputs and bench results
	rm -rf $(BIN) bench-results
