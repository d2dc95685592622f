#!/usr/bin/env bash
# make bench: rollguard's ingest against its peers on this machine over
# loopback, driven by tools/loadgen with the same pre-encoded payloads:
# remote write 1.0 and 2.0 against Prometheus' own remote-write receiver,
# OTLP/HTTP protobuf against the OpenTelemetry Collector (otlp receiver →
# nop exporter, tools/otelcol). Every target runs at each GOMAXPROCS of PROCS
# (2 and 8): with taskset and more cores than that, the target is pinned to
# that many cores and the load generator to the rest; on fewer cores the row
# still runs, marked. Peers run back to back, so each ratio comes from one
# stretch of the machine's load. Prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
GOBIN=$($GO env GOPATH)/bin
PROMETHEUS=${PROMETHEUS:-$GOBIN/prometheus}
OTELCOL=${OTELCOL:-$GOBIN/otelcol-bench}
SERIES=${SERIES:-20000} BATCH=${BATCH:-2000} ROUNDS=${ROUNDS:-40}
# WORKERS: concurrent senders; unset, 2 per target core and at least 4.
WORKERS=${WORKERS:-}
PROCS=${PROCS:-2 8}
ncores=$(nproc)
ticks=$(getconf CLK_TCK 2>/dev/null || echo 100)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
$GO build -o "$work/rollguard" ./cmd/rollguard
$GO build -o "$work/loadgen" ./tools/loadgen
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

have_prometheus=1 have_otelcol=1
[ -x "$PROMETHEUS" ] || { have_prometheus=0; echo "prometheus not found at $PROMETHEUS (make prometheus): the remote-write comparison is skipped" >&2; }
[ -x "$OTELCOL" ] || { have_otelcol=0; echo "OpenTelemetry Collector not found at $OTELCOL (make otelcol): the OTLP comparison is skipped" >&2; }

# wait_up URL PID [CURL-FLAGS]: until URL answers while PID lives — with
# -f (a ready endpoint) a 2xx, without it any HTTP status.
wait_up() {
  for _ in $(seq 300); do
    kill -0 "$2" 2>/dev/null || { echo "exited before $1 answered" >&2; return 1; }
    curl -s ${3:-} -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2; return 1
}

# placement P: the taskset prefixes of target and load generator, and the
# row's note.
placement() {
  local p=$1
  tpin=() lpin=()
  if [ "$ncores" -lt "$p" ]; then
    note="machine has $ncores cores"
  elif command -v taskset >/dev/null 2>&1 && [ "$ncores" -gt "$p" ]; then
    tpin=(taskset -c "0-$((p - 1))") lpin=(taskset -c "$p-$((ncores - 1))")
    note="target on cores 0-$((p - 1)), loadgen on $p-$((ncores - 1))"
  else
    note="unpinned: target and loadgen share $ncores cores"
  fi
}

# start NAME FORMAT P: starts the target at GOMAXPROCS=P; sets pid, url, log.
start() {
  local name=$1 fmt=$2 p=$3
  log="$work/$name-$fmt-$p.log"
  case $name in
  rollguard)
    rm -rf "$work/rg"; mkdir -p "$work/rg"
    GOMAXPROCS=$p "${tpin[@]}" "$work/rollguard" run --config.file=testdata/bench/rollguard.yaml --storage.path="$work/rg" \
      --web.listen-address=127.0.0.1:19469 --log.level=warn 2>"$log" &
    pid=$!
    wait_up http://127.0.0.1:19469/-/ready "$pid" -f || return 1
    url=http://127.0.0.1:19469/api/v1/write
    if [ "$fmt" = otlp ]; then url=http://127.0.0.1:14318/v1/metrics; fi
    ;;
  prometheus)
    printf 'global:\n  scrape_interval: 1m\n' >"$work/prometheus.yml"
    rm -rf "$work/prom"
    GOMAXPROCS=$p "${tpin[@]}" "$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
      --web.listen-address=127.0.0.1:19090 --web.enable-remote-write-receiver \
      --web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest \
      --web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request \
      --log.level=error 2>"$log" &
    pid=$!
    wait_up http://127.0.0.1:19090/-/ready "$pid" -f || return 1
    url=http://127.0.0.1:19090/api/v1/write
    ;;
  collector)
    GOMAXPROCS=$p "${tpin[@]}" "$OTELCOL" --config=tools/otelcol/config.yaml 2>"$log" &
    pid=$!
    # The receiver listens once the pipeline has started (a GET is a 405).
    wait_up http://127.0.0.1:14319/v1/metrics "$pid" || return 1
    url=http://127.0.0.1:14319/v1/metrics
    ;;
  esac
}

stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }

