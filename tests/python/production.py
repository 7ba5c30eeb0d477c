"""Fixtures for production mode: a moto S3 server, `strata catalog` and `strata agent` processes.

S3 endpoint: $STRATA_TEST_S3_ENDPOINT if set (an already running S3-compatible server with
atomic conditional PUT); otherwise a `moto_server` started for the session, found through
$STRATA_MOTO_SERVER, next to this Python interpreter, or on PATH. Without either the tests
skip, except under CI=true, where they fail (.ci/run installs moto from requirements.txt).

Every cluster gets a bucket of its own (`strata-test-<random>`), so runs never collide.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import find_strata_bin, free_port, port_open, wait_listening

STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 60

# moto checks no signatures, but the S3 client signs requests and must not fall back to
# instance metadata (which would hang for seconds on a machine without it).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "strata-test",
    "AWS_SECRET_ACCESS_KEY": "strata-test",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _moto_server_binary() -> str | None:
    explicit = os.environ.get("STRATA_MOTO_SERVER")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file():
        return str(beside)
    return shutil.which("moto_server")


def role_env() -> dict[str, str]:
    """The environment of a strata role: no STRATA_* settings leak in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STRATA_") and not k.startswith("AWS_")}
    env.update(AWS_ENV)
    env["RUST_BACKTRACE"] = "1"
    env.setdefault("RUST_LOG", "info")
    return env


class Process:
    """One strata role (or moto) as a child process with a log file, restartable in place."""

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int,
                 env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self.env = env or role_env()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        assert not self.alive(), f"{self.name} is already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=self.env)
        wait_listening(self.proc, self.port, self.name, self.log_tail)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send `sig`, wait for the exit and return its code (None if it never ran)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"{self.name} did not exit within {STOP_TIMEOUT_S}s of signal {sig}\n"
                            f"{self.log_tail()}", pytrace=False)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.proc.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def bootstrap(self) -> str:
        """How conftest's failure report names this process."""
        return f"{self.name} on 127.0.0.1:{self.port}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """The endpoint of an S3-compatible server for the whole session."""
    external = os.environ.get("STRATA_TEST_S3_ENDPOINT")
    if external:
        yield external
        return
    binary = _moto_server_binary()
    if binary is None:
        message = ("moto_server not found: install tests/python/requirements.txt (moto[s3]) or set "
                   "STRATA_TEST_S3_ENDPOINT / STRATA_MOTO_SERVER")
        if _truthy(os.environ.get("CI")):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto = Process("moto_server", [binary, "-H", "127.0.0.1", "-p", str(port)], log, port,
                   env={**os.environ})
    moto.start()
    yield f"http://127.0.0.1:{port}"
    moto.stop()


def unique_bucket() -> str:
    return f"strata-test-{uuid.uuid4().hex[:12]}"


def run_strata(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a short strata command (e.g. `admin init-bucket`) and capture its output."""
    return subprocess.run([str(find_strata_bin()), *args], capture_output=True, text=True,
                          env=role_env(), timeout=timeout)


def init_bucket(endpoint: str, bucket: str, *extra: str) -> subprocess.CompletedProcess:
    return run_strata("admin", "init-bucket", "--object-store", f"s3://{bucket}/data",
                      "--s3-endpoint", endpoint, *extra)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@dataclass
class Agent:
    process: Process
    metrics_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.process.port}"


@dataclass
class Cluster:
    """A catalog and agents over one bucket, each its own process."""

    base: Path
    endpoint: str
    bucket: str
    catalog: Process
    catalog_metrics_port: int
    agents: list[Agent] = field(default_factory=list)

    def processes(self) -> list[Process]:
        return [self.catalog, *(a.process for a in self.agents)]


def _catalog(base: Path, store: str | None, extra: list[str]) -> tuple[Process, int]:
    port, metrics = free_port(), free_port()
    argv = [str(find_strata_bin()), "catalog",
            "--store", store or f"sqlite://{base / 'catalog' / 'catalog.db'}",
            "--listen", f"127.0.0.1:{port}",
            "--metrics-listen", f"127.0.0.1:{metrics}",
            *extra]
    return Process("strata catalog", argv, base / "catalog.log", port), metrics


