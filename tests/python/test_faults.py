"""Faults survived: object-store errors, delays and hangs, and a catalog that dies or goes away.

Every test runs real processes (production.py): moto S3, `strata catalog` (SQLite, or
PostgreSQL where the catalog is restarted), and `strata agent --fault-injection`, whose object
store obeys the rules PUT to its HTTP endpoint (`/faults`). The promise checked throughout:
nothing is acknowledged that is not durable, every acknowledged record is stored exactly once
in order at its acknowledged offset, and the agent recovers by itself once the fault is gone.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import kafka_wire as kw
from helpers import consume_partition, create_topic, producer, wait_until
from load import assert_log_matches, produce_through_a_kill
# `s3_endpoint` is a fixture: importing it here makes pytest use it.
from production import (http_get, pg_database, s3_endpoint, start_cluster,  # noqa: F401
                        stop_cluster)

# Retriable Produce errors for "not durable in time".
REQUEST_TIMED_OUT = 7
KAFKA_STORAGE_ERROR = 56
NOT_DURABLE = (REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR)

FAULT_ARGS = ["--fault-injection", "--flush-interval-ms", "10"]


def set_faults(metrics_port: int, plan: dict | None) -> dict:
    """PUT the fault plan (None: DELETE every rule); returns the agent's fault state."""
    method, body = ("DELETE", None) if plan is None else ("PUT", json.dumps(plan).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/faults", data=body,
                                     method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def fault_counts(metrics_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/faults", timeout=10) as r:
        return json.loads(r.read())["counts"]


def metric(metrics_port: int, name: str) -> int:
    """One of the agent's counters."""
    _, body = http_get(metrics_port, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + "{"):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no {name} in /metrics")


def flushes_settled(metrics_port: int) -> bool:
    """Whether every flush taken so far has been answered (committed or failed)."""
    taken = metric(metrics_port, "strata_flushes_total")
    done = (metric(metrics_port, "strata_catalog_commits_total")
            + metric(metrics_port, "strata_flushes_failed_total"))
    return taken == done


def raw_produce(bootstrap: str, topic: str, partition: int, values: list[bytes],
                timeout_ms: int) -> dict:
    with kw.KafkaConnection(bootstrap, timeout=60) as conn:
        return conn.produce(topic, partition, kw.encode_batch(values), acks=-1,
                            timeout_ms=timeout_ms)


def own_cluster(request, tmp_path, s3_endpoint, **kwargs):
    cluster = start_cluster(tmp_path, s3_endpoint, **kwargs)
    request.node._strata_servers = cluster.processes()
    return cluster


def finish(cluster) -> None:
    complaints = stop_cluster(cluster)
    assert not complaints, "\n".join(complaints)




def test_put_errors_and_delays_lose_and_duplicate_nothing(request, tmp_path, s3_endpoint, topic):
    # Goal (promise 1 under object-store trouble): with ~30 % of segment PUTs failing and every
    # PUT delayed, an idempotent acks=all producer still gets every record acknowledged, and
    # each is stored once, in order, at its acknowledged offset. Failed flushes are answered
    # with a retriable error and retried by the client; nothing that failed is committed.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=2,
                          agent_args=[*FAULT_ARGS, "--produce-timeout-ms", "10000",
                                      "--flush-bytes", "8192"])
    try:
        writer = cluster.agents[0]
        create_topic(writer.bootstrap, topic)
        set_faults(writer.metrics_port, {
            "rules": [{"ops": ["put"], "error_probability": 0.3, "delay_ms": 30}],
            "seed": 20240601})
        count = 5000
        # The faults are on from the first record; the "kill" hook has nothing left to do.
        acked = produce_through_a_kill(writer.bootstrap, topic, count, kill_after=1,
                                       kill=lambda: None, restart=lambda: None)
        counts = fault_counts(writer.metrics_port)
        assert counts["errors"] > 0 and counts["delays"] > 0, counts
        set_faults(writer.metrics_port, None)
        records = consume_partition(cluster.agents[1].bootstrap, topic, 0, start=0, expect=count)
        assert_log_matches(records, acked, count)
    finally:
        finish(cluster)


def test_hung_puts_time_out_produces_and_the_agent_recovers_by_itself(
        request, tmp_path, s3_endpoint, topic):
    # Goal: a PUT that never completes cannot hold a produce forever or get it acknowledged:
    # the produce is answered REQUEST_TIMED_OUT / KAFKA_STORAGE_ERROR within its timeout
    # (capped by --produce-timeout-ms), its records are never stored, and once the fault is
    # cleared the same agent (not restarted) acknowledges again, including a client that kept
    # retrying through the hang.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=1,
                          agent_args=[*FAULT_ARGS, "--produce-timeout-ms", "3000"])
    try:
        agent = cluster.agents[0]
        create_topic(agent.bootstrap, topic, partitions=2)
        before = raw_produce(agent.bootstrap, topic, 0, [b"before"], timeout_ms=10_000)
        assert before["error_code"] == 0 and before["base_offset"] == 0, before

        set_faults(agent.metrics_port, {"rules": [{"ops": ["put"], "hang": True}]})
        started = time.monotonic()
        short = raw_produce(agent.bootstrap, topic, 0, [b"hung-1"], timeout_ms=1000)
        assert short["error_code"] in NOT_DURABLE, short
        # A longer client timeout is capped by the agent's maximum (3 s).
        long = raw_produce(agent.bootstrap, topic, 0, [b"hung-2"], timeout_ms=60_000)
        assert long["error_code"] in NOT_DURABLE, long
        assert time.monotonic() - started < 30, "the produce timeout did not bound the wait"

        # An idempotent client keeps retrying through the hang; nothing can be acked now.
        acked: dict[bytes, int] = {}
        failed: list[str] = []

        def report(err, msg):
            if err is None:
                acked[msg.value()] = msg.offset()
            else:
                failed.append(str(err))

        p = producer(agent.bootstrap, acks="all", enable_idempotence=True,
                     message_timeout_ms=120_000, retry_backoff_ms=200)
        for i in range(20):
            p.produce(topic, value=f"r-{i}".encode(), partition=1, on_delivery=report)
        p.poll(4.0)
        assert not acked, f"acknowledged while every PUT hangs: {acked}"
        assert fault_counts(agent.metrics_port)["hangs"] > 0

        set_faults(agent.metrics_port, None)
        assert p.flush(60) == 0 and not failed, failed
        assert sorted(acked.values()) == list(range(20)), acked
        after = raw_produce(agent.bootstrap, topic, 0, [b"after"], timeout_ms=10_000)
        assert after["error_code"] == 0, after
        assert agent.process.alive() and agent.process.starts == 1

        stored = consume_partition(agent.bootstrap, topic, 0, start=0, expect=2)
        assert [(m.offset(), m.value()) for m in stored] == [(0, b"before"), (1, b"after")], \
            "a produce answered with an error was stored"
        ones = consume_partition(agent.bootstrap, topic, 1, start=0, expect=20)
        assert {m.value(): m.offset() for m in ones} == acked
        assert [m.value() for m in ones] == [f"r-{i}".encode() for i in range(20)]
    finally:
        finish(cluster)


