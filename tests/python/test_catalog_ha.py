"""Catalog high availability: two `strata catalog` processes on one PostgreSQL database, one
active (it holds the lease in the database), one hot standby; two agents given both addresses.

Real processes throughout (production.py: moto S3, PostgreSQL, the strata binary) and a real
idempotent confluent-kafka producer and consumer group. The promises checked: when the active
catalog dies (kill -9), freezes (SIGSTOP past its lease) or is restarted (a rolling update), the
standby takes over within a lease and a renew interval, agents follow within two leases,
clients see only retriable errors, and every acknowledged record is stored exactly once, in
order, at its acknowledged offset. A frozen catalog that comes back (SIGCONT) writes nothing and
steps down. See docs/rfcs/0004-catalog-ha.md.
"""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import kafka_wire as kw
from conftest import find_strata_bin, free_port
from helpers import consume_partition, create_topic, wait_until
from load import assert_log_matches, produce_through_a_kill
# Fixtures: importing them here makes pytest use them.
from production import (Agent, Process, http_get, init_bucket, pg_database,  # noqa: F401
                        s3_endpoint, unique_bucket)

LEASE_MS = 4000
RENEW_MS = 1000


@dataclass
class HaCluster:
    catalogs: list[Process]
    metrics_ports: list[int]
    agents: list[Agent] = field(default_factory=list)

    def processes(self) -> list[Process]:
        return [*self.catalogs, *(a.process for a in self.agents)]


