"""Client helpers shared by the tests (confluent-kafka based)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_wire import KafkaConnection

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# Why a librdkafka client may silently send uncompressed batches (rdkafka_feature.c and
# rdkafka_msgset_writer.c): lz4 needs FindCoordinator (api 10) v0 in the broker's ApiVersions;
# zstd needs Produce v7 and Fetch v10; librdkafka <= 2.11 (kcat's 2.0.2) also drops gzip,
# snappy and lz4 unless the advertised Produce range starts at v0.
CODEC_HINT = ("librdkafka compresses only if the broker's ApiVersions allow it: lz4 needs "
              "FindCoordinator v0 advertised; zstd needs Produce v7 + Fetch v10; librdkafka <= 2.11 "
              "(kcat) needs Produce min version 0 for gzip/snappy/lz4")

OP_TIMEOUT_S = 30


def admin(bootstrap: str) -> AdminClient:
    """An AdminClient. Keep a reference until its futures resolve: a collected client fails them."""
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: dict[str, str] | None = None) -> None:
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=OP_TIMEOUT_S, request_timeout=OP_TIMEOUT_S)
    futures[name].result(timeout=OP_TIMEOUT_S)


def topic_partitions(bootstrap: str, name: str) -> int | None:
    """Number of partitions of `name` per Metadata, or None if the topic is absent."""
    md = admin(bootstrap).list_topics(timeout=OP_TIMEOUT_S)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def wait_until(predicate, timeout_s: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def producer(bootstrap: str, **config) -> Producer:
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    return Producer(conf)


@dataclass
class Delivered:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def produce_all(p: Producer, topic: str, messages: list[dict]) -> list[Delivered]:
    """Produce `messages` (kwargs for Producer.produce) and flush; raise on any delivery error.

    Returns the delivery reports in delivery order.
    """
    reports: list[Delivered] = []
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        else:
            reports.append(Delivered(msg.partition(), msg.offset(), msg.key(), msg.value()))

    for m in messages:
        p.produce(topic, on_delivery=on_delivery, **m)
        p.poll(0)
    remaining = p.flush(OP_TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages not delivered within {OP_TIMEOUT_S}s"
    assert not errors, f"delivery errors: {errors}"
    assert len(reports) == len(messages)
    return reports


def consumer(bootstrap: str, **config) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        # These consumers read with assign() and explicit offsets; group.id is required by
        # the client but nothing is committed (test_groups.py covers groups).
        "group.id": "strata-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
    }
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    return Consumer(conf)


def consume_partition(bootstrap: str, topic: str, partition: int, start: int = OFFSET_BEGINNING,
                      expect: int | None = None, timeout_s: float = OP_TIMEOUT_S, **config) -> list:
    """Read from `start` to the end of the partition (partition EOF), or until `expect` messages.

    Returns confluent Message objects in order; fails on any consume error.
    """
    c = consumer(bootstrap, **config)
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if expect is None or len(out) >= expect:
                        return out
                    continue
                raise AssertionError(f"consume error on {topic}[{partition}]: {err}")
            out.append(msg)
            if expect is not None and len(out) >= expect:
                return out
        raise AssertionError(f"timed out reading {topic}[{partition}]: got {len(out)} messages"
                             + (f", expected {expect}" if expect is not None else ""))
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S)
    finally:
        c.close()


def stored_codecs(bootstrap: str, topic: str, partition: int) -> tuple[int, set[int], int]:
    """Raw Fetch of a whole partition: (high watermark, set of batch codec ids, record count).

    Also asserts every stored batch's CRC32C, as Kafka's consumers do.
    """
    with KafkaConnection(bootstrap) as conn:
        hw, batches = conn.fetch_all(topic, partition)
    assert batches, f"fetch of {topic}[{partition}] returned no batches"
    assert all(b.crc_ok for b in batches), "a fetched batch has a bad CRC32C"
    return hw, {b.compression for b in batches}, sum(b.record_count for b in batches)
