#!/usr/bin/env bash
# Strata produce/consume benchmark: builds the release binary, starts a fresh
# `strata dev` (temp data dir, free ports on 127.0.0.1) for every scenario,
# runs bench/produce_consume.py against it, stops it, and prints a Markdown
# summary. See BENCHMARKS.md for results and how to read them.
#
# Usage: bench/run.sh [options]
#   --mb N                 MiB per throughput run (upper bound; default 1024)
#   --max-seconds S        time bound of each produce loop (default 60)
#   --partitions N         partitions per topic (default 8)
#   --msg-size B           message size in bytes (default 1024)
#   --rate R               msgs/s of the latency runs (default 1000)
#   --latency-seconds S    duration of the latency runs (default 10)
#   --flush-interval-ms MS strata dev --flush-interval-ms (default 5)
#   --flush-bytes B        strata dev --flush-bytes (default 4194304)
#   --cache-memory-mb MB   strata dev --cache-memory-mb (default 256)
#   --repeat N             throughput runs per producer kind (default 3), interleaved
#                          plain/idem, idem/plain, ...; the summary reports medians
#   --scenarios LIST       comma list of: tput (plain + idempotent throughput, repeated),
#                          lat-plain, lat-idem, lat-idem-linger5 (default all)
#   --no-warmup            skip the discarded 1 GiB warm-up produce before the measured runs
#   --out DIR              keep results (JSON, logs, summary.md) in DIR
#   --skip-build           use the existing release binary
#   --perf                 record `perf record -g` of strata in each throughput run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
VENV="${STRATA_BENCH_VENV:-$HOME/.cache/strata-venv}"

MB=1024 MAX_SECONDS=60 PARTITIONS=8 MSG_SIZE=1024 RATE=1000 LAT_SECONDS=10
FLUSH_INTERVAL_MS=5 FLUSH_BYTES=4194304 CACHE_MB=256
SCENARIOS="tput,lat-plain,lat-idem,lat-idem-linger5" REPEAT=3 OUT="" SKIP_BUILD=0 PERF=0 WARMUP=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --max-seconds) MAX_SECONDS="$2"; shift 2 ;;
    --partitions) PARTITIONS="$2"; shift 2 ;;
    --msg-size) MSG_SIZE="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --latency-seconds) LAT_SECONDS="$2"; shift 2 ;;
    --flush-interval-ms) FLUSH_INTERVAL_MS="$2"; shift 2 ;;
    --flush-bytes) FLUSH_BYTES="$2"; shift 2 ;;
    --cache-memory-mb) CACHE_MB="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --no-warmup) WARMUP=0; shift ;;
    --perf) PERF=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

