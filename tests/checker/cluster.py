"""The checker's own cluster: moto S3, its own PostgreSQL (or SQLite), `strata catalog`,
agents and `strata compactor`, each a process the nemesis may kill or pause, and every link
between them (agent->catalog, agent->S3, compactor->catalog, compactor->S3,
catalog->PostgreSQL) through a proxy it may black-hole or slow down.

Nothing here depends on pytest: the checker runs as a command. PostgreSQL is a cluster of
the run's own (scripts/pg.sh on a free port and a directory under the run's output), never
the shared test cluster, because the nemesis kills and pauses it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))

from blackhole_proxy import BlackholeProxy  # noqa: E402

READY_TIMEOUT_S = 60.0
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "strata-checker",
    "AWS_SECRET_ACCESS_KEY": "strata-checker",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class SetupError(RuntimeError):
    """The cluster could not be started; the message says what and where the log is."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def strata_bin() -> str:
    explicit = os.environ.get("STRATA_BIN")
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "strata-target"))
    return str(target / "debug" / "strata")


def moto_bin() -> str:
    explicit = os.environ.get("STRATA_MOTO_SERVER")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("moto_server")
    if not found:
        raise SetupError("moto_server not found: install tests/python/requirements.txt or set "
                         "STRATA_MOTO_SERVER")
    return found


