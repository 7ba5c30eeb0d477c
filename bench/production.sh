#!/usr/bin/env bash
# Two-agent production-mode benchmark: `strata catalog` on PostgreSQL
# (scripts/pg.sh), two `strata agent`s on an S3 emulator (moto_server), and
# bench/produce_consume.py through both agents (partition leaders are spread
# over the two, so produce and fetch traffic reaches each). Prints the client
# results and the object-store requests per MiB written and read, summed over
# both agents' /metrics.
#
# STRATA_BIN=PATH runs that binary instead of building a release one.
# Usage: bench/production.sh [--mb N] [--max-seconds S] [--rate R] [--latency-seconds S]
#                            [--partitions N] [--flush-interval-ms MS] [--skip-build] [--out DIR]
# --flush-interval-ms sets the agents' flush interval (default: the agent default, 100 ms).
# The S3 emulator is a single Python process: throughput here measures Strata
# and moto together on one machine, not what S3 itself sustains.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
VENV="${STRATA_BENCH_VENV:-$HOME/.cache/strata-venv}"
MB=256 MAX_SECONDS=60 RATE=1000 LAT_SECONDS=10 PARTITIONS=8 SKIP_BUILD=0 OUT="" FLUSH_INTERVAL_MS=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --max-seconds) MAX_SECONDS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --latency-seconds) LAT_SECONDS="$2"; shift 2 ;;
    --partitions) PARTITIONS="$2"; shift 2 ;;
    --flush-interval-ms) FLUSH_INTERVAL_MS="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
log() { echo "[bench $(date +%T)] $*" >&2; }

if [[ $SKIP_BUILD == 0 && -z ${STRATA_BIN:-} ]]; then
  log "building release binary"
  (cd "$ROOT" && cargo build --locked --release -p strata) >&2
fi
STRATA="${STRATA_BIN:-$CARGO_TARGET_DIR/release/strata}"
PY="$VENV/bin/python"
[[ -x $STRATA ]] || { echo "no binary at $STRATA" >&2; exit 1; }
[[ -x $VENV/bin/moto_server ]] || { echo "no moto_server in $VENV: run bash .ci/run once (python step)" >&2; exit 1; }
OUT="${OUT:-$(mktemp -d -t strata-prod-bench-XXXXXX)}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
log "results in $OUT"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
wait_http() { for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# S3 emulator and bucket.
S3_PORT=$(free_port)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$OUT/moto.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$S3_PORT/"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
BUCKET="strata-bench-$RANDOM"
"$PY" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$S3_PORT').create_bucket(Bucket='$BUCKET')"
S3=(--object-store "s3://$BUCKET/data" --s3-endpoint "http://127.0.0.1:$S3_PORT" --s3-allow-http true)

# PostgreSQL: a fresh database in the test cluster.
"$ROOT/scripts/pg.sh" start >&2
PG_URL="$("$ROOT/scripts/pg.sh" url)"
DB="bench_$RANDOM"
psql "${PG_URL%/*}/postgres" -qc "CREATE DATABASE $DB" >&2
CATALOG_PORT=$(free_port) CATALOG_METRICS=$(free_port)
"$STRATA" catalog --store "${PG_URL%/*}/$DB" --listen "127.0.0.1:$CATALOG_PORT" \
  --metrics-listen "127.0.0.1:$CATALOG_METRICS" >"$OUT/catalog.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$CATALOG_METRICS/health"

BOOT=() METRICS=()
for i in 1 2; do
  port=$(free_port) metrics=$(free_port)
  "$STRATA" agent --catalog "http://127.0.0.1:$CATALOG_PORT" "${S3[@]}" \
    --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" --agent-id "bench-agent-$i" \
    --metrics-listen "127.0.0.1:$metrics" --cache-dir "$OUT/cache-$i" \
    ${FLUSH_INTERVAL_MS:+--flush-interval-ms "$FLUSH_INTERVAL_MS"} \
    >"$OUT/agent-$i.log" 2>&1 & PIDS+=($!)
  BOOT+=("127.0.0.1:$port"); METRICS+=("http://127.0.0.1:$metrics/metrics")
  wait_http "http://127.0.0.1:$metrics/ready"
done
BOOTSTRAP="$(IFS=,; echo "${BOOT[*]}")"
log "catalog :$CATALOG_PORT on PostgreSQL, agents $BOOTSTRAP on moto :$S3_PORT"

sum_metric() {
  local name="$1" total=0 v
  for m in "${METRICS[@]}"; do
    v=$(curl -fsS "$m" | awk -v n="$name" '$1 == n || index($1, n"{") == 1 {s += $2} END {printf "%d", s}')
    total=$((total + v))
  done
  echo "$total"
}

common=(--bootstrap "$BOOTSTRAP" --metrics-url "${METRICS[0]}" --partitions "$PARTITIONS" --msg-size 1024)
"$PY" "$ROOT/bench/produce_consume.py" throughput "${common[@]}" --idempotence 1 --mb "$MB" \
  --max-seconds "$MAX_SECONDS" --out "$OUT/throughput.json" 2> >(tee "$OUT/client-throughput.log" >&2)
PUTS=$(sum_metric strata_object_puts_total) GETS=$(sum_metric strata_object_gets_total)
FLUSHES=$(sum_metric strata_flushes_total) PRODUCED=$(sum_metric strata_produce_bytes_total)
FETCHED=$(sum_metric strata_fetch_bytes_total)
"$PY" "$ROOT/bench/produce_consume.py" latency "${common[@]}" --idempotence 1 --rate "$RATE" \
  --seconds "$LAT_SECONDS" --out "$OUT/latency.json" 2> >(tee "$OUT/client-latency.log" >&2)

"$PY" - "$OUT" "$PUTS" "$GETS" "$FLUSHES" "$PRODUCED" "$FETCHED" <<'PYEOF'
import json, sys
out, puts, gets, flushes, produced, fetched = sys.argv[1], *map(int, sys.argv[2:])
t = json.load(open(f"{out}/throughput.json")); l = json.load(open(f"{out}/latency.json"))
mib = 1 << 20
print("\n## two agents, S3 emulator (moto) + PostgreSQL catalog\n")
print(json.dumps({"throughput": t, "latency": l}, indent=1)[:4000])
print(f"\nPUTs {puts} for {flushes} flushes ({puts / max(flushes, 1):.3f} per flush), "
      f"{puts / max(produced / mib, 1e-9):.2f} PUTs per MiB produced; "
      f"GETs {gets}, {gets / max(fetched / mib, 1e-9):.3f} GETs per MiB fetched")
PYEOF
