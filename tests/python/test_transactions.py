"""Exactly-once transactions with confluent-kafka (librdkafka) against strata dev.

The catalog is the transaction coordinator; EndTxn appends COMMIT/ABORT markers (one offset
each); READ_COMMITTED consumers read below the last stable offset and drop aborted records.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from helpers import (
    OP_TIMEOUT_S,
    consume_partition,
    consumer,
    create_topic,
    producer,
    wait_until,
)


def txn_producer(bootstrap: str, transactional_id: str, **config):
    p = producer(bootstrap, transactional_id=transactional_id, **config)
    p.init_transactions(OP_TIMEOUT_S)
    return p


def produce_in_txn(p, topic: str, values: list[bytes], partition: int = 0) -> None:
    for value in values:
        p.produce(topic, value=value, partition=partition)
    assert p.flush(OP_TIMEOUT_S) == 0


def read(bootstrap: str, topic: str, isolation: str, partition: int = 0) -> list:
    return consume_partition(bootstrap, topic, partition, isolation_level=isolation)


def values(messages) -> list[bytes]:
    return [m.value() for m in messages]


def end_offset(bootstrap: str, topic: str, isolation: str, partition: int = 0) -> int:
    """ListOffsets latest: the last stable offset for read_committed, else the high
    watermark."""
    c = consumer(bootstrap, isolation_level=isolation)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S)[1]
    finally:
        c.close()


def committed_high(bootstrap: str, topic: str, partition: int = 0) -> int:
    return end_offset(bootstrap, topic, "read_committed", partition)


def high_watermark(bootstrap: str, topic: str, partition: int = 0) -> int:
    return end_offset(bootstrap, topic, "read_uncommitted", partition)


def tid() -> str:
    return f"txn-{uuid.uuid4().hex[:10]}"


def test_committed_transaction_reads_without_markers(strata, topic):
    # Goal: a committed transaction's records are visible to READ_COMMITTED, the COMMIT
    # marker takes one offset but is never delivered as a record. Method: commit 5 records
    # across two partitions; read both partitions read_committed and read_uncommitted.
    bs = strata.bootstrap
    create_topic(bs, topic, partitions=2)
    p = txn_producer(bs, tid())
    p.begin_transaction()
    produce_in_txn(p, topic, [b"a0", b"a1", b"a2"], partition=0)
    produce_in_txn(p, topic, [b"b0", b"b1"], partition=1)
    p.commit_transaction(OP_TIMEOUT_S)

    got = read(bs, topic, "read_committed")
    assert values(got) == [b"a0", b"a1", b"a2"]
    assert [m.offset() for m in got] == [0, 1, 2]
    assert values(read(bs, topic, "read_committed", partition=1)) == [b"b0", b"b1"]
    assert values(read(bs, topic, "read_uncommitted")) == [b"a0", b"a1", b"a2"]
    # The marker took offset 3: both views end after it.
    assert high_watermark(bs, topic) == 4
    assert committed_high(bs, topic) == 4


def test_aborted_transaction_is_hidden_from_read_committed(strata, topic):
    # Goal: an aborted transaction's records are dropped by READ_COMMITTED consumers (the
    # Fetch lists the aborted transaction) and still visible to READ_UNCOMMITTED ones.
    # Method: commit, abort, commit again; compare both isolation levels.
    bs = strata.bootstrap
    create_topic(bs, topic)
    p = txn_producer(bs, tid())
    p.begin_transaction()
    produce_in_txn(p, topic, [b"c1", b"c2"])
    p.commit_transaction(OP_TIMEOUT_S)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"x1", b"x2", b"x3"])
    p.abort_transaction(OP_TIMEOUT_S)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"c3"])
    p.commit_transaction(OP_TIMEOUT_S)

    assert values(read(bs, topic, "read_committed")) == [b"c1", b"c2", b"c3"]
    assert values(read(bs, topic, "read_uncommitted")) == [b"c1", b"c2", b"x1", b"x2", b"x3",
                                                           b"c3"]
    # 6 records and 3 markers.
    assert high_watermark(bs, topic) == 9


def test_open_transaction_holds_the_last_stable_offset(strata, topic):
    # Goal: while a transaction is open, READ_COMMITTED readers stop at its first offset (the
    # LSO), even for non-transactional records written after it; the commit releases them.
    # Method: plain record, open transaction, another plain record; check ListOffsets and
    # what read_committed reads (to partition EOF, i.e. the LSO); commit and read again.
    bs = strata.bootstrap
    create_topic(bs, topic)
    plain = producer(bs)
    plain.produce(topic, value=b"before", partition=0)
    assert plain.flush(OP_TIMEOUT_S) == 0
    p = txn_producer(bs, tid())
    p.begin_transaction()
    produce_in_txn(p, topic, [b"t1", b"t2"])
    plain.produce(topic, value=b"after", partition=0)
    assert plain.flush(OP_TIMEOUT_S) == 0

    assert high_watermark(bs, topic) == 4
    assert committed_high(bs, topic) == 1
    assert values(read(bs, topic, "read_committed")) == [b"before"]

    p.commit_transaction(OP_TIMEOUT_S)
    assert committed_high(bs, topic) == 5
    assert values(read(bs, topic, "read_committed")) == [b"before", b"t1", b"t2", b"after"]


def test_long_poll_wakes_on_commit(strata, topic):
    # Goal: a READ_COMMITTED consumer waiting at the LSO receives the records as soon as the
    # transaction commits (the marker's commit event wakes the fetch).
    bs = strata.bootstrap
    create_topic(bs, topic)
    p = txn_producer(bs, tid())
    p.begin_transaction()
    produce_in_txn(p, topic, [b"late"])
    c = consumer(bs, isolation_level="read_committed", fetch_wait_max_ms=5000)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msg = c.poll(OP_TIMEOUT_S)
        assert msg is not None and msg.error() is not None
        assert msg.error().code() == KafkaError._PARTITION_EOF and msg.offset() == 0
        p.commit_transaction(OP_TIMEOUT_S)
        msg = c.poll(OP_TIMEOUT_S)
        assert msg is not None and msg.error() is None, msg and msg.error()
        assert msg.value() == b"late"
    finally:
        c.close()


def test_consume_transform_produce_commits_offsets_atomically(strata, new_topic):
    # Goal: send_offsets_to_transaction (AddOffsetsToTxn + TxnOffsetCommit) commits the
    # group's offsets with the output records, and an abort commits neither.
    # Method: copy 4 input records to an output topic in one transaction with the offsets;
    # then consume 2 more and abort; check the group's committed offset and the output.
    bs = strata.bootstrap
    source, sink = new_topic(), new_topic()
    create_topic(bs, source)
    create_topic(bs, sink)
    plain = producer(bs)
    for i in range(6):
        plain.produce(source, value=f"in{i}".encode(), partition=0)
    assert plain.flush(OP_TIMEOUT_S) == 0
    group = f"eos-{uuid.uuid4().hex[:8]}"
    c = Consumer({
        "bootstrap.servers": bs,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    p = txn_producer(bs, tid())
    try:
        c.assign([TopicPartition(source, 0, OFFSET_BEGINNING)])

        def copy(count: int) -> None:
            p.begin_transaction()
            taken = 0
            while taken < count:
                msg = c.poll(OP_TIMEOUT_S)
                assert msg is not None, "input record expected"
                if msg.error():
                    continue
                p.produce(sink, value=msg.value().upper(), partition=0)
                taken += 1
            p.send_offsets_to_transaction(c.position(c.assignment()),
                                          c.consumer_group_metadata(), OP_TIMEOUT_S)

        copy(4)
        p.commit_transaction(OP_TIMEOUT_S)
        committed = c.committed([TopicPartition(source, 0)], timeout=OP_TIMEOUT_S)
        assert committed[0].offset == 4
        copy(2)
        p.abort_transaction(OP_TIMEOUT_S)
        committed = c.committed([TopicPartition(source, 0)], timeout=OP_TIMEOUT_S)
        assert committed[0].offset == 4, "an aborted transaction commits no offsets"
    finally:
        c.close()
    assert values(read(bs, sink, "read_committed")) == [b"IN0", b"IN1", b"IN2", b"IN3"]


def test_second_instance_fences_the_first(strata, topic):
    # Goal: InitProducerId of a second producer with the same transactional.id aborts the
    # first one's open transaction and fences it (PRODUCER_FENCED: fatal for the first).
    bs = strata.bootstrap
    create_topic(bs, topic)
    transactional_id = tid()
    first = txn_producer(bs, transactional_id)
    first.begin_transaction()
    produce_in_txn(first, topic, [b"zombie"])
    second = txn_producer(bs, transactional_id)
    with pytest.raises(KafkaException) as fenced:
        first.commit_transaction(OP_TIMEOUT_S)
    error = fenced.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH), error
    second.begin_transaction()
    produce_in_txn(second, topic, [b"winner"])
    second.commit_transaction(OP_TIMEOUT_S)
    assert values(read(bs, topic, "read_committed")) == [b"winner"]
    assert values(read(bs, topic, "read_uncommitted")) == [b"zombie", b"winner"]


def test_transaction_timeout_aborts(strata, topic):
    # Goal: the catalog aborts a transaction open longer than transaction.timeout.ms, so its
    # records never become visible to READ_COMMITTED and the producer cannot commit it.
    # Method: 1 s timeout; wait until ListOffsets read_committed reaches the high watermark
    # (the ABORT marker was appended), then try to commit.
    bs = strata.bootstrap
    create_topic(bs, topic)
    p = txn_producer(bs, tid(), transaction_timeout_ms=1000)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"slow1", b"slow2"])
    wait_until(lambda: committed_high(bs, topic) == 3 and high_watermark(bs, topic) == 3,
               timeout_s=20, what="the timed-out transaction's ABORT marker")
    with pytest.raises(KafkaException):
        p.commit_transaction(OP_TIMEOUT_S)
    assert values(read(bs, topic, "read_committed")) == []
    assert values(read(bs, topic, "read_uncommitted")) == [b"slow1", b"slow2"]


def test_kill9_mid_transaction_then_new_instance_aborts_it(fresh_strata, topic):
    # Goal: a transaction left open by a kill -9 of `strata dev` is aborted by the next
    # producer instance with the same transactional.id (InitProducerId), so none of it is
    # ever visible to READ_COMMITTED. Method: produce (acknowledged, so committed to the
    # catalog) in an open transaction, kill -9, restart, init a new instance, read.
    bs = fresh_strata.bootstrap
    create_topic(bs, topic)
    transactional_id = tid()
    p = txn_producer(bs, transactional_id)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"lost1", b"lost2", b"lost3"])
    fresh_strata.kill9()
    fresh_strata.start()
    assert committed_high(bs, topic) == 0, "the open transaction survives the restart"
    successor = txn_producer(bs, transactional_id)
    assert committed_high(bs, topic) == 4
    successor.begin_transaction()
    produce_in_txn(successor, topic, [b"kept"])
    successor.commit_transaction(OP_TIMEOUT_S)
    assert values(read(bs, topic, "read_committed")) == [b"kept"]
    assert high_watermark(bs, topic) == 6


def test_kafka_python_commit_and_abort(strata, topic):
    # Goal: kafka-python's transactional producer (its own protocol code, not librdkafka's)
    # commits and aborts, and its READ_COMMITTED consumer drops the aborted records.
    from kafka import KafkaConsumer, KafkaProducer

    bs = strata.bootstrap
    create_topic(bs, topic)
    p = KafkaProducer(bootstrap_servers=bs, transactional_id=tid())
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, value=b"kept", partition=0)
        p.commit_transaction()
        p.begin_transaction()
        p.send(topic, value=b"dropped", partition=0)
        p.abort_transaction()
        p.begin_transaction()
        p.send(topic, value=b"after", partition=0)
        p.commit_transaction()
    finally:
        p.close()
    c = KafkaConsumer(bootstrap_servers=bs, isolation_level="read_committed",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=3000)
    try:
        from kafka import TopicPartition as KafkaTopicPartition

        tp = KafkaTopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        polls = 60
        while polls and len(got) < 2:
            polls -= 1
            for records in c.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
        assert got == [b"kept", b"after"]
    finally:
        c.close()
