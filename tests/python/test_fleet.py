"""The agent fleet in production mode: a catalog on PostgreSQL and three agents in zones a, b
and c over moto S3, each its own process, with a short agent lease (2 s).

Covers registration (Metadata from any agent lists every live agent with its rack), lease
expiry (a kill -9'd agent drops out), zombie fencing (an agent paused past its lease cannot
commit; its producers retry and lose or duplicate nothing) and follower fetching (a consumer
with `client.rack` reads from the agent of its zone).
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from helpers import consume_partition, create_topic, producer, wait_until
from kafka_wire import KafkaConnection
# `s3_endpoint` is a fixture: importing it here makes pytest use it.
from production import (http_get, pg_database, s3_endpoint, start_cluster,  # noqa: F401
                        stop_cluster)

LEASE_MS = 2_000
ZONES = ["a", "b", "c"]




@pytest.fixture
def fleet(request, tmp_path, s3_endpoint, pg_database):
    """Catalog (PostgreSQL, 2 s leases) and agents 1..3 in zones a, b, c. Flushes wait up to
    1 s (not eager), so a produce sits in an agent's buffer long enough to pause the agent."""
    cluster = start_cluster(
        tmp_path, s3_endpoint, agents=3, store=pg_database,
        catalog_args=["--agent-lease-ms", str(LEASE_MS)],
        agent_args=["--flush-interval-ms", "1000"],
        agent_args_each=[["--zone", zone, "--agent-id", f"agent-{zone}"] for zone in ZONES])
    request.node._strata_servers = [*getattr(request.node, "_strata_servers", []),
                                    *cluster.processes()]
    yield cluster
    for agent in cluster.agents:
        if agent.process.alive():
            # A test may leave an agent stopped: let it run so SIGTERM can end it.
            agent.process.proc.send_signal(signal.SIGCONT)
    complaints = stop_cluster(cluster)
    if complaints:
        pytest.fail("\n".join(complaints), pytrace=False)


def metadata(agent, topics: list[str] | None = None) -> dict:
    with KafkaConnection(agent.bootstrap) as conn:
        return conn.metadata(topics)


def brokers_by_port(agent) -> dict[int, tuple[int, str | None]]:
    """The brokers an agent's Metadata lists: port -> (node id, rack)."""
    md = metadata(agent)
    return {port: (node, md["racks"][node]) for node, _host, port in md["brokers"]}


def agent_ports(cluster) -> set[int]:
    return {a.process.port for a in cluster.agents}


def metric(agent, name: str) -> float:
    status, body = http_get(agent.metrics_port, "/metrics")
    assert status == 200, body
    match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", body, re.MULTILINE)
    assert match, f"{name} not in /metrics:\n{body}"
    return float(match.group(1))


def test_metadata_lists_live_agents_with_racks_and_drops_a_dead_one(fleet, topic):
    # Goal: Metadata from every agent lists all three live agents with their zones as racks
    # and spreads partition leaders over them (replicas = every agent, leader first); /ready
    # says yes once registered; a kill -9'd agent drops out of everyone's Metadata after its
    # lease. Method: poll each agent's Metadata over a raw connection.
    ports = agent_ports(fleet)
    for agent in fleet.agents:
        wait_until(lambda a=agent: set(brokers_by_port(a)) == ports, timeout_s=15,
                   what=f"{agent.bootstrap} to list every agent")
        listed = brokers_by_port(agent)
        racks = {port: rack for port, (_node, rack) in listed.items()}
        assert racks == {a.process.port: zone for a, zone in zip(fleet.agents, ZONES)}, listed
        assert http_get(agent.metrics_port, "/ready") == (200, "ok\n")

    create_topic(fleet.agents[0].bootstrap, topic, partitions=12)
    md = metadata(fleet.agents[1], [topic])
    nodes = {node for node, _host, _port in md["brokers"]}
    leaders = md["topics"][topic]["leaders"]
    assert set(leaders.values()) == nodes, f"leaders not spread over all agents: {leaders}"
    for partition, replicas in md["topics"][topic]["replicas"].items():
        assert replicas[0] == leaders[partition] and sorted(replicas) == sorted(nodes)

    dead = fleet.agents[2]
    dead.process.kill9()
    alive = [a for a in fleet.agents if a is not dead]
    killed_at = time.monotonic()
    for agent in alive:
        wait_until(lambda a=agent: dead.process.port not in brokers_by_port(a), timeout_s=15,
                   what=f"{agent.bootstrap} to drop the dead agent")
    # Not before its lease ran out (the catalog fences on expiry, not earlier).
    assert time.monotonic() - killed_at >= LEASE_MS / 1000 * 0.5


