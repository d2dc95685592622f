# rollguard's image, for those with Docker (or Podman, or BuildKit):
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/rollguard/rollguard:v0.1.0 .
# `make image` builds the same image without a daemon (tools/image); keep the
# two in step (tools/image's TestDockerfile checks the facts they share).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rollguard ./cmd/rollguard

# Static, with CA certificates, passwd and the user nonroot (65532); no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=""
LABEL org.opencontainers.image.title="rollguard" \
      org.opencontainers.image.description="Telemetry guardrail daemon: compares a deployment's new version against its baseline and kills the flag when it is measurably worse." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/rollguard/rollguard"
COPY --from=build /out/rollguard /usr/local/bin/rollguard
USER 65532:65532
WORKDIR /home/nonroot
# OTLP/gRPC, OTLP/HTTP, web (UI, API, remote write, /metrics, probes).
EXPOSE 4317 4318 9469
ENTRYPOINT ["/usr/local/bin/rollguard"]
CMD ["run", "--config.file=/etc/rollguard/rollguard.yml"]
