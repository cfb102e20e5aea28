"""The compose file describes a topology the code can actually run: every variable it
sets is a setting, every command is a `promptstack` command, every role is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.main import get_command

from promptstack.cli import app
from promptstack.core.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = document["services"]
    return services


def test_the_scale_out_topology_is_complete() -> None:
    services = _services()
    assert {"postgres", "redis", "rabbitmq", "migrate", "relay", "worker"} <= services.keys()
    api = [name for name, spec in services.items() if "serve" in spec.get("command", [])]
    assert len(api) == 2


def test_every_variable_is_a_setting_and_every_command_exists() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, spec in _services().items():
        command = spec.get("command")
        if not command or command[0] != "promptstack":
            continue
        assert command[1] in commands, name
        unknown = set(spec["environment"]) - settings
        assert not unknown, f"{name}: {unknown}"
        environment = spec["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert environment["AMQP_URL"]
        assert environment["CELERY_BROKER_URL"]
        assert environment["REDIS_URL"]
