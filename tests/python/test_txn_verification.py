"""KIP-890 transaction verification and per-transaction epochs, over the raw wire.

A transactional batch is appended only to a partition its producer's ongoing transaction
added, at the transactional id's current epoch: anything else (a partition never added, a
transaction already ended, an old epoch) is refused, so no stray batch can hold the last
stable offset of a partition that no marker will ever reach.
"""

from __future__ import annotations

import uuid

from kafka_wire import (
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    NONE,
    KafkaConnection,
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
