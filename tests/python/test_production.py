"""Production mode: `strata catalog` and `strata agent` as separate processes over S3 (moto).

Fixtures live in production.py: an S3 server for the session, and per test a fresh bucket,
a catalog on SQLite and two agents, each its own process with its own ports.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap


from conftest import find_strata_bin, port_open
from load import assert_log_matches, produce_through_a_kill
from helpers import consume_partition, create_topic, produce_all, producer, wait_until
from kafka_wire import KafkaConnection
# `cluster` and `s3_endpoint` are fixtures: importing them here makes pytest use them.
from production import (Process, cluster, free_port, http_get, init_bucket, pg_database,  # noqa: F401
                        role_env, run_strata, s3_endpoint, start_cluster, stop_cluster,
                        unique_bucket)


def test_init_bucket_reports_a_missing_bucket_then_creates_and_checks_it(s3_endpoint):
    # Goal: `strata admin init-bucket` says in plain words what is missing, creates the
    # bucket with --create, and confirms range GET and conditional PUT on a real S3 server.
    bucket = unique_bucket()
    missing = init_bucket(s3_endpoint, bucket)
    assert missing.returncode != 0
    assert "MISSING  bucket" in missing.stdout and "--create" in missing.stdout, missing.stdout

    created = init_bucket(s3_endpoint, bucket, "--create")
    assert created.returncode == 0, created.stdout + created.stderr
    assert f"`{bucket}` created" in created.stdout
    for feature in ("write", "range GET", "conditional PUT", "delete"):
        assert f"ok       {feature}:" in created.stdout, created.stdout
    assert "is ready for Strata" in created.stdout

    again = init_bucket(s3_endpoint, bucket)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"`{bucket}` exists" in again.stdout


def test_an_agent_refuses_to_start_on_a_bucket_that_does_not_exist(s3_endpoint, tmp_path):
    # Goal (issue #11 item 12): an agent pointed at a missing bucket used to start and then
    # time out every produce for as long as it ran, saying nothing. It must instead exit at
    # once, non-zero, naming the store and the command that creates the bucket.
    # Method: `strata agent` on a fresh bucket name that was never created.
    bucket = unique_bucket()
    result = run_strata("agent", "--catalog", "http://127.0.0.1:9",
                        "--object-store", f"s3://{bucket}/data", "--s3-endpoint", s3_endpoint,
                        "--listen", f"127.0.0.1:{free_port()}",
                        "--metrics-listen", f"127.0.0.1:{free_port()}",
                        "--cache-dir", str(tmp_path / "cache"), timeout=60)
    assert result.returncode != 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert bucket in output and "init-bucket --create" in output, output


def test_produce_through_one_agent_consume_through_another(cluster, topic):
    # Goal: agents share nothing but the catalog and the bucket: what one acknowledges
    # (acks=all), another serves with the same offsets, record for record.
    writer, reader = cluster.agents[0].bootstrap, cluster.agents[1].bootstrap
    create_topic(writer, topic, partitions=3)
    p = producer(writer, acks="all", enable_idempotence=True)
    messages = [{"key": f"k{i % 7}".encode(), "value": f"value-{i}".encode(),
                 "partition": i % 3} for i in range(600)]
    delivered = produce_all(p, topic, messages)

    for partition in range(3):
        expected = sorted((d.offset, d.key, d.value) for d in delivered if d.partition == partition)
        assert [o for o, _, _ in expected] == list(range(len(expected))), "offsets have gaps"
        records = consume_partition(reader, topic, partition, start=0, expect=len(expected))
        got = [(m.offset(), m.key(), m.value()) for m in records]
        assert got == expected, f"partition {partition} differs between the agents"


def test_every_role_serves_metrics_health_and_ready(cluster, topic):
    create_topic(cluster.agents[0].bootstrap, topic)
    produce_all(producer(cluster.agents[0].bootstrap, acks="all"), topic, [{"value": b"x"}])
    ports = [cluster.catalog_metrics_port, *(a.metrics_port for a in cluster.agents)]
    for port in ports:
        for path in ("/health", "/ready"):
            assert http_get(port, path) == (200, "ok\n"), (port, path)
        status, body = http_get(port, "/metrics")
        assert status == 200 and "# TYPE" in body, (port, body[:200])
    catalog = http_get(cluster.catalog_metrics_port, "/metrics")[1]
    assert "strata_catalog_up 1" in catalog
    # The produce above went through CommitSegment: its catalog-side latency is measured.
    assert 'strata_catalog_rpc_duration_seconds_count{method="CommitSegment"}' in catalog
    agent = http_get(cluster.agents[0].metrics_port, "/metrics")[1]
    assert 'api="Produce"' in agent and "strata_request_duration_seconds_bucket" in agent


def test_sigterm_flushes_buffered_writes_before_the_agent_exits(cluster, topic):
    # Goal: SIGTERM is a clean shutdown: an agent holding unflushed writes (a flush interval
    # far longer than the test) flushes and commits them, acknowledges them, and exits 0.
    slow = cluster.agents[0].process
    assert slow.stop(signal.SIGTERM) == 0
    slow.argv += ["--flush-interval-ms", "60000", "--flush-bytes", str(64 * 1024 * 1024)]
    slow.start()
    bootstrap = cluster.agents[0].bootstrap
    # Leaders spread over the fleet: write to a partition the slow agent leads.
    create_topic(bootstrap, topic, partitions=8)
    partition = partition_led_by(cluster.agents[0], topic)

    p = producer(bootstrap, acks="all", enable_idempotence=True)
    acked: list[tuple[int, bytes]] = []
    p_errors: list[str] = []

    def report(err, msg):
        if err is None:
            acked.append((msg.offset(), msg.value()))
        else:
            p_errors.append(str(err))

    for i in range(50):
        p.produce(topic, value=f"buffered-{i}".encode(), partition=partition,
                  on_delivery=report)
    p.poll(1.0)
    assert not acked, "acknowledged before any flush: the flush interval did not apply"
    assert slow.stop(signal.SIGTERM) == 0, slow.log_tail()
    assert p.flush(30) == 0 and not p_errors, p_errors
    assert len(acked) == 50

    records = consume_partition(cluster.agents[1].bootstrap, topic, partition, start=0,
                                expect=50)
    assert [(m.offset(), m.value()) for m in records] == sorted(acked)


def partition_led_by_any(cluster, topic: str):
    """The agent that leads partition 0 of `topic`, once the fleet is complete."""
    ports = {a.process.port for a in cluster.agents}

    def leader():
        with KafkaConnection(cluster.agents[0].bootstrap) as conn:
            md = conn.metadata([topic])
        if {port for _node, _host, port in md["brokers"]} != ports:
            return None
        by_node = {node: port for node, _host, port in md["brokers"]}
        port = by_node.get(md["topics"][topic]["leaders"].get(0))
        return next((a for a in cluster.agents if a.process.port == port), None)
    return wait_until(leader, what="the fleet to list every agent")


def partition_led_by(agent, topic: str) -> int:
    """A partition of `topic` whose leader, in `agent`'s Metadata, is `agent` itself."""
    def find():
        with KafkaConnection(agent.bootstrap) as conn:
            md = conn.metadata([topic])
        own = [node for node, _host, port in md["brokers"] if port == agent.process.port]
        leaders = md["topics"][topic]["leaders"]
        return next((p for p, leader in leaders.items() if own and leader == own[0]), None)
    found = wait_until(lambda: find() is not None, what=f"a partition led by {agent.bootstrap}")
    assert found
    return find()


