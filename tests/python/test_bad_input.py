"""Raw-socket bad input and idempotence edge cases: strata answers like Kafka and stays up.

Kafka's behaviour asserted here (Apache Kafka SocketServer / RequestContext):
- a size prefix above socket.request.max.bytes (100 MiB) closes the connection;
- an unparsable request header, an unknown API key, or an unsupported version of any API
  other than ApiVersions closes the connection without a response;
- an unsupported ApiVersions version is answered as v0 with UNSUPPORTED_VERSION (35) and the
  supported version ranges, so that the client can retry with a version it knows;
- Produce: bad CRC -> CORRUPT_MESSAGE (2); unknown topic/partition -> UNKNOWN_TOPIC_OR_PARTITION
  (3) (Produce never auto-creates); a batch above max.message.bytes -> MESSAGE_TOO_LARGE (10);
- idempotence: a retried batch (same producer id, epoch, sequence) within the last 5 batches
  is answered NONE with the ORIGINAL base offset and not appended again (current brokers never
  send DUPLICATE_SEQUENCE_NUMBER (46); we accept it but still require nothing appended); a
  sequence gap -> OUT_OF_ORDER_SEQUENCE_NUMBER (45); an epoch older than one already written
  -> INVALID_PRODUCER_EPOCH (47).
"""

from __future__ import annotations

import pytest

import kafka_wire as kw
from helpers import consume_partition, create_topic, produce_all, producer
from kafka_wire import KafkaConnection, encode_batch, i16, i32, string


def assert_server_answers(server) -> None:
    assert server.alive(), f"strata died\n{server.log_tail()}"
    with KafkaConnection(server.bootstrap) as conn:
        error, ranges = conn.api_versions(0)
    assert error == kw.NONE
    assert kw.PRODUCE in ranges


# --------------------------------------------------------------------------------------------
# Malformed frames


def test_huge_length_prefix_closes_connection(strata):
    # Goal: a frame announcing 200 MiB (> 100 MiB limit) is refused by closing, without a crash.
    with KafkaConnection(strata.bootstrap) as conn:
        conn.send_raw(i32(200 * 1024 * 1024) + b"\x00" * 64)
        assert conn.is_closed_by_peer(), "connection left open after a 200 MiB size prefix"
    assert_server_answers(strata)


def test_negative_length_prefix_closes_connection(strata):
    # Goal: a negative size prefix is refused by closing the connection.
    with KafkaConnection(strata.bootstrap) as conn:
        conn.send_raw(i32(-5) + b"\x00" * 16)
        assert conn.is_closed_by_peer()
    assert_server_answers(strata)


def test_http_garbage_closes_connection(strata):
    # Goal: an HTTP request (its first 4 bytes read as a ~1.2 GB size) is refused by closing.
    with KafkaConnection(strata.bootstrap) as conn:
        conn.send_raw(b"GET / HTTP/1.1\r\nHost: strata\r\n\r\n")
        assert conn.is_closed_by_peer()
    assert_server_answers(strata)


def test_malformed_header_closes_connection(strata):
    # Goal: a small frame whose client_id length overruns the frame closes the connection.
    payload = i16(kw.METADATA) + i16(1) + i32(7) + i16(5000) + b"\xff" * 16
    with KafkaConnection(strata.bootstrap) as conn:
        conn.send_raw(i32(len(payload)) + payload)
        assert conn.is_closed_by_peer()
    assert_server_answers(strata)


def test_truncated_body_closes_connection(strata):
    # Goal: a Metadata v1 request whose topic array claims more entries than sent closes.
    payload = i16(kw.METADATA) + i16(1) + i32(8) + string("bad") + i32(1000) + string("t")
    with KafkaConnection(strata.bootstrap) as conn:
        conn.send_raw(i32(len(payload)) + payload)
        assert conn.is_closed_by_peer()
    assert_server_answers(strata)


