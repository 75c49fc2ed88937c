"""The README stays honest: every command, every setting, every failure reason is documented,
and CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jozvesaz_cli.cli import app
from jozvesaz_cli.config import env_names
from jozvesaz_cli.errors import FailureReason

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
COMMANDS = [
    "transcribe",
    "enqueue",
    "drain-queue",
    "watch",
    "jobs list",
    "jobs show",
    "jobs retry",
    "jobs cancel",
    "models list",
    "models pull",
    "models verify",
    "models path",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_readme(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    assert f"jozvesaz {command}" in README


@pytest.mark.parametrize("variable", sorted(env_names().values()))
def test_every_setting_is_in_the_readme_table(variable: str) -> None:
    assert re.search(rf"^\| `{re.escape(variable)}` \|", README, flags=re.MULTILINE)


@pytest.mark.parametrize("reason", [reason.value for reason in FailureReason])
def test_every_failure_reason_is_documented(reason: str) -> None:
    assert f"| `{reason}` |" in README


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    command = [
        line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))
    ][-1]
    assert command == "bash tests/run.sh"
    assert f"\n{command}\n" in README


def test_readme_main_command_uses_the_example_recording() -> None:
    assert "jozvesaz transcribe examples/jfk.flac" in README
    assert (REPO / "examples" / "jfk.flac").is_file()
