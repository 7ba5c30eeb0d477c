"""Promise 1 under fire: kill -9 of `strata dev` while an idempotent producer is running."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from helpers import consume_partition, create_topic

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
        if i % 200 == 0:
            print(json.dumps({"sent": i}), flush=True)
    left = p.flush(150)
    print(json.dumps({"done": True, "left": left}), flush=True)
""")


def test_kill9_under_idempotent_load_loses_and_duplicates_nothing(fresh_strata, topic):
    # Goal: with acks=all and idempotence, every acknowledged record survives a kill -9 of
    # the server mid-stream exactly once, in order, even though the client retries batches
    # whose acknowledgement was lost. Method: a separate producer process streams numbered
    # records; the server is killed after part of them and restarted on the same ports;
    # then the partition is read back and compared with the acknowledgements.
    bs = fresh_strata.bootstrap
    create_topic(bs, topic)
    count = 6000
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, bs, topic, str(count)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked: dict[int, int] = {}
    failed: list[dict] = []
    killed = False
    done = None
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        event = json.loads(line)
        if "acked" in event:
            acked[event["acked"]] = event["offset"]
        elif "failed" in event:
            failed.append(event)
        elif "done" in event:
            done = event
            break
        if not killed and len(acked) >= 1500:
            fresh_strata.kill9()
            killed = True
            time.sleep(0.5)
            fresh_strata.start()
        assert time.monotonic() < deadline, "the producer did not finish in time"
    proc.wait(timeout=30)
    assert killed, "the server was never killed (too few acknowledgements?)"
    assert done is not None and done["left"] == 0, done
    assert not failed, failed[:5]
    assert len(acked) == count

    records = consume_partition(bs, topic, 0, expect=count)
    values = [int(m.value()) for m in records]
    assert len(values) == len(set(values)), "a record is stored twice"
    assert values == sorted(values), "records are out of order"
    assert set(values) == set(range(count)), "an acknowledged record is missing"
    offsets = {int(m.value()): m.offset() for m in records}
    assert offsets == acked, "a record's offset differs from the acknowledged one"
    assert [m.offset() for m in records] == list(range(count)), "offsets have gaps"
