"""infra/: the compose file's commands and settings against the real `strata` CLI.

Docker is not available where the tests run, so this checks what can go stale without it:
every Strata service's `command:` must be accepted by the binary (`--check-config` parses
the flags, layers in the service's environment, resolves every setting and builds the S3
client, then exits 0 without starting anything), and every STRATA_* environment key must be
one the command actually reads.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import find_strata_bin

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"


def strata_services() -> dict[str, dict]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: s for name, s in services.items() if "build" in s}


def clean_env(extra: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STRATA_") and not k.startswith("AWS_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(find_strata_bin()), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def subcommand(command: list[str]) -> list[str]:
    """The words naming the subcommand (`agent`, `admin init-bucket`), without flags."""
    words = []
    for word in command:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def env_keys_read_by(words: list[str]) -> set[str]:
    help_text = run([*words, "--help"], clean_env({})).stdout
    return set(re.findall(r"env: (STRATA_[A-Z0-9_]+)", help_text))


def test_the_compose_file_runs_the_image_of_the_dockerfile_as_seven_strata_services():
    services = strata_services()
    assert set(services) == {
        "init-bucket", "catalog", "catalog-b", "agent-a", "agent-b", "agent-c", "compactor"}
    for name, service in services.items():
        assert service["build"]["dockerfile"] == "infra/Dockerfile", name
    text = DOCKERFILE.read_text()
    assert "USER strata" in text and "EXPOSE 9092" in text
    zones = {s["command"][s["command"].index("--zone") + 1]
             for n, s in services.items() if n.startswith("agent-")}
    assert zones == {"a", "b", "c"}
    advertised = [s["command"][s["command"].index("--advertise") + 1]
                  for n, s in services.items() if n.startswith("agent-")]
    assert len(set(advertised)) == 3, "agents must advertise distinct host:port"


@pytest.mark.parametrize("name", sorted(strata_services()))
def test_each_service_command_is_accepted_by_the_real_cli(name):
    service = strata_services()[name]
    command = service["command"]
    env = clean_env(service.get("environment") or {})
    result = run([*command, "--check-config"], env)
    assert result.returncode == 0, f"{name}: {' '.join(command)}\n{result.stdout}\n{result.stderr}"
    assert "configuration ok" in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(strata_services()))
def test_each_strata_environment_key_is_a_real_setting(name):
    service = strata_services()[name]
    known = env_keys_read_by(subcommand(service["command"]))
    assert "STRATA_LOG_FORMAT" in known and "STRATA_NOT_A_SETTING" not in known, known
    keys = [k for k in (service.get("environment") or {}) if k.startswith("STRATA_")]
    unknown = sorted(set(keys) - known)
    assert not unknown, f"{name} sets STRATA_* keys its command does not read: {unknown}"


def test_check_config_rejects_what_the_role_would_reject():
    # The check is only worth something if it fails where the real start would.
    env = clean_env({})
    assert run(["agent", "--no-such-flag", "--check-config"], env).returncode != 0
    missing = run(["agent", "--check-config"], env)
    assert missing.returncode != 0 and "--object-store" in missing.stderr
    bad_store = run(["catalog", "--store", "mysql://x", "--check-config"], env)
    assert bad_store.returncode != 0
