#!/usr/bin/env python3
"""Produce/consume benchmark for Strata with confluent-kafka (librdkafka).

One invocation runs one scenario against a running Strata and writes a JSON
result; `report` turns a directory of results into a Markdown summary.

    produce_consume.py throughput --bootstrap H:P --metrics-url URL --pid PID --out r.json
    produce_consume.py latency    --bootstrap H:P --metrics-url URL --pid PID --out r.json
    produce_consume.py report RESULTS_DIR

Scenarios
- throughput: create a topic (N partitions), produce up to --mb MiB or for at
  most --max-seconds of --msg-size byte messages (acks=all, linger.ms 5,
  batch.size 1 MiB, no compression), then read everything back with assign()
  from offset 0 on every partition.
- latency: produce at a fixed, unsaturated rate (--rate msgs/s for
  --seconds), one message at a time (linger.ms 0 by default), and report the
  delivery latency distribution.

Delivery latency = time from the produce() call to the delivery callback. The
send time travels in the message key (8 bytes, monotonic ns), so there is no
per-message closure. The callback only runs inside poll(), so latency includes
up to one poll interval of the benchmark loop; in the throughput scenario it
also includes queueing inside librdkafka (the producer is saturated on
purpose), so it is NOT the unsaturated latency: see the latency scenario.

Server-side figures come from the Prometheus endpoint (read before and after
each phase) and from /proc/PID/status of the strata process (VmRSS sampled
every 100 ms, VmHWM = lifetime peak).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

MiB = 1024 * 1024
KEY = struct.Struct(">Q")


# --------------------------------------------------------------------------- server-side probes

def scrape(url: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value} (no HELP/TYPE lines)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            pass
    return out


def metric(m: dict[str, float], name: str) -> float:
    """A counter by exact name, or the sum over its label sets."""
    if name in m:
        return m[name]
    return sum(v for k, v in m.items() if k.split("{")[0] == name)


def metrics_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    def d(name: str) -> float:
        return metric(after, name) - metric(before, name)

    flushes = d("strata_flushes_total")
    puts = d("strata_object_puts_total")  # every PUT counted there is a produce flush
    commits = d("strata_catalog_commits_total")
    commit_s = d("strata_catalog_commit_seconds_total")
    flush_bytes = d("strata_flush_bytes_total")
    gets = d("strata_object_gets_total")
    fetch_bytes = d("strata_fetch_bytes_total")
    return {
        "seconds": seconds,
        "flushes": flushes,
        "flushes_per_s": flushes / seconds if seconds > 0 else None,
        "object_puts": puts,
        "puts_per_flush": puts / flushes if flushes else None,
        "catalog_commits": commits,
        "avg_commit_ms": 1000 * commit_s / commits if commits else None,
        "bytes_per_flush": flush_bytes / flushes if flushes else None,
        "produce_bytes": d("strata_produce_bytes_total"),
        "produce_requests": d("strata_produce_requests_total"),
        "produce_batches": d("strata_produce_batches_total"),
        "produce_errors": d("strata_produce_errors_total"),
        "fetch_requests": d("strata_fetch_requests_total"),
        "fetch_bytes": fetch_bytes,
        "cache_hits": d("strata_cache_hits_total"),
        "cache_misses": d("strata_cache_misses_total"),
        "object_gets": gets,
        "object_gets_per_fetched_mib": gets / (fetch_bytes / MiB) if fetch_bytes else None,
        "commit_errors": d("strata_catalog_commit_errors_total"),
        "put_errors": d('strata_object_put_errors_total{purpose="produce"}'),
    }


class RssSampler(threading.Thread):
    """Samples VmRSS of a pid every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int | None, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self.samples = 0
        self._halt = threading.Event()

    @staticmethod
    def read(pid: int, field: str) -> int | None:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def run(self) -> None:
        while self.pid and not self._halt.is_set():
            v = self.read(self.pid, "VmRSS")
            if v is not None:
                self.peak_kib = max(self.peak_kib, v)
                self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> dict:
        self._halt.set()
        self.join(timeout=2)
        hwm = self.read(self.pid, "VmHWM") if self.pid else None
        rss = self.read(self.pid, "VmRSS") if self.pid else None
        return {
            "peak_rss_mib_sampled": self.peak_kib / 1024,
            "vm_hwm_mib": hwm / 1024 if hwm else None,
            "rss_end_mib": rss / 1024 if rss else None,
            "samples": self.samples,
        }