def test_unknown_api_key_closes_connection(strata):
    # Goal: an API key no Kafka version defines gets no response; the connection is closed.
    with KafkaConnection(strata.bootstrap) as conn:
        conn.request(32000, 0, b"", flexible_header=False, expect_response=False)
        assert conn.is_closed_by_peer()
    assert_server_answers(strata)


def test_unsupported_metadata_version_closes_connection(strata):
    # Goal: Metadata v99 (not ApiVersions) is refused by closing, as Kafka does.
    with KafkaConnection(strata.bootstrap) as conn:
        conn.request(kw.METADATA, 99, b"\x00", flexible_header=True, expect_response=False)
        assert conn.is_closed_by_peer()
    assert_server_answers(strata)


def test_api_versions_v99_answers_v0_with_error_35(strata):
    # Goal: ApiVersions v99 gets a v0 response, error UNSUPPORTED_VERSION, plus the real ranges.
    with KafkaConnection(strata.bootstrap) as conn:
        error, ranges = conn.api_versions(99)
        assert error == kw.UNSUPPORTED_VERSION
        for key in (kw.PRODUCE, kw.FETCH, kw.METADATA, kw.API_VERSIONS, kw.INIT_PRODUCER_ID):
            assert key in ranges, f"api {key} missing from {ranges}"
        assert ranges[kw.API_VERSIONS][0] == 0 and ranges[kw.API_VERSIONS][1] >= 3
        lo, hi = ranges[kw.PRODUCE]
        assert lo <= 9 <= hi, f"Produce range {lo}..{hi} lacks v9"
        # The connection stays usable: a supported version now succeeds on it.
        error, ranges_v3 = conn.api_versions(3)
        assert error == kw.NONE
        assert ranges_v3 == ranges


# --------------------------------------------------------------------------------------------
# Produce errors


def test_corrupt_crc_is_rejected(strata, topic):
    # Goal: a batch with a wrong CRC32C gets CORRUPT_MESSAGE and nothing is appended.
    create_topic(strata.bootstrap, topic)
    with KafkaConnection(strata.bootstrap) as conn:
        good = conn.produce(topic, 0, encode_batch([b"good"]))
        assert good["error_code"] == kw.NONE and good["base_offset"] == 0
        bad = conn.produce(topic, 0, encode_batch([b"evil"], corrupt_crc=True))
        assert bad["error_code"] == kw.CORRUPT_MESSAGE, bad
        hw, batches = conn.fetch_all(topic, 0)
    assert hw == 1
    assert [r.value for b in batches for r in b.records] == [b"good"]


def test_compressed_batches_are_checked_inside(strata, topic):
    # Goal: as a broker, the agent looks inside compressed batches: a body that does not
    # decompress is CORRUPT_MESSAGE, records that do not match the header are INVALID_RECORD,
    # and nothing of either is appended; a good gzip batch is stored and read back.
    import gzip
    create_topic(strata.bootstrap, topic)
    with KafkaConnection(strata.bootstrap) as conn:
        good = conn.produce(topic, 0, encode_batch([b"a", b"b"], codec=1, compress=gzip.compress))
        assert good["error_code"] == kw.NONE, good
        garbage = conn.produce(topic, 0, encode_batch(
            [b"evil"], codec=1, compress=lambda _records: b"\x1f\x8b not really gzip"))
        assert garbage["error_code"] == kw.CORRUPT_MESSAGE, garbage
        # Two records announced, one inside (a valid gzip stream of a shorter record list).
        one = encode_batch([b"x"])[61:]
        short = conn.produce(topic, 0, encode_batch(
            [b"x", b"y"], codec=1, compress=lambda _records: gzip.compress(one)))
        assert short["error_code"] == kw.INVALID_RECORD, short
        hw, batches = conn.fetch_all(topic, 0)
    assert hw == 2
    assert [r.value for b in batches for r in b.records] == [b"a", b"b"]


