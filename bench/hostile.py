#!/usr/bin/env python3
"""Hostile-client benchmark (issue #11, "Numbers to reach"): can an agent under attack still
serve a normal client and keep its lease, within a bounded RSS?

Starts `strata catalog` (SQLite) and one registered `strata agent` on a local-directory
object store, with their default limits, then runs at once for --seconds:

- idle:   --idle sockets that connect and send nothing, spread over 127.0.0.2.. source
          addresses so that the per-IP connection cap (1,000) is not what stops them;
- slow:   --slow connections each announcing a 100 MiB request frame and sending one byte a
          second (slow-loris; the agent drops them after request_read_timeout_ms and they
          reconnect);
- bombs:  --bombs threads sending, in a loop, a gzip produce batch that inflates to 512 MiB;
- normal: one confluent-kafka producer (acks=all) sending --rate records/s, each delivery
          timed;
- watch:  the agent's /ready every 200 ms (a registered agent is ready only while its lease
          is fresh) and its VmRSS every 100 ms.

Then a hostile-Fetch phase: --fetchers connections fetch max_bytes = 2 GiB from offset 0 of a
topic holding --fetch-mb MiB, each reading its response one 64 KiB piece every 10 ms, while
RSS is sampled.

Prints a JSON summary. Usage:
  STRATA_BIN=target/release/strata python3 bench/hostile.py [--seconds 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
import kafka_wire as kw  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on {port}")


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Stop:
    def __init__(self) -> None:
        self.event = threading.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()


def idle_sockets(port: int, count: int, held: list[socket.socket]) -> int:
    opened = 0
    for i in range(count):
        s = socket.socket()
        try:
            s.bind((f"127.0.0.{2 + i // 500}", 0))
            s.connect(("127.0.0.1", port))
            held.append(s)
            opened += 1
        except OSError:
            s.close()
    return opened


def slow_loris(port: int, stop: Stop, counts: dict) -> None:
    while not stop:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(struct.pack(">i", 100 << 20))
            counts["slow_connections"] += 1
            while not stop:
                s.sendall(b"\0")
                time.sleep(1.0)
        except OSError:
            counts["slow_dropped"] += 1
            time.sleep(0.2)


def gzip_bomb(inflated_mib: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    out = [z.compress(zeros) for _ in range(inflated_mib)]
    out.append(z.flush())
    return b"".join(out)


def bomber(bootstrap: str, topic: str, batch: bytes, stop: Stop, counts: dict) -> None:
    while not stop:
        try:
            with kw.KafkaConnection(bootstrap, timeout=30) as conn:
                while not stop:
                    answer = conn.produce(topic, 0, batch, timeout_ms=5000)
                    counts["bombs_sent"] += 1
                    if answer["error_code"] == 0:
                        counts["bombs_accepted"] += 1
        except (OSError, kw.ConnectionClosed, AssertionError):
            counts["bomb_connections_closed"] += 1
            time.sleep(0.05)


def normal_producer(bootstrap: str, topic: str, rate: float, stop: Stop, out: dict) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "enable.idempotence": True, "message.timeout.ms": 30000})
    latencies: list[float] = []
    failures: list[str] = []

    def done(err, _msg, sent=None):
        if err is not None:
            failures.append(str(err))
        else:
            latencies.append((time.monotonic() - sent) * 1000)

    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop:
        sent = time.monotonic()
        p.produce(topic, b"normal", on_delivery=lambda e, m, s=sent: done(e, m, s))
        p.poll(0)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    p.flush(30)
    out["latencies_ms"] = latencies
    out["failures"] = failures


def watcher(metrics_port: int, pid: int, stop: Stop, out: dict) -> None:
    not_ready, samples, peak, last_ready = 0, 0, 0.0, 0.0
    while not stop:
        peak = max(peak, rss_mib(pid))
        if time.monotonic() - last_ready >= 0.2:
            last_ready = time.monotonic()
            status, _ = http(metrics_port, "/ready")
            samples += 1
            not_ready += status != 200
        time.sleep(0.1)
    out.update(ready_checks=samples, not_ready=not_ready, peak_rss_mib=round(peak, 1))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def hostile_fetch(bootstrap: str, topic: str, fetchers: int, seconds: float, pid: int) -> dict:
    stop = Stop()
    peak = [0.0]
    responses = [0]

    def fetcher() -> None:
        body_part = kw.i32(0) + kw.i64(0) + kw.i32(0x7FFFFFFF)
        body = (kw.i32(-1) + kw.i32(100) + kw.i32(1) + kw.i32(0x7FFFFFFF) + kw.i8(0)
                + kw.array([kw.string(topic) + kw.array([body_part])]))
        while not stop:
            try:
                with kw.KafkaConnection(bootstrap, timeout=60) as conn:
                    while not stop:
                        conn.request(kw.FETCH, 4, body, expect_response=False)
                        size = struct.unpack(">i", conn.recv_exact(4))[0]
                        left = size
                        while left > 0 and not stop:
                            left -= len(conn.recv_exact(min(left, 64 << 10)))
                            time.sleep(0.01)
                        responses[0] += 1
            except (OSError, kw.ConnectionClosed):
                time.sleep(0.1)

    threads = [threading.Thread(target=fetcher, daemon=True) for _ in range(fetchers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak[0] = max(peak[0], rss_mib(pid))
        time.sleep(0.1)
    stop.event.set()
    return {"fetchers": fetchers, "responses_read": responses[0],
            "peak_rss_mib": round(peak[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--bombs", type=int, default=32)
    ap.add_argument("--bomb-mib", type=int, default=512)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--fetchers", type=int, default=64)
    ap.add_argument("--fetch-mb", type=int, default=256)
    ap.add_argument("--fetch-seconds", type=float, default=20)
    ap.add_argument("--out")
    args = ap.parse_args()

    binary = os.environ.get("STRATA_BIN") or shutil.which("strata")
    if not binary:
        raise SystemExit("set STRATA_BIN to a strata binary")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    work = Path(tempfile.mkdtemp(prefix="strata-hostile-"))
    catalog_port, catalog_metrics = free_port(), free_port()
    kafka_port, agent_metrics = free_port(), free_port()
    logs = open(work / "servers.log", "ab")
    catalog = subprocess.Popen(
        [binary, "catalog", "--store", f"sqlite://{work}/catalog.db",
         "--listen", f"127.0.0.1:{catalog_port}", "--metrics-listen",
         f"127.0.0.1:{catalog_metrics}"], stdout=logs, stderr=logs)
    wait_port(catalog_port, catalog, "strata catalog")
    agent = subprocess.Popen(
        [binary, "agent", "--catalog", f"http://127.0.0.1:{catalog_port}",
         "--object-store", f"file://{work}/objects", "--listen", f"127.0.0.1:{kafka_port}",
         "--advertise", f"127.0.0.1:{kafka_port}", "--node-id", "1",
         "--metrics-listen", f"127.0.0.1:{agent_metrics}",
         "--cache-dir", str(work / "cache")], stdout=logs, stderr=logs)
    wait_port(kafka_port, agent, "strata agent")
    bootstrap = f"127.0.0.1:{kafka_port}"
    summary: dict = {"seconds": args.seconds}
    try:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("normal", 1), NewTopic("bombed", 1),
                                      NewTopic("fetched", 1)]).values():
            f.result(30)
        bomb = kw.encode_batch([b"x"], codec=1, compress=lambda _: gzip_bomb(args.bomb_mib))
        summary["bomb_compressed_bytes"] = len(bomb)

        stop = Stop()
        counts = {"slow_connections": 0, "slow_dropped": 0, "bombs_sent": 0,
                  "bombs_accepted": 0, "bomb_connections_closed": 0}
        held: list[socket.socket] = []
        summary["idle_opened"] = idle_sockets(kafka_port, args.idle, held)
        normal: dict = {}
        watch: dict = {}
        threads = [threading.Thread(target=normal_producer,
                                    args=(bootstrap, "normal", args.rate, stop, normal)),
                   threading.Thread(target=watcher,
                                    args=(agent_metrics, agent.pid, stop, watch))]
        threads += [threading.Thread(target=slow_loris, args=(kafka_port, stop, counts),
                                     daemon=True) for _ in range(args.slow)]
        threads += [threading.Thread(target=bomber,
                                     args=(bootstrap, "bombed", bomb, stop, counts),
                                     daemon=True) for _ in range(args.bombs)]
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.event.set()
        for t in threads[:2]:
            t.join(60)
        idle_alive = 0
        for s in held:
            s.setblocking(False)
            try:
                idle_alive += s.recv(1) != b""
            except BlockingIOError:
                idle_alive += 1
            except OSError:
                pass
            s.close()
        lat = normal.get("latencies_ms", [])
        _, metrics = http(agent_metrics, "/metrics")
        fenced = [line for line in metrics.splitlines()
                  if line.startswith("strata_catalog_commits_fenced_total")]
        summary.update(counts)
        summary.update(
            idle_still_open=idle_alive,
            normal_acked=len(lat), normal_failed=len(normal.get("failures", [])),
            normal_p50_ms=round(percentile(lat, 0.5), 1),
            normal_p99_ms=round(percentile(lat, 0.99), 1),
            normal_max_ms=round(max(lat), 1) if lat else None,
            normal_mean_ms=round(statistics.mean(lat), 1) if lat else None,
            ready_checks=watch.get("ready_checks"), not_ready=watch.get("not_ready"),
            attack_peak_rss_mib=watch.get("peak_rss_mib"),
            commits_fenced=fenced,
        )

        # Hostile fetch: fill a topic, then many slow readers of huge responses.
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                      "batch.size": 1 << 20, "compression.type": "none"})
        value = os.urandom(64 << 10)
        for _ in range(args.fetch_mb * 16):
            while True:
                try:
                    p.produce("fetched", value)
                    break
                except BufferError:
                    p.poll(0.05)
        p.flush(120)
        summary["hostile_fetch"] = hostile_fetch(bootstrap, "fetched", args.fetchers,
                                                 args.fetch_seconds, agent.pid)
    finally:
        for proc in (agent, catalog):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        summary["agent_exit"] = agent.returncode
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