def test_settings_layer_flags_over_environment_over_file(tmp_path):
    # Goal: one config model: the TOML file sets everything, STRATA_* overrides it, and a
    # flag overrides both. Observed through the ports the catalog opens.
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    file_metrics, env_metrics = free_port(), free_port()
    config = tmp_path / "strata.toml"
    config.write_text(textwrap.dedent(f"""
        [catalog]
        store = "sqlite://{tmp_path / 'catalog.db'}"
        listen = "127.0.0.1:{file_port}"
        metrics_listen = "127.0.0.1:{file_metrics}"
    """))
    env = {**role_env(), "STRATA_LISTEN": f"127.0.0.1:{env_port}",
           "STRATA_METRICS_LISTEN": f"127.0.0.1:{env_metrics}"}
    argv = [str(find_strata_bin()), "catalog", "--config", str(config),
            "--listen", f"127.0.0.1:{flag_port}"]
    catalog = Process("strata catalog", argv, tmp_path / "catalog.log", flag_port, env=env)
    catalog.start()
    try:
        assert http_get(env_metrics, "/health") == (200, "ok\n"), "STRATA_METRICS_LISTEN ignored"
        assert not port_open(file_port) and not port_open(env_port)
        assert not port_open(file_metrics)
    finally:
        assert catalog.stop(signal.SIGTERM) == 0, catalog.log_tail()

    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nflush_interval = 5\n")
    result = subprocess.run([str(find_strata_bin()), "agent", "--config", str(bad)],
                            capture_output=True, text=True, env=role_env(), timeout=30)
    assert result.returncode != 0
    assert "flush_interval" in result.stderr and "docs/configuration.md" in result.stderr


def test_kill9_of_an_agent_under_idempotent_load_loses_and_duplicates_nothing(cluster, topic):
    # Goal (promise 1): with acks=all and idempotence, every acknowledged record survives a
    # kill -9 of the agent it was produced through, exactly once and in order. The producer
    # knows only the agent that leads partition 0 (leaders spread over the fleet), which is
    # restarted on the same port; the other agent reads everything back.
    create_topic(cluster.agents[0].bootstrap, topic)
    writer, reader = cluster.agents
    if partition_led_by_any(cluster, topic) is cluster.agents[1]:
        writer, reader = reader, writer
    count = 10000
    acked = produce_through_a_kill(writer.bootstrap, topic, count, kill_after=2000,
                                   kill=writer.process.kill9, restart=writer.process.start)
    records = consume_partition(reader.bootstrap, topic, 0, start=0, expect=count)
    assert_log_matches(records, acked, count)


def test_catalog_on_postgresql_serves_two_agents(request, tmp_path, s3_endpoint, pg_database,
                                                 topic):
    # Goal: `strata catalog --store postgres://...` is a drop-in for SQLite: agents over S3
    # produce through one and consume through the other. Uses a database of its own on the
    # server .ci/run starts (STRATA_TEST_PG_URL).
    cluster = start_cluster(tmp_path, s3_endpoint, store=pg_database)
    request.node._strata_servers = cluster.processes()
    try:
        create_topic(cluster.agents[0].bootstrap, topic, partitions=2)
        messages = [{"value": f"pg-{i}".encode(), "partition": i % 2} for i in range(200)]
        delivered = produce_all(producer(cluster.agents[0].bootstrap, acks="all",
                                         enable_idempotence=True), topic, messages)
        for partition in range(2):
            expected = sorted((d.offset, d.value) for d in delivered
                              if d.partition == partition)
            records = consume_partition(cluster.agents[1].bootstrap, topic, partition,
                                        start=0, expect=len(expected))
            assert [(m.offset(), m.value()) for m in records] == expected
    finally:
        complaints = stop_cluster(cluster)
    assert not complaints, "\n".join(complaints)