results="$work/results.jsonl"
# measure NAME FORMAT P: one row of results.jsonl; a target that does not
# start or a load generator that fails is reported and skipped.
measure() {
  local name=$1 fmt=$2 p=$3 w=${WORKERS:-$((2 * $3 > 4 ? 2 * $3 : 4))}
  if ! start "$name" "$fmt" "$p"; then
    echo "$name $fmt at GOMAXPROCS=$p did not start; its log:" >&2; tail -20 "$log" >&2; stop; return 0
  fi
  if ! "${lpin[@]}" "$work/loadgen" -series "$SERIES" -batch "$BATCH" -rounds "$ROUNDS" -workers "$w" \
    -format "$fmt" -url "$url" -pid "$pid" -clock-ticks "$ticks" -name "$name $fmt" >"$work/row.json"; then
    echo "loadgen against $name $fmt at GOMAXPROCS=$p failed" >&2; stop; return 0
  fi
  stop
  python3 - "$work/row.json" "$p" "$w" "$note" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(gomaxprocs=int(sys.argv[2]), workers=int(sys.argv[3]), placement=sys.argv[4])
print(json.dumps(r))
PY
}

for p in $PROCS; do
  placement "$p"
  for fmt in rw1 rw2; do
    measure rollguard "$fmt" "$p"
    if [ "$have_prometheus" = 1 ]; then measure prometheus "$fmt" "$p"; fi
  done
  measure rollguard otlp "$p"
  if [ "$have_otelcol" = 1 ]; then measure collector otlp "$p"; fi
done

echo "machine: $ncores cores, $(awk '/model name/{$1=$2=$3="";print;exit}' /proc/cpuinfo | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load: $SERIES series, $BATCH per request, $ROUNDS rounds, senders ${WORKERS:-2 per target core, at least 4}; GOMAXPROCS $PROCS"
# The peers' versions as built (go install and the builder leave no version in --version).
modver() { $GO version -m "$1" 2>/dev/null | awk -v m="$2" '($1 == "mod" || $1 == "dep") && $2 == m {print $3; exit}'; }
peers=""
if [ "$have_prometheus" = 1 ]; then peers="Prometheus $(modver "$PROMETHEUS" github.com/prometheus/prometheus) (--web.enable-remote-write-receiver)"; fi
if [ "$have_otelcol" = 1 ]; then peers="${peers:+$peers; }OpenTelemetry Collector $(modver "$OTELCOL" go.opentelemetry.io/collector/otelcol) (otlp receiver → nop exporter, tools/otelcol)"; fi
echo "peers: ${peers:-none}"
echo
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
inputs = {"rw1": "remote write 1.0", "rw2": "remote write 2.0", "otlp": "OTLP/HTTP protobuf"}
peers = {"rw1": "prometheus", "rw2": "prometheus", "otlp": "collector"}
goals = {"rw1": 5, "rw2": 5, "otlp": 2}
print("| GOMAXPROCS | input | target | requests (failed) | accepted samples/s | target CPU-µs per sample | p50 ms | p99 ms | RSS MiB | placement |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    t = r["name"].split(" ", 1)[0]
    print(f"| {r['gomaxprocs']} | {inputs[r['format']]} | {t} | {r['requests']} ({r['failed']}) | {r['samples_per_second']:,.0f} "
          f"| {r['cpu_seconds_per_million_samples']:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['rss_bytes']/2**20:.0f} | {r['placement']} |")
by = {(r["gomaxprocs"], r["format"], r["name"].split(" ", 1)[0]): r for r in rows}
pairs = []
for (p, f, t), a in by.items():
    if t != "rollguard":
        continue
    b = by.get((p, f, peers[f]))
    if b and b["samples_per_second"] > 0 and a["cpu_seconds_per_million_samples"] > 0:
        pairs.append((p, f, a, b))
if pairs:
    print()
    print("| GOMAXPROCS | input | peer | samples/s: rollguard ÷ peer | CPU-µs per sample: peer ÷ rollguard | goal (samples/s) |")
    print("|---|---|---|---|---|---|")
    for p, f, a, b in pairs:
        ratio = a["samples_per_second"] / b["samples_per_second"]
        eff = b["cpu_seconds_per_million_samples"] / a["cpu_seconds_per_million_samples"]
        met = "met" if ratio >= goals[f] else "missed"
        print(f"| {p} | {inputs[f]} | {peers[f]} | {ratio:.2f}× | {eff:.2f}× | ≥ {goals[f]}×: {met} |")
for r in rows:
    if r.get("first_error"):
        print(f"\n{r['name']} at GOMAXPROCS={r['gomaxprocs']}: first error: {r['first_error']}")
PY