def _agent(base: Path, endpoint: str, bucket: str, catalog_port: int, node_id: int,
           extra: list[str], with_node_id: bool = True) -> Agent:
    port, metrics = free_port(), free_port()
    argv = [str(find_strata_bin()), "agent",
            "--catalog", f"http://127.0.0.1:{catalog_port}",
            "--object-store", f"s3://{bucket}/data",
            "--s3-endpoint", endpoint,
            "--listen", f"127.0.0.1:{port}",
            "--advertise", f"127.0.0.1:{port}",
            *(["--node-id", str(node_id)] if with_node_id else []),
            "--metrics-listen", f"127.0.0.1:{metrics}",
            "--cache-dir", str(base / f"cache-{node_id}"),
            "--cache-disk-mb", "64",
            *extra]
    process = Process(f"strata agent {node_id}", argv, base / f"agent-{node_id}.log", port)
    return Agent(process, metrics)


def start_cluster(base: Path, endpoint: str, agents: int = 2,
                  agent_args: list[str] | None = None, store: str | None = None,
                  catalog_args: list[str] | None = None,
                  agent_args_each: list[list[str]] | None = None,
                  catalog_route=None, node_ids: bool = True) -> Cluster:
    """init-bucket --create, then a catalog (SQLite unless `store` names another) and `agents`
    agents, all started and listening. `agent_args_each[i]` goes to agent i+1 only.
    `catalog_route(catalog_port) -> port` gives the port agents reach the catalog on (a proxy
    in front of it, e.g. blackhole_proxy.BlackholeProxy). `node_ids=False` starts the agents
    without --node-id (and so without an explicit agent id)."""
    bucket = unique_bucket()
    created = init_bucket(endpoint, bucket, "--create")
    assert created.returncode == 0, f"init-bucket failed:\n{created.stdout}\n{created.stderr}"
    catalog, catalog_metrics = _catalog(base, store, catalog_args or [])
    cluster = Cluster(base, endpoint, bucket, catalog, catalog_metrics)
    try:
        catalog.start()
        catalog_port = catalog_route(catalog.port) if catalog_route else catalog.port
        for node_id in range(1, agents + 1):
            own = agent_args_each[node_id - 1] if agent_args_each else []
            agent = _agent(base, endpoint, bucket, catalog_port, node_id,
                           [*(agent_args or []), *own], with_node_id=node_ids)
            cluster.agents.append(agent)
            agent.process.start()
    except BaseException:
        # pytest.fail raises a BaseException: leave no process behind either way.
        for process in cluster.processes():
            if process.alive():
                process.kill9()
        raise
    return cluster


def stop_cluster(cluster: Cluster) -> list[str]:
    """SIGTERM every running role (agents first); returns complaints about unclean exits."""
    complaints = []
    for process in [*(a.process for a in cluster.agents), cluster.catalog]:
        if not process.alive():
            continue
        code = process.stop(signal.SIGTERM)
        if code != 0:
            complaints.append(f"{process.name} exited with {code} on SIGTERM\n{process.log_tail()}")
    return complaints


@pytest.fixture
def cluster(request, tmp_path, s3_endpoint):
    """A catalog (SQLite) and two agents over a fresh bucket on the S3 server."""
    cluster = start_cluster(tmp_path, s3_endpoint)
    # conftest's report hook shows the log tails of these when the test fails.
    request.node._strata_servers = [*getattr(request.node, "_strata_servers", []),
                                    *cluster.processes()]
    yield cluster
    complaints = stop_cluster(cluster)
    if complaints:
        pytest.fail("\n".join(complaints), pytrace=False)


@pytest.fixture
def pg_database():
    """A fresh database on the PostgreSQL server .ci/run starts (STRATA_TEST_PG_URL), dropped
    afterwards; skipped without the server, except under CI=true, where it fails."""
    url = os.environ.get("STRATA_TEST_PG_URL")
    if not url:
        message = "STRATA_TEST_PG_URL is not set (.ci/run starts PostgreSQL with scripts/pg.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    database = f"strata_test_{uuid.uuid4().hex[:10]}"
    subprocess.run([psql, url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {database}"],
                   check=True, timeout=30)
    yield f"{url.rsplit('/', 1)[0]}/{database}"
    subprocess.run([psql, url, "-q", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
                   timeout=30)
