GO        ?= go
BIN       := bin/rollguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# The image: $(IMAGE):$(VERSION), the scheme of deploy/kubernetes and the chart.
IMAGE      ?= ghcr.io/rollguard/rollguard
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
FUZZTIME  ?= 1m
GOBIN     := $(shell $(GO) env GOPATH)/bin
# A real Prometheus for the PromQL-polling tests and the ingest comparison.
PROMETHEUS_VERSION := v0.316.0
PROMETHEUS := $(GOBIN)/prometheus
# The OpenTelemetry Collector of the OTLP comparison, built by its builder (ocb) of the
# same release from tools/otelcol/builder.yaml (whose module versions must match).
OTELCOL_VERSION := v0.165.0
OTELCOL := $(GOBIN)/otelcol-bench
# A real Alertmanager for the notifier's tests. v0.28.1 is the newest tag that
# `go install` builds: later ones embed ui/app/dist, which their module zip lacks.
ALERTMANAGER_VERSION := v0.28.1
ALERTMANAGER := $(GOBIN)/alertmanager
# A Chromium or Chrome for the UI tests in a real browser: ROLLGUARD_CHROMIUM, else the first
# of chromium, chromium-browser, google-chrome, google-chrome-stable on PATH (looked up when
# used, so after `make chromium` installed one).
BROWSERS   := chromium chromium-browser google-chrome google-chrome-stable
find_chromium = $(firstword $(ROLLGUARD_CHROMIUM) $(shell for b in $(BROWSERS); do command -v $$b && break; done 2>/dev/null; true))

.PHONY: all build image run test test-helm fuzz bench bench-detect lint clean prometheus otelcol chromium

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rollguard

## image: the OCI image without a Docker daemon (tools/image, go-containerregistry): a
## static binary on an empty base, as 65532; bin/rollguard-image.tar (docker/podman load,
## kind load image-archive) and the OCI layout bin/rollguard-oci/. The Dockerfile builds the same.
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/image/rollguard ./cmd/rollguard
	cd tools/image && $(GO) run . -binary $(CURDIR)/bin/image/rollguard -arch $(IMAGE_ARCH) \
		-repository $(IMAGE) -version $(VERSION) -revision "$$(git rev-parse HEAD 2>/dev/null)" \
		-created "$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null)}" \
		-tar $(CURDIR)/bin/rollguard-image.tar -oci-layout $(CURDIR)/bin/rollguard-oci

## test-helm: render deploy/helm/rollguard with the Helm library for each topology and decode
## it strictly (deploy/helm/test, its own module; the first build takes about 3 min).
test-helm:
	cd deploy/helm/test && $(GO) vet ./... && $(GO) test -count=1 ./...

## run: the daemon with the example configuration and an embedded NATS server.
run: build
	./$(BIN) run --config.file=configs/example.yaml --storage.path=data/

## test: vet, every test with the race detector (builds Prometheus and Alertmanager once,
## finds or installs a Chromium: see chromium), then each fuzz target for a few seconds.
test: $(PROMETHEUS) chromium $(ALERTMANAGER)
	$(GO) vet ./...
	ROLLGUARD_PROMETHEUS=$(PROMETHEUS) ROLLGUARD_CHROMIUM=$(find_chromium) ROLLGUARD_ALERTMANAGER=$(ALERTMANAGER) $(GO) test -race -count=1 -timeout=40m ./...
	cd tools/image && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(MAKE) --no-print-directory test-helm
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

## prometheus: build Prometheus from the Go module proxy (a few minutes, once).
prometheus: $(PROMETHEUS)
$(PROMETHEUS):
	GOFLAGS= $(GO) install github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)

## alertmanager: build Alertmanager from the Go module proxy (a minute or two, once).
.PHONY: alertmanager
alertmanager: $(ALERTMANAGER)
$(ALERTMANAGER):
	GOFLAGS= $(GO) install github.com/prometheus/alertmanager/cmd/alertmanager@$(ALERTMANAGER_VERSION)

## chromium: the browser the UI tests drive headless — ROLLGUARD_CHROMIUM or one on PATH;
## else Debian's chromium package where apt-get exists and we are root or may sudo without a
## password; else a warning, and the browser tests skip.
chromium:
	@if [ -n "$(find_chromium)" ]; then echo "browser tests: $(find_chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		s=; [ "$$(id -u)" = 0 ] || s=sudo; \
		echo "browser tests: installing Debian's chromium"; \
		$$s apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -qq chromium; \
	else \
		echo "********************************************************************************" >&2; \
		echo "* WARNING: no Chromium or Chrome ($(BROWSERS) on PATH, or ROLLGUARD_CHROMIUM)" >&2; \
		echo "* and no apt-get with root or sudo to install one: the browser tests are SKIPPED." >&2; \
		echo "* Install Chromium or Chrome, or set ROLLGUARD_CHROMIUM=/path/to/chrome, to run them." >&2; \
		echo "********************************************************************************" >&2; \
	fi

## fuzz: each fuzz target for FUZZTIME (decoders of every input surface).
FUZZ_TARGETS := ./configs:FuzzParse ./sources/otlp:FuzzReceiver ./sources/otlp:FuzzStreamingMatchesPdata ./web:FuzzAnnounce \
	./sources/remotewrite:FuzzRemoteWriteV1 ./sources/remotewrite:FuzzRemoteWriteV2 \
	./sources/scrape:FuzzParseText ./sources/scrape:FuzzParseOpenMetrics ./sources/scrape:FuzzParseProtobuf ./cmd/rollguard:FuzzReplay ./actions/actuator:FuzzDecodeCommand \
	./actions:FuzzOutbox ./web:FuzzApprovals ./cluster/agg:FuzzDecode ./gates:FuzzFlaggerWebhook
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test $${t%%:*} -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME); \
	done

## otelcol: build the OpenTelemetry Collector (otlp receiver → nop exporter) with its builder
## from the Go module proxy, in a temporary module of its own (a minute or two, once).
otelcol: $(OTELCOL)
$(OTELCOL): tools/otelcol/builder.yaml
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "otelcol: builder $(OTELCOL_VERSION), tools/otelcol/builder.yaml"; \
	GOFLAGS= GOBIN="$$tmp/bin" $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION); \
	cd "$$tmp" && GOFLAGS= ./bin/builder --config="$(CURDIR)/tools/otelcol/builder.yaml" >builder.log 2>&1 \
		|| { tail -30 builder.log >&2; exit 1; }; \
	mkdir -p "$(GOBIN)" && install -m 0755 otelcol-bench/otelcol-bench "$@"

## bench: the Go benchmarks with allocations, then the end-to-end ingest comparison
## (scripts/bench.sh, over loopback, at GOMAXPROCS 2 and 8): remote write against Prometheus,
## OTLP against the OpenTelemetry Collector; a peer that cannot be built is skipped.
bench: $(PROMETHEUS)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@$(MAKE) --no-print-directory otelcol || echo "bench: the OpenTelemetry Collector could not be built: the OTLP comparison is skipped" >&2
	PROMETHEUS=$(PROMETHEUS) OTELCOL=$(OTELCOL) ./scripts/bench.sh

## bench-detect: the detection benchmark of DETECTION.md and its nuisance suite (about 5 min on 2
## cores, fixed seeds); writes docs/detection.md.
bench-detect:
	$(GO) run ./tools/detectbench -out docs/detection.md

clean:
	rm -rf bin data
