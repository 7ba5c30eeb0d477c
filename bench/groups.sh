#!/usr/bin/env bash
# Strata consumer-group benchmarks: builds the release binary, starts a fresh
# `strata dev` (temp data dir, free ports on 127.0.0.1) for every scenario,
# runs bench/groups.py against it, stops it, and prints a Markdown summary.
# See the "Consumer groups" section of BENCHMARKS.md.
#
# Usage: bench/groups.sh [options]
#   --seconds S        duration of each commit run (default 15)
#   --clients LIST     parallel confluent-kafka committers (default 1,8,16)
#   --wire-conns LIST  raw-wire committer connections (default 16,64)
#   --hb-conns N       heartbeat connections (default 16)
#   --hb-rates LIST    heartbeat rates/s, 0 = unpaced (default 1000,2000,4000,0)
#   --hb-seconds S     duration of each heartbeat rate (default 8)
#   --scenarios LIST   comma list of: commits, wire, pipeline (1 raw connection,
#                      1 vs 16 outstanding commits), rebalance-classic,
#                      rebalance-consumer, heartbeats, kip848-heartbeats
#                      (ConsumerGroupHeartbeat at 2,000/s in a group of 10 members
#                      x 20 partitions, then 200 x 4,000) (default all)
#   --out DIR          keep results (JSON, logs, summary.md) in DIR
#   --skip-build       use the existing release binary
#   --idle-wait S      before each scenario wait up to S seconds (default 600) for
#                      the machine to be idle (< 0.25 busy cores over 2 s), so other
#                      work (builds, CI) does not disturb the numbers; 0 = don't wait
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
VENV="${STRATA_BENCH_VENV:-$HOME/.cache/strata-venv}"

SECONDS_RUN=15 CLIENTS="1,8,16" WIRE_CONNS="16,64" HB_CONNS=16 HB_RATES="1000,2000,4000,0" HB_SECONDS=8
SCENARIOS="commits,wire,pipeline,rebalance-classic,rebalance-consumer,heartbeats,kip848-heartbeats" OUT="" SKIP_BUILD=0 IDLE_WAIT=600
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_RUN="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --wire-conns) WIRE_CONNS="$2"; shift 2 ;;
    --hb-conns) HB_CONNS="$2"; shift 2 ;;
    --hb-rates) HB_RATES="$2"; shift 2 ;;
    --hb-seconds) HB_SECONDS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --idle-wait) IDLE_WAIT="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

log() { echo "[groups $(date +%T)] $*" >&2; }

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
GROUPS_PY="$ROOT/bench/groups.py"

[[ -n $OUT ]] || OUT="$(mktemp -d -t strata-groups-XXXXXX)"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
log "results in $OUT"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SERVER_PID="" DATA_DIR=""
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  if [[ -n $DATA_DIR ]]; then rm -rf "$DATA_DIR"; DATA_DIR=""; fi
}
trap stop_server EXIT INT TERM

start_server() {
  local name="$1"
  DATA_DIR="$(mktemp -d -t strata-groups-data-XXXXXX)"
  KAFKA_PORT="$(free_port)"; CATALOG_PORT="$(free_port)"; METRICS_PORT="$(free_port)"
  "$STRATA" dev --data-dir "$DATA_DIR" --listen "127.0.0.1:$KAFKA_PORT" \
    --catalog-listen "127.0.0.1:$CATALOG_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    >"$OUT/server-$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null 2>&1; then
      log "strata dev pid $SERVER_PID on 127.0.0.1:$KAFKA_PORT, data $DATA_DIR"
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "strata dev did not start; log:" >&2; cat "$OUT/server-$name.log" >&2; exit 1
}

# Busy cores of the whole machine over 2 s (/proc/stat).
busy_cores() {
  "$PY" -c '
import os, time
def s():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v) - v[3] - v[4]
a = s(); time.sleep(2); print("%.2f" % ((s() - a) / os.sysconf("SC_CLK_TCK") / 2))'
}

wait_idle() {
  [[ $IDLE_WAIT -gt 0 ]] || return 0
  local start busy
  start=$(date +%s)
  while :; do
    busy=$(busy_cores)
    if awk -v b="$busy" 'BEGIN{exit !(b < 0.25)}'; then return 0; fi
    if (( $(date +%s) - start >= IDLE_WAIT )); then
      log "machine still busy ($busy cores) after ${IDLE_WAIT}s; measuring anyway"; return 0
    fi
    log "machine busy ($busy cores used by other processes); waiting"
    sleep 10
  done
}

run() {  # run NAME groups.py-args...
  local name="$1"; shift
  wait_idle
  start_server "$name"
  log "scenario $name: $*"
  local rc=0
  "$PY" "$GROUPS_PY" "$@" --bootstrap "127.0.0.1:$KAFKA_PORT" --pid "$SERVER_PID" \
    --out "$OUT/$name.json" >/dev/null 2> >(tee "$OUT/client-$name.log" >&2) || rc=$?
  stop_server
  [[ $rc == 0 ]] || log "scenario $name exited with $rc (see $OUT/client-$name.log)"
  return 0
}

IFS=',' read -r -a LIST <<<"$SCENARIOS"
for s in "${LIST[@]}"; do
  case "$s" in
    commits)
      IFS=',' read -r -a NS <<<"$CLIENTS"
      for n in "${NS[@]}"; do run "commits-confluent-$n" commits --mode confluent --clients "$n" --seconds "$SECONDS_RUN"; done ;;
    wire)
      IFS=',' read -r -a NS <<<"$WIRE_CONNS"
      for n in "${NS[@]}"; do run "commits-wire-$n" commits --mode wire --conns "$n" --seconds "$SECONDS_RUN"; done ;;
    pipeline)
      for d in 1 16; do run "commits-wire-1-depth$d" commits --mode wire --conns 1 --depth "$d" --seconds "$SECONDS_RUN"; done ;;
    rebalance-classic) run rebalance-classic rebalance --protocol classic ;;
    rebalance-consumer) run rebalance-consumer rebalance --protocol consumer ;;
    heartbeats) run heartbeats heartbeats --conns "$HB_CONNS" --rates "$HB_RATES" --seconds "$HB_SECONDS" ;;
    kip848-heartbeats)
      for mp in 10x20 200x4000; do
        run "kip848-heartbeats-$mp" consumer-heartbeats --members "${mp%x*}" --partitions "${mp#*x}" \
          --rate 2000 --seconds "$HB_SECONDS"
      done ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done

ROOT="$ROOT" STRATA="$STRATA" "$PY" - "$OUT/meta.json" <<'EOF'
import json, os, subprocess, sys, datetime
import confluent_kafka
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
rev = subprocess.run(["git", "-C", os.environ["ROOT"], "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "nproc": os.cpu_count(), "cpu_model": cpu, "mem_total_gib": round(mem / 1024 / 1024, 1),
    "git_rev": rev, "librdkafka": confluent_kafka.libversion()[0],
    "confluent_kafka": (lambda v: v[0] if isinstance(v, tuple) else v)(confluent_kafka.version()),
    "binary_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(os.environ["STRATA"]), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
}, open(sys.argv[1], "w"), indent=2)
EOF
"$PY" "$GROUPS_PY" report "$OUT" | tee "$OUT/summary.md"
log "done; results in $OUT"