log() { echo "[bench $(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- build + venv
if [[ $SKIP_BUILD == 0 ]]; then
  log "building release binary (cargo build --locked --release -p strata)"
  (cd "$ROOT" && cargo build --locked --release -p strata) >&2
fi
STRATA="$CARGO_TARGET_DIR/release/strata"
[[ -x $STRATA ]] || { echo "no binary at $STRATA" >&2; exit 1; }

if ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  log "creating venv $VENV with confluent-kafka"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'confluent-kafka==2.16.*'
fi
PY="$VENV/bin/python"
BENCH_PY="$ROOT/bench/produce_consume.py"

if [[ -z $OUT ]]; then
  OUT="$(mktemp -d -t strata-bench-XXXXXX)"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log "results in $OUT"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SERVER_PID="" DATA_DIR="" PERF_PID=""
SEGMENT_FILES=0 FLUSHES_TOTAL=0

stop_server() {
  if [[ -n $PERF_PID ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
  fi
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  if [[ -n $DATA_DIR ]]; then
    rm -rf "$DATA_DIR"
    DATA_DIR=""
  fi
}
trap stop_server EXIT INT TERM

start_server() {
  local name="$1"
  DATA_DIR="$(mktemp -d -t strata-bench-data-XXXXXX)"
  KAFKA_PORT="$(free_port)"; CATALOG_PORT="$(free_port)"; METRICS_PORT="$(free_port)"
  "$STRATA" dev --data-dir "$DATA_DIR" \
    --listen "127.0.0.1:$KAFKA_PORT" \
    --catalog-listen "127.0.0.1:$CATALOG_PORT" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --flush-interval-ms "$FLUSH_INTERVAL_MS" --flush-bytes "$FLUSH_BYTES" \
    --cache-memory-mb "$CACHE_MB" \
    >"$OUT/server-$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null 2>&1; then
      log "strata dev pid $SERVER_PID on 127.0.0.1:$KAFKA_PORT (metrics :$METRICS_PORT), data $DATA_DIR"
      if [[ $PERF == 1 && $name != lat* ]] && command -v perf >/dev/null; then
        perf record -F 499 -g -p "$SERVER_PID" -o "$OUT/perf-$name.data" >/dev/null 2>&1 &
        PERF_PID=$!
      fi
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "strata dev did not start; log:" >&2
  cat "$OUT/server-$name.log" >&2
  exit 1
}

# Cross-check of PUTs per flush from outside the process: segment objects on
# disk vs the flush counter.
count_segments() {
  local files flushes
  files=$(find "$DATA_DIR/objects" -name '*.seg' -type f | wc -l)
  flushes=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk '$1 ~ /^strata_flushes_total({|$)/ {s += $2} END {print s + 0}')
  SEGMENT_FILES=$((SEGMENT_FILES + files))
  FLUSHES_TOTAL=$((FLUSHES_TOTAL + ${flushes%.*}))
  log "segment files $files, flushes $flushes, data dir $(du -sh "$DATA_DIR/objects" | cut -f1)"
}

run_scenario() {
  local name="$1"; shift
  start_server "$name"
  local common=(--bootstrap "127.0.0.1:$KAFKA_PORT" --metrics-url "http://127.0.0.1:$METRICS_PORT/metrics"
                --pid "$SERVER_PID" --partitions "$PARTITIONS" --msg-size "$MSG_SIZE" --out "$OUT/$name.json")
  local rc=0
  log "scenario $name: $*"
  "$PY" "$BENCH_PY" "$@" "${common[@]}" 2> >(tee "$OUT/client-$name.log" >&2) || rc=$?
  count_segments
  stop_server
  if [[ $rc != 0 ]]; then log "scenario $name exited with $rc (see $OUT/client-$name.log)"; fi
  return 0
}

START=$(date +%s)
IFS=',' read -r -a LIST <<<"$SCENARIOS"
for s in "${LIST[@]}"; do
  case "$s" in
    tput)
      if [[ $WARMUP == 1 ]]; then
        # On a fresh VM the first GiB written runs at half speed (the
        # hypervisor backs guest pages on first touch); warm up, then discard.
        run_scenario warmup throughput --idempotence 1 --mb 1024 --max-seconds "$MAX_SECONDS" --no-consume
        [[ -f $OUT/warmup.json ]] && mv "$OUT/warmup.json" "$OUT/warmup.discarded"
      fi
      for i in $(seq 1 "$REPEAT"); do
        if (( i % 2 )); then order="plain idem"; else order="idem plain"; fi
        for kind in $order; do
          idem=0; [[ $kind == idem ]] && idem=1
          run_scenario "t$i-$kind" throughput --idempotence "$idem" --mb "$MB" --max-seconds "$MAX_SECONDS"
        done
      done ;;
    lat-plain) run_scenario lat-plain latency --idempotence 0 --rate "$RATE" --seconds "$LAT_SECONDS" \
                 --dump-latencies "$OUT/lat-plain.csv" ;;
    lat-idem) run_scenario lat-idem latency --idempotence 1 --rate "$RATE" --seconds "$LAT_SECONDS" \
                --dump-latencies "$OUT/lat-idem.csv" ;;
    lat-idem-linger5) run_scenario lat-idem-linger5 latency --idempotence 1 --linger-ms 5 --rate "$RATE" \
                        --seconds "$LAT_SECONDS" --dump-latencies "$OUT/lat-idem-linger5.csv" ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
ELAPSED=$(( $(date +%s) - START ))

# ---------------------------------------------------------------- summary
FLUSH_INTERVAL_MS=$FLUSH_INTERVAL_MS FLUSH_BYTES=$FLUSH_BYTES CACHE_MB=$CACHE_MB \
DATA_FS="$(stat -f -c %T "${TMPDIR:-/tmp}") at ${TMPDIR:-/tmp}" \
SEGMENT_FILES=$SEGMENT_FILES FLUSHES_TOTAL=$FLUSHES_TOTAL ELAPSED=$ELAPSED ROOT="$ROOT" STRATA="$STRATA" \
"$PY" - "$OUT/meta.json" <<'EOF'
import json, os, platform, subprocess, sys, datetime
import confluent_kafka
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
try:
    rev = subprocess.run(["git", "-C", os.environ["ROOT"], "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", os.environ["ROOT"], "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    rev += "+dirty" if dirty else ""
except Exception:
    rev = "?"
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "nproc": os.cpu_count(),
    "cpu_model": cpu,
    "mem_total_gib": round(mem / 1024 / 1024, 1),
    "kernel": platform.release(),
    "python": platform.python_version(),
    "confluent_kafka": (lambda v: v[0] if isinstance(v, tuple) else v)(confluent_kafka.version()),
    "librdkafka": confluent_kafka.libversion()[0],
    "flush_interval_ms": int(os.environ["FLUSH_INTERVAL_MS"]),
    "flush_bytes": int(os.environ["FLUSH_BYTES"]),
    "cache_memory_mb": int(os.environ["CACHE_MB"]),
    "segment_files": int(os.environ["SEGMENT_FILES"]),
    "flushes_total": int(os.environ["FLUSHES_TOTAL"]),
    "elapsed_s": int(os.environ["ELAPSED"]),
    "git_rev": rev,
    "binary": os.environ["STRATA"],
    "binary_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(os.environ["STRATA"]), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "data_dir_fs": os.environ["DATA_FS"],
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
"$PY" "$BENCH_PY" report "$OUT" | tee "$OUT/summary.md"
log "done in ${ELAPSED}s; results in $OUT"
