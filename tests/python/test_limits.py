"""Hard limits against hostile or careless clients (issue #11): each limit answers with Kafka's
error code or closes the connection, counts itself in /metrics, and leaves the agent serving.

Kafka's behaviour taken as the reference:
- a record batch above the topic's max.message.bytes (message.max.bytes when unset) ->
  MESSAGE_TOO_LARGE (10); records larger than the log can take in one piece ->
  RECORD_LIST_TOO_LARGE (18);
- fetch.max.bytes caps every Fetch response whatever the request's max_bytes (KIP-74: the first
  batch comes whole even when larger);
- max.connections.per.ip: a connection over the limit is closed on arrival;
- connections.max.idle.ms: an idle connection is closed;
- CreateTopics/CreatePartitions beyond a partition limit -> INVALID_PARTITIONS (37) for one
  topic's count, POLICY_VIOLATION (44) for the cluster's total.
"""

from __future__ import annotations

import re
import select
import signal
import struct
import time
import urllib.request

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import kafka_wire as kw
from conftest import _own_server, _teardown
from helpers import admin, create_topic
from kafka_wire import KafkaConnection, Reader, array, encode_batch, i8, i32, i64, string

RECORD_LIST_TOO_LARGE = 18
REQUEST_TIMED_OUT = 7
INVALID_PARTITIONS = 37
POLICY_VIOLATION = 44


def metric(server, name: str, labels: str = "") -> float:
    """The value of counter `name` (whose labels contain `labels`) in the agent's /metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{labels}}} in /metrics")


@pytest.fixture
def limited(request, tmp_path_factory):
    """Factory: a server of this test's own started with `extra_args`."""
    servers = []

    def start(*extra_args: str):
        name = re.sub(r"\W", "_", request.node.name)[:40]
        server = _own_server(request, tmp_path_factory, name, extra_args=list(extra_args))
        servers.append(server)
        return server

    yield start
    for server in servers:
        _teardown(server)


def assert_produces_promptly(server, topic: str, within_s: float = 10.0) -> None:
    """A small produce on a new connection is acknowledged within `within_s`."""
    started = time.monotonic()
    with KafkaConnection(server.bootstrap, timeout=within_s) as conn:
        resp = conn.produce(topic, 0, encode_batch([b"small"]))
    assert resp["error_code"] == kw.NONE, resp
    assert time.monotonic() - started < within_s


# --------------------------------------------------------------------------------------------
# 1. Produce batches larger than the buffer (or message.max.bytes)

BUFFER_BYTES = 8 << 20


def test_a_batch_larger_than_the_buffer_is_refused_and_produce_goes_on(limited, topic):
    # Goal: a batch larger than the agent's whole produce buffer (allowed by the topic's raised
    # max.message.bytes) is answered with MESSAGE_TOO_LARGE/RECORD_LIST_TOO_LARGE at once,
    # instead of waiting for room that can never exist and wedging every later produce.
    # Method: an 8 MiB buffer, a topic with max.message.bytes 100 MB, a 10 MiB batch, then a
    # small produce that must be acknowledged promptly.
    server = limited("--buffer-bytes-max", str(BUFFER_BYTES))
    create_topic(server.bootstrap, topic, config={"max.message.bytes": "100000000"})
    with KafkaConnection(server.bootstrap, timeout=10) as conn:
        resp = conn.produce(topic, 0, encode_batch([b"x" * (10 << 20)]))
    assert resp["error_code"] in (kw.MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE), resp
    assert_produces_promptly(server, topic)
    assert metric(server, "strata_produce_too_large_total") >= 1


