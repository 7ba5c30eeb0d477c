"""Fetch MB/s from the segment tier vs the Parquet tier, end to end through a Kafka consumer.

`strata dev --compaction false` takes N 1 KiB records (4 partitions, no compression); a fresh
`strata dev` (cold block cache) serves a confluent-kafka consumer reading everything from offset
0 (segment tier); a separate `strata compactor` rewrites every chunk as Parquet; a fresh
`strata dev` serves the same read again (Parquet tier). Prints MB/s of record bytes delivered
to the consumer (key + value) and the agent's fetch-tier metrics for both reads.
Usage: STRATA_BIN=... BENCH_DIR=/tmp/empty-dir python bench/tier_fetch.py <records>"""
import json, os, random, signal, subprocess, sys, time, urllib.request
from pathlib import Path
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BIN = os.environ.get("STRATA_BIN", "target/release/strata")
data = Path(os.environ.get("BENCH_DIR", "/tmp/strata-tier-bench"))
data.mkdir(parents=True, exist_ok=True)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
BOOT = "127.0.0.1:19092"


def start_dev():
    proc = subprocess.Popen([BIN, "dev", "--data-dir", str(data), "--listen", BOOT,
                             "--catalog-listen", "127.0.0.1:19093",
                             "--metrics-listen", "127.0.0.1:19644", "--compaction", "false"],
                            stdout=open(data / "dev.log", "a"), stderr=subprocess.STDOUT)
    time.sleep(2)
    return proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait()


def metric(port, prefix):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return {l.split()[0]: float(l.split()[-1]) for l in text.splitlines()
            if l.startswith(prefix)}


def consume_all():
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "tier-bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20,
                  "queued.min.messages": 200_000})
    c.assign([TopicPartition("bench", p, 0) for p in range(4)])
    got = nbytes = 0
    start = time.monotonic()
    while got < N:
        for m in c.consume(10_000, timeout=5):
            if m.error():
                continue
            got += 1
            nbytes += len(m.value() or b"") + len(m.key() or b"")
    seconds = time.monotonic() - start
    c.close()
    return {"records": got, "MB": round(nbytes / 1e6, 1), "seconds": round(seconds, 2),
            "MBps": round(nbytes / 1e6 / seconds, 1)}


dev = start_dev()
admin = AdminClient({"bootstrap.servers": BOOT})
admin.create_topics(
    [NewTopic("bench", 4, 1, config={"strata.compaction.age.ms": "0"})])["bench"].result()
p = Producer({"bootstrap.servers": BOOT, "linger.ms": 20, "batch.size": 1_000_000})
rnd = random.Random(1)
for i in range(N):
    value = rnd.randbytes(1000)
    while True:
        try:
            p.produce("bench", key=str(i % 1000).encode(), value=value)
            break
        except BufferError:
            p.poll(0.05)
    if i % 1000 == 0:
        p.poll(0)
p.flush()
stop(dev)

dev = start_dev()
segment = consume_all()
segment["tiers"] = metric(19644, "strata_fetch_tier_bytes_total")
stop(dev)

comp = subprocess.Popen([BIN, "compactor", "--catalog", "http://127.0.0.1:19093",
                         "--object-store", f"file://{data.resolve()}/objects",
                         "--metrics-listen", "127.0.0.1:19646", "--interval-ms", "100",
                         "--gc-grace-ms", "600000"],
                        stdout=open(data / "comp.log", "w"), stderr=subprocess.STDOUT)
dev = start_dev()  # the compactor needs the catalog
while True:
    time.sleep(0.5)
    try:
        written = metric(19646, "strata_compactor_files_written_total")
        if sum(written.values()) >= 4:
            break
    except OSError:
        pass
stop(comp)
stop(dev)

dev = start_dev()
parquet = consume_all()
parquet["tiers"] = metric(19644, "strata_fetch_tier_bytes_total")
stop(dev)
print(json.dumps({"records": N, "segment_tier": segment, "parquet_tier": parquet,
                  "parquet_vs_segment": round(parquet["MBps"] / segment["MBps"], 2)}, indent=1))