def catalog_metric(port: int, name: str) -> int | None:
    """A catalog gauge or counter; None when the catalog does not answer."""
    try:
        status, body = http_get(port, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no {name} in the catalog's /metrics")


def active_index(ha: HaCluster) -> int | None:
    """Which catalog is active (None while none is)."""
    for index, (process, port) in enumerate(zip(ha.catalogs, ha.metrics_ports)):
        if process.alive() and catalog_metric(port, "strata_catalog_is_active") == 1:
            return index
    return None


def start_ha(request, base: Path, endpoint: str, store: str) -> HaCluster:
    bucket = unique_bucket()
    created = init_bucket(endpoint, bucket, "--create")
    assert created.returncode == 0, created.stderr
    ports = [free_port(), free_port()]
    metrics = [free_port(), free_port()]
    catalogs = []
    for index, (port, metrics_port) in enumerate(zip(ports, metrics)):
        argv = [str(find_strata_bin()), "catalog", "--store", store,
                "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics_port}",
                "--catalog-lease-ms", str(LEASE_MS),
                "--catalog-lease-renew-interval-ms", str(RENEW_MS)]
        catalogs.append(Process(f"strata catalog {'ab'[index]}", argv,
                                base / f"catalog-{'ab'[index]}.log", port))
    ha = HaCluster(catalogs, metrics)
    request.node._strata_servers = ha.processes()
    addresses = ",".join(f"http://127.0.0.1:{port}" for port in ports)
    try:
        catalogs[0].start()
        wait_until(lambda: active_index(ha) == 0, timeout_s=30, what="catalog a active")
        catalogs[1].start()
        for node_id in (1, 2):
            port, agent_metrics = free_port(), free_port()
            argv = [str(find_strata_bin()), "agent", "--catalog", addresses,
                    "--object-store", f"s3://{bucket}/data", "--s3-endpoint", endpoint,
                    "--listen", f"127.0.0.1:{port}", "--advertise", f"127.0.0.1:{port}",
                    "--node-id", str(node_id), "--metrics-listen", f"127.0.0.1:{agent_metrics}",
                    "--cache-dir", str(base / f"cache-{node_id}"), "--cache-disk-mb", "64",
                    "--flush-interval-ms", "10"]
            agent = Agent(Process(f"strata agent {node_id}", argv,
                                  base / f"agent-{node_id}.log", port), agent_metrics)
            ha.agents.append(agent)
            agent.process.start()
    except BaseException:
        for process in ha.processes():
            if process.alive():
                process.kill9()
        raise
    request.node._strata_servers = ha.processes()
    return ha


def stop_ha(ha: HaCluster) -> None:
    complaints = []
    for process in [*(a.process for a in ha.agents), *ha.catalogs]:
        if process.alive():
            # A frozen process cannot handle SIGTERM.
            process.proc.send_signal(signal.SIGCONT)
            code = process.stop(signal.SIGTERM)
            if code != 0:
                complaints.append(f"{process.name} exited with {code}\n{process.log_tail()}")
    assert not complaints, "\n".join(complaints)


def produce_once(bootstrap: str, topic: str) -> bool:
    """One acks=all produce of one record with a short timeout: whether it was acknowledged."""
    try:
        with kw.KafkaConnection(bootstrap, timeout=10) as conn:
            answer = conn.produce(topic, 0, kw.encode_batch([b"probe"]), acks=-1,
                                  timeout_ms=3000)
    except OSError:
        return False
    return answer["error_code"] == 0


@pytest.mark.timeout(300)
def test_kill9_of_the_active_catalog_the_standby_takes_over_and_nothing_is_lost(
        request, tmp_path, s3_endpoint, pg_database, topic):
    # Goal: kill -9 of the active catalog under an idempotent acks=all load: the standby takes
    # over within a lease plus a renew interval, both agents follow it within two leases (a
    # produce through each is acknowledged again), every acknowledged record is stored exactly
    # once at its offset, and a consumer group member that lives through the kill resumes from
    # its committed offset. Method: two catalogs on one PostgreSQL, agents given both addresses;
    # the test measures the takeover and the agents' recovery from the moment of the kill.
    ha = start_ha(request, tmp_path, s3_endpoint, pg_database)
    try:
        writer, reader = ha.agents
        create_topic(writer.bootstrap, topic)
        probes = f"{topic}-probes"
        create_topic(writer.bootstrap, probes)
        count = 4000
        measured: dict[str, float] = {}

        def kill_active() -> None:
            killed_at = time.monotonic()
            ha.catalogs[0].kill9()
            wait_until(lambda: active_index(ha) == 1, timeout_s=2 * LEASE_MS / 1000,
                       what="the standby takes over within two leases")
            measured["takeover_s"] = time.monotonic() - killed_at

        acked = produce_through_a_kill(writer.bootstrap, topic, count, kill_after=1000,
                                       kill=kill_active, restart=lambda: None)
        records = consume_partition(reader.bootstrap, topic, 0, start=0, expect=count)
        assert_log_matches(records, acked, count)
        assert measured["takeover_s"] <= (LEASE_MS + 2 * RENEW_MS) / 1000, measured
        assert catalog_metric(ha.metrics_ports[1], "strata_catalog_takeovers_total") == 1

        # The killed catalog comes back as the standby.
        ha.catalogs[0].start()
        time.sleep(2 * RENEW_MS / 1000)
        assert active_index(ha) == 1
        assert catalog_metric(ha.metrics_ports[0], "strata_catalog_is_active") == 0

        # A consumer group through the other agent lives through a second kill (of catalog b).
        group = f"ha-{uuid.uuid4().hex[:8]}"
        member = Consumer({"bootstrap.servers": reader.bootstrap, "group.id": group,
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "session.timeout.ms": 30000, "fetch.wait.max.ms": 100,
                           "reconnect.backoff.max.ms": 500})
        seen: list[int] = []
        try:
            member.subscribe([topic])

            def consume_until(n: int, timeout_s: float = 90) -> None:
                deadline = time.monotonic() + timeout_s
                while len(seen) < n:
                    assert time.monotonic() < deadline, f"consumed {len(seen)} of {n}"
                    msg = member.poll(0.5)
                    if msg is None or msg.error() is not None:
                        continue
                    seen.append(int(msg.value()))

            consume_until(count // 2)
            member.commit(asynchronous=False)
            killed_at = time.monotonic()
            ha.catalogs[1].kill9()
            wait_until(lambda: active_index(ha) == 0, timeout_s=2 * LEASE_MS / 1000,
                       what="catalog a takes over again")
            for agent in ha.agents:
                wait_until(lambda: produce_once(agent.bootstrap, probes),
                           timeout_s=3 * LEASE_MS / 1000, what=f"{agent.process.name} follows")
            measured["agents_follow_s"] = time.monotonic() - killed_at
            assert measured["agents_follow_s"] <= 2 * LEASE_MS / 1000 + 3, measured
            consume_until(count)

            def committed() -> bool:
                try:
                    member.commit(asynchronous=False)
                    return True
                except Exception:  # noqa: BLE001 - retriable while the coordinator moves
                    return False

            wait_until(committed, timeout_s=60, what="a commit after the takeover")
        finally:
            member.close()
        assert seen[:count] == list(range(count)), "the group member lost or repeated records"
        check = Consumer({"bootstrap.servers": writer.bootstrap, "group.id": group})
        try:
            offsets = check.committed([TopicPartition(topic, 0)], timeout=30)
        finally:
            check.close()
        assert offsets[0].offset >= count, offsets
        assert all(a.process.alive() and a.process.starts == 1 for a in ha.agents)
        print(f"measured: {measured}")
    finally:
        stop_ha(ha)


@pytest.mark.timeout(300)
def test_a_frozen_active_catalog_writes_nothing_after_the_takeover_and_steps_down(
        request, tmp_path, s3_endpoint, pg_database, topic):
    # Goal: the active catalog is frozen (SIGSTOP) under load past its lease; the standby takes
    # over; then the frozen one resumes (SIGCONT) with its old state and connections. It must
    # not commit anything (its writes are fenced by the lease term), it must step down (its
    # is_active gauge drops to 0, step_downs counts 1), and the log holds every acknowledged
    # record exactly once. Method: SIGSTOP inside the producer's kill hook, wait for the
    # takeover, SIGCONT, let the load finish through the new active.
    ha = start_ha(request, tmp_path, s3_endpoint, pg_database)
    try:
        writer, reader = ha.agents
        create_topic(writer.bootstrap, topic)
        count = 4000
        old = ha.catalogs[0]

        def freeze_active() -> None:
            old.proc.send_signal(signal.SIGSTOP)
            # Cannot read a frozen catalog's metrics: wait for catalog b alone.
            wait_until(lambda: catalog_metric(ha.metrics_ports[1],
                                              "strata_catalog_is_active") == 1,
                       timeout_s=2 * LEASE_MS / 1000, what="the standby takes over")
            # Keep it frozen a while longer under load through the new active.
            time.sleep(1.0)
            old.proc.send_signal(signal.SIGCONT)

        acked = produce_through_a_kill(writer.bootstrap, topic, count, kill_after=1000,
                                       kill=freeze_active, restart=lambda: None)
        wait_until(lambda: catalog_metric(ha.metrics_ports[0], "strata_catalog_is_active") == 0,
                   timeout_s=2 * RENEW_MS / 1000 + 5, what="the resumed catalog steps down")
        assert catalog_metric(ha.metrics_ports[0], "strata_catalog_step_downs_total") == 1
        assert catalog_metric(ha.metrics_ports[1], "strata_catalog_is_active") == 1
        records = consume_partition(reader.bootstrap, topic, 0, start=0, expect=count)
        assert_log_matches(records, acked, count)
        assert "STEPPED DOWN" in old.log_path.read_text(errors="replace")
    finally:
        stop_ha(ha)


@pytest.mark.timeout(300)
def test_a_rolling_restart_of_both_catalogs_loses_and_duplicates_nothing(
        request, tmp_path, s3_endpoint, pg_database, topic):
    # Goal: a rolling update under load: SIGTERM the active catalog (it releases the lease, the
    # standby takes over at once), start it again (now the standby), then SIGTERM the other and
    # start it again. Every acknowledged record is stored exactly once, and each handover is
    # quicker than a lease (the lease is released, not left to expire). Method: both restarts
    # happen inside the producer's kill hook.
    ha = start_ha(request, tmp_path, s3_endpoint, pg_database)
    try:
        writer, reader = ha.agents
        create_topic(writer.bootstrap, topic)
        count = 4000
        handovers: list[float] = []

        def roll() -> None:
            for leaving, taking in ((0, 1), (1, 0)):
                started = time.monotonic()
                assert ha.catalogs[leaving].stop(signal.SIGTERM) == 0
                wait_until(lambda: active_index(ha) == taking, timeout_s=LEASE_MS / 1000,
                           what=f"catalog {'ab'[taking]} takes over")
                handovers.append(time.monotonic() - started)
                ha.catalogs[leaving].start()
                time.sleep(0.5)

        acked = produce_through_a_kill(writer.bootstrap, topic, count, kill_after=1000,
                                       kill=roll, restart=lambda: None)
        records = consume_partition(reader.bootstrap, topic, 0, start=0, expect=count)
        assert_log_matches(records, acked, count)
        assert active_index(ha) == 0
        assert all(h < LEASE_MS / 1000 for h in handovers), handovers
        print(f"handovers: {handovers}")
    finally:
        stop_ha(ha)
