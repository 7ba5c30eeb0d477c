"""Consumer groups through real clients: classic and KIP-848 protocols, offsets, rebalances."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import create_topic, produce_all, producer, wait_until
from kafka_wire import KafkaConnection, Reader, array, i16, i32, i64, string

CLASSIC = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 100,
}


def group_name() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def group_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": group, **CLASSIC}
    conf.update(extra)
    return Consumer(conf)


def fill(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    p = producer(bootstrap)
    produce_all(p, topic, [{"partition": part, "key": f"{part}-{i}".encode(), "value": f"v{i}".encode()}
                           for part in range(partitions) for i in range(per_partition)])


def assignments_settle(consumers: list[Consumer], partitions: int, timeout_s: float = 40) -> list[set]:
    """Polls every consumer until their assignments are disjoint and cover all partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.05)
        sets = [{(tp.topic, tp.partition) for tp in c.assignment()} for c in consumers]
        union = set().union(*sets)
        if len(union) == partitions and sum(len(s) for s in sets) == partitions and all(sets):
            return sets
    raise AssertionError(f"assignments did not settle: {[c.assignment() for c in consumers]}")


def test_two_consumers_split_partitions(strata, topic):
    # Goal: two members of one classic group share a topic's partitions, disjointly.
    create_topic(strata.bootstrap, topic, partitions=4)
    group = group_name()
    consumers = [group_consumer(strata.bootstrap, group) for _ in range(2)]
    try:
        for c in consumers:
            c.subscribe([topic])
        sets = assignments_settle(consumers, 4)
        assert all(len(s) == 2 for s in sets), sets
    finally:
        for c in consumers:
            c.close()


def test_rebalance_on_join_loses_and_repeats_nothing(strata, topic):
    # Goal: records consumed with a synchronous commit after each one are seen exactly once,
    # across a rebalance caused by new members joining mid-stream.
    create_topic(strata.bootstrap, topic, partitions=3)
    fill(strata.bootstrap, topic, 3, 100)
    group = group_name()
    seen: list[tuple[int, int]] = []

    def drain(c: Consumer, budget_s: float) -> None:
        end = time.monotonic() + budget_s
        while time.monotonic() < end:
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            seen.append((m.partition(), m.offset()))
            c.commit(message=m, asynchronous=False)

    first = group_consumer(strata.bootstrap, group, **{"max.poll.interval.ms": 60000})
    first.subscribe([topic])
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        drain(first, 0.2)
    assert seen, "the first member consumed nothing"
    drain(first, 0.5)
    others = [group_consumer(strata.bootstrap, group) for _ in range(2)]
    for c in others:
        c.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while len(set(seen)) < 300 and time.monotonic() < deadline:
            for c in [first, *others]:
                drain(c, 0.2)
        assert len(set(seen)) == 300, f"missing records: {300 - len(set(seen))}"
        assert len(seen) == len(set(seen)), "records were consumed twice after being committed"
    finally:
        for c in [first, *others]:
            c.close()


def test_killed_member_expires_and_its_partitions_move(strata, topic):
    # Goal: a member that dies without LeaveGroup (kill -9) is expired after its session
    # timeout and the survivor takes over all partitions.
    create_topic(strata.bootstrap, topic, partitions=2)
    group = group_name()
    script = textwrap.dedent(f"""
        import sys, time
        from confluent_kafka import Consumer
        c = Consumer({{"bootstrap.servers": "{strata.bootstrap}", "group.id": "{group}",
                       "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}})
        c.subscribe(["{topic}"])
        while True:
            c.poll(0.1)
            if c.assignment():
                print("assigned", flush=True)
    """)
    doomed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    survivor = group_consumer(strata.bootstrap, group)
    try:
        survivor.subscribe([topic])
        assert doomed.stdout is not None
        line = doomed.stdout.readline()
        assert line.strip() == "assigned"
        wait_until(lambda: survivor.poll(0.1) is None and len(survivor.assignment()) == 1, 40,
                   "survivor gets one partition")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        wait_until(lambda: survivor.poll(0.1) is None and len(survivor.assignment()) == 2, 40,
                   "survivor takes over after the session timeout")
    finally:
        if doomed.poll() is None:
            doomed.kill()
        survivor.close()


