"""The orphan sweep never deletes an object whose commit may still land (issue #11 item 10).

An agent writes a segment object, then commits it; a compactor's orphan sweep deletes objects
the catalog does not know. Were the sweep to judge an object while its commit is still in
flight in the catalog, it would delete the data of a record that is then acknowledged. The
catalog refuses a first commit of an object older than `--max-commit-age-ms`, and the sweep
leaves every unknown object younger than twice that, whatever `--orphan-grace-ms` says.
"""

from __future__ import annotations

import json
import subprocess
import time

import kafka_wire as kw
from conftest import find_strata_bin, free_port, wait_listening
from helpers import create_topic
# `s3_endpoint` is a fixture: importing it here makes pytest use it.
from production import http_get, role_env, s3_endpoint  # noqa: F401
from test_faults import finish, own_cluster, set_catalog_faults, stored_values

MAX_COMMIT_AGE_MS = 3000
REQUEST_TIMED_OUT = 7


def compactor_metric(port: int, name: str) -> int:
    _, body = http_get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no {name} in the compactor's /metrics")


def start_compactor(cluster, log_path) -> tuple[subprocess.Popen, int]:
    """A compactor that passes and sweeps orphans every 100 ms, with no orphan grace of its own."""
    port = free_port()
    argv = [str(find_strata_bin()), "compactor",
            "--catalog", f"http://127.0.0.1:{cluster.catalog.port}",
            "--object-store", f"s3://{cluster.bucket}/data",
            "--s3-endpoint", cluster.endpoint,
            "--metrics-listen", f"127.0.0.1:{port}",
            "--interval-ms", "100",
            "--orphan-grace-ms", "0", "--orphan-sweep-interval-ms", "100"]
    log = open(log_path, "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            env=role_env())
    log.close()
    wait_listening(proc, port, "strata compactor",
                   lambda: log_path.read_text(errors="replace")[-4000:])
    return proc, port


def replayed_values(cluster, topic: str) -> list[bytes]:
    """The topic's records as `strata replay` reads them from the bucket (no agent cache)."""
    out = subprocess.run(
        [str(find_strata_bin()), "replay", "--topic", topic, "--partition", "0",
         "--catalog", f"http://127.0.0.1:{cluster.catalog.port}",
         "--object-store", f"s3://{cluster.bucket}/data", "--s3-endpoint", cluster.endpoint,
         "--quiet", "--binary", "hex"],
        capture_output=True, text=True, timeout=60, env=role_env())
    assert out.returncode == 0, out.stderr
    return [bytes.fromhex(json.loads(line)["value"]) for line in out.stdout.splitlines()]


def test_an_object_whose_commit_is_in_flight_is_never_swept(request, tmp_path, s3_endpoint,
                                                             topic):
    # Goal: a commit held in the catalog (applied late, still within the agent's deadline) is
    # acknowledged, and its object survives a sweep with orphan grace 0 that runs every 100 ms
    # while the commit is held. A commit held past the max commit age is refused instead, and
    # a real orphan is still deleted once it is older than twice the max commit age.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=1,
                          catalog_args=["--fault-injection",
                                        "--max-commit-age-ms", str(MAX_COMMIT_AGE_MS)],
                          agent_args=["--flush-interval-ms", "10"])
    compactor, port = start_compactor(cluster, tmp_path / "compactor.log")
    try:
        agent = cluster.agents[0]
        create_topic(agent.bootstrap, topic)
        with kw.KafkaConnection(agent.bootstrap, timeout=30) as conn:
            set_catalog_faults(cluster.catalog_metrics_port,
                               {"late_apply_ms": 1500, "late_apply_count": 1})
            held = conn.produce(topic, 0, kw.encode_batch([b"a"]), timeout_ms=10_000)
            assert held["error_code"] == 0 and held["base_offset"] == 0, held
            # The sweep ran ~15 times while the commit was held, and left the object alone.
            assert compactor_metric(port, "strata_compactor_orphans_too_young_total") >= 1
            assert compactor_metric(port, "strata_compactor_orphans_deleted_total") == 0

            # Held past the max commit age: refused at apply time, so the agent answers a
            # retriable error and nothing is stored; the client's retry is a new segment.
            set_catalog_faults(cluster.catalog_metrics_port,
                               {"late_apply_ms": MAX_COMMIT_AGE_MS + 1000,
                                "late_apply_count": 1})
            late = conn.produce(topic, 0, kw.encode_batch([b"late"]), timeout_ms=20_000)
            assert late["error_code"] == REQUEST_TIMED_OUT, late
            again = conn.produce(topic, 0, kw.encode_batch([b"b"]), timeout_ms=10_000)
            assert again["error_code"] == 0 and again["base_offset"] == 1, again
        assert stored_values(agent.bootstrap, topic) == [b"a", b"b"]

        # The refused segment is a real orphan: swept once older than twice the max age.
        deadline = time.monotonic() + 4 * MAX_COMMIT_AGE_MS / 1000 + 10
        while compactor_metric(port, "strata_compactor_orphans_deleted_total") < 1:
            assert time.monotonic() < deadline, "the refused segment was never swept"
            time.sleep(0.2)
        # Read from the bucket itself: every acknowledged record's object is still there.
        assert replayed_values(cluster, topic) == [b"a", b"b"]
    finally:
        compactor.terminate()
        compactor.wait(timeout=30)
        finish(cluster)
