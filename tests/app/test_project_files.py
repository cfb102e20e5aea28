"""The files a fresh clone installs and checks itself with: the lockfile and the pinned
requirements made from it, the pre-commit hooks, the licence, the image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The exports `make lock` writes, and the `uv export` arguments that make each.
EXPORTS = {
    "requirements/serve.txt": ["--extra", "postgres", "--extra", "otel"],
    "requirements/dev.txt": ["--all-extras"],
}


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_was_made_from_this_pyproject() -> None:
    """What `uv lock --check` checks, without asking an index: `make lock` after a change
    to the dependencies."""
    project = _pyproject()["project"]
    declared = {
        (_normal(r.name), str(r.specifier), extra)
        for extra, requirements in [
            (None, project["dependencies"]),
            *project["optional-dependencies"].items(),
        ]
        for r in map(Requirement, requirements)
    }
    with (ROOT / "uv.lock").open("rb") as file:
        lock = tomllib.load(file)
    [root] = [package for package in lock["package"] if package["name"] == "promptstack"]
    locked = set()
    for entry in root["metadata"]["requires-dist"]:
        marker = re.fullmatch(r"extra == '([a-z]*)'", entry.get("marker", "extra == ''"))
        assert marker, entry
        locked.add((_normal(entry["name"]), entry["specifier"], marker.group(1) or None))
    assert locked == declared


@pytest.mark.parametrize("path", sorted(EXPORTS))
def test_each_requirements_file_is_the_lock_s_current_export(path: str, tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(BIN))
    assert uv, "uv is a development dependency"
    exported = tmp_path / "export.txt"
    subprocess.run(  # noqa: S603
        [uv, "export", "--frozen", "--no-emit-project", *EXPORTS[path], "-o", str(exported)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
        env={"UV_OFFLINE": "1", "UV_NO_CACHE": "1", "PATH": str(BIN), "HOME": str(tmp_path)},
    )
    written = (ROOT / path).read_text().splitlines()
    # The header names the output file, which differs; the pins and hashes must not.
    assert exported.read_text().splitlines()[2:] == written[2:]
    pins = [n for n, line in enumerate(written) if re.match(r"[A-Za-z0-9]", line)]
    assert len(pins) > 50
    for n in pins:  # every pin is followed by the hashes pip checks
        assert "==" in written[n], written[n]
        assert written[n + 1].lstrip().startswith("--hash=sha256:"), written[n]


def test_the_pre_commit_hooks_run_the_project_s_own_tools() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "lint-imports"} <= set(hooks)
    for hook in hooks.values():
        tool = hook["entry"].split()[0]
        assert tool.startswith(".venv/bin/"), hook
        assert (BIN / Path(tool).name).exists(), tool
    subprocess.run(  # noqa: S603
        [str(BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_the_licence_is_the_one_pyproject_names() -> None:
    assert _pyproject()["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_the_image_installs_the_lock_and_runs_unprivileged_with_a_health_check() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), base  # a patch release
    assert any("--require-hashes -r /tmp/serve.txt" in line for line in lines)
    assert any(line.startswith("COPY requirements/serve.txt") for line in lines)
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users
    assert users[-1] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK ") and "/health" in line for line in final)