def test_unknown_topic_and_partition(strata, topic):
    # Goal: Produce to a missing topic (auto-create off) or partition answers UNKNOWN_TOPIC_OR_PARTITION.
    create_topic(strata.bootstrap, topic, partitions=1)
    missing = topic + "-missing"
    with KafkaConnection(strata.bootstrap) as conn:
        resp = conn.produce(missing, 0, encode_batch([b"x"]))
        assert resp["error_code"] == kw.UNKNOWN_TOPIC_OR_PARTITION, resp
        resp = conn.produce(topic, 7, encode_batch([b"x"]))
        assert resp["error_code"] == kw.UNKNOWN_TOPIC_OR_PARTITION, resp
        md = conn.metadata([missing])
    # Metadata does not create it either (auto-create is off on this server).
    assert md["topics"][missing]["error"] == kw.UNKNOWN_TOPIC_OR_PARTITION


def test_batch_over_max_message_bytes(strata, topic):
    # Goal: a 1.2 MB batch over the default max.message.bytes (1048588) gets MESSAGE_TOO_LARGE.
    create_topic(strata.bootstrap, topic)
    with KafkaConnection(strata.bootstrap) as conn:
        resp = conn.produce(topic, 0, encode_batch([b"z" * 1_200_000]))
        assert resp["error_code"] == kw.MESSAGE_TOO_LARGE, resp
        hw, _ = conn.fetch_all(topic, 0)
    assert hw == 0


def test_auto_create_on_metadata(strata_auto_create, topic):
    # Goal: with --auto-create-topics true, producing to a new topic creates it with the default count.
    reports = produce_all(producer(strata_auto_create.bootstrap), topic,
                          [{"value": b"hello", "partition": 1}])
    assert (reports[0].partition, reports[0].offset) == (1, 0)
    with KafkaConnection(strata_auto_create.bootstrap) as conn:
        md = conn.metadata([topic])
    assert md["topics"][topic]["error"] == kw.NONE
    assert sorted(md["topics"][topic]["partitions"]) == [0, 1]


def test_server_survives_bad_input_round_trip(strata, topic):
    # Goal: after a burst of every kind of bad input, a normal client round trip still works.
    create_topic(strata.bootstrap, topic)
    for payload in (i32(150 << 20), b"\x00\x00\x00\x02\xff", b"garbage" * 100, b"\xff" * 4096):
        with KafkaConnection(strata.bootstrap) as conn:
            conn.send_raw(payload)
            conn.is_closed_by_peer(wait=2)
    with KafkaConnection(strata.bootstrap) as conn:
        conn.send_raw(i32(1000))  # a frame that never completes; just hang up mid-frame
    values = [f"alive-{i}".encode() for i in range(10)]
    produce_all(producer(strata.bootstrap), topic, [{"value": v, "partition": 0} for v in values])
    got = consume_partition(strata.bootstrap, topic, 0, expect=10)
    assert [m.value() for m in got] == values
    assert_server_answers(strata)


# --------------------------------------------------------------------------------------------
# Idempotent produce, raw


@pytest.fixture
def idem(strata, topic):
    """A fresh topic and a producer id from InitProducerId."""
    create_topic(strata.bootstrap, topic)
    conn = KafkaConnection(strata.bootstrap)
    error, pid, epoch = conn.init_producer_id()
    assert error == kw.NONE, f"InitProducerId error {error}"
    assert pid >= 0 and epoch >= 0
    yield conn, topic, pid, epoch
    conn.close()


def values_of(conn: KafkaConnection, topic: str) -> tuple[int, list[bytes | None]]:
    hw, batches = conn.fetch_all(topic, 0)
    return hw, [r.value for b in batches for r in b.records]


