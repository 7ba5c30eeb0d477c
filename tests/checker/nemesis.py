"""The nemesis: one fault at a time on a seeded schedule, each held for a few seconds and then
healed, every step written to the history (f=fault / f=heal, process "nemesis").

Faults (--faults):
  kill       SIGKILL of an agent, the catalog, PostgreSQL (postmaster and backends) or the
             compactor (passes every second: often mid-rewrite), restarted after the hold.
             Not the S3 server: moto keeps its objects in memory, so killing it would lose
             the bucket (an S3 outage is what `pause` and `partition` give).
  pause      SIGSTOP, then SIGCONT after the hold, of any of those or the S3 server.
  partition  black-hole one link (agent-N->catalog, agent-N->s3, compactor->catalog,
             compactor->s3, catalog->postgres): connections stay open and silent; after the
             heal new connections flow, the held ones stay silent for good.
  delay      slow one link down (every chunk waits 100-1000 ms).
  errors     object-store errors on one agent (30 % of PUTs fail, half of them after the
             write landed) and, on the catalog, commits that apply but lose their reply or
             apply late.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error

from cluster import Cluster, SetupError, http

FAULTS = ("kill", "pause", "partition", "delay", "errors")
HOLD_S = (3.0, 12.0)
QUIET_S = (4.0, 10.0)


class Nemesis(threading.Thread):
    def __init__(self, cluster: Cluster, history, faults: list[str], seed: int,
                 start_at: float, end_at: float, skip: tuple[str, ...] = ()):
        super().__init__(name="nemesis", daemon=True)
        self.skip = set(skip)
        self.cluster, self.history = cluster, history
        self.faults = faults
        self.rng = random.Random(seed)
        self.start_at, self.end_at = start_at, end_at
        self.stop_event = threading.Event()
        self.done: list[dict] = []
        self.down: dict[str, object] = {}      # killed, to be restarted
        self.paused: dict[str, object] = {}

    def _sleep_until(self, at: float) -> bool:
        """False when stopped first."""
        return not self.stop_event.wait(max(0.0, at - self.history.now()))

    def run(self) -> None:
        if not self.faults or not self._sleep_until(self.start_at):
            return
        while self.history.now() < self.end_at - HOLD_S[0]:
            kind = self.rng.choice(self.faults)
            hold = self.rng.uniform(*HOLD_S)
            hold = min(hold, self.end_at - self.history.now())
            fault = self._begin(kind)
            self.history.add("nemesis", "info", "fault", **fault)
            if not self._sleep_until(self.history.now() + hold):
                break
            self._end(fault)
            self.history.add("nemesis", "info", "heal", **fault)
            self.done.append(fault)
            if not self._sleep_until(self.history.now() + self.rng.uniform(*QUIET_S)):
                break

    # -- faults ---------------------------------------------------------------------------

    def _begin(self, kind: str) -> dict:
        c = self.cluster
        if kind == "kill":
            name = self.rng.choice(sorted(n for n in c.targets()
                                          if n != "s3" and n not in self.skip))
            self.down[name] = c.targets()[name]
            c.targets()[name].kill()
            return {"fault": kind, "target": name}
        if kind == "pause":
            name = self.rng.choice(sorted(n for n in c.targets() if n not in self.skip))
            self.paused[name] = c.targets()[name]
            c.targets()[name].pause()
            return {"fault": kind, "target": name}
        if kind in ("partition", "delay"):
            name = self.rng.choice(sorted(n for n in c.proxies if n not in self.skip))
            if kind == "partition":
                c.proxies[name].blackhole()
                return {"fault": kind, "target": name}
            ms = self.rng.randrange(100, 1000)
            c.proxies[name].delay(ms)
            return {"fault": kind, "target": name, "delay_ms": ms}
        if kind == "errors":
            n = self.rng.randrange(len(c.agents))
            after = self.rng.random() < 0.5
            plan = {"rules": [{"ops": ["put"], "error_probability": 0.3,
                               "error_after_apply": after}],
                    "seed": self.rng.randrange(1 << 30)}
            catalog = {"lose_reply_count": self.rng.randrange(1, 4),
                       "late_apply_count": self.rng.randrange(0, 2), "late_apply_ms": 3000}
            self._http(c.agent_metrics_ports[n], "PUT", plan)
            self._http(c.catalog_metrics_port, "PUT", catalog)
            return {"fault": kind, "target": f"agent-{n + 1}", "plan": plan, "catalog": catalog}
        raise ValueError(f"unknown fault {kind!r}: choose from {', '.join(FAULTS)}")

    def _end(self, fault: dict) -> None:
        c, kind, name = self.cluster, fault["fault"], fault["target"]
        if kind == "kill":
            self._restart(name)
        elif kind == "pause":
            self.paused.pop(name).resume()
        elif kind in ("partition", "delay"):
            c.proxies[name].heal()
        elif kind == "errors":
            n = int(name.split("-")[1]) - 1
            self._http(c.agent_metrics_ports[n], "DELETE", None)
            self._http(c.catalog_metrics_port, "DELETE", None)

    def _restart(self, name: str) -> bool:
        process = self.down.get(name)
        if process is None:
            return True
        try:
            process.start()
        except SetupError as e:
            self.history.add("nemesis", "info", "restart-failed", target=name, error=str(e))
            return False
        del self.down[name]
        return True

    def _http(self, port: int, method: str, body: dict | None) -> None:
        try:
            http(port, "/faults", method, body)
        except (OSError, urllib.error.URLError) as e:
            # The target is down or paused (another fault); the heal clears it again.
            self.history.add("nemesis", "info", "fault-rule-failed", port=port, error=str(e))

    def heal_all(self) -> None:
        """Ends every fault: resumes, restarts, reconnects, clears injected errors."""
        self.stop_event.set()
        self.join(timeout=120)
        c = self.cluster
        for name in list(self.paused):
            self.paused.pop(name).resume()
        for proxy in c.proxies.values():
            proxy.heal()
        for _ in range(5):
            for name in list(self.down):
                self._restart(name)
            if not self.down:
                break
            time.sleep(2)
        for port in [*c.agent_metrics_ports, c.catalog_metrics_port]:
            self._http(port, "DELETE", None)
        self.history.add("nemesis", "info", "heal", fault="all", target="all",
                         still_down=sorted(self.down))
        self.history.add("nemesis", "info", "phase", name="heal-all")
