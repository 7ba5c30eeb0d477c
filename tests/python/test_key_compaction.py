"""Key compaction of compacted topics (issue #14) end to end against `strata dev`: keyless
records are refused with INVALID_RECORD; many versions of many keys and tombstones compact to
the latest record per key, which confluent-kafka and kafka-python read from the log start at
the offsets they were written at, and which DuckDB reads straight from the Parquet files."""

from __future__ import annotations

import time

import duckdb
from confluent_kafka import KafkaError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError as KafkaPythonError

from conftest import _own_server, _teardown
from helpers import consume_partition, create_topic, produce_all, producer, wait_until, watermarks
from test_compaction import FAST, metric, metrics, parquet_dir

KEYS = 200
VERSIONS = 10


def compacted_topic(bootstrap: str, topic: str) -> None:
    create_topic(bootstrap, topic, config={
        "cleanup.policy": "compact",
        "strata.compaction.age.ms": "0",
        "min.cleanable.dirty.ratio": "0.01",
    })


def test_keyless_records_are_refused_on_a_compacted_topic(request, tmp_path_factory):
    """Goal: Kafka's rule: a compacted topic refuses a record without a key with
    INVALID_RECORD (87), with confluent-kafka and kafka-python; a keyed record and a keyless
    one on a delete topic are accepted."""
    server = _own_server(request, tmp_path_factory, "keyless", extra_args=FAST)
    request.addfinalizer(lambda: _teardown(server))
    bootstrap = server.bootstrap
    compacted_topic(bootstrap, "table")
    create_topic(bootstrap, "stream")
    errors = []
    p = producer(bootstrap, retries=0)
    p.produce("table", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD, errors[0]
    produce_all(p, "table", [{"key": b"k", "value": b"v"}])
    produce_all(p, "stream", [{"value": b"no key"}])
    assert watermarks(bootstrap, "table", 0) == (0, 1)

    kp = KafkaProducer(bootstrap_servers=bootstrap, retries=0)
    try:
        future = kp.send("table", value=b"no key")
        try:
            future.get(timeout=30)
            raise AssertionError("kafka-python: a keyless record was accepted")
        except KafkaPythonError as e:
            assert getattr(e, "errno", None) == 87, repr(e)
    finally:
        kp.close()


def test_many_versions_compact_to_the_latest_value_per_key(request, tmp_path_factory):
    """Goal: Kafka's guarantees after key compaction, and the Parquet files as a table.
    Method: 200 keys x 10 versions (every 10th key deleted by a final tombstone) in several
    produce rounds, so there are several segments; wait for the compactor until the partition's
    Parquet is key-compacted; then a confluent-kafka and a kafka-python consumer from the log
    start read exactly one record per key, each the one written at that offset (the delivery
    reports give it), in offset order; log start and high watermark are unchanged; DuckDB over
    the compacted files gives the latest value of every key."""
    server = _own_server(request, tmp_path_factory, "key-compaction", extra_args=FAST)
    request.addfinalizer(lambda: _teardown(server))
    bootstrap = server.bootstrap
    topic = "changelog"
    compacted_topic(bootstrap, topic)
    p = producer(bootstrap, linger_ms=5)
    written: dict[int, tuple[bytes, bytes | None]] = {}
    latest: dict[bytes, bytes | None] = {}
    input_bytes = 0
    for version in range(VERSIONS):
        records = []
        for k in range(KEYS):
            key = f"key-{k:04d}".encode()
            final = version == VERSIONS - 1
            value = None if final and k % 10 == 0 else f"{key.decode()}-v{version}".encode() * 4
            records.append({"key": key, "value": value})
            latest[key] = value
            input_bytes += len(key) + len(value or b"")
        for report in produce_all(p, topic, records):
            written[report.offset] = (report.key, report.value)
    total = KEYS * VERSIONS
    assert watermarks(bootstrap, topic, 0) == (0, total)

    directory = parquet_dir(server, topic)

    def compacted() -> bool:
        files = sorted(directory.glob("*.parquet")) if directory.exists() else []
        if not files or not all(f.name.endswith(".compacted.parquet") for f in files):
            return False
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{directory}/*.parquet')").fetchone()
        return rows[0] == KEYS

    started = time.monotonic()
    wait_until(compacted, timeout_s=60, what="the partition key-compacted into Parquet")
    print(f"compacted in {time.monotonic() - started:.1f} s")
    files = sorted(directory.glob("*.compacted.parquet"))
    sizes = [f.stat().st_size for f in files]
    print(f"{len(files)} file(s), {sum(sizes)} bytes for {input_bytes} bytes of keys and values")
    assert len(files) == 1, files
    assert metric(metrics(server.metrics_port), "strata_compactor_key_compaction_files_total") >= 1
    # ListOffsets: log start and high watermark unchanged by compaction.
    assert watermarks(bootstrap, topic, 0) == (0, total)

    def check(read: list[tuple[int, bytes, bytes | None]], client: str) -> None:
        offsets = [offset for offset, _, _ in read]
        assert offsets == sorted(offsets), f"{client}: offsets out of order"
        for offset, key, value in read:
            assert written[offset] == (key, value), f"{client}: offset {offset} changed"
        assert {key: value for _, key, value in read} == latest, f"{client}: final values"
        assert len(read) == KEYS, f"{client}: {len(read)} records, expected one per key"
        # The last record of the partition is kept, so the end is reached.
        assert offsets[-1] == total - 1

    confluent = consume_partition(bootstrap, topic, 0, expect=KEYS)
    check([(m.offset(), m.key(), m.value()) for m in confluent], "confluent-kafka")

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=100,
                             max_partition_fetch_bytes=4096)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        read = []
        deadline = time.monotonic() + 30
        while len(read) < KEYS and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                read.extend((r.offset, r.key, r.value) for r in records)
        check(read, "kafka-python")
        # From an offset inside a hole, the next record that exists comes.
        hole = next(o for o in range(total) if o not in {r[0] for r in read})
        consumer.seek(tp, hole)
        after = []
        while not after and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                after.extend(r.offset for r in records)
        assert after and after[0] == min(o for o, _, _ in read if o > hole)
    finally:
        consumer.close()

    # DuckDB reads the compacted files directly: the latest value per key (tombstones as NULL).
    table = duckdb.sql(
        f"SELECT key, value FROM read_parquet('{directory}/*.compacted.parquet')").fetchall()
    assert {bytes(k): (bytes(v) if v is not None else None) for k, v in table} == latest


def test_compaction_drops_aborted_transactions_and_keeps_committed_ones(request,
                                                                       tmp_path_factory):
    """Goal: transactional data as Kafka's cleaner handles it. Method: a transactional
    confluent-kafka producer commits v1 of 20 keys, aborts v2 of the same keys, commits v3 of
    half of them; once compacted, a read_uncommitted consumer from the log start (which would
    see aborted records if they were still there) reads exactly the committed latest value of
    every key, at the offsets they were written at."""
    server = _own_server(request, tmp_path_factory, "key-compaction-txn", extra_args=FAST)
    request.addfinalizer(lambda: _teardown(server))
    bootstrap = server.bootstrap
    topic = "txn-changelog"
    compacted_topic(bootstrap, topic)
    p = producer(bootstrap, transactional_id="compaction-txn")
    p.init_transactions(30)
    written: dict[int, tuple[bytes, bytes]] = {}
    latest: dict[bytes, bytes] = {}
    for version, keys, commit in [(1, range(20), True), (2, range(20), False),
                                  (3, range(0, 20, 2), True)]:
        p.begin_transaction()
        reports = []
        for k in keys:
            key, value = f"key-{k}".encode(), f"v{version}".encode()
            p.produce(topic, key=key, value=value,
                      on_delivery=lambda err, msg: reports.append((err, msg)))
            if commit:
                latest[key] = value
        p.flush(30)
        assert all(err is None for err, _ in reports)
        if commit:
            p.commit_transaction(30)
            written.update({m.offset(): (m.key(), m.value()) for _, m in reports})
        else:
            p.abort_transaction(30)
    directory = parquet_dir(server, topic)

    def compacted() -> bool:
        files = sorted(directory.glob("*.parquet")) if directory.exists() else []
        if not files or not all(f.name.endswith(".compacted.parquet") for f in files):
            return False
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{directory}/*.parquet')").fetchone()
        return rows[0] == len(latest)

    wait_until(compacted, timeout_s=60, what="aborted and shadowed records compacted away")
    read = consume_partition(bootstrap, topic, 0, expect=len(latest),
                             isolation_level="read_uncommitted")
    got = [(m.offset(), m.key(), m.value()) for m in read]
    assert all(written[offset] == (key, value) for offset, key, value in got), got
    assert {key: value for _, key, value in got} == latest
    assert len(got) == len(latest)