def test_duplicate_batch_returns_original_offset(idem):
    # Goal: re-sending the same idempotent batch appends nothing and reports the first offset.
    conn, topic, pid, epoch = idem
    batch1 = encode_batch([b"a0", b"a1", b"a2"], producer_id=pid, producer_epoch=epoch,
                          base_sequence=0)
    batch2 = encode_batch([b"b0", b"b1"], producer_id=pid, producer_epoch=epoch, base_sequence=3)

    first = conn.produce(topic, 0, batch1)
    assert (first["error_code"], first["base_offset"]) == (kw.NONE, 0), first
    retry = conn.produce(topic, 0, batch1)
    assert retry["error_code"] in (kw.NONE, kw.DUPLICATE_SEQUENCE_NUMBER), retry
    if retry["error_code"] == kw.NONE:
        assert retry["base_offset"] == 0, retry

    second = conn.produce(topic, 0, batch2)
    assert (second["error_code"], second["base_offset"]) == (kw.NONE, 3), second
    # An older batch, still within the last five, is also recognised as a duplicate.
    again = conn.produce(topic, 0, batch1)
    assert again["error_code"] in (kw.NONE, kw.DUPLICATE_SEQUENCE_NUMBER), again
    if again["error_code"] == kw.NONE:
        assert again["base_offset"] == 0, again

    hw, values = values_of(conn, topic)
    assert hw == 5
    assert values == [b"a0", b"a1", b"a2", b"b0", b"b1"]
    _, batches = conn.fetch_all(topic, 0)
    assert [(b.producer_id, b.producer_epoch, b.base_sequence) for b in batches] == [
        (pid, epoch, 0), (pid, epoch, 3)]


def test_sequence_gap_is_out_of_order(idem):
    # Goal: a batch whose first sequence skips ahead gets OUT_OF_ORDER_SEQUENCE_NUMBER, not stored.
    conn, topic, pid, epoch = idem
    ok = conn.produce(topic, 0, encode_batch([b"s0", b"s1"], producer_id=pid,
                                             producer_epoch=epoch, base_sequence=0))
    assert ok["error_code"] == kw.NONE, ok
    gap = conn.produce(topic, 0, encode_batch([b"s5"], producer_id=pid, producer_epoch=epoch,
                                              base_sequence=5))
    assert gap["error_code"] == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, gap
    # The producer can still continue from the right sequence.
    cont = conn.produce(topic, 0, encode_batch([b"s2"], producer_id=pid, producer_epoch=epoch,
                                               base_sequence=2))
    assert (cont["error_code"], cont["base_offset"]) == (kw.NONE, 2), cont
    assert values_of(conn, topic) == (3, [b"s0", b"s1", b"s2"])


def test_old_epoch_is_fenced(idem):
    # Goal: after the producer's epoch is bumped (new epoch written from sequence 0, as an
    # idempotent client does after KIP-360), a batch with the old epoch gets INVALID_PRODUCER_EPOCH.
    conn, topic, pid, epoch = idem
    old = conn.produce(topic, 0, encode_batch([b"e0-0"], producer_id=pid, producer_epoch=epoch,
                                              base_sequence=0))
    assert old["error_code"] == kw.NONE, old
    bumped = conn.produce(topic, 0, encode_batch([b"e1-0"], producer_id=pid,
                                                 producer_epoch=epoch + 1, base_sequence=0))
    assert (bumped["error_code"], bumped["base_offset"]) == (kw.NONE, 1), bumped
    stale = conn.produce(topic, 0, encode_batch([b"e0-1"], producer_id=pid, producer_epoch=epoch,
                                                base_sequence=1))
    assert stale["error_code"] == kw.INVALID_PRODUCER_EPOCH, stale
    assert values_of(conn, topic) == (2, [b"e0-0", b"e1-0"])


def test_two_producers_have_distinct_ids(strata):
    # Goal: each InitProducerId for a non-transactional producer hands out a new producer id.
    with KafkaConnection(strata.bootstrap) as conn:
        ids = [conn.init_producer_id() for _ in range(3)]
    assert all(err == kw.NONE for err, _, _ in ids), ids
    assert len({pid for _, pid, _ in ids}) == 3, ids