def test_commit_close_and_resume_from_committed_offset(strata, topic):
    # Goal: a new member of the group starts at the committed offset, not at the beginning.
    create_topic(strata.bootstrap, topic, partitions=1)
    fill(strata.bootstrap, topic, 1, 10)
    group = group_name()
    c = group_consumer(strata.bootstrap, group)
    c.subscribe([topic])
    got = []
    wait_until(lambda: (m := c.poll(0.1)) is not None and not m.error() and got.append(m) is None
               and len(got) >= 5, 30, "five records")
    c.commit(message=got[4], asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == 5
    c.close()

    c2 = group_consumer(strata.bootstrap, group)
    c2.subscribe([topic])
    try:
        m = wait_until(lambda: (m := c2.poll(0.1)) is not None and not m.error() and m, 30, "a record")
        assert m.offset() == 5
    finally:
        c2.close()


def test_committed_offsets_survive_a_restart(fresh_strata, topic):
    # Goal: committed offsets (with metadata) are catalog state: a restart keeps them.
    create_topic(fresh_strata.bootstrap, topic, partitions=2)
    group = group_name()
    c = group_consumer(fresh_strata.bootstrap, group)
    c.commit(offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 3)], asynchronous=False)
    c.close()
    fresh_strata.restart()
    c = group_consumer(fresh_strata.bootstrap, group)
    try:
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
        assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 3)]
    finally:
        c.close()


@pytest.fixture
def two_agents(request, tmp_path_factory):
    from conftest import _own_server, _teardown
    server = _own_server(request, tmp_path_factory, "twoagents", extra_args=["--agents", "2"])
    yield server
    _teardown(server)


def test_members_on_different_agents_form_one_group(two_agents, topic):
    # Goal: group state lives in the catalog, so members talking to different agents
    # are one group.
    host, port = two_agents.bootstrap.rsplit(":", 1)
    second = f"{host}:{int(port) + 1}"
    create_topic(two_agents.bootstrap, topic, partitions=4)
    md = AdminClient({"bootstrap.servers": second}).list_topics(timeout=20)
    assert len(md.brokers) == 2, md.brokers
    group = group_name()
    consumers = [group_consumer(two_agents.bootstrap, group), group_consumer(second, group)]
    try:
        for c in consumers:
            c.subscribe([topic])
        sets = assignments_settle(consumers, 4)
        assert all(len(s) == 2 for s in sets), sets
    finally:
        for c in consumers:
            c.close()


def test_static_member_rejoins_without_rebalance(strata, topic):
    # Goal: a static member (group.instance.id) that restarts within its session timeout
    # gets its partitions back and the other member sees no rebalance.
    create_topic(strata.bootstrap, topic, partitions=2)
    group = group_name()
    assigns = {"b": 0}

    def on_assign_b(consumer, partitions):
        assigns["b"] += 1

    a = group_consumer(strata.bootstrap, group, **{"group.instance.id": "a"})
    b = group_consumer(strata.bootstrap, group, **{"group.instance.id": "b"})
    a.subscribe([topic])
    b.subscribe([topic], on_assign=on_assign_b)
    sets = assignments_settle([a, b], 2)
    before = assigns["b"]
    a_partitions = sets[0]
    a.close()  # a static member's close sends no LeaveGroup
    a = group_consumer(strata.bootstrap, group, **{"group.instance.id": "a"})
    a.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and {(t.topic, t.partition) for t in a.assignment()} != a_partitions:
            a.poll(0.05)
            b.poll(0.05)
        assert {(t.topic, t.partition) for t in a.assignment()} == a_partitions
        for _ in range(20):
            b.poll(0.05)
        assert assigns["b"] == before, "the other member was rebalanced"
    finally:
        a.close()
        b.close()


def test_kip848_consumer_protocol_splits_partitions(strata, topic):
    # Goal: group.protocol=consumer (KIP-848) members get a server-side assignment.
    create_topic(strata.bootstrap, topic, partitions=4)
    group = group_name()
    conf = {"bootstrap.servers": strata.bootstrap, "group.id": group, "group.protocol": "consumer",
            "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    consumers = [Consumer(conf) for _ in range(2)]
    try:
        for c in consumers:
            c.subscribe([topic])
        sets = assignments_settle(consumers, 4, timeout_s=60)
        assert sorted(len(s) for s in sets) == [2, 2], sets
    finally:
        for c in consumers:
            c.close()


def test_admin_lists_describes_alters_and_deletes_groups(strata, topic):
    # Goal: AdminClient group operations work against the catalog's group state.
    create_topic(strata.bootstrap, topic, partitions=2)
    group = group_name()
    c = group_consumer(strata.bootstrap, group)
    c.subscribe([topic])
    assignments_settle([c], 2)
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})

    listed = admin.list_consumer_groups(request_timeout=20).result()
    assert group in {g.group_id for g in listed.valid}

    described = admin.describe_consumer_groups([group], request_timeout=20)[group].result()
    assert described.group_id == group
    assert len(described.members) == 1
    assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0, 1}
    c.close()

    from confluent_kafka import ConsumerGroupTopicPartitions
    altered = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 11), TopicPartition(topic, 1, 22)])])
    altered[group].result()
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 11), (1, 22)]

    admin.delete_consumer_groups([group], request_timeout=20)[group].result()
    listed = admin.list_consumer_groups(request_timeout=20).result()
    assert group not in {g.group_id for g in listed.valid}


