"""Fixtures that run the real `strata dev` binary for the client compatibility tests.

Binary: $STRATA_BIN; under CI=true it must be set (the suite fails otherwise); locally it
falls back to $CARGO_TARGET_DIR (default ~/.cache/strata-target)/{debug,release}/strata and
skips the suite when no binary is found.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

READY_TIMEOUT_S = float(os.environ.get("STRATA_TEST_READY_TIMEOUT", "30"))
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 60


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def find_strata_bin() -> Path:
    explicit = os.environ.get("STRATA_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            pytest.fail(f"STRATA_BIN={explicit} does not exist", pytrace=False)
        return path
    if _truthy(os.environ.get("CI")):
        pytest.fail("CI=true but STRATA_BIN is not set: .ci/run must build strata and set it",
                    pytrace=False)
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "strata-target"))
    candidates = [target / "debug" / "strata", target / "release" / "strata"]
    found = [c for c in candidates if c.is_file()]
    if not found:
        pytest.skip(f"no strata binary (set STRATA_BIN or build one at {candidates[0]})")
    return max(found, key=lambda p: p.stat().st_mtime)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_listening(proc: subprocess.Popen, port: int, name: str, log_tail) -> None:
    """Waits until `proc` listens on `port`; fails the test (with its log) if it exits first
    or does not listen within READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode} before listening on port {port}\n"
                        f"{log_tail()}", pytrace=False)
        if port_open(port):
            return
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"{name} did not listen on port {port} within {READY_TIMEOUT_S}s\n{log_tail()}",
                pytrace=False)


class StrataServer:
    """One `strata dev` process on a fixed data dir and fixed ports, restartable in place."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, *,
                 auto_create_topics: bool = False, default_partitions: int = 1,
                 extra_args: list[str] | None = None):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.catalog_port = free_port()
        while self.catalog_port == self.port:
            self.catalog_port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port in (self.port, self.catalog_port):
            self.metrics_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.args = [
            "dev",
            "--data-dir", str(data_dir),
            "--listen", self.bootstrap,
            "--advertise", self.bootstrap,
            "--catalog-listen", f"127.0.0.1:{self.catalog_port}",
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--flush-interval-ms", "5",
            "--auto-create-topics", "true" if auto_create_topics else "false",
            "--default-partitions", str(default_partitions),
            *(extra_args or []),
        ]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}: {self.binary} {' '.join(self.args)}\n".encode())
        log.flush()
        env = {**os.environ, "RUST_BACKTRACE": "1"}
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen([str(self.binary), *self.args], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()
        wait_listening(self.proc, self.port, "strata", self.log_tail)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send `sig`, wait for exit and return the exit code (None if it was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"strata did not exit within {STOP_TIMEOUT_S}s of signal {sig}\n"
                        f"{self.log_tail()}", pytrace=False)

    def restart(self) -> None:
        """Clean shutdown (SIGTERM) then start again on the same data dir and ports."""
        code = self.stop(signal.SIGTERM)
        assert code == 0, f"strata exited with {code} on SIGTERM (expected 0)\n{self.log_tail()}"
        self._wait_port_closed()
        self.start()

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        self.stop(signal.SIGKILL)
        self._wait_port_closed()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait_port_closed(self) -> None:
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- diagnostics ---------------------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"


_SHARED: list[StrataServer] = []


def _start_server(tmp_path_factory, name: str, **kwargs) -> StrataServer:
    """A started server. One that exits before listening (a free port it chose, or the next
    port an extra agent takes, was taken meanwhile by a parallel process) is started again on
    new ports, at most three times."""
    binary = find_strata_bin()
    for attempt in range(3):
        base = tmp_path_factory.mktemp(name)
        server = StrataServer(binary, base / "data", base / "strata.log", **kwargs)
        server.data_dir.mkdir()
        try:
            server.start()
            return server
        except pytest.fail.Exception:
            exited = server.proc is not None and server.proc.poll() is not None
            if not exited or attempt == 2 or "Address already in use" not in server.log_tail():
                raise
    raise AssertionError("unreachable")


def _own_server(request, tmp_path_factory, name: str, **kwargs):
    """Start a server for one test and register it so its log is shown if the test fails."""
    server = _start_server(tmp_path_factory, name, **kwargs)
    request.node._strata_servers = [*getattr(request.node, "_strata_servers", []), server]
    return server


def _teardown(server: StrataServer) -> None:
    was_killed = not server.alive()
    code = server.stop(signal.SIGTERM)
    if not was_killed and code != 0:
        pytest.fail(f"strata exited with {code} on SIGTERM at teardown (expected 0)\n"
                    f"{server.log_tail()}", pytrace=False)


@pytest.fixture(scope="session")
def strata(tmp_path_factory):
    """A server shared by the whole session (auto-create off); tests use unique topic names."""
    server = _start_server(tmp_path_factory, "shared")
    _SHARED.append(server)
    yield server
    _SHARED.remove(server)
    _teardown(server)


@pytest.fixture
def fresh_strata(request, tmp_path_factory):
    """A server of this test's own, for restarts and kill -9."""
    server = _own_server(request, tmp_path_factory, re.sub(r"\W", "_", request.node.name)[:40])
    yield server
    _teardown(server)


@pytest.fixture
def strata_auto_create(request, tmp_path_factory):
    """A server of this test's own with --auto-create-topics true and 2 default partitions."""
    server = _own_server(request, tmp_path_factory, "autocreate",
                         auto_create_topics=True, default_partitions=2)
    yield server
    _teardown(server)


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test (and this run), valid for Kafka."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_topic(request):
    """Factory: new_topic() -> another unique topic name for this test."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
    return lambda: f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every strata log the test used to the report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    servers = list(getattr(item, "_strata_servers", []))
    if "strata" in getattr(item, "fixturenames", ()):
        servers += _SHARED
    for server in servers:
        state = "running" if server.alive() else f"exited with {server.proc and server.proc.returncode}"
        report.sections.append((f"strata {server.bootstrap} ({state})", server.log_tail()))