def test_message_max_bytes_is_the_default_batch_limit(limited, topic, new_topic):
    # Goal: the broker's message_max_bytes (Kafka's message.max.bytes) limits batches of topics
    # without their own max.message.bytes; a topic's own setting still wins below the buffer.
    # Method: --message-max-bytes 65536; a 100 KB batch on a plain topic and on a topic with
    # max.message.bytes 1 MB.
    server = limited("--message-max-bytes", "65536")
    raised = new_topic()
    create_topic(server.bootstrap, topic)
    create_topic(server.bootstrap, raised, config={"max.message.bytes": "1000000"})
    with KafkaConnection(server.bootstrap) as conn:
        resp = conn.produce(topic, 0, encode_batch([b"y" * 100_000]))
        assert resp["error_code"] == kw.MESSAGE_TOO_LARGE, resp
        resp = conn.produce(raised, 0, encode_batch([b"y" * 100_000]))
        assert resp["error_code"] == kw.NONE, resp
    assert metric(server, "strata_produce_too_large_total") == 1


def test_sigterm_exits_with_an_oversized_produce_in_flight(limited, topic):
    # Goal: an oversized produce never holds the agent: SIGTERM right after one is sent exits
    # cleanly (before the fix, its connection waited for buffer room for ever and shutdown
    # waited for it). Method: send a 10 MiB batch to an 8 MiB buffer without reading the answer,
    # make sure it has arrived, SIGTERM, expect exit 0 within 15 s.
    server = limited("--buffer-bytes-max", str(BUFFER_BYTES))
    create_topic(server.bootstrap, topic, config={"max.message.bytes": "100000000"})
    conn = KafkaConnection(server.bootstrap, timeout=10)
    partition_data = i32(0) + kw.compact_bytes(encode_batch([b"x" * (10 << 20)])) + kw.NO_TAGS
    topic_data = kw.compact_string(topic) + kw.compact_array([partition_data]) + kw.NO_TAGS
    body = (kw.compact_string(None) + kw.i16(-1) + i32(30_000) + kw.compact_array([topic_data])
            + kw.NO_TAGS)
    conn.request(kw.PRODUCE, 9, body, expect_response=False)
    # The produce is in: a request behind it on another connection is answered.
    assert_produces_promptly(server, topic)
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=15)
    finally:
        conn.close()
    assert code == 0, server.log_tail()


# --------------------------------------------------------------------------------------------
# 2. Fetch responses capped by fetch_max_bytes

FETCH_MAX_BYTES = 1 << 20
BATCH_VALUE_BYTES = 100_000


def raw_fetch(conn: KafkaConnection, topic: str, partitions: list[int], max_bytes: int,
              partition_max_bytes: int) -> tuple[int, int, list[int]]:
    """Fetch v4 of `partitions` (repeats allowed) of `topic` from offset 0; returns the response
    body size, the total record bytes, and each entry's record bytes."""
    parts = [i32(p) + i64(0) + i32(partition_max_bytes) for p in partitions]
    body = (i32(-1) + i32(0) + i32(1) + i32(max_bytes) + i8(0)
            + array([string(topic) + array(parts)]))
    raw = conn.request(kw.FETCH, 4, body)
    r = Reader(raw)
    r.i32()  # throttle
    sizes = []
    for _ in range(r.array_len()):
        r.string()
        for _ in range(r.array_len()):
            _pidx, err, _hw, _lso = r.i32(), r.i16(), r.i64(), r.i64()
            assert err == kw.NONE, err
            for _ in range(max(r.array_len(), 0)):
                r.i64()
                r.i64()
            sizes.append(len(r.nullable_bytes() or b""))
    return len(raw), sum(sizes), sizes


