"""kcat (librdkafka 2.0) against strata dev: metadata, keyed produce/consume, headers, codecs."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from helpers import CODEC_HINT, CODEC_IDS, create_topic, stored_codecs

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (.ci/run installs it)")


def kcat(bootstrap: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([KCAT, "-b", bootstrap, *args], input=stdin, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, (f"kcat {' '.join(args)} exited {proc.returncode}\n"
                                  f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout


def kcat_consume(bootstrap: str, topic: str, partition: int, fmt: str) -> list[str]:
    out = kcat(bootstrap, "-C", "-t", topic, "-p", str(partition), "-o", "beginning", "-e",
               "-q", "-f", fmt)
    return out.splitlines()


def test_metadata_lists_broker_and_topics(strata, new_topic):
    # Goal: `kcat -L` shows the advertised broker address and each topic with its partition count.
    one, three = new_topic(), new_topic()
    create_topic(strata.bootstrap, one, partitions=1)
    create_topic(strata.bootstrap, three, partitions=3)

    md = json.loads(kcat(strata.bootstrap, "-L", "-J"))

    brokers = {b["name"] for b in md["brokers"]}
    assert any(name.startswith(strata.bootstrap) for name in brokers), brokers
    topics = {t["topic"]: t for t in md["topics"]}
    assert one in topics and three in topics, sorted(topics)
    assert sorted(p["partition"] for p in topics[one]["partitions"]) == [0]
    assert sorted(p["partition"] for p in topics[three]["partitions"]) == [0, 1, 2]
    broker_ids = {b["id"] for b in md["brokers"]}
    for p in topics[three]["partitions"]:
        assert p["leader"] in broker_ids, p


def test_keyed_produce_consume_exact_offsets(strata, topic):
    # Goal: keyed lines produced to one partition come back byte-exact at offsets 0..n-1.
    create_topic(strata.bootstrap, topic, partitions=2)
    lines = [f"key{i}:value number {i}" for i in range(20)]

    kcat(strata.bootstrap, "-P", "-t", topic, "-p", "1", "-K:", stdin="\n".join(lines) + "\n")

    got = kcat_consume(strata.bootstrap, topic, 1, "%k:%s:%o\n")
    assert got == [f"{line}:{i}" for i, line in enumerate(lines)]
    # Nothing leaked into the other partition.
    assert kcat_consume(strata.bootstrap, topic, 0, "%o\n") == []


def test_second_produce_continues_offsets(strata, topic):
    # Goal: a second kcat producer session appends after the first (offsets continue, no reuse).
    create_topic(strata.bootstrap, topic)
    kcat(strata.bootstrap, "-P", "-t", topic, "-p", "0", stdin="a\nb\nc\n")
    kcat(strata.bootstrap, "-P", "-t", topic, "-p", "0", stdin="d\ne\n")

    assert kcat_consume(strata.bootstrap, topic, 0, "%s@%o\n") == [
        "a@0", "b@1", "c@2", "d@3", "e@4"]


def test_headers_round_trip(strata, topic):
    # Goal: record headers set with -H are stored and returned unchanged, in order.
    create_topic(strata.bootstrap, topic)
    kcat(strata.bootstrap, "-P", "-t", topic, "-p", "0", "-H", "trace=abc123", "-H", "kind=test",
         stdin="first\nsecond\n")

    got = kcat_consume(strata.bootstrap, topic, 0, "%s|%h\n")
    assert got == ["first|trace=abc123,kind=test", "second|trace=abc123,kind=test"]


@pytest.mark.parametrize("codec", ["gzip", "lz4", "snappy", "zstd"])
def test_compression_round_trip_and_stored_compressed(strata, topic, codec):
    # Goal: each codec round-trips exactly, and the batch is stored as the client compressed it.
    create_topic(strata.bootstrap, topic)
    values = [f"{codec} record {i} " + "x" * (i * 10) for i in range(50)]

    kcat(strata.bootstrap, "-P", "-t", topic, "-p", "0", "-X", f"compression.codec={codec}",
         "-X", "linger.ms=50", stdin="\n".join(values) + "\n")

    got = kcat_consume(strata.bootstrap, topic, 0, "%o %s\n")
    assert got == [f"{i} {v}" for i, v in enumerate(values)]

    hw, codecs, count = stored_codecs(strata.bootstrap, topic, 0)
    assert (hw, count) == (len(values), len(values))
    assert codecs == {CODEC_IDS[codec]}, f"stored codecs {codecs}; {CODEC_HINT}"
