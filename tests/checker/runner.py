"""What `tests/checker/run` does: arguments, the phases of a run, the verdict.

Phases (times from the start of the workload):
  0 s                 clients start; the nemesis starts at 5 s
  until T - R         the nemesis injects faults (one at a time)
  T - R               heal everything (R: --recovery-seconds, default 30 s, at most T/3)
  T                   producers stop ("workload-end"); consumers catch up to the end of
                      every partition (at most 60 s), then stop
  then                final reads of every partition from offset 0; the checker
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import check
from cluster import SetupError, start_cluster
from nemesis import FAULTS, Nemesis
from workload import History, Member, Observer, Reader, Sender, common_config, final_read

QUEUE_TOPIC = "checker-queue"
GROUP_TOPIC = "checker-group"
GROUP = "checker-group-members"
CATCH_UP_S = 60.0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tests/checker/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0,
                   help="workload length, faults and recovery included (default 5)")
    p.add_argument("--faults", default="kill,pause,partition",
                   help=f"comma-separated, from {','.join(FAULTS)}; 'none' for no faults "
                        "(default kill,pause,partition)")
    p.add_argument("--seed", type=int, default=None, help="nemesis and workload seed "
                   "(default: random, printed)")
    p.add_argument("--skip", default="",
                   help="comma-separated process or link names the nemesis leaves alone, "
                        "e.g. catalog->postgres,s3")
    p.add_argument("--workload", choices=("queue", "group", "all"), default="all")
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--partitions", type=int, default=4, help="per topic (default 4)")
    p.add_argument("--rate", type=float, default=40.0,
                   help="sends per second per producer (default 40)")
    p.add_argument("--recovery-seconds", type=float, default=30.0,
                   help="time between the final heal and the end of the workload")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the history, verdict and logs "
                        "(default /tmp/strata-checker-runs/<time>-seed<seed>)")
    args = p.parse_args(argv)
    args.faults = [] if args.faults in ("", "none") else args.faults.split(",")
    for fault in args.faults:
        if fault not in FAULTS:
            p.error(f"unknown fault {fault!r}: choose from {', '.join(FAULTS)}")
    args.skip = tuple(x for x in args.skip.split(",") if x)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if args.out is None:
        args.out = Path("/tmp/strata-checker-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{args.seed}"
    return args


def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = AdminClient(common_config(bootstrap))
    # Compaction after 3 s: the compactor rewrites to Parquet while the workload runs, so
    # consumers and the final reads cross the Parquet tier.
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1,
                    config={"strata.compaction.age.ms": "3000"}) for t in topics]
    for topic, future in admin.create_topics(new, request_timeout=30).items():
        future.result(timeout=60)


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({**common_config(bootstrap), "group.id": "checker-watermarks"})
    try:
        out = {}
        for p in range(partitions):
            for _ in range(6):
                try:
                    out[p] = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                            timeout=10)[1]
                    break
                except KafkaException:
                    time.sleep(1)
        return out
    finally:
        consumer.close()


def main(argv: list[str]) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    duration = args.minutes * 60
    recovery = min(args.recovery_seconds, duration / 3)
    command = "tests/checker/run " + " ".join(argv)
    print(f"checker: seed {args.seed}, {duration:.0f} s, faults {','.join(args.faults) or 'none'}"
          f", workload {args.workload}, out {args.out}", flush=True)
    try:
        cluster = start_cluster(args.out / "cluster", agents=args.agents, store=args.store)
    except SetupError as e:
        print(f"checker: cluster set-up failed: {e}")
        return 2
    # SIGTERM (a test's timeout, Ctrl-C's cousin) still tears the cluster down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    history = History(args.out / "history.jsonl")
    rng = random.Random(args.seed)
    try:
        report = run_workload(args, cluster, history, rng, duration, recovery)
    finally:
        history.close()
        cluster.stop()
    verdict = {"command": command, "seed": args.seed, "seconds": duration,
               "faults": args.faults, "skip": list(args.skip), "workload": args.workload,
               "store": args.store,
               "history": str(args.out / "history.jsonl"), **report}
    (args.out / "verdict.json").write_text(json.dumps(verdict, indent=2) + "\n")
    print_verdict(verdict)
    return 0 if verdict["valid"] else 1


def run_workload(args, cluster, history: History, rng: random.Random, duration: float,
                 recovery: float) -> dict:
    bootstrap = cluster.bootstrap
    topics = {"queue": [QUEUE_TOPIC], "group": [GROUP_TOPIC],
              "all": [QUEUE_TOPIC, GROUP_TOPIC]}[args.workload]
    create_topics(bootstrap, topics, args.partitions)
    history.t0 = time.monotonic()
    stop_producers, stop_consumers = threading.Event(), threading.Event()
    producers, readers, members, observer = [], [], [], None
    for topic in topics:
        short = topic.split("-")[1][0]
        for n in range(2):
            producers.append(Sender(f"{short}-producer-{n + 1}", history, stop_producers,
                                    bootstrap, topic, args.partitions, args.rate,
                                    rng.randrange(1 << 30)))
    if QUEUE_TOPIC in topics:
        readers = [Reader(f"q-reader-{n + 1}", history, stop_consumers, bootstrap, QUEUE_TOPIC,
                          args.partitions) for n in range(2)]
    if GROUP_TOPIC in topics:
        members = [Member(f"g-member-{n + 1}", history, stop_consumers, bootstrap,
                          GROUP_TOPIC, GROUP) for n in range(2)]
        observer = Observer("g-observer", history, stop_consumers, bootstrap, GROUP_TOPIC,
                            args.partitions, GROUP)
    clients = [*producers, *readers, *members, *([observer] if observer else [])]
    for c in clients:
        c.start()
    nemesis = Nemesis(cluster, history, args.faults, rng.randrange(1 << 30), start_at=5.0,
                      end_at=duration - recovery, skip=args.skip)
    nemesis.start()
    churn = threading.Thread(target=rebalances, daemon=True,
                             args=(members, history, stop_producers, stop_consumers, bootstrap,
                                   rng.randrange(1 << 30)))
    if members:
        churn.start()

    wait_until(history, duration - recovery)
    nemesis.heal_all()
    wait_until(history, duration)
    stop_producers.set()
    join_all(producers, 60)
    history.add("nemesis", "info", "phase", name="workload-end")
    caught_up = catch_up(history, bootstrap, topics, args.partitions, readers, observer)
    stop_consumers.set()
    if members:
        churn.join(timeout=60)
    join_all([*readers, *members, *([observer] if observer else [])], 60)
    for topic in topics:
        final_read(history, bootstrap, topic, args.partitions, timeout_s=60)
    report = check.check(check.read_history(history.path)).to_dict()
    report["stats"]["caught_up_s"] = caught_up
    report["stats"]["faults_injected"] = [f"{f['fault']}:{f['target']}" for f in nemesis.done]
    report["stats"]["client_errors"] = [f"{c.process}: {c.error}" for c in clients if c.error]
    return report


def join_all(threads: list, timeout_s: float) -> None:
    """Joins `threads` within one deadline (a client stuck in a call is left behind: the
    history shows it)."""
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))


def wait_until(history: History, at: float) -> None:
    while history.now() < at:
        time.sleep(min(1.0, at - history.now()))


def rebalances(members: list, history: History, stop_producers, stop_consumers, bootstrap,
               seed: int) -> None:
    """Every 8-20 s one member leaves and a new one joins (two rebalances)."""
    rng = random.Random(seed)
    n = len(members)
    while not stop_producers.wait(rng.uniform(8, 20)):
        old = members.pop(rng.randrange(len(members)))
        old.leave.set()
        old.join(timeout=60)
        n += 1
        new = Member(f"g-member-{n}", history, stop_consumers, bootstrap, old.topic, old.group)
        members.append(new)
        new.start()


def catch_up(history: History, bootstrap: str, topics: list[str], partitions: int, readers,
             observer) -> float | None:
    """Waits until every reader has read, and the group has committed, up to the end of
    every partition; returns how long that took (None: not within CATCH_UP_S)."""
    started = time.monotonic()
    ends = {t: high_watermarks(bootstrap, t, partitions) for t in topics}
    while time.monotonic() - started < CATCH_UP_S:
        behind = []
        for r in readers:
            behind += [p for p, hw in ends[QUEUE_TOPIC].items() if r.positions.get(p, 0) < hw]
        if observer is not None:
            behind += [p for p, hw in ends[GROUP_TOPIC].items()
                       if hw > 0 and observer.latest.get(p, -1) < hw]
        if not behind:
            return round(time.monotonic() - started, 3)
        time.sleep(0.5)
    history.add("nemesis", "info", "phase", name="catch-up-timed-out")
    return None


def print_verdict(v: dict) -> None:
    s = v["stats"]
    print(f"checker: {'VALID' if v['valid'] else 'INVALID'}  "
          f"(sends acknowledged {s['sends_ok']}, indefinite {s['sends_info']}, "
          f"records polled {s['records_polled']}, commits {s['commits_ok']}, "
          f"faults {s['faults']}, final reads {s['records_in_final_reads']} records)")
    print(f"checker: longest without progress {s['longest_without_progress_s']} s, "
          f"max recovery after a heal {s['max_recovery_after_heal_s']} s, after the final "
          f"heal {s.get('max_recovery_after_final_heal_s')} s, caught up in {s['caught_up_s']} s")
    for name, count in v["anomaly_counts"].items():
        print(f"checker: anomaly {name}: {count}, e.g. "
              f"{json.dumps(v['anomalies'][name][0])}")
    if s["client_errors"]:
        print(f"checker: client errors: {s['client_errors']}")
    print(f"checker: history {v['history']}")