@pytest.mark.timeout(300)
def test_kill9_of_the_catalog_under_load_loses_nothing_and_groups_resume(
        request, tmp_path, s3_endpoint, pg_database, topic):
    # Goal: the catalog is killed -9 while an idempotent acks=all producer streams and is
    # restarted on the same PostgreSQL: the producer keeps going (retriable errors while it is
    # down), every acknowledged record is stored once in order at its offset, and a consumer
    # group member that lives through a second catalog kill resumes from its committed offset
    # and reads the rest without loss or duplicates. No agent exits.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=2, store=pg_database,
                          agent_args=["--flush-interval-ms", "10"])
    try:
        writer, reader = cluster.agents
        create_topic(writer.bootstrap, topic)
        count = 6000
        acked = produce_through_a_kill(writer.bootstrap, topic, count, kill_after=1500,
                                       kill=cluster.catalog.kill9, restart=cluster.catalog.start)
        records = consume_partition(reader.bootstrap, topic, 0, start=0, expect=count)
        assert_log_matches(records, acked, count)

        group = f"faults-{uuid.uuid4().hex[:8]}"
        member = Consumer({"bootstrap.servers": reader.bootstrap, "group.id": group,
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "session.timeout.ms": 30000, "fetch.wait.max.ms": 100,
                           "reconnect.backoff.max.ms": 500})
        seen: list[int] = []
        try:
            member.subscribe([topic])
            half = count // 2

            def consume_until(n: int, timeout_s: float = 90) -> None:
                deadline = time.monotonic() + timeout_s
                while len(seen) < n:
                    assert time.monotonic() < deadline, f"consumed {len(seen)} of {n}"
                    msg = member.poll(0.5)
                    if msg is None or msg.error() is not None:
                        continue
                    seen.append(int(msg.value()))

            consume_until(half)
            member.commit(asynchronous=False)
            cluster.catalog.kill9()
            time.sleep(1.0)
            cluster.catalog.start()
            consume_until(count)

            def committed() -> bool:
                try:
                    member.commit(asynchronous=False)
                    return True
                except Exception:  # noqa: BLE001 - retriable while the coordinator comes back
                    return False

            wait_until(committed, timeout_s=60, what="a commit after the catalog restart")
        finally:
            member.close()
        assert seen == list(range(count)), "the group member lost or repeated records"
        check = Consumer({"bootstrap.servers": writer.bootstrap, "group.id": group})
        try:
            offsets = check.committed([TopicPartition(topic, 0)], timeout=30)
        finally:
            check.close()
        assert offsets[0].offset == count, offsets
        assert all(a.process.alive() and a.process.starts == 1 for a in cluster.agents)
    finally:
        finish(cluster)


