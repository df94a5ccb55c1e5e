"""docker-compose.yml is checked offline: no Docker engine runs on the development machines."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.subprocess
def test_compose_file_matches_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _interpolate(text: str) -> str:
    # Compose's ${VAR:-default} / ${VAR:?message} and $$ escapes, with harmless values.
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", text)
    text = re.sub(r"\$\{(\w+):\?[^}]*\}", "value", text)
    return text.replace("$$HOSTNAME", "host")


def _commands() -> list[tuple[str, list[str]]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found = []
    for name, service in compose["services"].items():
        command = service.get("command", [])
        if command[:1] in (["celery"], ["reactivation"]):
            found.append((name, [_interpolate(part) for part in command]))
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD-SHELL"] and test[1].startswith(("celery", "reactivation")):
            found.append((f"{name} healthcheck", shlex.split(_interpolate(test[1]))))
    return found


def test_compose_has_every_process() -> None:
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    assert {
        "postgres",
        "redis",
        "migrate",
        "worker-default",
        "worker-gemini",
        "worker-whatsapp",
        "beat",
        "flower",
        "webhook",
    } <= services


@pytest.mark.parametrize(("service", "command"), _commands())
@pytest.mark.subprocess
def test_each_service_command_is_one_the_cli_and_celery_accept(service: str, command: list[str]) -> None:
    program, *args = command
    module = "celery" if program == "celery" else "reactivation.tools.cli"
    argv = [sys.executable, "-m", module, *args, "--help"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{service}: {' '.join(command)}\n{result.stdout}\n{result.stderr}"
