"""The README and the docs say what the code does: each command and option in the
README's table is one `--help` lists and the reverse, every setting is in its table of
settings and nothing else is, and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from promptstack.cli import app
from promptstack.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _readme_commands() -> dict[str, str]:
    """Each command of the README's table, with what the row says it takes."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The `promptstack` command", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `promptstack ([a-z-]+)([^`]*)` \|", section, re.MULTILINE)
    return dict(rows)


def test_the_readme_names_every_setting_and_no_other() -> None:
    text = (ROOT / "README.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"^\| `[A-Z][A-Z0-9_]+`", line)]
    named = {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])
    }
    assert named == {name.upper() for name in Settings.model_fields}


def _cli() -> dict[str, Any]:
    commands: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return dict(commands)


def test_the_readme_lists_every_command_and_no_other() -> None:
    assert set(_readme_commands()) == set(_cli())


@pytest.mark.parametrize("name", sorted(_cli()))
def test_the_readme_names_each_option_and_argument_of_a_command(name: str) -> None:
    written = _readme_commands()[name]
    command = _cli()[name]
    options = {
        opt
        for param in command.params
        if param.param_type_name == "option" and param.name != "help"
        for opt in param.opts
    }
    arguments = {
        (param.name or "").upper()
        for param in command.params
        if param.param_type_name == "argument"
    }
    assert set(re.findall(r"--[a-z-]+", written)) == options
    assert set(re.findall(r"(?<![-\w])([A-Z]{3,})\b", written)) == arguments


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_resolves(document: Path) -> None:
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # another site
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name} links to {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{document.name} links to {target}: no heading"
