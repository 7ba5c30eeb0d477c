"""kafka-python 3.x against strata dev: default (idempotent) producer, admin, assign/seek consumer."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from helpers import wait_until
from kafka_wire import KafkaConnection

TIMEOUT_MS = 30_000


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)


def create(bootstrap: str, name: str, partitions: int) -> None:
    client = admin_client(bootstrap)
    try:
        client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                             timeout_ms=TIMEOUT_MS)
    finally:
        client.close()


def assigned_consumer(bootstrap: str) -> KafkaConsumer:
    # No group coordinator in strata yet: group_id=None, manual assign, nothing committed.
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_wait_ms=100,
                         request_timeout_ms=TIMEOUT_MS)


def read(consumer: KafkaConsumer, tp: TopicPartition, count: int, timeout_s: float = 30) -> list:
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out += [r for r in records if r.partition == tp.partition]
    assert len(out) == count, f"read {len(out)} of {count} records from {tp}"
    return out


def test_admin_create_and_delete_topics(strata, new_topic):
    # Goal: KafkaAdminClient creates topics with the asked partition counts and deletes them.
    a, b = new_topic(), new_topic()
    client = admin_client(strata.bootstrap)
    try:
        client.create_topics([NewTopic(a, num_partitions=3, replication_factor=1),
                              NewTopic(b, num_partitions=1, replication_factor=1)],
                             timeout_ms=TIMEOUT_MS)
        topics = {t["name"]: t for t in client.describe_topics([a, b])}
        assert len(topics[a]["partitions"]) == 3
        assert len(topics[b]["partitions"]) == 1
        assert {a, b} <= set(client.list_topics())

        client.delete_topics([a], timeout_ms=TIMEOUT_MS)
        wait_until(lambda: a not in client.list_topics(), what=f"{a} to be deleted")
        assert b in client.list_topics()
    finally:
        client.close()


def test_default_producer_is_idempotent_and_reads_back(strata, topic):
    # Goal: the default 3.x producer (idempotent, acks=all) gets a producer id and stores N records once.
    create(strata.bootstrap, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        assert producer._transaction_manager is not None, "idempotence was disabled"
        futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=1)
                   for i in range(200)]
        producer.flush(timeout=30)
        offsets = [f.get(timeout=30).offset for f in futures]
        producer_id = producer._transaction_manager.producer_id_and_epoch.producer_id
    finally:
        producer.close(timeout=10)
    assert offsets == list(range(200))
    assert producer_id >= 0

    # The stored batches carry the producer id the broker handed out, with sequences from 0.
    with KafkaConnection(strata.bootstrap) as conn:
        hw, batches = conn.fetch_all(topic, 1)
    assert hw == 200
    assert {b.producer_id for b in batches} == {producer_id}
    assert batches[0].base_sequence == 0
    assert sum(b.record_count for b in batches) == 200

    consumer = assigned_consumer(strata.bootstrap)
    try:
        tp = TopicPartition(topic, 1)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = read(consumer, tp, 200)
        assert [(r.offset, r.key, r.value) for r in got] == [
            (i, f"k{i}".encode(), f"v{i}".encode()) for i in range(200)]

        consumer.seek(tp, 150)
        replay = read(consumer, tp, 50)
        assert [r.offset for r in replay] == list(range(150, 200))
        assert replay[0].value == b"v150"
    finally:
        consumer.close()


def test_offset_lookups(strata, topic):
    # Goal: beginning_offsets, end_offsets and offsets_for_times answer exact offsets.
    create(strata.bootstrap, topic, partitions=2)
    base_ts = 1_650_000_000_000
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        for i in range(8):
            producer.send(topic, value=f"m{i}".encode(), partition=0, timestamp_ms=base_ts + i * 100)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    consumer = assigned_consumer(strata.bootstrap)
    try:
        p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        assert consumer.beginning_offsets([p0, p1]) == {p0: 0, p1: 0}
        assert consumer.end_offsets([p0, p1]) == {p0: 8, p1: 0}

        found = consumer.offsets_for_times({p0: base_ts + 350, p1: base_ts})
        assert found[p0].offset == 4
        assert found[p0].timestamp == base_ts + 400
        assert found[p1] is None  # empty partition: nothing at or after the timestamp
        assert consumer.offsets_for_times({p0: base_ts + 10_000})[p0] is None
    finally:
        consumer.close()
