"""Promise 1 under fire: kill -9 of `strata dev` while an idempotent producer is running."""

from __future__ import annotations

from helpers import consume_partition, create_topic
from load import assert_log_matches, produce_through_a_kill


def test_kill9_under_idempotent_load_loses_and_duplicates_nothing(fresh_strata, topic):
    # Goal: with acks=all and idempotence, every acknowledged record survives a kill -9 of
    # the server mid-stream exactly once, in order, even though the client retries batches
    # whose acknowledgement was lost. Method: a separate producer process streams numbered
    # records; the server is killed after part of them and restarted on the same ports;
    # then the partition is read back and compared with the acknowledgements.
    bs = fresh_strata.bootstrap
    create_topic(bs, topic)
    count = 6000
    acked = produce_through_a_kill(bs, topic, count, kill_after=1500,
                                   kill=fresh_strata.kill9, restart=fresh_strata.start)
    records = consume_partition(bs, topic, 0, expect=count)
    assert_log_matches(records, acked, count)
