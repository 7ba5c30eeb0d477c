"""Unit tests of the checker (tests/checker/check.py) over hand-made histories.

Goal: each anomaly the checker names is detected in a small history made to contain exactly
it, and a clean history of the same shape is valid, so a verdict of "valid" from a checker
run means something. Method: a tiny history builder writes the same JSON events the
checker's clients write; each test breaks one rule and asserts that anomaly, and only it,
is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHECKER_DIR = Path(__file__).resolve().parents[1] / "checker"
sys.path.insert(0, str(CHECKER_DIR))

import check  # noqa: E402

T = "t"


class History:
    def __init__(self):
        self.events: list[dict] = []
        self.now = 0.0

    def add(self, process: str, type_: str, f: str, at: float | None = None, **fields) -> dict:
        if at is not None:
            self.now = at
        else:
            self.now += 0.1
        event = {"index": len(self.events), "time": self.now, "process": process,
                 "type": type_, "f": f, **fields}
        self.events.append(event)
        return event

    def send(self, process: str, partition: int, value: str, offset: int | None,
             outcome: str = "ok", at: float | None = None) -> None:
        self.add(process, "invoke", "send", at=at, topic=T, partition=partition, value=value)
        extra = {"offset": offset} if outcome == "ok" else {"error": "timed out"}
        self.add(process, outcome, "send", topic=T, partition=partition, value=value, **extra)

    def poll(self, process: str, records: list[tuple[int, int, str]],
             at: float | None = None) -> None:
        self.add(process, "ok", "poll", at=at, topic=T, records=[list(r) for r in records],
                 invoke_time=self.now)

    def final(self, partition: int, records: list[tuple[int, str]], high_watermark=None,
              complete: bool = True) -> None:
        hw = high_watermark if high_watermark is not None else len(records)
        self.add("final", "ok", "final-read", topic=T, partition=partition,
                 records=[list(r) for r in records], high_watermark=hw, complete=complete)

    def end(self, at: float | None = None) -> None:
        self.add("nemesis", "info", "phase", at=at, name="workload-end")

    def check(self) -> dict:
        return check.check(self.events).to_dict()


def clean() -> History:
    """Two producers, one consumer that reads everything, final reads that agree."""
    h = History()
    h.send("p1", 0, "a", 0)
    h.send("p2", 0, "b", 1)
    h.send("p1", 0, "c", 2)
    h.send("p1", 1, "d", 0)
    h.poll("c1", [(0, 0, "a"), (0, 1, "b"), (1, 0, "d")])
    h.poll("c1", [(0, 2, "c")])
    h.end()
    h.final(0, [(0, "a"), (1, "b"), (2, "c")])
    h.final(1, [(0, "d")])
    return h


def found(report: dict) -> set[str]:
    return set(report["anomaly_counts"])


def test_a_clean_history_is_valid():
    report = clean().check()
    assert report["valid"], report
    assert report["stats"]["sends_ok"] == 4
    assert report["stats"]["records_in_final_reads"] == 4


def test_an_indefinite_send_may_or_may_not_be_stored():
    h = clean()
    h.send("p1", 1, "maybe", None, outcome="info")
    assert h.check()["valid"]
    h.final(1, [(0, "d"), (1, "maybe")])
    h.poll("c1", [(1, 1, "maybe")])
    assert h.check()["valid"]


def test_lost_write():
    h = History()
    h.send("p1", 0, "a", 0)
    h.send("p1", 0, "b", 1)
    h.send("p1", 0, "c", 2)
    h.poll("c1", [(0, 0, "a"), (0, 1, "b"), (0, 2, "c")])
    h.end()
    h.final(0, [(0, "a"), (2, "c")], high_watermark=3)
    report = h.check()
    assert found(report) == {"lost-write", "offset-gap"}, report
    lost = report["anomalies"]["lost-write"][0]
    assert (lost["value"], lost["offset"]) == ("b", 1)


def test_unseen():
    h = clean()
    h.send("p2", 1, "late", 1)
    h.final(1, [(0, "d"), (1, "late")])
    report = h.check()
    assert found(report) == {"unseen"}, report
    assert report["anomalies"]["unseen"][0]["value"] == "late"


def test_duplicate():
    h = clean()
    h.events = [e for e in h.events if e["f"] != "final-read"]
    h.final(0, [(0, "a"), (1, "b"), (2, "c"), (3, "a")])
    h.final(1, [(0, "d")])
    report = h.check()
    assert found(report) == {"duplicate"}, report
    assert report["anomalies"]["duplicate"][0]["at"] == [[0, 0], [0, 3]]


def test_inconsistent_offsets():
    h = clean()
    h.poll("c2", [(0, 1, "c")])
    report = h.check()
    assert "inconsistent-offsets" in found(report), report
    assert report["anomalies"]["inconsistent-offsets"][0]["offset"] == 1


def test_poll_skip():
    h = History()
    for i, v in enumerate("abcd"):
        h.send("p1", 0, v, i)
    h.poll("c1", [(0, 0, "a")])
    h.poll("c1", [(0, 3, "d")])
    h.poll("c2", [(0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (0, 3, "d")])
    h.end()
    h.final(0, [(0, "a"), (1, "b"), (2, "c"), (3, "d")])
    report = h.check()
    assert found(report) == {"poll-skip"}, report
    assert report["anomalies"]["poll-skip"][0]["skipped"] == [1, 2]


def test_a_rebalance_between_polls_is_not_a_skip():
    h = History()
    for i, v in enumerate("abcd"):
        h.send("p1", 0, v, i)
    h.poll("c1", [(0, 0, "a")])
    h.add("c1", "ok", "assign", topic=T, partitions=[0])
    h.poll("c1", [(0, 3, "d")])
    h.poll("c2", [(0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (0, 3, "d")])
    h.end()
    h.final(0, [(0, "a"), (1, "b"), (2, "c"), (3, "d")])
    assert h.check()["valid"]


def test_nonmonotonic_poll():
    h = clean()
    h.poll("c1", [(0, 1, "b")])
    report = h.check()
    assert found(report) == {"nonmonotonic-poll"}, report
    example = report["anomalies"]["nonmonotonic-poll"][0]
    assert (example["previous_offset"], example["offset"]) == (2, 1)


def test_nonmonotonic_send():
    h = History()
    h.add("p1", "invoke", "send", topic=T, partition=0, value="a")
    h.add("p1", "invoke", "send", topic=T, partition=0, value="b")
    h.add("p1", "ok", "send", topic=T, partition=0, value="b", offset=0)
    h.add("p1", "ok", "send", topic=T, partition=0, value="a", offset=1)
    h.poll("c1", [(0, 0, "b"), (0, 1, "a")])
    h.end()
    h.final(0, [(0, "b"), (1, "a")])
    report = h.check()
    assert found(report) == {"nonmonotonic-send"}, report


def test_offset_gap_without_a_lost_value():
    h = clean()
    h.events = [e for e in h.events if e["f"] != "final-read"]
    h.final(0, [(0, "a"), (1, "b"), (3, "c")], high_watermark=4)
    h.final(1, [(0, "d")])
    report = h.check()
    # c is also seen at 2 by the consumer: the final read moved it.
    assert "offset-gap" in found(report), report
    assert report["anomalies"]["offset-gap"][0]["missing"] == [2]


def test_committed_offset_regression():
    h = clean()
    g = {"group": "g", "topic": T}
    h.add("c1", "ok", "commit", **g, offsets={"0": 3}, invoke_time=h.now)
    h.add("obs", "ok", "committed", **g, offsets={"0": 3}, invoke_time=h.now + 0.05)
    assert h.check()["valid"]
    h.add("obs", "ok", "committed", **g, offsets={"0": 1}, invoke_time=h.now + 0.05)
    report = h.check()
    assert found(report) == {"committed-offset-regression"}, report
    example = report["anomalies"]["committed-offset-regression"][0]
    assert (example["read"], example["earlier"]) == (1, 3)


def test_a_read_concurrent_with_a_commit_may_see_the_old_offset():
    h = clean()
    g = {"group": "g", "topic": T}
    start = h.now
    h.add("c1", "ok", "commit", **g, offsets={"0": 3}, invoke_time=start)
    h.add("obs", "ok", "committed", **g, offsets={"0": 1}, invoke_time=start)
    assert h.check()["valid"]


def test_stuck_client():
    h = History()
    h.send("p1", 0, "a", 0, at=1.0)
    h.send("p1", 0, "b", 1, at=70.0)
    h.poll("c1", [(0, 0, "a"), (0, 1, "b")], at=71.0)
    h.end(at=72.0)
    h.final(0, [(0, "a"), (1, "b")])
    report = h.check()
    assert found(report) == {"stuck"}, report
    assert report["anomalies"]["stuck"][0]["process"] == "p1"


def test_slow_recovery_after_heal():
    h = History()
    h.send("p1", 0, "a", 0, at=1.0)
    h.add("nemesis", "info", "fault", at=2.0, fault="kill", target="agent-1")
    h.add("nemesis", "info", "heal", at=10.0, fault="kill", target="agent-1")
    h.send("p1", 0, "b", 1, at=45.0)
    h.send("p1", 0, "c", 2, at=50.0)
    h.poll("c1", [(0, 0, "a"), (0, 1, "b"), (0, 2, "c")], at=50.5)
    h.end(at=80.0)
    h.final(0, [(0, "a"), (1, "b"), (2, "c")])
    report = h.check()
    assert "slow-recovery" in found(report), report
    assert report["stats"]["max_recovery_after_heal_s"] == pytest.approx(35.1)


def test_incomplete_final_read():
    h = clean()
    h.final(1, [], high_watermark=1, complete=False)
    report = h.check()
    assert found(report) == {"final-read-incomplete"}, report


def test_the_command_line_prints_the_verdict(tmp_path):
    path = tmp_path / "history.jsonl"
    h = clean()
    path.write_text("".join(json.dumps(e) + "\n" for e in h.events))
    ok = subprocess.run([sys.executable, str(CHECKER_DIR / "check.py"), str(path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"], ok
    h.poll("c1", [(0, 0, "a")])
    path.write_text("".join(json.dumps(e) + "\n" for e in h.events))
    bad = subprocess.run([sys.executable, str(CHECKER_DIR / "check.py"), str(path)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and not json.loads(bad.stdout)["valid"], bad
