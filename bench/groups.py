#!/usr/bin/env python3
"""Strata consumer-group benchmarks (driven by bench/groups.sh).

Subcommands, each against one running `strata dev` (--bootstrap, --pid for CPU):

  commits     offset commits/s. --mode confluent: --clients N processes, each a
              confluent-kafka Consumer (no subscription, own group id) calling
              commit(offsets=[...], asynchronous=False) in a loop; N=1 is the
              "one synchronous committer" case. --mode wire: raw OffsetCommit v8
              requests from this one process over --conns sockets (one
              outstanding request each; see the note on pipelining below), so the
              client costs less CPU than librdkafka+Python and the server's
              capacity shows.
  rebalance   time for a classic (--protocol classic) or KIP-848 (--protocol
              consumer) group to reach a stable assignment: --members consumers
              (threads) subscribe to a --partitions topic; from the last
              subscribe() to every member holding a non-empty assignment whose
              union is exactly the topic's partitions (no duplicates); then one
              more member joins and the same is measured again.
  heartbeats  strata CPU per 1,000 heartbeats/s: --conns raw connections, each
              the only member of its own classic group (JoinGroup v5 + SyncGroup
              v3), send Heartbeat v4 at a paced total --rate (0 = as fast as the
              server answers) for --seconds; reports strata's CPU (whole `strata
              dev` process: agent + catalog) and an idle baseline.
  report      Markdown tables from the JSON files of a results directory.

CPU figures are utime+stime from /proc/PID/stat over the measured window, as
cores (1.0 = one core fully busy); client and whole-machine figures are
reported beside them because clients and server share the same cores.

Pipelining: the agent answers each connection's requests in order and starts a
forwarded group request only when the response before it has been written
(agent/src/connection.rs write_responses awaits each Pending in turn and the
group forward is a lazy future), so more than one outstanding group request per
connection gains nothing; concurrency comes from connections.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from produce_consume import CpuWindow, create_topic, percentile  # noqa: E402

# Wire primitives (tests/python/kafka_wire.py), duplicated minimal here so the
# bench has no dependency on the test tree.


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string(s):
    if s is None:
        return i16(-1)
    raw = s.encode()
    return i16(len(raw)) + raw


def cstring(s):
    if s is None:
        return uvarint(0)
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def bytes_(b):
    return i32(len(b)) + b


NO_TAGS = b"\x00"
OFFSET_COMMIT, JOIN_GROUP, HEARTBEAT, SYNC_GROUP = 8, 11, 12, 14
MEMBER_ID_REQUIRED = 79


def frame(api_key, version, cid, body, flexible, client_id="strata-bench-groups"):
    header = i16(api_key) + i16(version) + i32(cid) + string(client_id)
    if flexible:
        header += NO_TAGS
    payload = header + body
    return i32(len(payload)) + payload


class R:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        out = self.d[self.p:self.p + n]
        self.p += n
        return out

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


class Conn:
    """A blocking connection for setup; `sock` is switched to non-blocking for the load loop."""

    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cid = 0
        self.buf = bytearray()
        self.outstanding = []  # send times (perf_counter_ns), oldest first

    def send(self, api_key, version, body, flexible):
        self.cid += 1
        self.sock.sendall(frame(api_key, version, self.cid, body, flexible))
        return self.cid

    def recv_frame(self):
        def exact(n):
            b = bytearray()
            while len(b) < n:
                c = self.sock.recv(n - len(b))
                if not c:
                    raise ConnectionError("closed")
                b += c
            return bytes(b)
        size = struct.unpack(">i", exact(4))[0]
        return exact(size)

    def call(self, api_key, version, body, flexible):
        cid = self.send(api_key, version, body, flexible)
        r = R(self.recv_frame())
        assert r.i32() == cid
        if flexible:
            r.skip_tags()
        return r


def join_body_v5(group, member_id):
    # JoinGroup v5: group_id, session_timeout, rebalance_timeout, member_id,
    # group_instance_id, protocol_type, protocols[name, metadata]
    return (string(group) + i32(10_000) + i32(30_000) + string(member_id) + string(None)
            + string("consumer") + i32(1) + string("range") + bytes_(b"\x00\x00\x00\x00\x00\x00\x00\x00"))


def join_single_member_groups(conns, prefix):
    """Each connection becomes the only member (and leader) of group prefix-i.
    Returns [(group, member_id, generation)]."""
    member_ids = []
    for i, c in enumerate(conns):
        r = c.call(JOIN_GROUP, 5, join_body_v5(f"{prefix}-{i}", ""), False)
        r.i32()
        err = r.i16()
        r.i32(); r.string(); r.string()
        mid = r.string()
        if err not in (0, MEMBER_ID_REQUIRED):
            raise RuntimeError(f"JoinGroup error {err}")
        member_ids.append(mid)
    # Second joins (with the member id) wait out group.initial.rebalance.delay.ms: send all, then read.
    cids = [c.send(JOIN_GROUP, 5, join_body_v5(f"{prefix}-{i}", member_ids[i]), False)
            for i, c in enumerate(conns)]
    out = []
    for i, c in enumerate(conns):
        r = R(c.recv_frame())
        assert r.i32() == cids[i]
        r.i32()
        err = r.i16()
        gen = r.i32()
        r.string(); r.string()
        mid = r.string()
        if err:
            raise RuntimeError(f"JoinGroup (2nd) error {err}")
        out.append((f"{prefix}-{i}", mid, gen))
    for c, (group, mid, gen) in zip(conns, out):
        body = (string(group) + i32(gen) + string(mid) + string(None)
                + i32(1) + string(mid) + bytes_(b""))
        r = c.call(SYNC_GROUP, 3, body, False)
        r.i32()
        err = r.i16()
        if err:
            raise RuntimeError(f"SyncGroup error {err}")
    return out


def heartbeat_v4(group, mid, gen):
    return cstring(group) + i32(gen) + cstring(mid) + cstring(None) + NO_TAGS


def offset_commit_v8(group, topic, partition, offset):
    # generation -1, member "" (a simple/admin commit), no instance id.
    part = i32(partition) + i64(offset) + i32(-1) + cstring("") + NO_TAGS
    t = cstring(topic) + uvarint(2) + part + NO_TAGS
    return cstring(group) + i32(-1) + cstring("") + cstring(None) + uvarint(2) + t + NO_TAGS


def drive(conns, make_request, api_key, version, seconds, rate, depth, parse_error):
    """Paced (rate > 0, total requests/s) or closed-loop (rate 0) load over non-blocking
    connections with up to `depth` outstanding requests each. Returns counts and latencies."""
    sel = selectors.DefaultSelector()
    for idx, c in enumerate(conns):
        c.sock.setblocking(False)
        c.idx = idx
        c.n = 0
        c.wbuf = bytearray()
        sel.register(c.sock, selectors.EVENT_READ, c)
    sent = done = 0
    errors = {}
    lat = []
    t0 = time.perf_counter()
    end = t0 + seconds
    rr = 0
    nconn = len(conns)
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        allowed = (int((now - t0) * rate) + 1) if rate else None
        # send
        tries = 0
        while (allowed is None or sent < allowed) and tries < nconn:
            c = conns[rr]
            rr = (rr + 1) % nconn
            if len(c.outstanding) >= depth:
                tries += 1
                continue
            tries = 0
            c.cid += 1
            c.n += 1
            data = frame(api_key, version, c.cid, make_request(c), True)
            try:
                c.sock.send(data)  # small frames: assume the kernel buffer takes them whole
            except BlockingIOError:
                raise RuntimeError("socket buffer full")
            c.outstanding.append(time.perf_counter_ns())
            sent += 1
        timeout = 0.0005 if rate else 0.05
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                chunk = c.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError("server closed a connection")
            c.buf += chunk
            while len(c.buf) >= 4:
                size = struct.unpack(">i", c.buf[:4])[0]
                if len(c.buf) < 4 + size:
                    break
                body = bytes(c.buf[4:4 + size])
                del c.buf[:4 + size]
                t_sent = c.outstanding.pop(0)
                lat.append(time.perf_counter_ns() - t_sent)
                r = R(body)
                r.i32()
                r.skip_tags()
                e = parse_error(r)
                if e:
                    errors[e] = errors.get(e, 0) + 1
                done += 1
    wall = time.perf_counter() - t0
    # drain
    deadline = time.perf_counter() + 5
    for c in conns:
        c.sock.setblocking(True)
        c.sock.settimeout(max(0.1, deadline - time.perf_counter()))
        try:
            while c.outstanding:
                if len(c.buf) >= 4 and len(c.buf) >= 4 + struct.unpack(">i", c.buf[:4])[0]:
                    size = struct.unpack(">i", c.buf[:4])[0]
                    del c.buf[:4 + size]
                    c.outstanding.pop(0)
                    continue
                chunk = c.sock.recv(1 << 16)
                if not chunk:
                    break
                c.buf += chunk
        except OSError:
            pass
    sel.close()
    lat.sort()
    return {
        "sent": sent, "answered_in_window": done, "wall_s": wall, "rate_per_s": done / wall,
        "errors": errors,
        "lat_ms": {"p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)),
                   "max": ms(lat[-1] if lat else None)},
    }


def ms(ns):
    return None if ns is None else ns / 1e6


# --------------------------------------------------------------------------- commits

def _commit_worker(bootstrap, topic, partitions, group, seconds, start_at, q):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "client.id": group})
    # Warm up: coordinator lookup and connection.
    c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    lat = []
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    errors = 0
    while True:
        t = time.perf_counter()
        if t >= end:
            break
        try:
            res = c.commit(offsets=[TopicPartition(topic, n % partitions, n + 2)], asynchronous=False)
            if any(tp.error for tp in res):
                errors += 1
        except Exception:  # noqa: BLE001 - count and go on
            errors += 1
        lat.append(time.perf_counter_ns() - int(t * 1e9))
        n += 1
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    c.close()
    q.put({"n": n, "wall": wall, "errors": errors, "lat": lat, "cpu": cpu})


def run_commits(args) -> dict:
    topic = "bench-commits"
    create_topic(args.bootstrap, topic, args.partitions)
    if args.mode == "wire":
        conns = [Conn(args.bootstrap) for _ in range(args.conns)]
        # one group per connection; warm the topic cache
        for i, c in enumerate(conns):
            c.call(OFFSET_COMMIT, 8, offset_commit_v8(f"bench-wire-{i}", topic, 0, 1), True)
        counter = [0]

        def make(c):
            counter[0] += 1
            return offset_commit_v8(f"bench-wire-{c.idx}", topic, counter[0] % args.partitions, counter[0])

        def perr(r):
            r.i32()  # throttle
            for _ in range(r.uvarint() - 1):
                nl = r.uvarint(); r.take(nl - 1)
                for _ in range(r.uvarint() - 1):
                    r.i32()
                    e = r.i16()
                    r.skip_tags()
                    if e:
                        return e
                r.skip_tags()
            return 0
        cpu = CpuWindow(args.pid)
        res = drive(conns, make, OFFSET_COMMIT, 8, args.seconds, 0, args.depth, perr)
        res["cpu"] = cpu.done()
        for c in conns:
            c.sock.close()
        res.update(kind="commits", mode="wire", clients=args.conns, depth=args.depth,
                   commits_per_s=res["rate_per_s"])
        return res
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 2.0 + 0.15 * args.clients
    procs = [ctx.Process(target=_commit_worker,
                         args=(args.bootstrap, topic, args.partitions, f"bench-commit-{i}",
                               args.seconds, start_at, q)) for i in range(args.clients)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu = CpuWindow(args.pid)
    results = [q.get(timeout=args.seconds + 60) for _ in procs]
    win = cpu.done()
    for p in procs:
        p.join(timeout=10)
    lat = sorted(x for r in results for x in r["lat"])
    total = sum(r["n"] for r in results)
    wall = max(r["wall"] for r in results)
    return {
        "kind": "commits", "mode": "confluent", "clients": args.clients,
        "commits": total, "wall_s": wall, "commits_per_s": total / wall,
        "errors": sum(r["errors"] for r in results),
        "lat_ms": {"p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)),
                   "max": ms(lat[-1] if lat else None)},
        "client_proc_cores": sum(r["cpu"] for r in results) / wall,
        "cpu": win,
    }


# --------------------------------------------------------------------------- rebalance

class Member(threading.Thread):
    def __init__(self, idx, conf, topic):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer
        self.idx = idx
        self.consumer = Consumer(conf)
        self.topic = topic
        self.assignment = frozenset()
        self.subscribed = threading.Event()
        self.halt = threading.Event()
        self.errors = []

    def run(self):
        self.consumer.subscribe([self.topic])
        self.subscribed.set()
        while not self.halt.is_set():
            try:
                self.consumer.poll(0.02)
                self.assignment = frozenset(tp.partition for tp in self.consumer.assignment())
            except Exception as e:  # noqa: BLE001
                self.errors.append(str(e))
        self.consumer.close()


def stable(members, partitions):
    sets = [m.assignment for m in members]
    if any(not s for s in sets):
        return False
    return sum(len(s) for s in sets) == partitions and frozenset().union(*sets) == frozenset(range(partitions))


def wait_stable(members, partitions, t0, timeout):
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if stable(members, partitions):
            t = time.monotonic() - t0
            # Confirm it holds for 2 s (no further rebalance).
            hold_end = time.monotonic() + 2.0
            snapshot = [m.assignment for m in members]
            changed = False
            while time.monotonic() < hold_end:
                if [m.assignment for m in members] != snapshot:
                    changed = True
                time.sleep(0.01)
            return {"seconds": t, "changed_within_2s_after": changed,
                    "sizes": sorted(len(s) for s in snapshot)}
        time.sleep(0.005)
    return {"seconds": None, "timeout_s": timeout,
            "sizes": sorted(len(m.assignment) for m in members)}


def run_rebalance(args) -> dict:
    topic = f"bench-rebalance-{args.protocol}"
    create_topic(args.bootstrap, topic, args.partitions)
    group = f"bench-group-{args.protocol}"
    conf = {"bootstrap.servers": args.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    if args.protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    members = []
    cpu = CpuWindow(args.pid)
    for i in range(args.members):
        m = Member(i, dict(conf, **{"client.id": f"m{i}"}), topic)
        m.start()
        m.subscribed.wait(10)
        members.append(m)
    t0 = time.monotonic()
    first = wait_stable(members, args.partitions, t0, args.timeout)
    res = {"kind": "rebalance", "protocol": args.protocol, "members": args.members,
           "partitions": args.partitions, "initial": first}
    m = Member(args.members, dict(conf, **{"client.id": f"m{args.members}"}), topic)
    m.start()
    m.subscribed.wait(10)
    members.append(m)
    t1 = time.monotonic()
    res["join_one_more"] = wait_stable(members, args.partitions, t1, args.timeout)
    res["cpu_whole_run"] = cpu.done()
    for m in members:
        m.halt.set()
    for m in members:
        m.join(timeout=15)
    res["member_errors"] = [e for m in members for e in m.errors][:5]
    return res


# --------------------------------------------------------------------------- heartbeats

def run_heartbeats(args) -> dict:
    conns = [Conn(args.bootstrap) for _ in range(args.conns)]
    t = time.monotonic()
    ids = join_single_member_groups(conns, f"bench-hb-{os.getpid()}")
    setup_s = time.monotonic() - t
    # Idle baseline: members joined, nothing sent (well inside the 10 s session timeout).
    idle = CpuWindow(args.pid)
    time.sleep(2.0)
    idle_cpu = idle.done()
    results = []
    for rate in args.rates:
        for c, (g, mid, gen) in zip(conns, ids):
            c.hb = heartbeat_v4(g, mid, gen)
        cpu = CpuWindow(args.pid)
        r = drive(conns, lambda c: c.hb, HEARTBEAT, 4, args.seconds, rate, args.depth,
                  lambda rd: (rd.i32(), rd.i16())[1])
        r["cpu"] = cpu.done()
        r["target_rate"] = rate
        sc = r["cpu"]["server_cores"]
        r["server_cores_per_1k_hb_s"] = sc / (r["rate_per_s"] / 1000) if r["rate_per_s"] else None
        r["server_cores_above_idle_per_1k_hb_s"] = (
            (sc - idle_cpu["server_cores"]) / (r["rate_per_s"] / 1000) if r["rate_per_s"] else None)
        results.append(r)
        print(f"heartbeats target {rate}/s: {r['rate_per_s']:.0f}/s, strata {sc * 100:.1f}% CPU, "
              f"errors {r['errors']}", file=sys.stderr)
    for c in conns:
        c.sock.close()
    return {"kind": "heartbeats", "conns": args.conns, "depth": args.depth, "setup_s": setup_s,
            "idle_cpu": idle_cpu, "runs": results}


# --------------------------------------------------------------------------- KIP-848 heartbeats

CONSUMER_GROUP_HEARTBEAT = 68


def cgh_v0(group, member_id, epoch, topics=None, owned=None):
    """ConsumerGroupHeartbeat v0. topics/owned None = unchanged (null)."""
    b = cstring(group) + cstring(member_id) + i32(epoch) + cstring(None) + cstring(None)
    b += i32(45_000 if epoch == 0 else -1)
    b += uvarint(0) if topics is None else uvarint(len(topics) + 1) + b"".join(cstring(t) for t in topics)
    b += cstring(None)  # server assignor
    if owned is None:
        b += uvarint(0)
    else:
        b += uvarint(len(owned) + 1) + b"".join(
            tid + uvarint(len(ps) + 1) + b"".join(i32(p) for p in sorted(ps)) + NO_TAGS
            for tid, ps in owned.items())
    return b + NO_TAGS


def parse_cgh(r):
    r.i32()
    err = r.i16()
    n = r.uvarint()
    if n:
        r.take(n - 1)
    n = r.uvarint()
    mid = r.take(n - 1).decode() if n else None
    epoch = r.i32()
    r.i32()
    assignment = None
    if r.take(1)[0] != 0xFF:
        assignment = {}
        for _ in range(r.uvarint() - 1):
            tid = r.take(16)
            ps = {r.i32() for _ in range(r.uvarint() - 1)}
            r.skip_tags()
            assignment[tid] = ps
        r.skip_tags()
    return err, mid, epoch, assignment


def run_consumer_heartbeats(args) -> dict:
    topic = f"bench-cgh-{args.partitions}"
    create_topic(args.bootstrap, topic, args.partitions)
    group = f"bench-cgh-{args.members}x{args.partitions}"
    conns = [Conn(args.bootstrap) for _ in range(min(args.conns, args.members))]
    members = []  # [conn, member_id, epoch, owned]
    for i in range(args.members):
        c = conns[i % len(conns)]
        err, mid, epoch, asg = parse_cgh(_cgh_call(c, cgh_v0(group, "", 0, [topic], {})))
        if err:
            raise RuntimeError(f"join error {err}")
        members.append([c, mid, epoch, asg or {}])
    # Converge: report what each member owns until nothing changes for a full round.
    t = time.monotonic()
    rounds = 0
    while time.monotonic() - t < 60:
        changed = False
        rounds += 1
        for m in members:
            err, _, epoch, asg = parse_cgh(_cgh_call(m[0], cgh_v0(group, m[1], m[2], None, m[3])))
            if err:
                raise RuntimeError(f"heartbeat error {err}")
            if epoch != m[2] or (asg is not None and asg != m[3]):
                changed = True
            m[2] = epoch
            if asg is not None:
                m[3] = asg
        if not changed and rounds > 2:
            break
    sizes = sorted(sum(len(p) for p in m[3].values()) for m in members)
    converge_s = time.monotonic() - t
    # Steady state: heartbeats with nothing changed (owned = null), round robin over members.
    by_conn = {}
    for m in members:
        by_conn.setdefault(id(m[0]), []).append(m)
    for c in conns:
        ms_ = by_conn.get(id(c), [])
        c.reqs = [cgh_v0(group, m[1], m[2]) for m in ms_]
        c.k = 0

    def make(c):
        c.k += 1
        return c.reqs[c.k % len(c.reqs)]
    cpu = CpuWindow(args.pid)
    r = drive(conns, make, CONSUMER_GROUP_HEARTBEAT, 0, args.seconds, args.rate, 1,
              lambda rd: parse_cgh(rd)[0])
    r["cpu"] = cpu.done()
    sc = r["cpu"]["server_cores"]
    r.update(kind="consumer_heartbeats", target_rate=args.rate, members=args.members, partitions=args.partitions,
             converge_s=converge_s, converge_rounds=rounds, assignment_sizes=[sizes[0], sizes[-1]],
             server_us_per_heartbeat=sc / r["rate_per_s"] * 1e6 if r["rate_per_s"] else None,
             server_cores_per_1k_hb_s=sc / (r["rate_per_s"] / 1000) if r["rate_per_s"] else None)
    print(f"KIP-848 {args.members} members x {args.partitions} partitions: {r['rate_per_s']:.0f} hb/s, "
          f"strata {sc * 100:.1f}% CPU, {r['server_us_per_heartbeat']:.1f} us/hb, errors {r['errors']}",
          file=sys.stderr)
    for c in conns:
        c.sock.close()
    return r


def _cgh_call(c, body):
    return c.call(CONSUMER_GROUP_HEARTBEAT, 0, body, True)


# --------------------------------------------------------------------------- report

def f(v, d=1):
    return "–" if v is None else f"{v:,.{d}f}"


def report(d: Path) -> str:
    out = []
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
    if meta:
        out.append(f"- machine: {meta.get('nproc')} cores, {meta.get('cpu_model')}, "
                   f"{meta.get('mem_total_gib')} GiB RAM; {meta.get('date')}; git {meta.get('git_rev')} "
                   f"(binary built {meta.get('binary_mtime', '?')}); "
                   f"confluent-kafka {meta.get('confluent_kafka')} / librdkafka {meta.get('librdkafka')}")
    commits = sorted((json.loads(p.read_text()) for p in d.glob("commits-*.json")),
                     key=lambda r: (r["mode"] != "confluent", r["clients"], r.get("depth", 1)))
    if commits:
        out += ["", "| offset commits | clients | commits/s | p50 ms | p99 ms | errors | strata CPU | "
                "client CPU | other processes |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in commits:
            cpu = r["cpu"]
            client = r.get("client_proc_cores", cpu.get("client_cores"))
            name = ("confluent-kafka sync commit, 1 process/group each" if r["mode"] == "confluent"
                    else f"raw OffsetCommit v8, 1 connection/group each, depth {r.get('depth')}")
            errs = r["errors"] if isinstance(r["errors"], int) else sum(r["errors"].values())
            out.append(f"| {name} | {r['clients']} | {f(r['commits_per_s'], 0)} | {f(r['lat_ms']['p50'], 2)} | "
                       f"{f(r['lat_ms']['p99'], 2)} | {errs} | {f(cpu['server_cores'] * 100)}% | "
                       f"{f(client * 100)}% | {f(max(0.0, cpu['machine_busy_cores'] - cpu['server_cores'] - client) * 100)}% |")
    reb = sorted((json.loads(p.read_text()) for p in d.glob("rebalance-*.json")), key=lambda r: r["protocol"])
    if reb:
        out += ["", "| group protocol | members | partitions | last subscribe → stable | "
                "+1 member → stable | final sizes |", "|---|---:|---:|---:|---:|---|"]
        for r in reb:
            a, b = r["initial"], r["join_one_more"]
            out.append(f"| {r['protocol']}{' (' + r['label'] + ')' if r.get('label') else ''} | {r['members']} → {r['members'] + 1} | "
                       f"{r['partitions']} | {f(a['seconds'], 2)} s | {f(b['seconds'], 2)} s | {b['sizes']} |")
    hb = [json.loads(p.read_text()) for p in d.glob("heartbeats*.json")]
    for h in hb:
        out += ["", f"Heartbeats: {h['conns']} connections (one single-member classic group each), "
                f"idle strata CPU {f(h['idle_cpu']['server_cores'] * 100)}%.", "",
                "| target hb/s | achieved hb/s | p50 ms | p99 ms | errors | strata CPU | "
                "strata CPU per 1k hb/s | above idle per 1k hb/s | client CPU | other processes |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in h["runs"]:
            cpu = r["cpu"]
            out.append(f"| {r['target_rate'] or 'max'} | {f(r['rate_per_s'], 0)} | {f(r['lat_ms']['p50'], 2)} | "
                       f"{f(r['lat_ms']['p99'], 2)} | {sum(r['errors'].values())} | {f(cpu['server_cores'] * 100)}% | "
                       f"{f(r['server_cores_per_1k_hb_s'] * 100)}% | {f(r['server_cores_above_idle_per_1k_hb_s'] * 100)}% | "
                       f"{f(cpu['client_cores'] * 100)}% | {f(cpu['other_cores'] * 100)}% |")
    cgh = sorted((json.loads(p.read_text()) for p in d.glob("kip848-heartbeats-*.json")),
                 key=lambda r: (r["members"], r["partitions"]))
    if cgh:
        out += ["", "| KIP-848 group | target hb/s | achieved hb/s | p50 ms | p99 ms | errors | strata CPU | "
                "µs strata CPU per heartbeat | strata CPU per 1k hb/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in cgh:
            out.append(f"| {r['members']} members × {r['partitions']} partitions | {r['target_rate'] if 'target_rate' in r else '–'} | "
                       f"{f(r['rate_per_s'], 0)} | {f(r['lat_ms']['p50'], 2)} | {f(r['lat_ms']['p99'], 2)} | "
                       f"{sum(r['errors'].values())} | {f(r['cpu']['server_cores'] * 100)}% | "
                       f"{f(r['server_us_per_heartbeat'])} | {f(r['server_cores_per_1k_hb_s'] * 100)}% |")
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s):
        s.add_argument("--bootstrap", required=True)
        s.add_argument("--pid", type=int)
        s.add_argument("--out")

    s = sub.add_parser("commits"); common(s)
    s.add_argument("--mode", choices=["confluent", "wire"], default="confluent")
    s.add_argument("--clients", type=int, default=1)
    s.add_argument("--conns", type=int, default=16)
    s.add_argument("--depth", type=int, default=1)
    s.add_argument("--partitions", type=int, default=8)
    s.add_argument("--seconds", type=float, default=15)
    s = sub.add_parser("rebalance"); common(s)
    s.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    s.add_argument("--members", type=int, default=10)
    s.add_argument("--partitions", type=int, default=20)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--label", default="")
    s = sub.add_parser("heartbeats"); common(s)
    s.add_argument("--conns", type=int, default=8)
    s.add_argument("--depth", type=int, default=1)
    s.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 2000, 0])
    s.add_argument("--seconds", type=float, default=8)
    s = sub.add_parser("consumer-heartbeats"); common(s)
    s.add_argument("--members", type=int, default=10)
    s.add_argument("--partitions", type=int, default=20)
    s.add_argument("--conns", type=int, default=8)
    s.add_argument("--rate", type=int, default=2000)
    s.add_argument("--seconds", type=float, default=8)
    s = sub.add_parser("report")
    s.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "report":
        print(report(Path(args.dir)), end="")
        return 0
    res = {"commits": run_commits, "rebalance": run_rebalance, "heartbeats": run_heartbeats,
           "consumer-heartbeats": run_consumer_heartbeats}[args.cmd](args)
    if args.cmd == "rebalance" and args.label:
        res["label"] = args.label
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
