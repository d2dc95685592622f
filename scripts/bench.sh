#!/usr/bin/env bash
# make bench: rollguard's ingest against Prometheus' own remote-write
# receiver, driven by tools/loadgen with the same pre-encoded payloads, on
# this machine over loopback. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PROMETHEUS=${PROMETHEUS:-$($GO env GOPATH)/bin/prometheus}
SERIES=${SERIES:-20000} BATCH=${BATCH:-2000} ROUNDS=${ROUNDS:-40} WORKERS=${WORKERS:-4}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
$GO build -o "$work/rollguard" ./cmd/rollguard
$GO build -o "$work/loadgen" ./tools/loadgen

wait_ready() { for _ in $(seq 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
load() { "$work/loadgen" -series "$SERIES" -batch "$BATCH" -rounds "$ROUNDS" -workers "$WORKERS" "$@"; }

results="$work/results.jsonl"
for fmt in rw1 rw2 otlp; do
  rm -rf "$work/rg"; mkdir -p "$work/rg"
  "$work/rollguard" run --config.file=testdata/bench/rollguard.yaml --storage.path="$work/rg" \
    --web.listen-address=127.0.0.1:19469 --log.level=warn 2>"$work/rg.log" &
  pid=$!
  wait_ready http://127.0.0.1:19469/-/ready
  url=http://127.0.0.1:19469/api/v1/write
  [ "$fmt" = otlp ] && url=http://127.0.0.1:14318/v1/metrics
  load -format "$fmt" -url "$url" -metrics-url http://127.0.0.1:19469/metrics -name "rollguard $fmt" >>"$results"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
if [ -x "$PROMETHEUS" ]; then
  printf 'global:\n  scrape_interval: 1m\n' >"$work/prometheus.yml"
  for fmt in rw1 rw2; do
    rm -rf "$work/prom"
    "$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
      --web.listen-address=127.0.0.1:19090 --web.enable-remote-write-receiver \
      --web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest \
      --web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request \
      --log.level=error 2>"$work/prom.log" &
    pid=$!
    wait_ready http://127.0.0.1:19090/-/ready
    load -format "$fmt" -url http://127.0.0.1:19090/api/v1/write -metrics-url http://127.0.0.1:19090/metrics -name "prometheus $fmt" >>"$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
else
  echo "prometheus not found at $PROMETHEUS (make prometheus): comparison skipped" >&2
fi

echo "machine: $(nproc) cores, $(awk '/model name/{$1=$2=$3="";print;exit}' /proc/cpuinfo | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; load: $SERIES series, $BATCH per request, $ROUNDS rounds, $WORKERS senders"
echo
echo "| target | format | requests (failed) | accepted samples/s | p50 ms | p99 ms | RSS MiB | target CPU s per 1M samples |"
echo "|---|---|---|---|---|---|---|---|"
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    t, f = r["name"].split(" ", 1)
    print(f"| {t} | {f} | {r['requests']} ({r['failed']}) | {r['samples_per_second']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['rss_bytes']/2**20:.0f} | {r['cpu_seconds_per_million_samples']:.2f} |")
by = {r["name"]: r for r in rows}
for f in ("rw1", "rw2"):
    a, b = by.get("rollguard " + f), by.get("prometheus " + f)
    if a and b and b["samples_per_second"] > 0:
        eff = b['cpu_seconds_per_million_samples'] / a['cpu_seconds_per_million_samples'] if a['cpu_seconds_per_million_samples'] else 0
        print(f"\n{f}: rollguard accepts {a['samples_per_second']/b['samples_per_second']:.1f}x Prometheus' samples/s, using {eff:.1f}x less CPU per sample", end="")
print()
for r in rows:
    if r.get("first_error"):
        print(f"\n{r['name']}: first error: {r['first_error']}")
PY