def cpu_seconds(pid: int | None) -> float | None:
    """utime+stime of a process, in seconds."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


class CpuWindow:
    """CPU used during a phase: the strata process, this client process (all
    threads, librdkafka included) and the whole machine (/proc/stat), so that
    load from other processes on a shared machine shows up in the results."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.t0 = time.monotonic()
        self.server0 = cpu_seconds(pid)
        self.client0 = time.process_time()
        self.sys0 = self._system()
        self.load1 = os.getloadavg()[0]

    @staticmethod
    def _system() -> tuple[float, float]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        tck = os.sysconf("SC_CLK_TCK")
        return (sum(v) - idle) / tck, idle / tck

    def done(self) -> dict:
        wall = time.monotonic() - self.t0
        s1 = cpu_seconds(self.pid)
        server = (s1 - self.server0) if s1 is not None and self.server0 is not None else None
        client = time.process_time() - self.client0
        busy1, _ = self._system()
        busy = busy1 - self.sys0[0]
        other = busy - client - (server or 0)
        return {
            "wall_s": wall,
            "server_cores": server / wall if server is not None and wall else None,
            "client_cores": client / wall if wall else None,
            "machine_busy_cores": busy / wall if wall else None,
            "other_cores": max(0.0, other) / wall if wall else None,
            "loadavg1_at_start": self.load1,
        }


# --------------------------------------------------------------------------- helpers

def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def latency_summary(lat_ns: list[int]) -> dict:
    lat = sorted(lat_ns)
    ms = lambda v: v / 1e6 if v is not None else None  # noqa: E731
    return {
        "count": len(lat),
        "p50_ms": ms(percentile(lat, 50)),
        "p90_ms": ms(percentile(lat, 90)),
        "p99_ms": ms(percentile(lat, 99)),
        "p999_ms": ms(percentile(lat, 99.9)),
        "max_ms": ms(lat[-1]) if lat else None,
        "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
    }


def client_conf(args) -> dict:
    """The --client-config settings (security.protocol, SASL, TLS) every client gets."""
    conf = {}
    for kv in getattr(args, "client_config", None) or []:
        k, _, v = kv.partition("=")
        conf[k] = v
    return conf


def create_topic(bootstrap: str, topic: str, partitions: int, extra: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                             request_timeout=30)
    for _, f in fs.items():
        f.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {topic} not visible with {partitions} partitions")


def producer_conf(args, linger_ms: float) -> dict:
    conf = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": bool(args.idempotence),
        "linger.ms": linger_ms,
        "batch.size": args.batch_size,
        "compression.type": "none",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "message.max.bytes": 8 * MiB,
        "statistics.interval.ms": 0,
        **client_conf(args),
    }
    for kv in args.producer_config or []:
        k, _, v = kv.partition("=")
        conf[k] = v
    # max.in.flight.requests.per.connection stays at librdkafka's default:
    # 1,000,000 for a plain producer, capped at 5 with idempotence. That cap
    # is part of the idempotence overhead a user sees.
    return conf


# --------------------------------------------------------------------------- scenarios

