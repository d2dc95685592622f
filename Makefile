GO        ?= go
BIN       := bin/rollguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s

.PHONY: all build run test fuzz bench lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rollguard

## run: the daemon with the example configuration and an embedded NATS server.
run: build
	./$(BIN) run --config.file=configs/example.yaml --storage.path=data/

## test: vet, then every test with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## fuzz: each fuzz target briefly.
fuzz:
	$(GO) test ./configs -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./sources/otlp -run '^$$' -fuzz '^FuzzReceiver$$' -fuzztime $(FUZZTIME)
	$(GO) test ./web -run '^$$' -fuzz '^FuzzAnnounce$$' -fuzztime $(FUZZTIME)

## bench: the benchmarks, with allocations.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin data
