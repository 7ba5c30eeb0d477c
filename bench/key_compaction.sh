#!/usr/bin/env bash
# Key compaction throughput on one core and the space saved with 10 versions per key
# (BENCHMARKS.md, "Key compaction"). Usage: bench/key_compaction.sh [keys] [value bytes]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
exec cargo run -q -p strata-parquet --example key_compaction_bench \
    --config 'profile.dev.package.strata-parquet.opt-level=3' -- "${1:-100000}" "${2:-200}"