def test_catalog_down_gives_retriable_errors_and_the_agent_recovers(
        request, tmp_path, s3_endpoint, topic):
    # Goal: while the catalog is unreachable an agent stays up, answers Produce with a
    # retriable error (never an acknowledgement), still answers Metadata for known topics,
    # and acknowledges again by itself once the catalog is back; no restart of the agent.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=1,
                          agent_args=["--flush-interval-ms", "10", "--produce-timeout-ms", "3000"])
    try:
        agent = cluster.agents[0]
        create_topic(agent.bootstrap, topic)
        first = raw_produce(agent.bootstrap, topic, 0, [b"first"], timeout_ms=10_000)
        assert first["error_code"] == 0, first

        cluster.catalog.kill9()
        for attempt in range(3):
            down = raw_produce(agent.bootstrap, topic, 0, [f"down-{attempt}".encode()],
                               timeout_ms=2000)
            assert down["error_code"] in NOT_DURABLE, down
        with kw.KafkaConnection(agent.bootstrap) as conn:
            metadata = conn.metadata([topic])
        assert topic in metadata["topics"], metadata
        assert agent.process.alive(), agent.process.log_tail()
        # Every flush made while the catalog was down has given up (its commit retries are
        # bounded by the produce timeout), so none can land after the restart.
        wait_until(lambda: flushes_settled(agent.metrics_port), timeout_s=30,
                   what="the agent to give up the commits made while the catalog was down")
        assert metric(agent.metrics_port, "strata_flushes_failed_total") >= 1

        cluster.catalog.start()

        def produced() -> bool:
            return raw_produce(agent.bootstrap, topic, 0, [b"back"],
                               timeout_ms=5000)["error_code"] == 0

        wait_until(produced, timeout_s=60, what="a produce after the catalog came back")
        assert agent.process.alive() and agent.process.starts == 1
        stored = [m.value() for m in consume_partition(agent.bootstrap, topic, 0, start=0)]
        assert stored[0] == b"first" and stored[-1] == b"back", stored
        assert not any(v.startswith(b"down-") for v in stored), \
            "a produce answered with an error while the catalog was down was stored"
    finally:
        finish(cluster)


OUT_OF_ORDER_SEQUENCE_NUMBER = 45


