#!/usr/bin/env bash
# `strata replay` / `strata export` throughput: a fresh `strata dev` on a temp
# data dir and free ports, N records produced with confluent-kafka (lz4,
# 4 partitions, ~100-byte values, keys, one header), then each output format
# replayed to /dev/null (and exported) with --json; prints records/s.
#
#   bench/replay.sh [STRATA_BIN] [RECORDS]
#
# Defaults: $CARGO_TARGET_DIR/debug/strata (or ~/.cache/strata-target), 1,000,000
# records; the Python venv at ~/.cache/strata-venv. Bounded: produce ≤ 120 s.
set -euo pipefail
target=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
bin=${1:-$target/debug/strata}
records=${2:-1000000}
python=${STRATA_PYTHON:-$HOME/.cache/strata-venv/bin/python}
dir=$(mktemp -d)
port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kafka=$(port); catalog=$(port); metrics=$(port)
"$bin" dev --data-dir "$dir" --listen "127.0.0.1:$kafka" --catalog-listen "127.0.0.1:$catalog" \
  --metrics-listen "127.0.0.1:$metrics" --default-partitions 4 >"$dir/dev.log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$kafka) 2>/dev/null && break; sleep 0.1; done
"$python" - "$kafka" "$records" <<'PY'
import sys, time
from confluent_kafka import Producer
port, n = sys.argv[1], int(sys.argv[2])
p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "compression.type": "lz4",
              "linger.ms": 20, "batch.size": 1000000, "queue.buffering.max.messages": 1000000})
value = b"x" * 60
deadline = time.monotonic() + 120
for i in range(n):
    while True:
        try:
            p.produce("bench", key=b"key-%d" % i, value=value + b"%040d" % i,
                      headers=[("trace", b"%d" % i)])
            break
        except BufferError:
            p.poll(0.05)
    if time.monotonic() > deadline:
        sys.exit("produce took longer than 120 s")
p.flush(60)
PY
row_py='import json, sys
d = json.loads(sys.argv[2])
print("| %s | {:,} | {:.2f} | {:,.0f} |".format(d["records"], d["duration_ms"] / 1000, d["records_per_second"]) % sys.argv[1])'
row() { "$python" -c "$row_py" "$@"; }
common=(--topic bench --catalog "127.0.0.1:$catalog" --data-dir "$dir")
"$bin" replay "${common[@]}" --quiet --output /dev/null   # warm the page cache
echo "| command | records | seconds | records/s |"
echo "| --- | ---: | ---: | ---: |"
for format in jsonl csv parquet; do
  out=$("$bin" replay "${common[@]}" --json --format "$format" --output /dev/null)
  row "strata replay --format $format --output /dev/null" "$out"
done
out=$("$bin" export "${common[@]}" --json --output "$dir/export")
row "strata export --format parquet (one file per partition)" "$out"
