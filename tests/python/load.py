"""A numbered, idempotent acks=all producer in its own process, with a kill in the middle.

Shared by the kill -9 tests of `strata dev` and of a production agent: they differ only in
what they kill and where they read the log back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import Callable

PRODUCER = textwrap.dedent("""
    import json, sys
    from confluent_kafka import Producer
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 2, "message.timeout.ms": 120000, "retry.backoff.ms": 100,
                  "reconnect.backoff.max.ms": 500})
    def report(err, msg):
        if err is None:
            print(json.dumps({"acked": int(msg.value()), "offset": msg.offset()}), flush=True)
        else:
            print(json.dumps({"failed": int(msg.value()), "error": str(err)}), flush=True)
    for i in range(count):
        while True:
            try:
                p.produce(topic, value=str(i).encode(), partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(150)
    print(json.dumps({"done": True, "left": left}), flush=True)
""")


def produce_through_a_kill(bootstrap: str, topic: str, count: int, kill_after: int,
                           kill: Callable[[], None], restart: Callable[[], None],
                           timeout_s: float = 180) -> dict[int, int]:
    """Streams `count` numbered records to partition 0; after `kill_after` acknowledgements
    calls `kill()` then `restart()`. Returns {record number: acknowledged offset} and asserts
    the producer finished with every record acknowledged and none failed."""
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, bootstrap, topic, str(count)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked: dict[int, int] = {}
    failed: list[dict] = []
    acked_at_kill = None
    done = None
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        event = json.loads(line)
        if "acked" in event:
            acked[event["acked"]] = event["offset"]
        elif "failed" in event:
            failed.append(event)
        elif "done" in event:
            done = event
            break
        if acked_at_kill is None and len(acked) >= kill_after:
            acked_at_kill = len(acked)
            kill()
            time.sleep(0.5)
            restart()
        assert time.monotonic() < deadline, "the producer did not finish in time"
    proc.wait(timeout=30)
    assert acked_at_kill is not None, "never killed (too few acknowledgements?)"
    assert acked_at_kill < count, "the producer had finished before the kill"
    assert done is not None and done["left"] == 0, done
    assert not failed, failed[:5]
    assert len(acked) == count
    return acked


def assert_log_matches(records: list, acked: dict[int, int], count: int) -> None:
    """Every acknowledged record is stored once, in order, at its acknowledged offset,
    with no gaps."""
    values = [int(m.value()) for m in records]
    assert len(values) == len(set(values)), "a record is stored twice"
    assert values == sorted(values), "records are out of order"
    assert set(values) == set(range(count)), "an acknowledged record is missing"
    assert {int(m.value()): m.offset() for m in records} == acked, "offsets differ from the acks"
    assert [m.offset() for m in records] == list(range(count)), "offsets have gaps"
