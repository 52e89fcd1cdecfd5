"""The `derive` commands and the docs agree: every command is documented, and every command the docs show exists
(with the options they show for the environment workflow)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from derive_assets.cli import main
from derive_assets.settings import PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
SHOWN = re.compile(r"(?:`|\.venv/bin/|^\s*)derive ([a-z][a-z-]*)", re.MULTILINE)


def help_of(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*args, "--help"])
    return out.getvalue()


def commands() -> set[str]:
    choices = re.search(r"\{([a-z,-]+)\}", help_of())
    assert choices, "derive --help lists its commands"
    return set(choices.group(1).split(","))


def test_every_command_is_documented():
    text = "\n".join(p.read_text() for p in DOCS)
    missing = [c for c in sorted(commands()) if f"derive {c}" not in text]
    assert not missing, f"commands no doc mentions: {missing}"


def test_every_command_the_docs_show_exists():
    known = commands()
    shown = {(p.name, m) for p in DOCS for m in SHOWN.findall(p.read_text())}
    unknown = sorted((name, cmd) for name, cmd in shown if cmd not in known)
    assert not unknown, f"the docs show commands derive does not have: {unknown}"


@pytest.mark.parametrize("command", ["plan", "rebuild", "build", "diff"])
def test_the_environment_commands_take_env(command: str):
    assert "--env [NAME]" in help_of(command)


def test_the_workflow_doc_shows_the_options_that_exist():
    text = Path(PROJECT_ROOT / "docs" / "environments.md").read_text()
    assert "--last" in help_of("build") and "--last" in text
    assert "--older-than" in help_of("env", "drop") and "--older-than" in text
