"""A `strata dev` data directory written by an older release opens and reads back the same.

The fixture (tests/fixtures/dev-<version>.tar.gz, made by tests/fixtures/make_dev_fixture.py
with that version's binary) holds an idempotent producer's records with keys, null values and
duplicate headers in two partitions, and a consumer group's committed offsets."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import StrataServer, _teardown, find_strata_bin
from helpers import consume_partition, producer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VERSIONS = sorted(p.name[len("dev-"):-len(".tar.gz")] for p in FIXTURES.glob("dev-*.tar.gz"))


def as_expected(message) -> dict:
    return {"offset": message.offset(),
            "key": None if message.key() is None else message.key().decode(),
            "value": None if message.value() is None else message.value().decode(),
            "headers": [[k, None if v is None else v.decode()]
                        for k, v in (message.headers() or [])],
            "timestamp": message.timestamp()[1]}


def read_back(server: StrataServer, expected: dict) -> None:
    for partition, records in expected["partitions"].items():
        got = consume_partition(server.bootstrap, expected["topic"], int(partition),
                                expect=len(records))
        assert [as_expected(m) for m in got] == records, f"partition {partition}"
    c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": expected["group"]})
    try:
        offsets = c.committed([TopicPartition(expected["topic"], int(p))
                               for p in expected["committed"]], timeout=30)
    finally:
        c.close()
    assert {str(o.partition): o.offset for o in offsets} == expected["committed"]


def test_there_is_a_fixture():
    # Without a fixture the upgrade test below would be skipped silently.
    assert VERSIONS, f"no dev-*.tar.gz in {FIXTURES}"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_data_dir_from_an_older_release_reads_back_the_same(request, tmp_path, version):
    # Goal (issue #10's constraint): the catalog and segments written before a refactor of the
    # store open unchanged (migrations only) and serve the same records and group offsets.
    # Method: unpack the fixture, start this binary on it, compare with expected.json, append,
    # restart, compare again.
    with tarfile.open(FIXTURES / f"dev-{version}.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    expected = json.loads((FIXTURES / f"dev-{version}.expected.json").read_text())
    server = StrataServer(find_strata_bin(), tmp_path / "data", tmp_path / "strata.log",
                          extra_args=["--compaction", "false"])
    request.node._strata_servers = [server]
    server.start()
    try:
        read_back(server, expected)
        p = producer(server.bootstrap)
        p.produce(expected["topic"], partition=0, value=b"after-upgrade")
        assert p.flush(30) == 0
        first = len(expected["partitions"]["0"])
        tail = consume_partition(server.bootstrap, expected["topic"], 0, start=first, expect=1)
        assert [(m.offset(), m.value()) for m in tail] == [(first, b"after-upgrade")]
        server.restart()
        read_back(server, expected)
    finally:
        _teardown(server)