def set_catalog_faults(metrics_port: int, plan: dict) -> dict:
    """PUT the catalog's commit-fault plan (`strata catalog --fault-injection`)."""
    request = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/faults",
                                     data=json.dumps(plan).encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def stored_values(bootstrap: str, topic: str) -> list[bytes]:
    with kw.KafkaConnection(bootstrap, timeout=30) as conn:
        _, batches = conn.fetch_all(topic, 0)
    return [r.value for b in batches for r in b.records]


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_store(request) -> str | None:
    """The catalog's store URL: SQLite (None: the default file) or PostgreSQL."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_database")


def test_a_commit_that_lands_after_its_produce_timed_out_is_never_stored_twice(
        request, tmp_path, s3_endpoint, topic, catalog_store):
    # Goal (issue #11 item 0; promise 1): a commit whose outcome the agent does not learn in
    # time (the catalog applies it after the produce deadline) must not let an idempotent
    # producer store its records twice. The chaos run found this: the agent answered the
    # batch REQUEST_TIMED_OUT and committed the producer's next batch while the old commit was
    # still in flight in the catalog; that batch was refused OUT_OF_ORDER_SEQUENCE_NUMBER, the
    # producer bumped its epoch (KIP-360) and sent the missing records again under new
    # sequence numbers, and then the old commit landed.
    # Method: the catalog holds the first commit for 4 s and then applies it whatever its
    # caller does (`--fault-injection`, late apply); the agent's produce timeout is 1 s. A raw
    # idempotent client sends batch 0 (times out), then batch 1, and then does what librdkafka
    # does with the answer: on OUT_OF_ORDER_SEQUENCE_NUMBER it waits out the late commit,
    # bumps its epoch and sends both records again from sequence 0; otherwise it retries the
    # timed-out batch with its sequence. Every record must be stored exactly once, in order.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=1, store=catalog_store,
                          catalog_args=["--fault-injection"],
                          agent_args=["--flush-interval-ms", "10", "--produce-timeout-ms", "1000"])
    try:
        agent = cluster.agents[0]
        create_topic(agent.bootstrap, topic)
        with kw.KafkaConnection(agent.bootstrap, timeout=60) as conn:
            error, pid, epoch = conn.init_producer_id()
            assert error == 0, error

            def batch(values: list[bytes], sequence: int, producer_epoch: int = epoch) -> bytes:
                return kw.encode_batch(values, producer_id=pid, producer_epoch=producer_epoch,
                                       base_sequence=sequence)

            set_catalog_faults(cluster.catalog_metrics_port,
                               {"late_apply_ms": 4000, "late_apply_count": 1})
            started = time.monotonic()
            first = conn.produce(topic, 0, batch([b"a"], 0), timeout_ms=1000)
            assert first["error_code"] == REQUEST_TIMED_OUT, first
            # Batch 1, retried with its sequence while it is answered "not durable in time"
            # (it may have queued behind batch 0's commit), as a client does.
            for _ in range(5):
                second = conn.produce(topic, 0, batch([b"b"], 1), timeout_ms=10_000)
                if second["error_code"] not in NOT_DURABLE:
                    break
            # Let the held commit land (or be refused) before the client goes on.
            time.sleep(max(0.0, started + 5.0 - time.monotonic()))
            if second["error_code"] == OUT_OF_ORDER_SEQUENCE_NUMBER:
                error, same_pid, bumped = conn.init_producer_id(pid, epoch)
                assert (error, same_pid, bumped) == (0, pid, epoch + 1)
                again = conn.produce(topic, 0, batch([b"a", b"b"], 0, bumped), timeout_ms=10_000)
                assert again["error_code"] == 0, again
            else:
                assert second["error_code"] == 0 and second["base_offset"] == 1, second
                retry = conn.produce(topic, 0, batch([b"a"], 0), timeout_ms=10_000)
                assert retry["error_code"] == 0 and retry["base_offset"] == 0, retry
        assert stored_values(agent.bootstrap, topic) == [b"a", b"b"]
        _, body = http_get(agent.metrics_port, "/metrics")
        assert "strata_catalog_commits_unknown_total" in body
        assert metric(agent.metrics_port, "strata_catalog_commits_unknown_total") == 1
        # The agent registered anew, so that the held commit could not land after a later one.
        assert metric(agent.metrics_port, "strata_catalog_commits_self_fenced_total") == 1
    finally:
        finish(cluster)


def test_a_commit_whose_reply_is_lost_is_acknowledged_once(request, tmp_path, s3_endpoint,
                                                           topic, catalog_store):
    # Goal: the catalog applies a commit and its reply is lost (UNAVAILABLE). The agent sends
    # the same commit again (idempotent by segment id), learns the stored offsets and
    # acknowledges the produce once, at the offset the records really have.
    # Method: `lose_reply_count: 2` on the catalog; three plain records, then an idempotent
    # client's batch; read back everything.
    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=1, store=catalog_store,
                          catalog_args=["--fault-injection"],
                          agent_args=["--flush-interval-ms", "10"])
    try:
        agent = cluster.agents[0]
        create_topic(agent.bootstrap, topic)
        state = set_catalog_faults(cluster.catalog_metrics_port, {"lose_reply_count": 2})
        assert state["plan"]["lose_reply_count"] == 2, state
        plain = raw_produce(agent.bootstrap, topic, 0, [b"p0", b"p1", b"p2"], timeout_ms=10_000)
        assert plain["error_code"] == 0 and plain["base_offset"] == 0, plain
        with kw.KafkaConnection(agent.bootstrap, timeout=60) as conn:
            error, pid, epoch = conn.init_producer_id()
            assert error == 0
            idempotent = conn.produce(topic, 0, kw.encode_batch(
                [b"i0"], producer_id=pid, producer_epoch=epoch, base_sequence=0),
                timeout_ms=10_000)
        assert idempotent["error_code"] == 0 and idempotent["base_offset"] == 3, idempotent
        assert stored_values(agent.bootstrap, topic) == [b"p0", b"p1", b"p2", b"i0"]
        _, body = http_get(cluster.catalog_metrics_port, "/faults")
        assert json.loads(body)["counts"]["replies_lost"] == 2
    finally:
        finish(cluster)


def test_a_black_holed_catalog_link_fails_fast_and_heals_within_30s(request, tmp_path,
                                                                     s3_endpoint, topic):
    # Goal (issue #11 item 4; promise 6): a catalog link that goes silent (packets dropped,
    # no reset) must not hang the agent's calls on it: produces fail with a retriable error
    # within their timeout, and after the link heals produce, fetch and a consumer group work
    # again within 30 s without restarting anything. Before HTTP/2 keepalive and call
    # deadlines, every call on the dead connection waited for TCP (~15 minutes).
    # Method: agents reach the catalog through blackhole_proxy; black-hole it (the existing
    # connection stays open and silent forever), produce, heal (new connections flow), then
    # time produce, a read from offset 0 and a group consumer.
    from blackhole_proxy import BlackholeProxy
    proxy = None

    def route(catalog_port: int) -> int:
        nonlocal proxy
        proxy = BlackholeProxy(catalog_port).start()
        return proxy.port

    cluster = own_cluster(request, tmp_path, s3_endpoint, agents=1, catalog_route=route,
                          agent_args=["--flush-interval-ms", "10", "--produce-timeout-ms", "3000"])
    try:
        agent = cluster.agents[0]
        create_topic(agent.bootstrap, topic)
        first = raw_produce(agent.bootstrap, topic, 0, [b"before"], timeout_ms=10_000)
        assert first["error_code"] == 0, first

        proxy.blackhole()
        started = time.monotonic()
        down = raw_produce(agent.bootstrap, topic, 0, [b"dark"], timeout_ms=2000)
        assert down["error_code"] in NOT_DURABLE, down
        assert time.monotonic() - started < 10, "a produce waited on the silent link"
        time.sleep(3)  # let the agent's calls sit on the silent connection for a while

        proxy.heal()
        healed = time.monotonic()

        def produced() -> bool:
            return raw_produce(agent.bootstrap, topic, 0, [b"after"],
                               timeout_ms=3000)["error_code"] == 0

        wait_until(produced, timeout_s=30, what="a produce after the link healed")
        values = [m.value() for m in consume_partition(agent.bootstrap, topic, 0, start=0)]
        assert values[0] == b"before" and values[-1] == b"after", values
        assert b"dark" not in values, "a produce answered with an error was stored"

        consumer = Consumer({"bootstrap.servers": agent.bootstrap,
                             "group.id": f"g-{uuid.uuid4().hex[:8]}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            consumer.subscribe([topic])
            got = []
            deadline = healed + 30
            while time.monotonic() < deadline and len(got) < len(values):
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    got.append(message.value())
            assert got == values, "the group consumer did not read everything within 30 s"
        finally:
            consumer.close()
        assert time.monotonic() - healed < 45
        assert agent.process.alive() and agent.process.starts == 1
    finally:
        finish(cluster)
        if proxy is not None:
            proxy.stop()
