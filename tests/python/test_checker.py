"""A short run of the Jepsen-style checker (tests/checker/run) as part of CI.

Goal: under a fixed, seeded mix of kill -9, SIGSTOP/SIGCONT and black-holed links (agents,
catalog, PostgreSQL, S3, compactor), the real cluster (moto S3, PostgreSQL, catalog, two
agents, compactor) loses, duplicates and reorders nothing, keeps offsets dense and committed
group offsets monotonic, and every client recovers after the heal. Method: run the command
the way a developer does and assert its verdict; the history stays in the test's tmp dir
(and its path is in the failure message) for a post-mortem. The longer runs are recorded in
RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import find_strata_bin
from production import _moto_server_binary

RUN = Path(__file__).resolve().parents[1] / "checker" / "run"


@pytest.mark.timeout(420)
def test_a_short_fault_mix_gives_a_valid_history(tmp_path):
    binary = find_strata_bin()
    moto = _moto_server_binary()
    if moto is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("moto_server not found (STRATA_MOTO_SERVER)", pytrace=False)
        pytest.skip("moto_server not found")
    env = {**os.environ, "STRATA_BIN": str(binary), "STRATA_MOTO_SERVER": moto}
    out = tmp_path / "checker"
    # Its own session, so that a run that overstays is stopped with its whole cluster
    # (SIGTERM: the runner tears the cluster down; then SIGKILL of what is left).
    proc = subprocess.Popen([sys.executable, str(RUN), "--minutes", "1.5",
                             "--faults", "kill,pause,partition", "--seed", "11",
                             "--recovery-seconds", "30", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=360)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail(f"the checker did not finish within 360 s (history "
                    f"{out / 'history.jsonl'}):\n{stdout}\n{stderr[-4000:]}", pytrace=False)
    run = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    verdict_path = out / "verdict.json"
    assert verdict_path.is_file(), f"no verdict\n{run.stdout}\n{run.stderr[-4000:]}"
    verdict = json.loads(verdict_path.read_text())
    assert run.returncode == 0 and verdict["valid"], (
        f"checker verdict INVALID (history {out / 'history.jsonl'}):\n{run.stdout}\n"
        f"{json.dumps(verdict['anomalies'], indent=1)[:4000]}")
    stats = verdict["stats"]
    # The run did real work through real faults.
    assert stats["faults"] >= 3, stats
    assert stats["sends_ok"] >= 1000, stats
    assert stats["commits_ok"] >= 10, stats
    assert stats["incomplete_final_reads"] == 0, stats
    assert stats["max_recovery_after_final_heal_s"] <= 30, stats