def test_fetch_responses_stay_under_fetch_max_bytes(limited, topic):
    # Goal: whatever max_bytes a Fetch asks (0 and -1 meaning "unlimited" to old clients,
    # i32::MAX) and however often it repeats a partition, the response carries at most
    # fetch_max_bytes of records (plus, per KIP-74, at most one batch more when the first does
    # not fit). Method: --fetch-max-bytes 1 MiB, 4 MB of 100 KB batches in one partition, raw
    # Fetch v4 requests.
    server = limited("--fetch-max-bytes", str(FETCH_MAX_BYTES))
    create_topic(server.bootstrap, topic)
    with KafkaConnection(server.bootstrap) as conn:
        for _ in range(40):
            resp = conn.produce(topic, 0, encode_batch([b"f" * BATCH_VALUE_BYTES]))
            assert resp["error_code"] == kw.NONE, resp
        bound = FETCH_MAX_BYTES + BATCH_VALUE_BYTES + 1024
        for max_bytes in (0, -1, 2**31 - 1):
            size, records, _ = raw_fetch(conn, topic, [0], max_bytes, 2**31 - 1)
            assert 0 < records <= FETCH_MAX_BYTES, (max_bytes, records)
            assert size < bound, (max_bytes, size)
        # The same partition named 50 times: read once, the repeats carry no records.
        size, records, sizes = raw_fetch(conn, topic, [0] * 50, 2**31 - 1, 2**31 - 1)
        assert len(sizes) == 50
        assert 0 < records <= FETCH_MAX_BYTES, sizes
        assert size < bound + 50 * 64, size
        # A small max_bytes still gets the first batch whole (KIP-74) and nothing more.
        _, records, _ = raw_fetch(conn, topic, [0], 1, 1)
        assert BATCH_VALUE_BYTES < records < 2 * BATCH_VALUE_BYTES, records
    assert metric(server, "strata_fetch_max_bytes_capped_total") >= 4


FETCH_MEMORY_BYTES = 16 << 20
HELD_FETCH_BYTES = 12 << 20


def send_fetch(conn: KafkaConnection, topic: str, max_bytes: int) -> None:
    """A Fetch v4 of partition 0 from offset 0, its response left unread."""
    part = i32(0) + i64(0) + i32(max_bytes)
    body = (i32(-1) + i32(0) + i32(1) + i32(max_bytes) + i8(0)
            + array([string(topic) + array([part])]))
    conn.request(kw.FETCH, 4, body, expect_response=False)


def test_fetch_responses_share_one_memory_budget_and_unread_ones_are_dropped(limited, topic):
    # Goal (hostile Fetch): responses held by clients that do not read them count against one
    # agent-wide budget (fetch_memory_bytes_max), so a second large fetch meanwhile gets only
    # what is free; a client that reads nothing for response_write_timeout_ms is disconnected
    # and its memory given back. Before the budget, 64 such readers took an agent to 2.7 GiB.
    # Method: a 16 MiB budget; 16 MiB of 500 KB batches; a connection with a tiny receive
    # buffer asks 12 MiB and does not read; another asks 12 MiB and gets at most the free 4 MiB
    # (plus one batch, KIP-74); after the write timeout the stuck one is closed and a fetch
    # gets its full 12 MiB again.
    server = limited("--fetch-memory-bytes-max", str(FETCH_MEMORY_BYTES),
                     "--response-write-timeout-ms", "2000")
    create_topic(server.bootstrap, topic)
    batch_bytes = 500_000
    with KafkaConnection(server.bootstrap) as conn:
        for _ in range(34):
            resp = conn.produce(topic, 0, encode_batch([b"m" * batch_bytes]))
            assert resp["error_code"] == kw.NONE, resp
        _, records, _ = raw_fetch(conn, topic, [0], HELD_FETCH_BYTES, HELD_FETCH_BYTES)
        assert records > HELD_FETCH_BYTES - batch_bytes, "alone, a fetch gets its whole budget"

    stuck = KafkaConnection(server.bootstrap)
    try:
        stuck.sock.setsockopt(kw.socket.SOL_SOCKET, kw.socket.SO_RCVBUF, 4096)
        send_fetch(stuck, topic, HELD_FETCH_BYTES)
        time.sleep(0.5)
        with KafkaConnection(server.bootstrap) as other:
            _, records, _ = raw_fetch(other, topic, [0], HELD_FETCH_BYTES, HELD_FETCH_BYTES)
            assert 0 < records <= FETCH_MEMORY_BYTES - HELD_FETCH_BYTES + batch_bytes + 1024, \
                records
        assert metric(server, "strata_fetch_memory_limited_total", 'outcome="reduced"') >= 1
        # The stuck client is cut off once it has read nothing for 2 s, and its response's
        # memory comes back (checked by the last fetch below, with the stuck socket still open).
        deadline = time.monotonic() + 15
        while metric(server, "strata_response_write_timeouts_total") < 1:
            assert time.monotonic() < deadline, "a connection that reads nothing is closed"
            time.sleep(0.2)
        with KafkaConnection(server.bootstrap) as conn:
            _, records, _ = raw_fetch(conn, topic, [0], HELD_FETCH_BYTES, HELD_FETCH_BYTES)
            assert records > HELD_FETCH_BYTES - batch_bytes, "the stuck response's memory is back"
    finally:
        stuck.close()