def test_kafka_python_group_commits_and_resumes(strata, topic):
    # Goal: kafka-python's group consumer (its own protocol code) joins, commits, resumes.
    from kafka import KafkaConsumer
    create_topic(strata.bootstrap, topic, partitions=2)
    fill(strata.bootstrap, topic, 2, 5)
    group = group_name()
    c = KafkaConsumer(topic, bootstrap_servers=strata.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=15000)
    got = []
    for m in c:
        got.append(m)
        if len(got) == 10:
            break
    c.commit()
    c.close()
    assert sorted((m.partition, m.offset) for m in got) == [(p, o) for p in range(2) for o in range(5)]
    c2 = KafkaConsumer(bootstrap_servers=strata.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        from kafka import TopicPartition as KTP
        assert c2.committed(KTP(topic, 0)) == 5
        assert c2.committed(KTP(topic, 1)) == 5
    finally:
        c2.close()


def test_bad_group_requests_get_kafka_error_codes(strata, topic):
    # Goal: heartbeats from unknown members and commits to unknown topics get Kafka's error
    # codes, and the server keeps serving.
    group = group_name()
    with KafkaConnection(strata.bootstrap) as conn:
        # Heartbeat v0: group, generation, member id -> error_code.
        raw = conn.request(12, 0, string(group) + i32(3) + string("nobody"))
        assert Reader(raw).i16() in (25, 16), "UNKNOWN_MEMBER_ID expected"
        # OffsetCommit v2 for a topic that does not exist -> UNKNOWN_TOPIC_OR_PARTITION.
        body = (string(group) + i32(-1) + string("") + i64(-1)
                + array([string(f"missing-{topic}") + array([i32(0) + i64(5) + string("")])]))
        r = Reader(conn.request(8, 2, body))
        assert r.array_len() == 1
        r.string()
        assert r.array_len() == 1
        assert r.i32() == 0
        assert r.i16() == 3
    # Still serving.
    create_topic(strata.bootstrap, topic)
    assert AdminClient({"bootstrap.servers": strata.bootstrap}).list_topics(timeout=20).topics.get(topic)


def test_aiokafka_group_members_split_and_commit(strata, topic):
    # Goal: aiokafka's group consumer (a third protocol implementation) joins a group with
    # another member, consumes its share, commits, and the offsets are visible to others.
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition as ATP

    create_topic(strata.bootstrap, topic, partitions=2)
    fill(strata.bootstrap, topic, 2, 5)
    group = group_name()

    async def run() -> list[tuple[int, int]]:
        members = [AIOKafkaConsumer(topic, bootstrap_servers=strata.bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=10000, heartbeat_interval_ms=500)
                   for _ in range(2)]
        for m in members:
            await m.start()
        try:
            seen: list[tuple[int, int]] = []
            deadline = asyncio.get_running_loop().time() + 45
            while len(seen) < 10 and asyncio.get_running_loop().time() < deadline:
                for m in members:
                    batch = await m.getmany(timeout_ms=200)
                    for records in batch.values():
                        seen.extend((r.partition, r.offset) for r in records)
                        await m.commit()
            owned = [m.assignment() for m in members]
            assert all(owned) and not (owned[0] & owned[1]), owned
            committed = [await members[0].committed(ATP(topic, p)) for p in range(2)]
            assert committed == [5, 5], committed
            return seen
        finally:
            for m in members:
                await m.stop()

    seen = asyncio.run(run())
    assert sorted(seen) == [(p, o) for p in range(2) for o in range(5)]


def test_cli_reset_offsets_then_consumer_resumes_there(strata, topic):
    # Goal: `strata group reset-offsets` moves an idle group's offsets, and the group's next
    # consumer starts exactly there; --dry-run changes nothing.
    from conftest import find_strata_bin
    create_topic(strata.bootstrap, topic, partitions=1)
    fill(strata.bootstrap, topic, 1, 10)
    group = group_name()
    c = group_consumer(strata.bootstrap, group)
    c.commit(offsets=[TopicPartition(topic, 0, 8)], asynchronous=False)
    c.close()

    def strata_group(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(find_strata_bin()), "group", "--bootstrap", strata.bootstrap, *args],
                              capture_output=True, text=True, timeout=60)

    dry = strata_group("reset-offsets", group, "--topic", topic, "--to-offset", "3", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    probe = group_consumer(strata.bootstrap, group)
    assert probe.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 8
    probe.close()

    done = strata_group("reset-offsets", group, "--topic", topic, "--to-offset", "3")
    assert done.returncode == 0, done.stderr
    c = group_consumer(strata.bootstrap, group)
    c.subscribe([topic])
    try:
        m = wait_until(lambda: (m := c.poll(0.1)) is not None and not m.error() and m, 30, "a record")
        assert m.offset() == 3
    finally:
        c.close()
    listed = strata_group("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert group in listed.stdout
