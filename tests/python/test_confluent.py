"""confluent-kafka (librdkafka 2.16) against strata dev: admin, produce, consume, durability."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from helpers import (
    CODEC_HINT,
    CODEC_IDS,
    OP_TIMEOUT_S,
    admin,
    consume_partition,
    consumer,
    create_topic,
    produce_all,
    producer,
    stored_codecs,
    topic_partitions,
    wait_until,
    watermarks,
)

# --------------------------------------------------------------------------------------------
# Admin


def test_create_list_delete_topics(strata, new_topic):
    # Goal: CreateTopics makes topics visible with their partition counts; DeleteTopics removes one.
    a, b = new_topic(), new_topic()
    create_topic(strata.bootstrap, a, partitions=3)
    create_topic(strata.bootstrap, b, partitions=1)

    assert topic_partitions(strata.bootstrap, a) == 3
    assert topic_partitions(strata.bootstrap, b) == 1

    client = admin(strata.bootstrap)
    client.delete_topics([a], operation_timeout=OP_TIMEOUT_S)[a].result(timeout=OP_TIMEOUT_S)
    wait_until(lambda: topic_partitions(strata.bootstrap, a) is None, what=f"{a} to disappear")
    assert topic_partitions(strata.bootstrap, b) == 1


def test_create_existing_topic_fails(strata, topic):
    # Goal: creating a topic twice answers TOPIC_ALREADY_EXISTS and leaves the first intact.
    create_topic(strata.bootstrap, topic, partitions=2)
    client = admin(strata.bootstrap)
    fut = client.create_topics([NewTopic(topic, 5, 1)])[topic]
    with pytest.raises(Exception) as excinfo:
        fut.result(timeout=OP_TIMEOUT_S)
    assert excinfo.value.args[0].name() == "TOPIC_ALREADY_EXISTS", excinfo.value
    assert topic_partitions(strata.bootstrap, topic) == 2


def test_create_partitions_then_produce_to_new_partition(strata, topic):
    # Goal: CreatePartitions grows a topic from 3 to 5 partitions and the new ones accept data.
    create_topic(strata.bootstrap, topic, partitions=3)
    client = admin(strata.bootstrap)
    client.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=OP_TIMEOUT_S)
    wait_until(lambda: topic_partitions(strata.bootstrap, topic) == 5, what="5 partitions")

    reports = produce_all(producer(strata.bootstrap), topic,
                          [{"value": b"in p4", "partition": 4}])
    assert (reports[0].partition, reports[0].offset) == (4, 0)
    got = consume_partition(strata.bootstrap, topic, 4)
    assert [m.value() for m in got] == [b"in p4"]


def test_describe_and_incremental_alter_configs(strata, topic):
    # Goal: IncrementalAlterConfigs SET/DELETE on a topic is visible through DescribeConfigs.
    create_topic(strata.bootstrap, topic, config={"retention.ms": "86400000"})
    client = admin(strata.bootstrap)

    def describe() -> dict:
        res = ConfigResource(ResourceType.TOPIC, topic)
        return client.describe_configs([res])[res].result(timeout=OP_TIMEOUT_S)

    before = describe()
    assert before["retention.ms"].value == "86400000"
    assert before["max.message.bytes"].value == "1048588"
    assert before["cleanup.policy"].value == "delete"

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2097152", incremental_operation=AlterConfigOpType.SET),
    ])
    client.incremental_alter_configs([res])[res].result(timeout=OP_TIMEOUT_S)
    after = describe()
    assert after["retention.ms"].value == "3600000"
    assert after["max.message.bytes"].value == "2097152"
    assert not after["retention.ms"].is_default

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "", incremental_operation=AlterConfigOpType.DELETE),
    ])
    client.incremental_alter_configs([res])[res].result(timeout=OP_TIMEOUT_S)
    reset = describe()
    assert reset["max.message.bytes"].value == "1048588"
    assert reset["retention.ms"].value == "3600000"


def test_describe_cluster(strata):
    # Goal: DescribeCluster names exactly the one advertised broker and a controller.
    client = admin(strata.bootstrap)
    desc = client.describe_cluster().result(timeout=OP_TIMEOUT_S)
    assert [(n.host, n.port) for n in desc.nodes] == [("127.0.0.1", strata.port)]
    assert desc.controller is not None
    assert desc.cluster_id


# --------------------------------------------------------------------------------------------
# Produce / consume


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_levels_round_trip(strata, topic, acks):
    # Goal: every acks level stores all records, in order, at offsets 0..n-1.
    create_topic(strata.bootstrap, topic)
    values = [f"acks={acks} #{i}".encode() for i in range(100)]

    reports = produce_all(producer(strata.bootstrap, acks=acks), topic,
                          [{"value": v, "partition": 0} for v in values])
    if acks != "0":  # acks=0 has no offsets in its delivery reports
        assert [r.offset for r in reports] == list(range(len(values)))

    got = consume_partition(strata.bootstrap, topic, 0, expect=len(values))
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))


def test_same_key_same_partition(strata, topic):
    # Goal: the partitioner sends each key to one partition; each partition's log holds them in order.
    create_topic(strata.bootstrap, topic, partitions=3)
    keys = [f"user-{k}".encode() for k in range(12)]
    messages = [{"key": k, "value": f"{k.decode()}#{i}".encode()} for i in range(5) for k in keys]

    reports = produce_all(producer(strata.bootstrap), topic, messages)

    partition_of: dict[bytes, set[int]] = {}
    for r in reports:
        partition_of.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partition_of.values()), partition_of
    assert len({next(iter(p)) for p in partition_of.values()}) > 1, "all keys in one partition"

    total = 0
    for partition in range(3):
        got = consume_partition(strata.bootstrap, topic, partition)
        total += len(got)
        assert [m.offset() for m in got] == list(range(len(got)))
        for m in got:
            assert partition_of[m.key()] == {partition}
        for k in {m.key() for m in got}:
            seq = [m.value() for m in got if m.key() == k]
            assert seq == [f"{k.decode()}#{i}".encode() for i in range(5)]
    assert total == len(messages)


def test_headers_null_key_and_tombstone(strata, topic):
    # Goal: headers (incl. repeated and null-valued), a null key and a null value survive unchanged.
    create_topic(strata.bootstrap, topic)
    messages = [
        {"key": b"k1", "value": b"v1", "headers": [("a", b"1"), ("a", b"2"), ("empty", b"")]},
        {"key": None, "value": b"no key"},
        {"key": b"k1", "value": None},  # tombstone
        {"key": b"", "value": b"", "headers": [("nullh", None)]},
    ]
    produce_all(producer(strata.bootstrap), topic, [{**m, "partition": 0} for m in messages])

    got = consume_partition(strata.bootstrap, topic, 0, expect=4)
    assert [(m.key(), m.value()) for m in got] == [
        (b"k1", b"v1"), (None, b"no key"), (b"k1", None), (b"", b"")]
    assert got[0].headers() == [("a", b"1"), ("a", b"2"), ("empty", b"")]
    assert got[1].headers() is None
    assert got[3].headers() == [("nullh", None)]


def test_one_megabyte_messages(strata, topic):
    # Goal: ~1 MB records (under the default 1048588-byte max.message.bytes) round-trip intact.
    create_topic(strata.bootstrap, topic)
    values = [os.urandom(1_000_000) for _ in range(3)]
    p = producer(strata.bootstrap, **{"message.max.bytes": 1_048_576, "linger.ms": 0})

    reports = produce_all(p, topic, [{"value": v, "partition": 0} for v in values])
    assert [r.offset for r in reports] == [0, 1, 2]

    got = consume_partition(strata.bootstrap, topic, 0, expect=3)
    assert [m.offset() for m in got] == [0, 1, 2]
    assert [m.value() for m in got] == values


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_types(strata, topic, codec):
    # Goal: each codec round-trips keys and values with contiguous offsets, stored compressed.
    create_topic(strata.bootstrap, topic)
    values = [(f"key-{i % 7}".encode(), (f"{codec}-{i}-" * 20).encode()) for i in range(300)]
    p = producer(strata.bootstrap, **{"compression.type": codec, "linger.ms": 20})

    produce_all(p, topic, [{"key": k, "value": v, "partition": 0} for k, v in values])

    got = consume_partition(strata.bootstrap, topic, 0, expect=len(values))
    assert [(m.key(), m.value()) for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))
    # Stored as the client compressed it (not re-encoded), so a raw fetch sees the codec.
    _, codecs, count = stored_codecs(strata.bootstrap, topic, 0)
    assert count == len(values)
    assert codecs == {CODEC_IDS[codec]}, f"stored codecs {codecs}; {CODEC_HINT}"


def test_seek_replay_from_middle(strata, topic):
    # Goal: assigning at a middle offset, and seeking back, replay exactly from that offset.
    create_topic(strata.bootstrap, topic)
    values = [f"r{i}".encode() for i in range(50)]
    produce_all(producer(strata.bootstrap), topic, [{"value": v, "partition": 0} for v in values])

    got = consume_partition(strata.bootstrap, topic, 0, start=37)
    assert [(m.offset(), m.value()) for m in got] == [(i, values[i]) for i in range(37, 50)]

    c = consumer(strata.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 45)])
        first = wait_until(lambda: c.poll(0.5), what="a message at offset 45")
        assert (first.offset(), first.value()) == (45, values[45])
        c.seek(TopicPartition(topic, 0, 10))
        replay = wait_until(lambda: c.poll(0.5), what="a message after seek")
        assert (replay.offset(), replay.value()) == (10, values[10])
    finally:
        c.close()


def test_watermark_offsets(strata, topic):
    # Goal: low/high watermarks are 0/0 on an empty partition and 0/n after n records.
    create_topic(strata.bootstrap, topic, partitions=2)
    assert watermarks(strata.bootstrap, topic, 0) == (0, 0)

    produce_all(producer(strata.bootstrap), topic, [{"value": b"x", "partition": 0}] * 17)
    assert watermarks(strata.bootstrap, topic, 0) == (0, 17)
    assert watermarks(strata.bootstrap, topic, 1) == (0, 0)


def test_offsets_for_times(strata, topic):
    # Goal: ListOffsets by timestamp returns the first offset whose timestamp is >= the query.
    create_topic(strata.bootstrap, topic)
    base_ts = 1_700_000_000_000
    n = 10
    produce_all(producer(strata.bootstrap), topic,
                [{"value": f"t{i}".encode(), "partition": 0, "timestamp": base_ts + i * 1000}
                 for i in range(n)])

    c = consumer(strata.bootstrap)
    try:
        def lookup(ts: int) -> int:
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=OP_TIMEOUT_S)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(base_ts + 2500) == 3  # between records 2 and 3
        assert lookup(base_ts + 4000) == 4  # exact hit
        assert lookup(base_ts - 1) == 0  # before everything
        assert lookup(base_ts + n * 1000) == -1  # after everything: no such offset
    finally:
        c.close()

    got = consume_partition(strata.bootstrap, topic, 0, expect=n)
    assert [m.timestamp()[1] for m in got] == [base_ts + i * 1000 for i in range(n)]


def test_idempotent_producer_exactly_once_in_order(strata, topic):
    # Goal: an idempotent producer's N records are stored exactly once each, in send order.
    create_topic(strata.bootstrap, topic, partitions=2)
    n = 2000
    p = producer(strata.bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                                      "batch.num.messages": 100})

    reports = produce_all(p, topic, [{"value": f"idem-{i}".encode(), "partition": i % 2}
                                     for i in range(n)])
    assert sorted((r.partition, r.offset) for r in reports) == sorted(
        (part, off) for part in range(2) for off in range(n // 2))

    for part in range(2):
        got = consume_partition(strata.bootstrap, topic, part, expect=n // 2)
        assert [m.value() for m in got] == [f"idem-{i}".encode() for i in range(part, n, 2)]
        assert watermarks(strata.bootstrap, topic, part) == (0, n // 2)


# --------------------------------------------------------------------------------------------
# Durability across restarts


def test_restart_keeps_data_and_offsets(fresh_strata, topic):
    # Goal: after a clean restart all topics, records and offsets remain and producing continues.
    bs = fresh_strata.bootstrap
    create_topic(bs, topic, partitions=2)
    produce_all(producer(bs), topic,
                [{"value": f"before-{i}".encode(), "partition": i % 2} for i in range(40)])

    fresh_strata.restart()

    assert topic_partitions(bs, topic) == 2
    assert watermarks(bs, topic, 0) == (0, 20)
    reports = produce_all(producer(bs), topic,
                          [{"value": f"after-{i}".encode(), "partition": 0} for i in range(5)])
    assert [r.offset for r in reports] == [20, 21, 22, 23, 24]

    got = consume_partition(bs, topic, 0, expect=25)
    assert [m.value() for m in got] == (
        [f"before-{i}".encode() for i in range(0, 40, 2)] + [f"after-{i}".encode() for i in range(5)])
    assert [m.offset() for m in got] == list(range(25))
    got1 = consume_partition(bs, topic, 1, expect=20)
    assert [m.value() for m in got1] == [f"before-{i}".encode() for i in range(1, 40, 2)]


def test_kill9_keeps_acknowledged_records(fresh_strata, topic):
    # Goal: records acknowledged with acks=all survive kill -9; offsets continue after restart.
    bs = fresh_strata.bootstrap
    create_topic(bs, topic)
    values = [f"durable-{i}".encode() for i in range(500)]
    reports = produce_all(producer(bs, acks="all"), topic,
                          [{"value": v, "partition": 0} for v in values])
    assert [r.offset for r in reports] == list(range(len(values)))

    fresh_strata.kill9()
    fresh_strata.start()

    got = consume_partition(bs, topic, 0, expect=len(values))
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))
    more = produce_all(producer(bs, acks="all"), topic, [{"value": b"next", "partition": 0}])
    assert more[0].offset == len(values)


def test_idempotent_producer_across_restart(fresh_strata, topic):
    # Goal: a new idempotent producer after a restart appends after the old one's records.
    bs = fresh_strata.bootstrap
    create_topic(bs, topic)
    produce_all(producer(bs, **{"enable.idempotence": True}), topic,
                [{"value": f"a{i}".encode(), "partition": 0} for i in range(30)])
    fresh_strata.restart()
    reports = produce_all(producer(bs, **{"enable.idempotence": True}), topic,
                          [{"value": f"b{i}".encode(), "partition": 0} for i in range(30)])
    assert [r.offset for r in reports] == list(range(30, 60))
    got = consume_partition(bs, topic, 0, expect=60)
    assert [m.value() for m in got] == (
        [f"a{i}".encode() for i in range(30)] + [f"b{i}".encode() for i in range(30)])


def test_list_offsets_max_timestamp_earliest_latest(strata, topic):
    # Goal: ListOffsets with the max-timestamp spec (KIP-734) returns the offset of the record
    # with the largest timestamp, not the last record; earliest/latest are the log bounds.
    from confluent_kafka.admin import AdminClient, OffsetSpec
    create_topic(strata.bootstrap, topic)
    base_ts = 1_700_000_000_000
    stamps = [base_ts + 5000, base_ts + 9000, base_ts + 1000, base_ts + 3000]  # max is offset 1
    produce_all(producer(strata.bootstrap), topic,
                [{"value": f"m{i}".encode(), "partition": 0, "timestamp": ts}
                 for i, ts in enumerate(stamps)])
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    tp = TopicPartition(topic, 0)

    def listed(spec):
        return client.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT_S)[tp].result()

    top = listed(OffsetSpec.max_timestamp())
    assert (top.offset, top.timestamp) == (1, base_ts + 9000)
    assert listed(OffsetSpec.earliest()).offset == 0
    assert listed(OffsetSpec.latest()).offset == len(stamps)


def test_log_append_time_topic_stamps_records(strata, topic):
    # Goal: on a topic with message.timestamp.type=LogAppendTime the broker's clock replaces the
    # producer's timestamps, and consumers see the LogAppendTime type with a valid batch.
    import time
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    create_topic(strata.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(strata.bootstrap), topic,
                [{"value": f"l{i}".encode(), "partition": 0, "timestamp": 1_000 + i}
                 for i in range(5)])
    after = int(time.time() * 1000)
    got = consume_partition(strata.bootstrap, topic, 0, expect=5)
    assert [m.value() for m in got] == [f"l{i}".encode() for i in range(5)]
    for m in got:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before <= ts <= after, (before, ts, after)


def test_fsync_mode_round_trips_across_restart(request, tmp_path_factory, topic):
    # Goal: `strata dev --fsync` (fsynced objects, SQLite synchronous=FULL) serves and keeps
    # data across a restart like the default mode.
    from conftest import _own_server, _teardown
    server = _own_server(request, tmp_path_factory, "fsync", extra_args=["--fsync"])
    try:
        create_topic(server.bootstrap, topic)
        produce_all(producer(server.bootstrap), topic,
                    [{"value": f"f{i}".encode(), "partition": 0} for i in range(20)])
        server.restart()
        got = consume_partition(server.bootstrap, topic, 0, expect=20)
        assert [m.value() for m in got] == [f"f{i}".encode() for i in range(20)]
    finally:
        _teardown(server)