def role_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STRATA_") and not k.startswith("AWS_")}
    env.update(AWS_ENV)
    env["RUST_BACKTRACE"] = "1"
    env.setdefault("RUST_LOG", "info")
    return env


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Process:
    """One role as a child process with a log file: started, killed, paused, resumed."""

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int,
                 env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path, self.port = name, argv, log_path, port
        self.env = env or role_env()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited with {self.proc.returncode} before "
                                 f"listening on {self.port}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise SetupError(f"{self.name} did not listen on {self.port} within "
                                 f"{READY_TIMEOUT_S}s; see {self.log_path}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.alive() else []

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def pause(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> int | None:
        """SIGCONT (in case it is paused), SIGTERM, wait; SIGKILL after 30 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Postgres:
    """A PostgreSQL cluster of this run only, through scripts/pg.sh (port and directory of
    its own): kill -9 is a SIGKILL of the postmaster and every backend, then a start."""

    name = "postgres"

    def __init__(self, base: Path):
        self.port = free_port()
        # Its own directory under /tmp, not under `base`: user postgres must be able to walk
        # to it, and pytest's tmp dirs are private to root (and re-made so on every session).
        self.dir = Path(tempfile.mkdtemp(prefix="strata-checker-pg-"))
        os.chmod(self.dir, 0o711)
        (base / "pg-dir").write_text(f"{self.dir}\n")
        self.env = {**os.environ, "STRATA_PG_PORT": str(self.port),
                    "STRATA_PG_DIR": str(self.dir)}

    def start(self) -> None:
        if self.postmaster() is None:
            # A killed postmaster may linger as a zombie until it is reaped, which pg_ctl
            # and postgres take for a running server: its lock file goes.
            (self.dir / "data" / "postmaster.pid").unlink(missing_ok=True)
            for stale in (f"/tmp/.s.PGSQL.{self.port}.lock", f"/tmp/.s.PGSQL.{self.port}"):
                Path(stale).unlink(missing_ok=True)
        out = subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start"], env=self.env,
                             capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise SetupError(f"scripts/pg.sh start failed:\n{out.stdout}\n{out.stderr}")

    def postmaster(self) -> int | None:
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _exists(pid) else None

    def pids(self) -> list[int]:
        pid = self.postmaster()
        return [] if pid is None else [pid, *children_of(pid)]

    def alive(self) -> bool:
        return self.postmaster() is not None

    def kill(self) -> None:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 30
        while any(_exists(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def pause(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass

    def resume(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass

    def stop(self) -> None:
        self.resume()
        subprocess.run([str(ROOT / "scripts" / "pg.sh"), "stop"], env=self.env,
                       capture_output=True, timeout=120)
        if self.postmaster() is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, port: int | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{port or self.port}/strata"


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Cluster:
    base: Path
    bucket: str
    moto: Process
    catalog: Process
    catalog_metrics_port: int
    postgres: Postgres | None
    agents: list[Process] = field(default_factory=list)
    agent_metrics_ports: list[int] = field(default_factory=list)
    compactor: Process | None = None
    proxies: dict[str, BlackholeProxy] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{a.port}" for a in self.agents)

    def targets(self) -> dict[str, object]:
        """Everything the nemesis can kill or pause, by name."""
        out: dict[str, object] = {"catalog": self.catalog, "s3": self.moto}
        for i, agent in enumerate(self.agents, 1):
            out[f"agent-{i}"] = agent
        if self.compactor is not None:
            out["compactor"] = self.compactor
        if self.postgres is not None:
            out["postgres"] = self.postgres
        return out

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()
        for process in [*self.agents, self.compactor, self.catalog, self.moto]:
            if process is not None:
                process.stop()
        for proxy in self.proxies.values():
            proxy.stop()
        if self.postgres is not None:
            self.postgres.stop()


def run_strata(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([strata_bin(), *args], capture_output=True, text=True,
                          env=role_env(), timeout=timeout)


def http(port: int, path: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip().startswith("{") else {}


def _proxy(cluster: Cluster, name: str, upstream: int) -> int:
    proxy = BlackholeProxy(upstream).start()
    cluster.proxies[name] = proxy
    return proxy.port


def start_cluster(base: Path, agents: int = 2, store: str = "postgres",
                  flush_interval_ms: int = 20, compactor: bool = True) -> Cluster:
    """Everything started and listening, links through proxies named
    `agent-N->catalog`, `agent-N->s3`, `compactor->catalog`, `compactor->s3`,
    `catalog->postgres`."""
    base.mkdir(parents=True, exist_ok=True)
    binary = strata_bin()
    if not Path(binary).is_file():
        raise SetupError(f"no strata binary at {binary}: build it (cargo build -p strata) "
                         "or set STRATA_BIN")
    moto_port = free_port()
    moto = Process("s3", [moto_bin(), "-H", "127.0.0.1", "-p", str(moto_port)],
                   base / "moto.log", moto_port, env={**os.environ})
    moto.start()
    bucket = f"strata-checker-{uuid.uuid4().hex[:10]}"
    endpoint = f"http://127.0.0.1:{moto_port}"
    made = run_strata("admin", "init-bucket", "--object-store", f"s3://{bucket}/data",
                      "--s3-endpoint", endpoint, "--create")
    if made.returncode != 0:
        moto.stop()
        raise SetupError(f"init-bucket failed:\n{made.stdout}\n{made.stderr}")

    postgres = None
    catalog_port, catalog_metrics = free_port(), free_port()
    cluster = Cluster(base, bucket, moto, None, catalog_metrics, None)  # type: ignore[arg-type]
    try:
        if store == "postgres":
            postgres = Postgres(base)
            cluster.postgres = postgres
            postgres.start()
            store_url = postgres.url(_proxy(cluster, "catalog->postgres", postgres.port))
        else:
            store_url = f"sqlite://{base / 'catalog' / 'catalog.db'}"
        cluster.catalog = Process(
            "catalog", [binary, "catalog", "--store", store_url,
                        "--listen", f"127.0.0.1:{catalog_port}",
                        "--metrics-listen", f"127.0.0.1:{catalog_metrics}",
                        "--fault-injection"],
            base / "catalog.log", catalog_port)
        cluster.catalog.start()
        for n in range(1, agents + 1):
            port, metrics = free_port(), free_port()
            to_catalog = _proxy(cluster, f"agent-{n}->catalog", catalog_port)
            to_s3 = _proxy(cluster, f"agent-{n}->s3", moto_port)
            agent = Process(
                f"agent-{n}",
                [binary, "agent", "--catalog", f"http://127.0.0.1:{to_catalog}",
                 "--object-store", f"s3://{bucket}/data",
                 "--s3-endpoint", f"http://127.0.0.1:{to_s3}",
                 "--listen", f"127.0.0.1:{port}", "--advertise", f"127.0.0.1:{port}",
                 "--node-id", str(n), "--metrics-listen", f"127.0.0.1:{metrics}",
                 "--cache-dir", str(base / f"cache-{n}"), "--cache-disk-mb", "64",
                 "--flush-interval-ms", str(flush_interval_ms),
                 "--produce-timeout-ms", "10000", "--auto-create-topics", "false",
                 "--fault-injection"],
                base / f"agent-{n}.log", port)
            cluster.agents.append(agent)
            cluster.agent_metrics_ports.append(metrics)
            agent.start()
        if compactor:
            metrics = free_port()
            to_catalog = _proxy(cluster, "compactor->catalog", catalog_port)
            to_s3 = _proxy(cluster, "compactor->s3", moto_port)
            cluster.compactor = Process(
                "compactor",
                [binary, "compactor", "--catalog", f"http://127.0.0.1:{to_catalog}",
                 "--object-store", f"s3://{bucket}/data",
                 "--s3-endpoint", f"http://127.0.0.1:{to_s3}",
                 "--metrics-listen", f"127.0.0.1:{metrics}",
                 # Passes every second and short claims, so rewrites run (and are killed)
                 # mid-test; dead objects go after 60 s, longer than any read in flight.
                 "--interval-ms", "1000", "--claim-lease-ms", "5000",
                 "--gc-grace-ms", "60000", "--target-file-bytes", "262144",
                 "--compactor-id", "checker-compactor"],
                base / "compactor.log", metrics)
            cluster.compactor.start()
    except BaseException:
        for process in [*cluster.agents, cluster.compactor, cluster.catalog, moto]:
            if process is not None and process.alive():
                process.kill()
        for proxy in cluster.proxies.values():
            proxy.stop()
        if postgres is not None:
            postgres.stop()
        raise
    return cluster