# --------------------------------------------------------------------------------------------
# 7. Connections: caps, idle timeout, frame read deadline


def closed_within(conn: KafkaConnection, seconds: float) -> bool:
    return conn.is_closed_by_peer(wait=seconds)


def open_working(server, within_s: float = 10.0) -> KafkaConnection:
    """A connection that answers ApiVersions. A place freed by a connection the client closed
    comes back once the agent has seen it close (the readiness probe's, or one just closed), so
    a connection refused meanwhile is retried until `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        conn = KafkaConnection(server.bootstrap, timeout=10)
        try:
            if conn.api_versions(0)[0] == kw.NONE:
                return conn
        except (kw.ConnectionClosed, ConnectionResetError):
            pass
        conn.close()
        assert time.monotonic() < deadline, "no place for a connection"
        time.sleep(0.05)


def test_connections_over_the_per_ip_cap_are_closed(limited):
    # Goal: max_connections_per_ip bounds one address's open connections: one more is closed on
    # arrival, the open ones keep working, and a freed place can be taken again.
    # Method: --max-connections-per-ip 3; open 3 (each answers ApiVersions), then a 4th.
    server = limited("--max-connections-per-ip", "3")
    conns = []
    try:
        for _ in range(3):
            conns.append(open_working(server))
        with KafkaConnection(server.bootstrap, timeout=10) as extra:
            assert closed_within(extra, 5), "a 4th connection from one address stayed open"
        for conn in conns:
            assert conn.api_versions(0)[0] == kw.NONE
        conns.pop().close()
        conns.append(open_working(server))
    finally:
        for conn in conns:
            conn.close()
    refused = metric(server, "strata_connections_refused_total", 'limit="max_connections_per_ip"')
    assert refused >= 1


def test_an_idle_connection_is_closed(limited):
    # Goal: connections_max_idle_ms closes a connection that sends nothing, and only such a one.
    # Method: --connections-max-idle-ms 1000; one connection goes quiet after a request, another
    # sends a request every 300 ms for 3 s and must stay open.
    server = limited("--connections-max-idle-ms", "1000")
    with KafkaConnection(server.bootstrap, timeout=10) as idle, \
            KafkaConnection(server.bootstrap, timeout=10) as busy:
        assert idle.api_versions(0)[0] == kw.NONE
        started = time.monotonic()
        closed_at = None
        while time.monotonic() - started < 3:
            assert busy.api_versions(0)[0] == kw.NONE
            readable, _, _ = select.select([idle.sock], [], [], 0.3)
            if readable and closed_at is None and idle.sock.recv(1) == b"":
                closed_at = time.monotonic() - started
        assert closed_at is not None, "an idle connection stayed open past connections_max_idle_ms"
        assert 0.8 <= closed_at <= 2.5, closed_at
    assert metric(server, "strata_connections_idle_closed_total") >= 1


def test_a_connection_waiting_on_its_own_request_is_not_idle(limited, topic):
    # Goal: a connection whose request is still being answered (a long-polling Fetch at the end
    # of the log) is not idle, however long the answer takes; it becomes idle once answered.
    # Method: --connections-max-idle-ms 1000; a Fetch waiting 2.5 s for data that never comes
    # must be answered (not cut off at 1 s), then the quiet connection is closed.
    server = limited("--connections-max-idle-ms", "1000")
    create_topic(server.bootstrap, topic)
    with KafkaConnection(server.bootstrap, timeout=10) as conn:
        started = time.monotonic()
        resp = conn.fetch(topic, 0, 0, max_wait_ms=2500)
        waited = time.monotonic() - started
        assert resp["error_code"] == kw.NONE and resp["batches"] == [], resp
        assert waited >= 2.0, waited
        assert closed_within(conn, 10), "the connection stayed open once idle"


def test_a_frame_trickling_in_is_dropped_after_the_read_timeout(limited, topic):
    # Goal: a request frame must arrive whole within request_read_timeout_ms of its first byte:
    # a client trickling a byte every 200 ms (each byte would reset a per-read timer) is closed,
    # while a normal client keeps producing. Method: --request-read-timeout-ms 1000; announce
    # a 1000-byte frame and send it one byte at a time.
    server = limited("--request-read-timeout-ms", "1000")
    create_topic(server.bootstrap, topic)
    with KafkaConnection(server.bootstrap, timeout=10) as slow, \
            KafkaConnection(server.bootstrap, timeout=10) as normal:
        slow.send_raw(struct.pack(">i", 1000))
        started = time.monotonic()
        closed_at = None
        while time.monotonic() - started < 6:
            readable, _, _ = select.select([slow.sock], [], [], 0.2)
            if readable:
                try:
                    if slow.sock.recv(1) == b"":
                        closed_at = time.monotonic() - started
                        break
                except ConnectionResetError:
                    closed_at = time.monotonic() - started
                    break
            try:
                slow.send_raw(b"\x00")
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - started
                break
            resp = normal.produce(topic, 0, encode_batch([b"steady"]))
            assert resp["error_code"] == kw.NONE, resp
        assert closed_at is not None, "a trickling frame held its connection open"
        assert closed_at <= 3, closed_at
    assert metric(server, "strata_request_read_timeouts_total") >= 1


# --------------------------------------------------------------------------------------------
# 8. Partition limits


def admin_error(futures: dict, name: str) -> int:
    """The Kafka error code a CreateTopics/CreatePartitions future of `name` failed with."""
    with pytest.raises(KafkaException) as failed:
        futures[name].result(timeout=30)
    return failed.value.args[0].code()


def test_partition_limits_refuse_like_kafka(limited, new_topic):
    # Goal: max_partitions_per_topic refuses a topic (or growth) beyond it with
    # INVALID_PARTITIONS, max_partitions refuses what would take the cluster's total beyond it
    # with POLICY_VIOLATION; what fits is created. Method: limits 8 per topic and 20 in all,
    # through confluent-kafka's AdminClient.
    server = limited("--max-partitions-per-topic", "8", "--max-partitions", "20")
    client = admin(server.bootstrap)
    too_many, a, b, c, d = (new_topic() for _ in range(5))

    def create(name: str, partitions: int) -> dict:
        return client.create_topics([NewTopic(name, num_partitions=partitions,
                                              replication_factor=1)], operation_timeout=30)

    assert admin_error(create(too_many, 9), too_many) == INVALID_PARTITIONS
    assert admin_error(create(too_many, 100_000), too_many) == INVALID_PARTITIONS
    create(a, 8)[a].result(timeout=30)
    create(b, 8)[b].result(timeout=30)
    assert admin_error(create(c, 5), c) == POLICY_VIOLATION
    create(c, 3)[c].result(timeout=30)  # 19 of 20
    grow = client.create_partitions([NewPartitions(a, 9)], operation_timeout=30)
    assert admin_error(grow, a) == INVALID_PARTITIONS
    grow = client.create_partitions([NewPartitions(c, 5)], operation_timeout=30)
    assert admin_error(grow, c) == POLICY_VIOLATION
    client.create_partitions([NewPartitions(c, 4)], operation_timeout=30)[c].result(timeout=30)
    assert admin_error(create(d, 1), d) == POLICY_VIOLATION
    md = client.list_topics(timeout=30)
    assert too_many not in md.topics and d not in md.topics
    assert len(md.topics[c].partitions) == 4
    assert metric(server, "strata_partition_limit_refusals_total") == 6
