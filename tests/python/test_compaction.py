"""The compactor end to end: `strata dev` (and a separate `strata compactor`) rewrite what
confluent-kafka produced, with every codec, as Parquet that DuckDB and pyarrow read, while a
consumer from offset 0 still gets exactly what it got before; retention moves the log start
and deletes objects; kill -9 of the compactor mid-run harms nobody and a restart finishes."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import _own_server, _teardown, find_strata_bin, free_port, wait_listening
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from helpers import (CODEC_HINT, CODEC_IDS, OP_TIMEOUT_S, admin, consume_partition, create_topic,
                     produce_all, producer, stored_codecs, wait_until, watermarks)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 300
FAST = [
    "--compaction-interval-ms", "200", "--compaction-gc-grace-ms", "0",
    "--retention-check-interval-ms", "200",
]


def dataset(codec: str, count: int = PER_CODEC, value_bytes: int = 0) -> list[dict]:
    """Keys (some null), values (some null: tombstones; else a number, padded), headers."""
    out = []
    for i in range(count):
        n = CODECS.index(codec) * 100_000 + i if codec in CODECS else i
        key = None if i % 7 == 0 else f"{codec}-key-{i % 13}".encode()
        value = None if i % 11 == 0 else (str(n).encode() + b" " * value_bytes)
        headers = [("codec", codec.encode()), ("i", str(i).encode())]
        if i % 5 == 0:
            headers.append(("dup", b"1"))
            headers.append(("dup", None))
        out.append({"key": key, "value": value, "headers": headers})
    return out


def set_compaction_age(bootstrap: str, topic: str, ms: str) -> None:
    client = admin(bootstrap)
    entry = ConfigEntry("strata.compaction.age.ms", ms,
                        incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for future in client.incremental_alter_configs([resource]).values():
        future.result(timeout=OP_TIMEOUT_S)


def produce_every_codec(bootstrap: str, topic: str) -> None:
    for codec in CODECS:
        p = producer(bootstrap, compression_type=codec, linger_ms=20)
        produce_all(p, topic, dataset(codec))


def capture(bootstrap: str, topic: str, expect: int) -> list[tuple]:
    msgs = consume_partition(bootstrap, topic, 0, expect=expect)
    return [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()) for m in msgs]


def parquet_dir(server, topic: str) -> Path:
    return server.data_dir / "objects" / "parquet" / topic / "0"


def segment_files(server) -> list[Path]:
    return sorted((server.data_dir / "objects" / "segments").rglob("*.seg"))


def parquet_rows(directory: Path) -> int:
    files = sorted(directory.glob("*.parquet")) if directory.exists() else []
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def value_sum(rows: list[tuple]) -> int:
    return sum(int(v.decode().strip()) for (_, _, v, _, _) in rows if v is not None)


def test_compacted_data_reads_the_same_through_kafka_duckdb_and_pyarrow(request,
                                                                      tmp_path_factory):
    server = _own_server(request, tmp_path_factory, "compaction", extra_args=FAST)
    request.addfinalizer(lambda: _teardown(server))
    bootstrap, topic = server.bootstrap, "compacted"
    # Compaction waits until the codecs are checked in the segments.
    create_topic(bootstrap, topic, config={"strata.compaction.age.ms": "3600000"})
    produce_every_codec(bootstrap, topic)
    total = PER_CODEC * len(CODECS)
    before = capture(bootstrap, topic, total)
    assert [row[0] for row in before] == list(range(total))
    _, codecs, records = stored_codecs(bootstrap, topic, 0)
    assert codecs == set(CODEC_IDS.values()) and records == total, CODEC_HINT
    set_compaction_age(bootstrap, topic, "0")

    directory = parquet_dir(server, topic)
    wait_until(lambda: parquet_rows(directory) == total and not segment_files(server),
               timeout_s=60, what="every record in Parquet and the segments collected")
    text = metrics(server.metrics_port)
    assert metric(text, "strata_compactor_swaps_total") >= 1
    assert metric(text, "strata_compactor_rows_total") >= total
    assert metric(text, "strata_compactor_gc_deleted_objects_total") >= 1

    # (a) DuckDB and pyarrow read the files directly.
    expected_values = value_sum(before)
    glob = str(directory / "*.parquet")
    count, low, high, values, nulls = duckdb.sql(
        f"""SELECT count(*), min("offset"), max("offset"),
                   sum(CAST(trim(decode(value)) AS BIGINT)), count(*) - count(value)
            FROM read_parquet('{glob}')""").fetchone()
    assert (count, low, high) == (total, 0, total - 1)
    assert values == expected_values
    assert nulls == sum(1 for row in before if row[2] is None)
    table = pq.read_table(str(directory))
    offsets = table.column("offset").to_pylist()
    assert sorted(offsets) == list(range(total))
    arrow_values = sum(int(v.decode().strip()) for v in table.column("value").to_pylist()
                       if v is not None)
    assert arrow_values == expected_values
    by_offset = dict(zip(offsets, table.column("key").to_pylist()))
    assert all(by_offset[o] == k for (o, k, _, _, _) in before)

    # (b) A consumer from offset 0 cannot tell the difference.
    after = capture(bootstrap, topic, total)
    assert after == before
    assert metric(metrics(server.metrics_port), "strata_fetch_tier_bytes_total") > 0


def test_retention_by_time_and_size_moves_the_log_start_and_removes_objects(request,
                                                                          tmp_path_factory):
    server = _own_server(request, tmp_path_factory, "retention", extra_args=FAST)
    request.addfinalizer(lambda: _teardown(server))
    bootstrap = server.bootstrap

    timed = "timed"
    create_topic(bootstrap, timed, config={"retention.ms": "3600000"})
    old_ms = int(time.time() * 1000) - 2 * 3_600_000
    p = producer(bootstrap)
    produce_all(p, timed, [{"value": b"old", "timestamp": old_ms + i} for i in range(50)])
    segments_with_old = len(segment_files(server))
    produce_all(p, timed, [{"value": b"new"} for _ in range(20)])
    wait_until(lambda: watermarks(bootstrap, timed, 0) == (50, 70), timeout_s=30,
               what="retention.ms moving the log start past the old records")
    wait_until(lambda: len(segment_files(server)) < segments_with_old + 1, timeout_s=30,
               what="the expired segments deleted")
    rest = consume_partition(bootstrap, timed, 0, expect=20)
    assert [m.offset() for m in rest] == list(range(50, 70))

    sized = "sized"
    create_topic(bootstrap, sized, config={"retention.bytes": "20000"})
    before = len(segment_files(server))
    for _ in range(10):
        # One flush (one segment, ~5 KB) per batch of records.
        produce_all(p, sized, [{"value": b"x" * 1000} for _ in range(5)])
    low, high = wait_until(lambda: (lambda w: w if w[0] > 0 else None)(
        watermarks(bootstrap, sized, 0)), timeout_s=30, what="retention.bytes moving the log start")
    assert high == 50 and 0 < low < high
    assert len(consume_partition(bootstrap, sized, 0, expect=high - low)) == high - low
    wait_until(lambda: len(segment_files(server)) < before + 10, timeout_s=30,
               what="segments past retention.bytes deleted")


def test_retention_never_empties_a_compact_only_topic(request, tmp_path_factory):
    """Goal: retention applies only where `cleanup.policy` includes `delete` (Kafka's rule).
    Method: 100 keys with day-old timestamps into a compact-only topic and, as the control
    that proves retention checks ran, into a `compact,delete` topic, both with retention.ms
    60 s; once the control is trimmed and two more compactor passes have run, the compact-only
    topic still serves all 100 latest values from offset 0."""
    server = _own_server(request, tmp_path_factory, "compact-retention", extra_args=FAST)
    request.addfinalizer(lambda: _teardown(server))
    bootstrap = server.bootstrap
    day_old_ms = int(time.time() * 1000) - 86_400_000
    records = [{"key": f"key-{i}".encode(), "value": f"latest-{i}".encode(),
                "timestamp": day_old_ms + i} for i in range(100)]
    p = producer(bootstrap)
    for topic, policy in [("compact-only", "compact"), ("compact-delete", "compact,delete")]:
        create_topic(bootstrap, topic, config={"cleanup.policy": policy, "retention.ms": "60000"})
        produce_all(p, topic, records)
    wait_until(lambda: watermarks(bootstrap, "compact-delete", 0) == (100, 100), timeout_s=30,
               what="retention trimming the compact,delete control topic")
    passes = metric(metrics(server.metrics_port), "strata_compactor_passes_total")
    wait_until(lambda: metric(metrics(server.metrics_port), "strata_compactor_passes_total")
               >= passes + 2, timeout_s=30, what="two more compactor passes")
    assert watermarks(bootstrap, "compact-only", 0) == (0, 100)
    kept = consume_partition(bootstrap, "compact-only", 0, expect=100)
    assert [(m.key(), m.value()) for m in kept] == [(r["key"], r["value"]) for r in records]


def start_compactor(server, log_path: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [str(find_strata_bin()), "compactor",
            "--catalog", f"http://127.0.0.1:{server.catalog_port}",
            "--object-store", f"file://{server.data_dir.resolve() / 'objects'}",
            "--metrics-listen", f"127.0.0.1:{port}",
            "--interval-ms", "200", "--gc-grace-ms", "0",
            # A killed compactor's claim expires soon, so its successor starts soon.
            "--claim-lease-ms", "2000", *extra]
    log = open(log_path, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    wait_listening(proc, port, "strata compactor",
                   lambda: log_path.read_text(errors="replace")[-4000:])
    return proc, port


def test_kill9_of_the_compactor_mid_run_harms_no_reader_and_a_restart_finishes(
        request, tmp_path_factory):
    server = _own_server(request, tmp_path_factory, "kill-compactor",
                         extra_args=["--compaction", "false"])
    request.addfinalizer(lambda: _teardown(server))
    bootstrap, topic = server.bootstrap, "big"
    create_topic(bootstrap, topic, config={"strata.compaction.age.ms": "0"})
    # ~24 MB in many segments: a dozen files of 2 MiB input each.
    p = producer(bootstrap, compression_type="none")
    for batch in range(8):
        produce_all(p, topic, dataset(f"b{batch}", count=300, value_bytes=10_000))
    total = 8 * 300
    before = capture(bootstrap, topic, total)
    log_path = server.log_path.with_name("compactor.log")

    proc, port = start_compactor(server, log_path, "--target-file-bytes", "2097152")
    try:
        wait_until(lambda: metric(metrics(port), "strata_compactor_files_written_total") >= 1,
                   timeout_s=60, what="the first Parquet file")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=OP_TIMEOUT_S)
    assert capture(bootstrap, topic, total) == before, "readers unaffected by the kill"

    # The restart redoes what was left; the sweep (grace 0: nothing is producing) removes
    # any file the killed compactor uploaded but never swapped in.
    proc, port = start_compactor(server, log_path, "--target-file-bytes", "2097152",
                                 "--orphan-grace-ms", "0", "--orphan-sweep-interval-ms", "200")
    try:
        directory = parquet_dir(server, topic)
        wait_until(lambda: parquet_rows(directory) == total and not segment_files(server),
                   timeout_s=120, what="the restarted compactor finishing the work")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=OP_TIMEOUT_S) == 0
    assert capture(bootstrap, topic, total) == before
