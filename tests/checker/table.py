"""Prints RELIABILITY.md table rows from the verdicts of checker runs:

    python3 tests/checker/table.py /tmp/strata-checker-runs/*/verdict.json
"""

from __future__ import annotations

import json
import re
import sys


def row(path: str) -> str:
    v = json.load(open(path))
    s = v["stats"]
    anomalies = ", ".join(f"{k} {n}" for k, n in v["anomaly_counts"].items()) or "0"
    faults = ",".join(v["faults"]) or "none"
    if v.get("skip"):
        faults += f" (skip {','.join(v['skip'])})"
    command = re.sub(r" --out \S+", "", v["command"])
    return (f"| `{command}` | {v['seed']} | {v['seconds']:.0f} s | {faults} "
            f"| {s['faults']} | {s['sends_ok']} | {s['sends_info']} | {s['commits_ok']} "
            f"| {anomalies} | {s['max_recovery_after_heal_s']} s "
            f"| {s['longest_without_progress_s']} s |")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(row(p))
