#!/usr/bin/env bash
# Produce and consume MiB/s over PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-512) in one run:
# one `strata dev` with three listeners (certificates generated here with openssl), the
# same throughput scenario of bench/produce_consume.py against each, interleaved.
#
#   bench/security.sh [--skip-build] [--mb MiB] [--repeats N] [--out DIR]
#
# STRATA_BIN overrides the binary (default: a release build in $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
VENV="${STRATA_VENV:-$HOME/.cache/strata-venv}"
BUILD=1 MB=512 REPEATS=2 OUT=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --skip-build) BUILD=0 ;;
    --mb) MB=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--skip-build] [--mb MiB] [--repeats N] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
if [[ $BUILD == 1 && -z ${STRATA_BIN:-} ]]; then
    cargo build --locked --release -p strata
fi
BIN=${STRATA_BIN:-$CARGO_TARGET_DIR/release/strata}
OUT=${OUT:-$(mktemp -d /tmp/strata-bench-security.XXXXXX)}
mkdir -p "$OUT/certs" "$OUT/results"
free_port() { "$VENV/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

cd "$OUT/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
cd - >/dev/null

P_PLAIN=$(free_port) P_SSL=$(free_port) P_SASL=$(free_port) P_CAT=$(free_port) P_MET=$(free_port)
LISTENERS="PLAINTEXT://127.0.0.1:$P_PLAIN,SSL://127.0.0.1:$P_SSL,SASL_SSL://127.0.0.1:$P_SASL"
"$BIN" dev --data-dir "$OUT/data" --listen "127.0.0.1:$P_PLAIN" --catalog-listen "127.0.0.1:$P_CAT" \
    --metrics-listen "127.0.0.1:$P_MET" --compaction false \
    --listeners "$LISTENERS" --advertised-listeners "$LISTENERS" \
    --ssl-cert-file "$OUT/certs/server.pem" --ssl-key-file "$OUT/certs/server.key" \
    >"$OUT/strata.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/$P_SASL) 2>/dev/null && break
    sleep 0.1
done
echo bench-password | "$BIN" user create bench --password-stdin --catalog "http://127.0.0.1:$P_CAT" >/dev/null

run() { # name port client-config...
    local name=$1 port=$2 i=$3
    shift 3
    local conf=()
    for kv in "$@"; do conf+=(--client-config "$kv"); done
    "$VENV/bin/python" bench/produce_consume.py throughput --bootstrap "127.0.0.1:$port" \
        --metrics-url "http://127.0.0.1:$P_MET/metrics" --pid "$PID" --mb "$MB" \
        --topic "bench-$name-$i" --out "$OUT/results/$name-$i.json" "${conf[@]}" >/dev/null
}
for i in $(seq "$REPEATS"); do
    run plaintext "$P_PLAIN" "$i"
    run ssl "$P_SSL" "$i" security.protocol=SSL "ssl.ca.location=$OUT/certs/ca.pem"
    run sasl_ssl "$P_SASL" "$i" security.protocol=SASL_SSL "ssl.ca.location=$OUT/certs/ca.pem" \
        sasl.mechanism=SCRAM-SHA-512 sasl.username=bench sasl.password=bench-password
done

"$VENV/bin/python" - "$OUT/results" <<'PY'
import json, statistics, sys
from pathlib import Path
rows = {}
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    name = f.stem.rsplit("-", 1)[0]
    rows.setdefault(name, []).append((r["produce"]["mib_per_s"], r["consume"]["mib_per_s"]))
print("| listener | produce MiB/s (median) | consume MiB/s (median) | runs |")
print("| --- | --- | --- | --- |")
for name in ("plaintext", "ssl", "sasl_ssl"):
    runs = rows.get(name, [])
    if runs:
        p = statistics.median(x[0] for x in runs)
        c = statistics.median(x[1] for x in runs)
        print(f"| {name.upper()} | {p:.0f} | {c:.0f} | {len(runs)} |")
PY
echo "results and logs: $OUT" >&2
