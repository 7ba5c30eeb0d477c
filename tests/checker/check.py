"""The checker: reads a JSON-lines history written by the checker's clients and nemesis and
reports anomalies. Pure Python over the history (no cluster, no Kafka client), so it can be
unit-tested with hand-made histories and re-run on a kept history:

    python3 tests/checker/check.py HISTORY.jsonl

History format: one JSON object per line, each with
  index    position in the history (the order events were recorded)
  time     seconds since the start of the run (monotonic clock)
  process  who did it: a client ("q-producer-3", "g-consumer-7"), "nemesis", "final"
  type     "invoke" | "ok" | "fail" | "info"  (info: indefinite, e.g. a timeout)
  f        what: send, poll, assign, revoke, commit, committed, final-read, start, stop,
           crash, fault, heal, phase
and the fields of that op:
  send        topic, partition, value; ok adds offset; fail/info add error. An invoke is
              paired with its completion by (process, value).
  poll        (type ok) topic, records [[partition, offset, value], ...], invoke_time;
              group (for group consumers)
  assign      topic, partitions: the process's offsets start over (a seek or a rebalance)
  revoke      topic, partitions
  commit      (type ok) group, topic, offsets {partition: offset}, invoke_time
  committed   (type ok) group, topic, offsets {partition: offset}, invoke_time: an observer's
              read of the group's committed offsets
  final-read  (type ok) topic, partition, records [[offset, value], ...], high_watermark,
              complete (whether the read reached the high watermark)
  fault/heal  (process nemesis) fault, target: what the nemesis did
  phase       (process nemesis) name: "workload-end" (clients stop), "heal-all"

Anomalies (Jepsen's names, after jepsen.tests.kafka, and Strata's own):
  lost-write            a value known to exist (acknowledged, or seen by a read) is missing
                        from the final read of its partition, which covered its offset
  unseen                an acknowledged value that no consumer's poll ever returned
  duplicate             one value stored at two or more offsets
  inconsistent-offsets  one offset of a partition holding two or more values
  poll-skip             a consumer's successive reads of a partition jump over offsets that
                        exist, with no seek or rebalance between them
  nonmonotonic-poll     a consumer's successive reads of a partition go backwards or repeat,
                        with no seek or rebalance between them
  nonmonotonic-send     one producer's acknowledged sends to a partition, in send order, get
                        offsets that do not increase
  offset-gap            (Strata) the final read of a partition is not dense from its first
                        offset to the high watermark
  committed-offset-regression  (Strata) a group's committed offset for a partition, read or
                        acknowledged, is lower than one read or acknowledged before
  stuck                 (Strata) a client with no successful op for more than 60 s
  slow-recovery         (Strata) a client whose first successful op after a heal came more
                        than 30 s later
  final-read-incomplete (Strata) a final read (after every fault healed) that could not read
                        its partition up to the high watermark
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ANOMALIES = ("lost-write", "unseen", "duplicate", "inconsistent-offsets", "poll-skip",
             "nonmonotonic-poll", "nonmonotonic-send", "offset-gap",
             "committed-offset-regression", "stuck", "slow-recovery", "final-read-incomplete")
STUCK_S = 60.0
RECOVERY_S = 30.0
EXAMPLES_MAX = 10


def read_history(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Report:
    anomalies: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    stats: dict = field(default_factory=dict)

    def add(self, name: str, example: dict) -> None:
        assert name in ANOMALIES, name
        self.anomalies[name].append(example)

    @property
    def valid(self) -> bool:
        return not any(self.anomalies.values())

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "anomaly_counts": {k: len(v) for k, v in sorted(self.anomalies.items()) if v},
            "anomalies": {k: v[:EXAMPLES_MAX] for k, v in sorted(self.anomalies.items()) if v},
            "stats": self.stats,
        }


def check(history: list[dict]) -> Report:
    """Every check over one history; the report is valid when no anomaly was found."""
    report = Report()
    history = sorted(history, key=lambda e: e["index"])
    sends = _sends(history)
    observed = _observations(history, sends)
    finals = _final_reads(history)
    _check_offsets(observed, report)
    _annotate_batches(finals, report)
    _check_lost_and_unseen(history, sends, observed, finals, report)
    _check_polls(history, report)
    _check_sends(sends, report)
    _check_dense(finals, report)
    _check_committed(history, report)
    _check_liveness(history, report)
    report.stats.update(_counts(history, sends, finals))
    return report


# -- the values and where they were seen ----------------------------------------------------

@dataclass
class Send:
    process: str
    topic: str
    partition: int
    value: str
    index: int                 # the invoke's index: the order this process sent in
    type: str = "invoke"       # completion type; "invoke" while none was recorded
    offset: int | None = None


def _sends(history: list[dict]) -> list[Send]:
    sends: dict[tuple[str, str], Send] = {}
    for e in history:
        if e["f"] != "send":
            continue
        key = (e["process"], e["value"])
        if e["type"] == "invoke":
            sends[key] = Send(e["process"], e["topic"], e["partition"], e["value"], e["index"])
        elif key in sends:
            s = sends[key]
            s.type = e["type"]
            if e["type"] == "ok":
                s.offset = e["offset"]
                s.partition = e.get("partition", s.partition)
    return list(sends.values())


# (topic, partition, offset) -> {value: [where seen]}
Observed = dict[tuple[str, int, int], dict[str, list[str]]]


def _observations(history: list[dict], sends: list[Send]) -> Observed:
    observed: Observed = defaultdict(lambda: defaultdict(list))
    for s in sends:
        if s.type == "ok":
            observed[(s.topic, s.partition, s.offset)][s.value].append(f"ack to {s.process}")
    for e in history:
        if e["type"] != "ok":
            continue
        if e["f"] == "poll":
            for partition, offset, value in e["records"]:
                observed[(e["topic"], partition, offset)][value].append(
                    f"poll by {e['process']} #{e['index']}")
        elif e["f"] == "final-read":
            for offset, value in e["records"]:
                observed[(e["topic"], e["partition"], offset)][value].append("final read")
    return observed


def _final_reads(history: list[dict]) -> dict[tuple[str, int], dict]:
    """(topic, partition) -> the last final read of it."""
    return {(e["topic"], e["partition"]): e for e in history
            if e["f"] == "final-read" and e["type"] == "ok"}


def _covered(final: dict) -> int:
    """The end of the offsets a final read vouches for."""
    if final.get("complete"):
        return final["high_watermark"]
    return max((o for o, _ in final["records"]), default=-1) + 1


def _check_offsets(observed: Observed, report: Report) -> None:
    places: dict[tuple[str, str], set[tuple[int, int]]] = defaultdict(set)
    for (topic, partition, offset), values in sorted(observed.items()):
        if len(values) > 1:
            report.add("inconsistent-offsets", {
                "topic": topic, "partition": partition, "offset": offset,
                "values": {v: sorted(set(w))[:3] for v, w in values.items()}})
        for value in values:
            places[(topic, value)].add((partition, offset))
    for (topic, value), where in sorted(places.items()):
        if len(where) > 1:
            report.add("duplicate", {"topic": topic, "value": value,
                                     "at": [list(p) for p in sorted(where)]})


def _annotate_batches(finals: dict[tuple[str, int], dict], report: Report) -> None:
    """Adds to each duplicate the stored batches holding its copies ([base offset, last
    offset delta, producer id, epoch, base sequence]) when the final read recorded them."""
    for example in report.anomalies.get("duplicate", []):
        found = []
        for partition, offset in example["at"]:
            batches = finals.get((example["topic"], partition), {}).get("batches")
            if isinstance(batches, list):
                found += [b for b in batches if b[0] <= offset <= b[0] + b[1]]
        if found:
            example["batches"] = found


def _check_lost_and_unseen(history: list[dict], sends: list[Send], observed: Observed,
                           finals: dict[tuple[str, int], dict], report: Report) -> None:
    final_values: dict[tuple[str, int], set[str]] = {
        key: {v for _, v in e["records"]} for key, e in finals.items()}
    # Known to exist: acknowledged, or returned by a consumer's poll.
    known: dict[tuple[str, str], tuple[int, int, str]] = {}
    for (topic, partition, offset), values in observed.items():
        for value, where in values.items():
            if any(not w.startswith("final") for w in where):
                known.setdefault((topic, value), (partition, offset, where[0]))
    for (topic, value), (partition, offset, why) in sorted(known.items()):
        final = finals.get((topic, partition))
        if final is None or value in final_values[(topic, partition)]:
            continue
        if _covered(final) > offset:
            report.add("lost-write", {"topic": topic, "partition": partition, "offset": offset,
                                      "value": value, "known_from": why,
                                      "final_high_watermark": final["high_watermark"]})
    polled: set[tuple[str, str]] = set()
    consumed_topics: set[str] = set()
    for e in history:
        if e["f"] == "poll" and e["type"] == "ok":
            consumed_topics.add(e["topic"])
            for _, _, value in e["records"]:
                polled.add((e["topic"], value))
    for s in sends:
        if s.type == "ok" and s.topic in consumed_topics and (s.topic, s.value) not in polled:
            report.add("unseen", {"topic": s.topic, "partition": s.partition,
                                  "offset": s.offset, "value": s.value, "process": s.process})


def _check_polls(history: list[dict], report: Report) -> None:
    """Per consumer process and partition: successive reads advance by exactly one offset,
    until an assign/revoke/start resets the position."""
    exists: dict[tuple[str, int], set[int]] = defaultdict(set)
    for e in history:
        if e["type"] != "ok":
            continue
        if e["f"] == "final-read":
            exists[(e["topic"], e["partition"])].update(o for o, _ in e["records"])
        elif e["f"] == "poll":
            for partition, offset, _ in e["records"]:
                exists[(e["topic"], partition)].add(offset)
        elif e["f"] == "send":
            exists[(e["topic"], e["partition"])].add(e["offset"])
    last: dict[tuple[str, str, int], tuple[int, int]] = {}
    for e in history:
        if e["f"] in ("assign", "revoke", "start", "crash", "stop"):
            for key in [k for k in last if k[0] == e["process"]]:
                del last[key]
            continue
        if e["f"] != "poll" or e["type"] != "ok":
            continue
        for partition, offset, _ in e["records"]:
            key = (e["process"], e["topic"], partition)
            if key in last:
                before, index = last[key]
                where = {"process": e["process"], "topic": e["topic"], "partition": partition,
                         "previous_offset": before, "offset": offset,
                         "previous_poll": index, "poll": e["index"]}
                if offset <= before:
                    report.add("nonmonotonic-poll", where)
                elif offset > before + 1:
                    skipped = sorted(o for o in exists[(e["topic"], partition)]
                                     if before < o < offset)
                    if skipped:
                        report.add("poll-skip", {**where, "skipped": skipped[:20],
                                                 "skipped_count": len(skipped)})
            last[key] = (offset, e["index"])


def _check_sends(sends: list[Send], report: Report) -> None:
    by_stream: dict[tuple[str, str, int], list[Send]] = defaultdict(list)
    for s in sends:
        if s.type == "ok":
            by_stream[(s.process, s.topic, s.partition)].append(s)
    for (process, topic, partition), stream in sorted(by_stream.items()):
        stream.sort(key=lambda s: s.index)
        for a, b in zip(stream, stream[1:]):
            if b.offset <= a.offset:
                report.add("nonmonotonic-send", {
                    "process": process, "topic": topic, "partition": partition,
                    "first": {"value": a.value, "offset": a.offset},
                    "then": {"value": b.value, "offset": b.offset}})


def _check_dense(finals: dict[tuple[str, int], dict], report: Report) -> None:
    for (topic, partition), e in sorted(finals.items()):
        offsets = sorted(o for o, _ in e["records"])
        start = e.get("log_start", 0)
        if not e.get("complete"):
            report.add("final-read-incomplete", {
                "topic": topic, "partition": partition, "high_watermark": e["high_watermark"],
                "read_up_to": _covered(e), "error": e.get("error")})
        expected = list(range(start, _covered(e)))
        if offsets != expected:
            present = set(offsets)
            missing = [o for o in expected if o not in present]
            report.add("offset-gap", {
                "topic": topic, "partition": partition, "log_start": start,
                "high_watermark": e["high_watermark"], "complete": e.get("complete"),
                "missing": missing[:20], "missing_count": len(missing),
                "beyond": [o for o in offsets if o < start or o >= e["high_watermark"]][:20]})


def _check_committed(history: list[dict], report: Report) -> None:
    """A committed offset, once acknowledged or read, is a floor for every read that
    starts afterwards."""
    floors: dict[tuple[str, str, int], list[tuple[float, int, int]]] = defaultdict(list)
    reads = []
    for e in history:
        if e["type"] != "ok" or e["f"] not in ("commit", "committed"):
            continue
        for partition, offset in e["offsets"].items():
            if offset is None or offset < 0:
                continue
            key = (e["group"], e["topic"], int(partition))
            floors[key].append((e["time"], offset, e["index"]))
            if e["f"] == "committed":
                reads.append((key, e["invoke_time"], offset, e["index"]))
    for key, invoked, offset, index in reads:
        before = [(o, i) for t, o, i in floors[key] if t < invoked]
        if not before:
            continue
        floor, floor_index = max(before)
        if offset < floor:
            group, topic, partition = key
            report.add("committed-offset-regression", {
                "group": group, "topic": topic, "partition": partition, "read": offset,
                "read_index": index, "earlier": floor, "earlier_index": floor_index})


# -- liveness -------------------------------------------------------------------------------

def _progress(e: dict) -> bool:
    """Whether an event is a client making progress."""
    if e["type"] != "ok":
        return False
    if e["f"] == "send":
        return True
    if e["f"] == "poll":
        return bool(e["records"])
    return False


def _check_liveness(history: list[dict], report: Report) -> None:
    end = next((e["time"] for e in history
                if e["f"] == "phase" and e.get("name") == "workload-end"), None)
    if end is None:
        end = max((e["time"] for e in history), default=0.0)
    clients = {e["process"] for e in history if e["f"] in ("send", "poll")}
    lives: dict[str, dict] = {}
    for e in history:
        p = e["process"]
        if p not in clients or p == "final" or e["time"] > end:
            continue
        life = lives.setdefault(p, {"start": e["time"], "end": None, "ok": []})
        if e["f"] in ("crash", "stop"):
            life["end"] = e["time"]
        if _progress(e):
            life["ok"].append(e["time"])
    longest = 0.0
    for p, life in sorted(lives.items()):
        stop = life["end"] if life["end"] is not None else end
        marks = [life["start"], *life["ok"], stop]
        for a, b in zip(marks, marks[1:]):
            if b - a > longest:
                longest = b - a
            if b - a > STUCK_S:
                report.add("stuck", {"process": p, "from": round(a, 3), "to": round(b, 3),
                                     "seconds": round(b - a, 3)})
    report.stats["longest_without_progress_s"] = round(longest, 3)

    faults = sorted(e["time"] for e in history if e["f"] == "fault")
    heals = sorted(e["time"] for e in history if e["f"] == "heal")
    worst = 0.0
    for heal in heals:
        later_faults = [t for t in faults if t > heal]
        window_end = min([*later_faults, end])
        for p, life in lives.items():
            stop = life["end"] if life["end"] is not None else end
            if life["start"] > heal or stop <= heal:
                continue
            first = next((t for t in life["ok"] if t >= heal), None)
            took = (first if first is not None else stop) - heal
            if first is not None:
                worst = max(worst, took)
            measurable = window_end - heal >= RECOVERY_S and stop - heal >= RECOVERY_S
            if took > RECOVERY_S and (first is not None or measurable):
                report.add("slow-recovery", {"process": p, "heal": round(heal, 3),
                                             "seconds": round(took, 3),
                                             "recovered": first is not None})
    report.stats["max_recovery_after_heal_s"] = round(worst, 3)
    final_heal = max(heals, default=None)
    if final_heal is not None:
        after = [next((t for t in life["ok"] if t >= final_heal), None) - final_heal
                 for life in lives.values()
                 if life["start"] <= final_heal
                 and (life["end"] is None or life["end"] > final_heal)
                 and any(t >= final_heal for t in life["ok"])]
        report.stats["max_recovery_after_final_heal_s"] = round(max(after, default=0.0), 3)


def _counts(history: list[dict], sends: list[Send], finals: dict) -> dict:
    by_type: dict[str, int] = defaultdict(int)
    for s in sends:
        by_type[s.type] += 1
    return {
        "sends_ok": by_type["ok"], "sends_info": by_type["info"],
        "sends_fail": by_type["fail"], "sends_unanswered": by_type["invoke"],
        "polls_ok": sum(1 for e in history if e["f"] == "poll" and e["type"] == "ok"),
        "records_polled": sum(len(e["records"]) for e in history
                              if e["f"] == "poll" and e["type"] == "ok"),
        "commits_ok": sum(1 for e in history if e["f"] == "commit" and e["type"] == "ok"),
        "faults": sum(1 for e in history if e["f"] == "fault"),
        "partitions_read": len(finals),
        "records_in_final_reads": sum(len(e["records"]) for e in finals.values()),
        "incomplete_final_reads": sum(1 for e in finals.values() if not e.get("complete")),
        "client_crashes": sum(1 for e in history if e["f"] == "crash"),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} HISTORY.jsonl", file=sys.stderr)
        return 2
    report = check(read_history(argv[1])).to_dict()
    print(json.dumps(report, indent=2))
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