def run_throughput(args) -> dict:
    topic = args.topic or f"bench-tput-{'idem' if args.idempotence else 'plain'}-{int(time.time())}"
    create_topic(args.bootstrap, topic, args.partitions, client_conf(args))
    payload = os.urandom(args.msg_size)  # incompressible, not that it matters with compression none
    target_msgs = int(args.mb * MiB // args.msg_size)
    per_partition_run = max(1, args.sticky_msgs)

    lat: list[int] = []
    errors: list[str] = []
    now_ns = time.monotonic_ns
    unpack = KEY.unpack

    def on_delivery(err, msg):
        t = now_ns()
        if err is not None:
            if len(errors) < 20:
                errors.append(str(err))
            else:
                errors.append("")
            return
        lat.append(t - unpack(msg.key())[0])

    producer = Producer(producer_conf(args, args.linger_ms))
    rss = RssSampler(args.pid)
    rss.start()
    m0 = scrape(args.metrics_url)
    cpu0 = cpu_seconds(args.pid)
    cpu = CpuWindow(args.pid)
    start = time.monotonic()
    deadline = start + args.max_seconds
    sent = 0
    buffer_full = 0
    pack = KEY.pack
    produce = producer.produce
    poll = producer.poll
    n_part = args.partitions
    while sent < target_msgs:
        if (sent & 1023) == 0:
            poll(0)
            if time.monotonic() >= deadline:
                break
        part = (sent // per_partition_run) % n_part
        try:
            produce(topic, payload, pack(now_ns()), partition=part, on_delivery=on_delivery)
        except BufferError:
            buffer_full += 1
            poll(0.005)
            continue
        sent += 1
    produce_loop_s = time.monotonic() - start
    remaining = producer.flush(args.flush_timeout)
    produce_s = time.monotonic() - start
    m1 = scrape(args.metrics_url)
    cpu1 = cpu_seconds(args.pid)
    delivered = len(lat)
    produce_result = {
        "messages_sent": sent,
        "messages_delivered": delivered,
        "undelivered": remaining,
        "errors": len(errors),
        "error_samples": [e for e in errors if e][:5],
        "seconds": produce_s,
        "produce_loop_seconds": produce_loop_s,
        "mib_per_s": delivered * args.msg_size / MiB / produce_s,
        "msgs_per_s": delivered / produce_s,
        "buffer_full_retries": buffer_full,
        "latency": latency_summary(lat),
        "server": metrics_delta(m0, m1, produce_s),
        "server_cpu_seconds": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        "cpu": cpu.done(),
    }
    del lat[:]

    consume_result = None
    if not args.no_consume:
        consume_result = consume_all(args, topic)
    result = {
        "scenario": "throughput",
        "topic": topic,
        "idempotence": bool(args.idempotence),
        "partitions": args.partitions,
        "msg_size": args.msg_size,
        "linger_ms": args.linger_ms,
        "batch_size": args.batch_size,
        "target_mib": args.mb,
        "max_seconds": args.max_seconds,
        "produce": produce_result,
        "consume": consume_result,
        "rss": rss.stop(),
    }
    return result


def consume_all(args, topic: str) -> dict:
    conf = {
        "bootstrap.servers": args.bootstrap,
        # No group coordinator in Strata yet: group.id is required by the
        # client, unused with assign(), nothing is committed.
        **client_conf(args),
        "group.id": "strata-bench-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        "fetch.min.bytes": 1,
        "fetch.max.bytes": 64 * MiB,
        "max.partition.fetch.bytes": 8 * MiB,
        "queued.min.messages": 200_000,
        "queued.max.messages.kbytes": 256 * 1024,
        "receive.message.max.bytes": 128 * MiB,
    }
    consumer = Consumer(conf)
    # High watermarks first: read exactly what was produced.
    highs = {}
    for p in range(args.partitions):
        _, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        highs[p] = hi
    total_msgs = sum(highs.values())
    m0 = scrape(args.metrics_url)
    cpu0 = cpu_seconds(args.pid)
    cpu = CpuWindow(args.pid)
    start = time.monotonic()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(args.partitions)])
    deadline = start + args.consume_max_seconds
    got = 0
    nbytes = 0
    errors = 0
    first_msg_s = None
    while got < total_msgs and time.monotonic() < deadline:
        # Never ask for more than remain: consume() waits for the full count
        # or the timeout.
        msgs = consumer.consume(num_messages=min(10_000, total_msgs - got), timeout=0.5)
        if msgs and first_msg_s is None:
            first_msg_s = time.monotonic() - start
        for m in msgs:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    errors += 1
                continue
            got += 1
            nbytes += len(m)
    seconds = time.monotonic() - start
    cpu_used = cpu.done()
    m1 = scrape(args.metrics_url)
    cpu1 = cpu_seconds(args.pid)
    consumer.close()
    return {
        "expected_messages": total_msgs,
        "messages": got,
        "value_bytes": nbytes,
        "errors": errors,
        "seconds": seconds,
        "first_message_s": first_msg_s,
        "mib_per_s": nbytes / MiB / seconds if seconds else None,
        "msgs_per_s": got / seconds if seconds else None,
        "complete": got >= total_msgs,
        "cpu": cpu_used,
        "server": metrics_delta(m0, m1, seconds),
        "server_cpu_seconds": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
    }


