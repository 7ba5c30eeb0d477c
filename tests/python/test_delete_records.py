"""DeleteRecords from real admin clients against strata dev.

Goal: Kafka's DeleteRecords semantics as clients see them. Method: produce
numbered records, delete to an offset inside the data with confluent-kafka's
AdminClient.delete_records and kafka-python's KafkaAdminClient.delete_records,
then check the low watermark, the earliest offset, timestamp lookups, and
that consumers reading from the beginning (or from an offset now deleted,
with auto.offset.reset=earliest) start exactly at the new log start.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from helpers import (OP_TIMEOUT_S, admin, consume_partition, consumer, create_topic, produce_all,
                     producer, watermarks)

COUNT = 40
BASE_TS = 1_700_000_000_000


def produce_numbered(bootstrap: str, topic: str) -> None:
    # Five produce rounds of 8 records: several chunks, so the deletion
    # points (13, 21) land inside chunks, not on their boundaries.
    p = producer(bootstrap, linger_ms=0)
    for start in range(0, COUNT, 8):
        produce_all(p, topic, [
            {"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": 0,
             "timestamp": BASE_TS + i}
            for i in range(start, min(start + 8, COUNT))
        ])


def test_confluent_delete_records_moves_the_low_watermark(strata, topic):
    create_topic(strata.bootstrap, topic)
    produce_numbered(strata.bootstrap, topic)
    client = admin(strata.bootstrap)
    futures = client.delete_records([TopicPartition(topic, 0, 13)],
                                    request_timeout=OP_TIMEOUT_S, operation_timeout=OP_TIMEOUT_S)
    (deleted,) = [f.result(timeout=OP_TIMEOUT_S) for f in futures.values()]
    assert deleted.low_watermark == 13
    assert watermarks(strata.bootstrap, topic, 0) == (13, COUNT)

    # From the beginning: the first record is the log start.
    got = consume_partition(strata.bootstrap, topic, 0, start=OFFSET_BEGINNING)
    assert [m.offset() for m in got] == list(range(13, COUNT))
    assert got[0].value() == b"v13"
    # From a deleted offset: OFFSET_OUT_OF_RANGE, reset to the earliest.
    got = consume_partition(strata.bootstrap, topic, 0, start=5, auto_offset_reset="earliest")
    assert got[0].offset() == 13
    # A timestamp lookup never answers below the log start.
    c = consumer(strata.bootstrap)
    try:
        (found,) = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS)], timeout=OP_TIMEOUT_S)
        assert found.offset == 13
        (found,) = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 20)],
                                       timeout=OP_TIMEOUT_S)
        assert found.offset == 20
    finally:
        c.close()

    # Deleting below the log start changes nothing; above the high watermark fails.
    futures = client.delete_records([TopicPartition(topic, 0, 3)],
                                    request_timeout=OP_TIMEOUT_S, operation_timeout=OP_TIMEOUT_S)
    (deleted,) = [f.result(timeout=OP_TIMEOUT_S) for f in futures.values()]
    assert deleted.low_watermark == 13
    futures = client.delete_records([TopicPartition(topic, 0, COUNT + 5)],
                                    request_timeout=OP_TIMEOUT_S, operation_timeout=OP_TIMEOUT_S)
    (future,) = futures.values()
    try:
        future.result(timeout=OP_TIMEOUT_S)
        raise AssertionError("delete_records above the high watermark succeeded")
    except Exception as error:  # noqa: BLE001 - confluent raises KafkaException
        assert "OFFSET_OUT_OF_RANGE" in str(error) or "out of range" in str(error).lower()


def test_kafka_python_delete_records_then_consume_from_beginning(strata, topic):
    create_topic(strata.bootstrap, topic)
    produce_numbered(strata.bootstrap, topic)
    client = KafkaAdminClient(bootstrap_servers=strata.bootstrap,
                              request_timeout_ms=OP_TIMEOUT_S * 1000)
    try:
        result = client.delete_records({KTopicPartition(topic, 0): 21},
                                       timeout_ms=OP_TIMEOUT_S * 1000)
        (info,) = result.values()
        assert info["low_watermark"] == 21
    finally:
        client.close()

    kafka_consumer = KafkaConsumer(bootstrap_servers=strata.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_wait_ms=100, request_timeout_ms=OP_TIMEOUT_S * 1000)
    try:
        tp = KTopicPartition(topic, 0)
        assert kafka_consumer.beginning_offsets([tp])[tp] == 21
        kafka_consumer.assign([tp])
        kafka_consumer.seek_to_beginning(tp)
        out = []
        while len(out) < COUNT - 21:
            batches = kafka_consumer.poll(timeout_ms=1000)
            assert batches or out, "no records from the beginning"
            for records in batches.values():
                out.extend(records)
        assert [r.offset for r in out] == list(range(21, COUNT))
        assert out[0].value == b"v21"
    finally:
        kafka_consumer.close()
