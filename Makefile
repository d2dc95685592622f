GO        ?= go
BIN       := bin/rollguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s
GOBIN     := $(shell $(GO) env GOPATH)/bin
# A real Prometheus for the PromQL-polling tests and the ingest comparison.
PROMETHEUS_VERSION := v0.316.0
PROMETHEUS := $(GOBIN)/prometheus

.PHONY: all build run test fuzz bench lint clean prometheus

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rollguard

## run: the daemon with the example configuration and an embedded NATS server.
run: build
	./$(BIN) run --config.file=configs/example.yaml --storage.path=data/

## test: vet, then every test with the race detector (installs Prometheus once).
test: $(PROMETHEUS)
	$(GO) vet ./...
	ROLLGUARD_PROMETHEUS=$(PROMETHEUS) $(GO) test -race -count=1 ./...

## prometheus: build Prometheus from the Go module proxy (a few minutes, once).
prometheus: $(PROMETHEUS)
$(PROMETHEUS):
	GOFLAGS= $(GO) install github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)

## fuzz: each fuzz target briefly.
fuzz:
	$(GO) test ./configs -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sources/otlp -run '^$$' -fuzz '^FuzzReceiver$$' -fuzztime $(FUZZTIME)
	$(GO) test ./web -run '^$$' -fuzz '^FuzzAnnounce$$' -fuzztime $(FUZZTIME)

## bench: the Go benchmarks with allocations, then the end-to-end ingest
## comparison with Prometheus (scripts/bench.sh, over loopback).
bench: $(PROMETHEUS)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	PROMETHEUS=$(PROMETHEUS) ./scripts/bench.sh

clean:
	rm -rf bin data