def test_zombie_agent_cannot_commit_and_its_producer_loses_nothing(fleet, topic):
    # Goal: an agent paused past its lease (a zombie) is fenced: when it resumes, the flush it
    # was holding is refused by the catalog (stale epoch), its produce gets a retriable error,
    # the agent registers again, and the idempotent producer's retries land every record
    # exactly once, in order. Method: hold records in the zombie's buffer (1 s flush
    # interval), SIGSTOP it for twice the lease, SIGCONT, then check the zombie's fenced-commit
    # counter and read the partition back through another agent.
    zombie, reader = fleet.agents[0], fleet.agents[1]
    ports = agent_ports(fleet)
    wait_until(lambda: set(brokers_by_port(zombie)) == ports, what="the zombie to see the fleet")
    create_topic(zombie.bootstrap, topic, partitions=6)
    zombie_node = brokers_by_port(zombie)[zombie.process.port][0]
    leaders = metadata(zombie, [topic])["topics"][topic]["leaders"]
    partition = next(p for p, leader in leaders.items() if leader == zombie_node)

    p = producer(zombie.bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    acked, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked.append((msg.offset(), msg.value()))

    for i in range(50):
        p.produce(topic, value=f"before-{i}".encode(), partition=partition, on_delivery=on_delivery)
    assert p.flush(30) == 0 and not errors and len(acked) == 50, errors
    assert metric(zombie, "strata_catalog_commits_fenced_total") == 0

    for i in range(50):
        p.produce(topic, value=f"paused-{i}".encode(), partition=partition, on_delivery=on_delivery)
    p.poll(0.3)  # sent; the zombie holds them in its buffer for up to 1 s
    zombie.process.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: zombie.process.port not in brokers_by_port(reader), timeout_s=15,
                   what="the paused agent's lease to expire")
        time.sleep(LEASE_MS / 1000 / 2)  # margin: the zombie is fenced, not merely unlisted
    finally:
        zombie.process.proc.send_signal(signal.SIGCONT)
    assert p.flush(60) == 0, "records not delivered after the zombie resumed"
    assert not errors, errors

    assert metric(zombie, "strata_catalog_commits_fenced_total") >= 1, \
        "the zombie's stale-epoch commit was not refused"
    assert len(acked) == 100
    wait_until(lambda: zombie.process.port in brokers_by_port(reader), timeout_s=15,
               what="the zombie to register again")
    records = consume_partition(reader.bootstrap, topic, partition, start=0, expect=100)
    values = [m.value() for m in records]
    expected = [f"before-{i}".encode() for i in range(50)] + \
        [f"paused-{i}".encode() for i in range(50)]
    assert values == expected, "records lost, duplicated or reordered"
    assert [m.offset() for m in records] == list(range(100))
    assert sorted(acked) == [(m.offset(), m.value()) for m in records]


def test_consumer_with_client_rack_reads_from_its_zone(fleet, topic):
    # Goal: KIP-392 follower fetching: a consumer with client.rack=b, bootstrapped at the
    # zone-a agent, is sent to the zone-b agent for every partition (preferred read replica),
    # so only the zone-b agent returns record bytes. Method: per-agent fetch counters on
    # /metrics.
    ports = agent_ports(fleet)
    for agent in fleet.agents:
        wait_until(lambda a=agent: set(brokers_by_port(a)) == ports, timeout_s=15,
                   what=f"{agent.bootstrap} to list every agent")
    zone_a, zone_b, zone_c = fleet.agents
    create_topic(zone_a.bootstrap, topic, partitions=6)
    p = producer(zone_a.bootstrap, acks="all")
    for i in range(60):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 6)
    assert p.flush(30) == 0

    before = {a.process.port: metric(a, "strata_fetch_bytes_total") for a in fleet.agents}
    for partition in range(6):
        records = consume_partition(zone_a.bootstrap, topic, partition, start=0, expect=10,
                                    client_rack="b")
        assert [m.value() for m in records] == [f"v{i}".encode() for i in range(partition, 60, 6)]
    served = {a.process.port: metric(a, "strata_fetch_bytes_total") - before[a.process.port]
              for a in fleet.agents}
    assert served[zone_b.process.port] > 0, served
    assert served[zone_a.process.port] == 0 and served[zone_c.process.port] == 0, served
    redirects = metric(zone_a, "strata_fetch_redirects_total") + \
        metric(zone_c, "strata_fetch_redirects_total")
    assert redirects >= 1, "no agent outside zone b sent the consumer to zone b"


def test_agents_started_without_ids_do_not_fence_each_other(request, tmp_path, s3_endpoint,
                                                             topic):
    # Goal (issue #11 item 5): two agents started with neither --agent-id nor --node-id used
    # to share the id `agent-0`: each registration replaced the other's epoch, every commit of
    # the older one was refused, and they fenced each other in a loop. Each must now get an id
    # of its own. Method: start two such agents on one catalog (2 s leases), wait three leases,
    # then check both are listed, each registered once and was never fenced, and a produce
    # through each is acknowledged.
    cluster = start_cluster(tmp_path, s3_endpoint, agents=2, node_ids=False,
                            catalog_args=["--agent-lease-ms", str(LEASE_MS)])
    request.node._strata_servers = [*getattr(request.node, "_strata_servers", []),
                                    *cluster.processes()]
    try:
        first, second = cluster.agents
        create_topic(first.bootstrap, topic, partitions=2)
        time.sleep(3 * LEASE_MS / 1000)
        assert set(brokers_by_port(first)) == agent_ports(cluster)
        for agent in (first, second):
            p = producer(agent.bootstrap)
            p.produce(topic, value=b"x", partition=0)
            assert p.flush(30) == 0
            assert metric(agent, "strata_catalog_commits_fenced_total") == 0
        log = (tmp_path / "catalog.log").read_text(errors="replace")
        assert log.count("agent registered") == 2, log[-4000:]
        assert "lease expired; fenced" not in log
    finally:
        complaints = stop_cluster(cluster)
        assert not complaints, "\n".join(complaints)