def run_latency(args) -> dict:
    topic = args.topic or f"bench-lat-{'idem' if args.idempotence else 'plain'}-{int(time.time())}"
    create_topic(args.bootstrap, topic, args.partitions, client_conf(args))
    payload = os.urandom(args.msg_size)
    lat: list[int] = []
    errors: list[str] = []
    now_ns = time.monotonic_ns

    def on_delivery(err, msg):
        t = now_ns()
        if err is not None:
            errors.append(str(err))
            return
        sent = KEY.unpack(msg.key())[0]
        lat.append(t - sent)
        if dump is not None:
            dump.append((sent, t - sent, msg.partition(), msg.offset()))

    dump: list | None = [] if args.dump_latencies else None
    producer = Producer(producer_conf(args, args.linger_ms))
    # Warm up: connections, metadata, producer id.
    for p in range(args.partitions):
        producer.produce(topic, payload, KEY.pack(now_ns()), partition=p, on_delivery=lambda e, m: None)
    producer.flush(30)

    rss = RssSampler(args.pid)
    rss.start()
    m0 = scrape(args.metrics_url)
    cpu0 = cpu_seconds(args.pid)
    cpu = CpuWindow(args.pid)
    interval_ns = int(1e9 / args.rate)
    total = int(args.rate * args.seconds)
    start_ns = now_ns()
    late = 0
    for i in range(total):
        due = start_ns + i * interval_ns
        while True:
            t = now_ns()
            if t >= due:
                break
            # librdkafka's poll() timeout has 1 ms resolution: a shorter one
            # returns at once and the loop would spin on a core.
            if due - t >= 1_000_000:
                producer.poll((due - t) / 1e9)
            else:
                time.sleep((due - t) / 1e9)
        if t - due > 1_000_000:
            late += 1
        producer.produce(topic, payload, KEY.pack(now_ns()), partition=i % args.partitions,
                         on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(args.flush_timeout)
    seconds = (now_ns() - start_ns) / 1e9
    cpu_used = cpu.done()
    if dump is not None:
        with open(args.dump_latencies, "w") as f:
            f.write("sent_ms,latency_ms,partition,offset\n")
            for sent, l, part, off in dump:
                f.write(f"{(sent - start_ns) / 1e6:.3f},{l / 1e6:.3f},{part},{off}\n")
    m1 = scrape(args.metrics_url)
    cpu1 = cpu_seconds(args.pid)
    return {
        "scenario": "latency",
        "topic": topic,
        "idempotence": bool(args.idempotence),
        "partitions": args.partitions,
        "msg_size": args.msg_size,
        "linger_ms": args.linger_ms,
        "rate": args.rate,
        "produce": {
            "messages_sent": total,
            "messages_delivered": len(lat),
            "undelivered": remaining,
            "errors": len(errors),
            "error_samples": errors[:5],
            "seconds": seconds,
            "sends_late_over_1ms": late,
            "msgs_per_s": len(lat) / seconds,
            "mib_per_s": len(lat) * args.msg_size / MiB / seconds,
            "latency": latency_summary(lat),
            "server": metrics_delta(m0, m1, seconds),
            "server_cpu_seconds": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
            "cpu": cpu_used,
        },
        "rss": rss.stop(),
    }


# --------------------------------------------------------------------------- report

def fmt(v, digits=1, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v:,}{unit}"


def ok(cond) -> str:
    if cond is None:
        return "?"
    return "✅" if cond else "❌"


def report(results_dir: Path) -> str:
    meta = {}
    meta_path = results_dir / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
    runs = []
    for p in sorted(results_dir.glob("*.json")):
        if p.name == "meta.json":
            continue
        r = json.loads(p.read_text())
        r["_name"] = p.stem
        runs.append(r)
    flush_ms = meta.get("flush_interval_ms", 5)
    cache_mib = meta.get("cache_memory_mb", 256)
    rss_limit = 512 + cache_mib
    lines = []
    lines.append(f"## Strata benchmark ({meta.get('date', '?')})\n")
    if meta:
        lines.append(f"- machine: {meta.get('nproc')} cores, {meta.get('cpu_model')}, "
                     f"{meta.get('mem_total_gib')} GiB RAM; kernel {meta.get('kernel')}")
        lines.append(f"- strata dev: flush_interval_ms={flush_ms}, flush_bytes={meta.get('flush_bytes')}, "
                     f"cache_memory_mb={cache_mib}, object store = local directory ({meta.get('data_dir_fs', '?')}); "
                     f"checkout at git {meta.get('git_rev', '?')}, binary built {meta.get('binary_mtime', '?')}")
        lines.append(f"- client: confluent-kafka {meta.get('confluent_kafka')} (librdkafka {meta.get('librdkafka')}), "
                     f"Python {meta.get('python')}, same machine, 127.0.0.1")
        lines.append("")

    tput = [r for r in runs if r["scenario"] == "throughput"]
    kind = lambda r: "idempotent" if r["idempotence"] else "plain"  # noqa: E731

    def med(values):
        values = sorted(v for v in values if v is not None)
        if not values:
            return None
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    if tput:
        lines.append("### Throughput (acks=all, "
                     f"{tput[0]['partitions']} partitions, {tput[0]['msg_size']} B messages, "
                     f"linger.ms={tput[0]['linger_ms']}, batch.size={tput[0]['batch_size']}, compression none)\n")
        lines.append("| run | produced | produce MiB/s | produce msgs/s | delivery p50 / p99 / max ms "
                     "| consume MiB/s | flushes/s | PUTs/flush | MiB/flush | avg commit ms "
                     "| peak RSS MiB | CPU cores during produce: strata / client / rest of machine |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in tput:
            p, c, s = r["produce"], r["consume"] or {}, r["produce"]["server"]
            lat = p["latency"]
            cpu = p.get("cpu") or {}
            bpf = s["bytes_per_flush"] / MiB if s["bytes_per_flush"] else None
            lines.append(
                f"| {r['_name']} "
                f"| {p['messages_delivered'] * r['msg_size'] / MiB:,.0f} MiB in {p['seconds']:.1f} s "
                f"| {fmt(p['mib_per_s'])} | {fmt(p['msgs_per_s'], 0)} "
                f"| {fmt(lat['p50_ms'])} / {fmt(lat['p99_ms'])} / {fmt(lat['max_ms'])} "
                f"| {fmt(c.get('mib_per_s'))} "
                f"| {fmt(s['flushes_per_s'])} | {fmt(s['puts_per_flush'], 2)} | {fmt(bpf, 2)} "
                f"| {fmt(s['avg_commit_ms'], 2)} | {fmt(r['rss']['vm_hwm_mib'], 0)} "
                f"| {fmt(cpu.get('server_cores'), 2)} / {fmt(cpu.get('client_cores'), 2)} / {fmt(cpu.get('other_cores'), 2)} |")
        for k in ("plain", "idempotent"):
            rs = [r for r in tput if kind(r) == k]
            if len(rs) > 1:
                lines.append(
                    f"| **median {k}** ({len(rs)} runs) | "
                    f"| **{fmt(med(r['produce']['mib_per_s'] for r in rs))}** "
                    f"| {fmt(med(r['produce']['msgs_per_s'] for r in rs), 0)} "
                    f"| {fmt(med(r['produce']['latency']['p50_ms'] for r in rs))} / "
                    f"{fmt(med(r['produce']['latency']['p99_ms'] for r in rs))} / "
                    f"{fmt(med(r['produce']['latency']['max_ms'] for r in rs))} "
                    f"| **{fmt(med((r['consume'] or {}).get('mib_per_s') for r in rs))}** "
                    f"| {fmt(med(r['produce']['server']['flushes_per_s'] for r in rs))} | | "
                    f"| {fmt(med(r['produce']['server']['avg_commit_ms'] for r in rs), 2)} "
                    f"| {fmt(max(r['rss']['vm_hwm_mib'] or 0 for r in rs), 0)} (max) | |")
        lines.append("")
        for r in tput:
            p, c = r["produce"], r["consume"] or {}
            notes = []
            if p["errors"] or p["undelivered"]:
                notes.append(f"{p['errors']} delivery errors ({p['error_samples']}), {p['undelivered']} undelivered")
            if c and not c.get("complete"):
                notes.append(f"consume incomplete: {c['messages']}/{c['expected_messages']}")
            if c and c.get("errors"):
                notes.append(f"{c['errors']} consume errors")
            if notes:
                lines.append(f"- {r['_name']}: " + "; ".join(notes))
        lines.append("")

    lat_runs = [r for r in runs if r["scenario"] == "latency"]
    if lat_runs:
        lines.append("### Unsaturated latency\n")
        lines.append("| run | rate | linger.ms | delivered | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
                     "| flushes/s | avg commit ms | KiB/flush |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in lat_runs:
            p, s, lat = r["produce"], r["produce"]["server"], r["produce"]["latency"]
            bpf = s["bytes_per_flush"] / 1024 if s["bytes_per_flush"] else None
            lines.append(
                f"| {r['_name']} | {r['rate']:,.0f} msg/s × {p['seconds']:.0f} s "
                f"| {r['linger_ms']} | {p['messages_delivered']:,}/{p['messages_sent']:,} "
                f"| {fmt(lat['p50_ms'], 2)} | {fmt(lat['p90_ms'], 2)} | {fmt(lat['p99_ms'], 2)} "
                f"| {fmt(lat['p999_ms'], 2)} | {fmt(lat['max_ms'], 2)} "
                f"| {fmt(s['flushes_per_s'])} | {fmt(s['avg_commit_ms'], 2)} | {fmt(bpf, 1)} |")
        lines.append("")

    # Targets.
    lines.append("### Targets\n")
    lines.append("| target | measured | |")
    lines.append("|---|---|---|")
    plain = [r for r in tput if not r["idempotence"]]
    idem = [r for r in tput if r["idempotence"]]
    med_p = med(r["produce"]["mib_per_s"] for r in tput)
    best_p = max((r["produce"]["mib_per_s"] for r in tput), default=None)
    med_c = med((r["consume"] or {}).get("mib_per_s") for r in tput)
    best_c = max(((r["consume"] or {}).get("mib_per_s") or 0 for r in tput), default=None)
    lines.append(f"| produce ≥ 100 MB/s (95.4 MiB/s) | median {fmt(med_p)}, best {fmt(best_p)} MiB/s "
                 f"| {ok(med_p >= 100 * 1e6 / MiB if med_p else None)} |")
    lines.append(f"| consume ≥ 200 MB/s (190.7 MiB/s) | median {fmt(med_c)}, best {fmt(best_c)} MiB/s "
                 f"| {ok(med_c >= 200 * 1e6 / MiB if med_c else None)} |")
    for r in lat_runs:
        p99 = r["produce"]["latency"]["p99_ms"]
        lines.append(f"| p99 produce latency ≤ flush_interval + 10 ms = {flush_ms + 10} ms "
                     f"({r['_name']}, {r['rate']:,.0f} msg/s, linger.ms {r['linger_ms']}) "
                     f"| {fmt(p99, 2)} ms | {ok(p99 <= flush_ms + 10 if p99 is not None else None)} |")
    peak = max((r["rss"]["vm_hwm_mib"] or r["rss"]["peak_rss_mib_sampled"] for r in runs), default=None)
    lines.append(f"| agent RSS ≤ 512 MiB + cache ({cache_mib} MiB) = {rss_limit} MiB | {fmt(peak, 0)} MiB peak (VmHWM) "
                 f"| {ok(peak <= rss_limit if peak else None)} |")
    ppf = [r["produce"]["server"]["puts_per_flush"] for r in runs if r["produce"]["server"]["puts_per_flush"]]
    lines.append(f"| PUTs per flush = 1 | {', '.join(f'{x:.3f}' for x in ppf) or 'n/a'} | {ok(all(abs(x - 1) < 1e-9 for x in ppf) if ppf else None)} |")
    segs = meta.get("segment_files")
    if segs is not None:
        lines.append(f"| (cross-check) segment files on disk = flushes | {segs} files, "
                     f"{fmt(meta.get('flushes_total'), 0)} flushes | "
                     f"{ok(meta.get('flushes_total') is not None and segs == int(meta.get('flushes_total')))} |")
    if plain and idem:
        mp = med(r["produce"]["mib_per_s"] for r in plain)
        mi = med(r["produce"]["mib_per_s"] for r in idem)
        overhead = (mp - mi) / mp * 100
        lines.append(f"| idempotence overhead ≤ 5 % (median produce throughput) | {overhead:+.1f} % "
                     f"({fmt(mi)} idempotent vs {fmt(mp)} plain MiB/s; {len(idem)}+{len(plain)} runs) "
                     f"| {ok(overhead <= 5)} |")
    lines.append("")
    warm = results_dir / "warmup.discarded"
    if warm.exists():
        w = json.loads(warm.read_text())["produce"]
        lines.append(f"Warm-up produce before the measured runs (discarded): {w['mib_per_s']:.1f} MiB/s, "
                     f"delivery p50 {fmt(w['latency']['p50_ms'])} ms.\n")
    lines.append("Note: client (Python + librdkafka) and server share the same cores; figures are a lower bound "
                 "for the server. \"rest of machine\" = kernel threads (page-cache writeback, DAMON) and any other "
                 "process. MiB = 2^20 bytes; 100 MB/s = 95.4 MiB/s, 200 MB/s = 190.7 MiB/s.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--metrics-url", required=True, help="http://HOST:PORT/metrics")
        p.add_argument("--pid", type=int, default=None, help="strata pid, for RSS and CPU")
        p.add_argument("--out", type=Path, required=True, help="JSON result file")
        p.add_argument("--topic", default=None)
        p.add_argument("--partitions", type=int, default=8)
        p.add_argument("--msg-size", type=int, default=1024)
        p.add_argument("--idempotence", type=int, choices=[0, 1], default=0)
        p.add_argument("--batch-size", type=int, default=1_000_000)
        p.add_argument("--flush-timeout", type=float, default=60)
        p.add_argument("--client-config", action="append", metavar="KEY=VALUE",
                       help="librdkafka setting for every client (admin, producer, consumer), "
                            "e.g. security.protocol=SASL_SSL")
        p.add_argument("-X", dest="producer_config", action="append", metavar="KEY=VALUE",
                       help="extra librdkafka producer property (repeatable)")

    t = sub.add_parser("throughput", help="saturating produce, then consume everything")
    common(t)
    t.add_argument("--mb", type=float, default=1024, help="MiB to produce (upper bound)")
    t.add_argument("--max-seconds", type=float, default=60, help="time bound of the produce loop")
    t.add_argument("--consume-max-seconds", type=float, default=90)
    t.add_argument("--linger-ms", type=float, default=5)
    t.add_argument("--sticky-msgs", type=int, default=256,
                   help="consecutive messages sent to one partition before moving on")
    t.add_argument("--no-consume", action="store_true")

    lt = sub.add_parser("latency", help="fixed low rate, latency distribution")
    common(lt)
    lt.add_argument("--rate", type=float, default=1000, help="messages per second")
    lt.add_argument("--seconds", type=float, default=10)
    lt.add_argument("--linger-ms", type=float, default=0)
    lt.add_argument("--dump-latencies", type=Path, default=None, help="CSV of every delivery")

    rp = sub.add_parser("report", help="Markdown summary of a results directory")
    rp.add_argument("dir", type=Path)

    args = ap.parse_args()
    if args.cmd == "report":
        sys.stdout.write(report(args.dir))
        return 0
    if args.cmd == "throughput":
        result = run_throughput(args)
    else:
        result = run_latency(args)
    args.out.write_text(json.dumps(result, indent=2))
    p = result["produce"]
    print(f"[{result['scenario']} idem={result['idempotence']}] produced {p['messages_delivered']:,} msgs "
          f"{p['mib_per_s']:.1f} MiB/s p50 {p['latency']['p50_ms']} p99 {p['latency']['p99_ms']} ms"
          + (f"; consumed {result['consume']['mib_per_s']:.1f} MiB/s"
             if result.get("consume") else ""), file=sys.stderr)
    failed = p["errors"] or p["undelivered"] or (result.get("consume") and not result["consume"]["complete"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
