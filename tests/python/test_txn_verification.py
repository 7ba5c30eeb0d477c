"""KIP-890 transaction verification and per-transaction epochs, over the raw wire.

A transactional batch is appended only to a partition its producer's ongoing transaction
added, at the transactional id's current epoch: anything else (a partition never added, a
transaction already ended, an old epoch) is refused, so no stray batch can hold the last
stable offset of a partition that no marker will ever reach.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from kafka_wire import (
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    NONE,
    KafkaConnection,
    UNKNOWN_MEMBER_ID,
    encode_batch,
)
from helpers import OP_TIMEOUT_S, consume_partition, create_topic
from test_transactions import committed_high, high_watermark, values


def tid() -> str:
    return f"verify-{uuid.uuid4().hex[:10]}"


def txn_batch(pid: int, epoch: int, sequence: int, value: bytes) -> bytes:
    return encode_batch([value], producer_id=pid, producer_epoch=epoch, base_sequence=sequence,
                        transactional=True)


def test_batch_for_a_partition_never_added_is_refused(strata, topic):
    # Goal: a raw transactional batch for a partition the transaction never added is refused
    # with INVALID_TXN_STATE, and a read_committed consumer of that partition reaches the high
    # watermark (before KIP-890 verification the batch was accepted and held the LSO forever).
    # Method: InitProducerId, AddPartitionsToTxn(partition 0) only, then a transactional batch
    # for partition 1, a plain record after it, and read partition 1 read_committed.
    bs = strata.bootstrap
    create_topic(bs, topic, partitions=2)
    transactional_id = tid()
    with KafkaConnection(bs) as conn:
        error, pid, epoch = conn.init_transactional(transactional_id)
        assert error == NONE
        assert conn.add_partitions_to_txn(transactional_id, pid, epoch, topic, [0]) == {0: NONE}
        stray = conn.produce(topic, 1, txn_batch(pid, epoch, 0, b"stray"),
                             transactional_id=transactional_id)
        assert stray["error_code"] == INVALID_TXN_STATE, stray
        added = conn.produce(topic, 0, txn_batch(pid, epoch, 0, b"in-txn"),
                             transactional_id=transactional_id)
        assert added["error_code"] == NONE, added
        plain = conn.produce(topic, 1, encode_batch([b"plain"]))
        assert plain["error_code"] == NONE, plain
    assert high_watermark(bs, topic, partition=1) == 1
    assert committed_high(bs, topic, partition=1) == 1
    got = consume_partition(bs, topic, 1, isolation_level="read_committed")
    assert values(got) == [b"plain"]
    # Partition 0 holds the open transaction's batch: its LSO stays until the transaction ends.
    assert committed_high(bs, topic, partition=0) == 0


def test_batches_after_the_end_or_with_an_old_epoch_are_refused(strata, topic):
    # Goal: a delayed transactional batch that arrives after its transaction ended (same
    # epoch) is refused with INVALID_TXN_STATE, and one with an epoch other than the current
    # one with INVALID_PRODUCER_EPOCH; neither opens a transaction in the partition.
    # Method: a complete transaction (add, produce, commit with EndTxn v1), then a late batch
    # at the same epoch and one at epoch - 1; the LSO must equal the high watermark.
    bs = strata.bootstrap
    create_topic(bs, topic)
    transactional_id = tid()
    with KafkaConnection(bs) as conn:
        _, pid, epoch = conn.init_transactional(transactional_id)
        _, pid, epoch = conn.init_transactional(transactional_id)  # epoch >= 1
        assert epoch >= 1
        assert conn.add_partitions_to_txn(transactional_id, pid, epoch, topic, [0]) == {0: NONE}
        ok = conn.produce(topic, 0, txn_batch(pid, epoch, 0, b"t"),
                          transactional_id=transactional_id)
        assert ok["error_code"] == NONE, ok
        assert conn.end_txn(transactional_id, pid, epoch, commit=True)[0] == NONE
        late = conn.produce(topic, 0, txn_batch(pid, epoch, 1, b"late"),
                            transactional_id=transactional_id)
        assert late["error_code"] == INVALID_TXN_STATE, late
        old = conn.produce(topic, 0, txn_batch(pid, epoch - 1, 0, b"old"),
                           transactional_id=transactional_id)
        assert old["error_code"] == INVALID_PRODUCER_EPOCH, old
    assert high_watermark(bs, topic) == 2
    assert committed_high(bs, topic) == 2
    got = consume_partition(bs, topic, 0, isolation_level="read_committed")
    assert values(got) == [b"t"]


def test_transaction_version_2_is_finalized(strata):
    # Goal: ApiVersions v3+ advertises `transaction.version` 2 as a finalized feature, so a
    # client that knows KIP-890 part 2 uses EndTxn v5 (epoch bump per transaction).
    with KafkaConnection(strata.bootstrap) as conn:
        features = conn.api_versions_features()
        _, ranges = conn.api_versions(3)
    assert features.get("transaction.version") == (2, 2), features
    assert ranges[26][1] >= 5, "EndTxn v5"
    assert ranges[24][1] >= 5, "AddPartitionsToTxn v5"


def test_end_txn_v5_bumps_the_epoch_per_transaction(strata, topic):
    # Goal: a client that negotiates EndTxn v5 gets a new epoch at every transaction end, and
    # a delayed produce of the ended transaction (old epoch) cannot land in the next one.
    # Method: two transactions over the raw wire, each ended with EndTxn v5; check the
    # answered epochs, retry an EndTxn at the old epoch, then send a late batch at the old
    # epoch while the next transaction is open: refused, and the next commit holds only its
    # own record.
    bs = strata.bootstrap
    create_topic(bs, topic)
    transactional_id = tid()
    with KafkaConnection(bs) as conn:
        _, pid, epoch = conn.init_transactional(transactional_id)
        assert conn.add_partitions_to_txn(transactional_id, pid, epoch, topic, [0]) == {0: NONE}
        ok = conn.produce(topic, 0, txn_batch(pid, epoch, 0, b"first"),
                          transactional_id=transactional_id)
        assert ok["error_code"] == NONE, ok
        error, new_pid, new_epoch = conn.end_txn(transactional_id, pid, epoch, True, version=5)
        assert (error, new_pid, new_epoch) == (NONE, pid, epoch + 1)
        # A retry whose answer was lost: same answer.
        assert conn.end_txn(transactional_id, pid, epoch, True, version=5) == (
            NONE, pid, epoch + 1)

        assert conn.add_partitions_to_txn(transactional_id, pid, new_epoch, topic, [0]) == {
            0: NONE}
        late = conn.produce(topic, 0, txn_batch(pid, epoch, 1, b"delayed"),
                            transactional_id=transactional_id)
        assert late["error_code"] == INVALID_PRODUCER_EPOCH, late
        ok = conn.produce(topic, 0, txn_batch(pid, new_epoch, 0, b"second"),
                          transactional_id=transactional_id)
        assert ok["error_code"] == NONE, ok
        error, _, third_epoch = conn.end_txn(transactional_id, pid, new_epoch, True, version=5)
        assert (error, third_epoch) == (NONE, epoch + 2)
    got = consume_partition(bs, topic, 0, isolation_level="read_committed")
    assert values(got) == [b"first", b"second"]
    assert committed_high(bs, topic) == high_watermark(bs, topic) == 4


def open_abandoned_transaction(bs: str, topic: str, transactional_id: str) -> tuple[int, int]:
    """A transaction with one record in partition 0 whose producer goes away without ending
    it (its timeout is the maximum, so the reaper will not end it during the test)."""
    with KafkaConnection(bs) as conn:
        _, pid, epoch = conn.init_transactional(transactional_id, timeout_ms=900_000)
        assert conn.add_partitions_to_txn(transactional_id, pid, epoch, topic, [0]) == {0: NONE}
        ok = conn.produce(topic, 0, txn_batch(pid, epoch, 0, b"abandoned"),
                          transactional_id=transactional_id)
        assert ok["error_code"] == NONE, ok
        plain = conn.produce(topic, 0, encode_batch([b"after"]))
        assert plain["error_code"] == NONE, plain
    assert committed_high(bs, topic) == 0, "the open transaction holds the LSO"
    return pid, epoch


def test_write_txn_markers_unsticks_an_abandoned_transaction(strata, topic):
    # Goal: WriteTxnMarkers over the wire (what kafka-transactions.sh abort sends, with the
    # producer id and epoch DescribeProducers shows) aborts an ongoing transaction whose
    # producer is gone, so read_committed consumers move on.
    bs = strata.bootstrap
    create_topic(bs, topic)
    pid, epoch = open_abandoned_transaction(bs, topic, tid())
    with KafkaConnection(bs) as conn:
        assert conn.write_txn_markers(pid, epoch, topic, [0]) == {0: NONE}
    assert committed_high(bs, topic) == high_watermark(bs, topic) == 3
    got = consume_partition(bs, topic, 0, isolation_level="read_committed")
    assert values(got) == [b"after"]


def strata_txn(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(server.binary), "txn", "--catalog", f"http://127.0.0.1:{server.catalog_port}",
         *args], capture_output=True, text=True, timeout=OP_TIMEOUT_S)


def test_strata_txn_abort_unsticks_an_abandoned_transaction(strata, topic):
    # Goal: `strata txn list / describe / abort` find and end an ongoing transaction whose
    # producer is gone; the abort fences the producer (epoch bumped) and unsticks
    # read_committed consumers. A second abort says there is nothing to abort.
    bs = strata.bootstrap
    create_topic(bs, topic)
    transactional_id = tid()
    pid, epoch = open_abandoned_transaction(bs, topic, transactional_id)

    listed = strata_txn(strata, "list", "--state", "Ongoing", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [t for t in json.loads(listed.stdout)["transactions"]
            if t["transactional_id"] == transactional_id]
    assert mine == [{"transactional_id": transactional_id, "producer_id": pid,
                     "state": "Ongoing"}]
    described = strata_txn(strata, "describe", transactional_id, "--json")
    assert described.returncode == 0, described.stderr
    description = json.loads(described.stdout)
    assert description["state"] == "Ongoing"
    assert description["producer_epoch"] == epoch
    assert description["partitions"] == [{"topic": topic, "partition": 0}]

    aborted = strata_txn(strata, "abort", transactional_id, "--json")
    assert aborted.returncode == 0, aborted.stderr
    result = json.loads(aborted.stdout)
    assert result["producer_epoch"] == epoch + 1
    assert result["partitions"] == [{"topic": topic, "partition": 0}]
    assert committed_high(bs, topic) == high_watermark(bs, topic) == 3
    assert values(consume_partition(bs, topic, 0, isolation_level="read_committed")) == [
        b"after"]

    again = strata_txn(strata, "abort", transactional_id)
    assert again.returncode != 0
    assert "no open transaction" in again.stderr
    unknown = strata_txn(strata, "describe", "no-such-transactional-id")
    assert unknown.returncode != 0 and "strata txn list" in unknown.stderr


def test_txn_offset_commit_checks_the_group_member(strata, topic):
    # Goal: TxnOffsetCommit v3+ checks the consumer's group metadata like an OffsetCommit (a
    # zombie consumer's member id cannot commit inside a transaction), while a commit without
    # group metadata (generation -1, no member) is still accepted, as in Kafka.
    # Method: a confluent consumer joins the group (so it has a live member); raw-wire
    # TxnOffsetCommit v3 with an unknown member id, then without metadata.
    from confluent_kafka import Consumer

    bs = strata.bootstrap
    create_topic(bs, topic)
    group = f"txn-member-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + OP_TIMEOUT_S
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        assert c.assignment(), "the consumer joined the group"
        transactional_id = tid()
        with KafkaConnection(bs) as conn:
            _, pid, epoch = conn.init_transactional(transactional_id)
            assert conn.add_offsets_to_txn(transactional_id, pid, epoch, group) == NONE
            zombie = conn.txn_offset_commit(transactional_id, pid, epoch, group, 1,
                                            "no-such-member", topic, 0, 1)
            assert zombie == UNKNOWN_MEMBER_ID
            anonymous = conn.txn_offset_commit(transactional_id, pid, epoch, group, -1, "",
                                               topic, 0, 1)
            assert anonymous == NONE
    finally:
        c.close()
