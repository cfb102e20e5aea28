"""The `promptstack` command: in-process through Typer's runner, and once as a real server."""

from __future__ import annotations

import asyncio
import mailbox
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from typer.testing import CliRunner, Result

import promptstack.tables  # noqa: F401  (registers every table on the metadata)
from promptstack.cli import app
from promptstack.core.database import Base
from promptstack.core.settings import Settings
from promptstack.main import create_app
from promptstack.migrations.runner import compared
from tests.fixtures.support import PASSWORD

APP_TABLES = {table.name for table in Base.metadata.sorted_tables}
FAST_HASHING = {
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_COST": "64",
    "PASSWORD_HASH_PARALLELISM": "1",
}


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.env` from the repository is read, and relative paths land in the test's folder."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def _env(database_url: str, tmp_path: Path, **extra: str | None) -> dict[str, str | None]:
    return {
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "MAILDIR_PATH": str(tmp_path / "mail"),
        "LOG_JSON": "false",
        **FAST_HASHING,
        **extra,
    }


def _invoke(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(app, args, env=env)


def _said(result: Result) -> str:
    """What the command printed (stdout and stderr), with the console's line wrapping undone."""
    return " ".join(result.output.split())


def _sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows if compared(name, "table", {})}


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


# --- migrate -------------------------------------------------------------------------------


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    env = _env(_sqlite_url(path), tmp_path)
    first = _invoke(["migrate"], env)
    assert first.exit_code == 0, first.output
    assert "Database is up to date." in _said(first)
    assert _sqlite_tables(path) == APP_TABLES | {"alembic_version"}

    again = _invoke(["migrate"], env)  # nothing left to do is no error
    assert again.exit_code == 0, again.output
    assert _sqlite_tables(path) == APP_TABLES | {"alembic_version"}


def test_production_without_a_secret_key_refuses_to_migrate(tmp_path: Path) -> None:
    path = tmp_path / "prod.db"
    env = _env(_sqlite_url(path), tmp_path, ENVIRONMENT="production", SECRET_KEY=None)
    result = _invoke(["migrate"], env)
    assert result.exit_code == 2
    said = _said(result)
    assert "Configuration error" in said
    assert "SECRET_KEY" in said
    assert "Traceback" not in said
    assert not path.exists()


def test_a_configuration_error_never_prints_the_secret(tmp_path: Path) -> None:
    secret = "too-short-but-still-private"
    env = _env(
        _sqlite_url(tmp_path / "p.db"), tmp_path, ENVIRONMENT="production", SECRET_KEY=secret
    )
    result = _invoke(["migrate"], env)
    assert result.exit_code == 2
    assert "SECRET_KEY" in _said(result)
    assert secret not in result.output


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUSTED_PROXIES", "10.0.0.0/8,[/64]"),
        ("SMTP_PORT", "[/port]"),
        ("LOG_LEVEL", "chatty"),
        ("FEATURE_FLAGS", "{not json"),
    ],
)
def test_a_bad_setting_is_named_in_a_clear_message(tmp_path: Path, name: str, value: str) -> None:
    result = _invoke(["migrate"], _env(_sqlite_url(tmp_path / "x.db"), tmp_path, **{name: value}))
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert f"Configuration error: {name}:" in said
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ('{"Beta-Reports": {}}', "(at Beta-Reports.[key])"),
        ('{"beta_reports": {"percentage": 150}}', "(at beta_reports.percentage)"),
        ('{"beta_reports": {"roles": ["root"]}}', "(at beta_reports.roles.0)"),
    ],
)
def test_a_bad_feature_flag_is_named_down_to_the_field(
    tmp_path: Path, value: str, where: str
) -> None:
    path = tmp_path / "x.db"
    result = _invoke(["migrate"], _env(_sqlite_url(path), tmp_path, FEATURE_FLAGS=value))
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert "Configuration error: FEATURE_FLAGS:" in said
    assert where in said
    assert not path.exists()


# --- create-admin --------------------------------------------------------------------------


async def _log_in(settings: Settings, username: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Through an app over the same database: the account's profile and the audit log it sees."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            login = await http.post(
                "/api/v1/auth/login", data={"username": username, "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            me = await http.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text
            audit = await http.get("/api/v1/admin/audit-log", headers=headers)
            assert audit.status_code == 200, audit.text  # only administrators may read it
            return me.json(), audit.json()["items"]
    finally:
        await app.state.container.aclose()


def test_create_admin_makes_a_super_admin_who_can_log_in(
    settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings.database_url, tmp_path)
    result = _invoke(["create-admin", "--email", "Root@Example.com", "--password", PASSWORD], env)
    assert result.exit_code == 0, result.output
    assert "Created super_admin Root <Root@example.com>" in _said(result)

    me, audit = asyncio.run(_log_in(settings, "root@example.com"))
    assert me["role"] == "super_admin"
    assert me["username"] == "Root"
    assert me["email"] == "Root@example.com"
    registered = [entry for entry in audit if entry["action"] == "user.registered"]
    assert [entry["subject_id"] for entry in registered] == [me["id"]]


def test_create_admin_with_username_and_admin_role(settings: Settings, tmp_path: Path) -> None:
    args = ["create-admin", "--email", "ops@example.com", "--username", "operator"]
    env = _env(settings.database_url, tmp_path)
    result = _invoke([*args, "--role", "admin", "--password", PASSWORD], env)
    assert result.exit_code == 0, result.output
    assert "Created admin operator <ops@example.com>" in _said(result)
    me, _ = asyncio.run(_log_in(settings, "operator"))
    assert me["role"] == "admin"


def test_create_admin_twice_fails_clearly(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings.database_url, tmp_path)
    args = ["create-admin", "--email", "twice@example.com", "--password", PASSWORD]
    assert _invoke(args, env).exit_code == 0
    again = _invoke(args, env)
    assert again.exit_code == 1
    said = _said(again)
    assert "already exists" in said
    assert "email" in said
    assert "Traceback" not in said


def test_create_admin_explains_an_unusable_default_username(
    settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings.database_url, tmp_path)
    args = ["create-admin", "--email", "a@example.com", "--password", PASSWORD]
    refused = _invoke(args, env)
    assert refused.exit_code == 1
    said = _said(refused)
    assert "username: must be 3 to 32 characters" in said
    assert "--username" in said

    accepted = _invoke([*args, "--username", "alpha"], env)
    assert accepted.exit_code == 0, accepted.output
    assert "Created super_admin alpha <a@example.com>" in _said(accepted)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "password: must be at least 10 characters"),
        ("weakling01", "password: must not be the email"),
        ("          ", "password: must not be blank"),
    ],
)
def test_create_admin_refuses_a_weak_password(tmp_path: Path, password: str, problem: str) -> None:
    path = tmp_path / "admin.db"
    env = _env(_sqlite_url(path), tmp_path)
    assert _invoke(["migrate"], env).exit_code == 0
    result = _invoke(
        ["create-admin", "--email", "weakling01@example.com", "--password", password], env
    )
    assert result.exit_code == 1
    assert problem in _said(result)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_create_admin_refuses_to_make_a_plain_user(tmp_path: Path) -> None:
    env = _env(_sqlite_url(tmp_path / "u.db"), tmp_path)
    result = _invoke(
        ["create-admin", "--email", "u@example.com", "--password", PASSWORD, "--role", "user"], env
    )
    assert result.exit_code == 2
    assert "is not one of 'admin', 'super_admin'" in " ".join(
        _said(result).replace("│", " ").split()
    )


def test_help_loads_none_of_the_service() -> None:
    """`--help` and a mistyped command answer without importing what the commands run."""
    probe = (
        "import sys\n"
        "from promptstack.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('sqlalchemy', 'fastapi', 'celery', 'uvicorn', 'aio_pika', 'redis',\n"
        "         'promptstack.bootstrap', 'promptstack.core.settings')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Commands" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_create_admin_prompts_for_the_password_twice(settings: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["create-admin", "--email", "prompted@example.com"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env=_env(settings.database_url, tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input
    assert "Created super_admin prompted" in _said(result)


# --- serve, as a real process ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_serving(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling interval, not an assertion
    pytest.fail(f"the server never answered /health:\n{log.read_text()}")


def test_serve_migrates_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "served.db"
    work = tmp_path / "serve-cwd"
    work.mkdir()
    log = tmp_path / "serve.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,  # minus what the suite's autouse fixture took out
        "DATABASE_URL": _sqlite_url(database),
        "ENVIRONMENT": "test",
        "SHUTDOWN_GRACE_SECONDS": "5",
        **FAST_HASHING,
    }
    command = [str(Path(sys.executable).parent / "promptstack"), "serve", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            command, cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_serving(process, base, log)
        assert _sqlite_tables(database) == APP_TABLES | {"alembic_version"}

        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"]["status"] == "up"

        body = {"email": "served@example.com", "username": "served", "password": PASSWORD}
        registered = httpx.post(f"{base}/api/v1/auth/register", json=body, timeout=10)
        assert registered.status_code == 201, registered.text
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            data={"username": "served", "password": PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200, login.text

        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    said = log.read_text()
    # Uvicorn shuts down gracefully, then re-raises the signal so the parent learns why
    # the process ended; either way the lifespan has run to its end.
    assert returncode in (0, -signal.SIGTERM), said
    assert "Application shutdown complete" in said
    assert '"event": "shutdown"' in said
    # The registration emails went out before the process ended, into ./var/mail of its cwd.
    box = mailbox.Maildir(work / "var" / "mail", create=False)
    assert sorted(message["Subject"] for message in box) == [
        "Confirm your email address",
        "Welcome to Prompt Stack",
    ]


# --- dead-letters ---------------------------------------------------------------------------


def test_dead_letters_needs_rabbitmq(tmp_path: Path) -> None:
    result = _invoke(
        ["dead-letters", "mail.welcome"], _env(_sqlite_url(tmp_path / "d.db"), tmp_path)
    )
    assert result.exit_code == 2
    assert "AMQP_URL" in _said(result)


def test_dead_letters_names_the_consumers_it_knows(tmp_path: Path, amqp_url: str) -> None:
    env = _env(_sqlite_url(tmp_path / "d.db"), tmp_path, AMQP_URL=amqp_url)
    result = _invoke(["dead-letters", "no.such.consumer"], env)
    assert result.exit_code == 2
    assert "Unknown consumer" in _said(result)
    assert "mail.welcome" in _said(result)


def test_dead_letters_of_an_empty_queue(tmp_path: Path, amqp_url: str) -> None:
    namespace = f"test-cli-{uuid.uuid4().hex[:8]}"
    env = _env(
        _sqlite_url(tmp_path / "d.db"), tmp_path, AMQP_URL=amqp_url, AMQP_NAMESPACE=namespace
    )
    try:
        listed = _invoke(["dead-letters", "mail.welcome"], env)
        assert listed.exit_code == 0, listed.output
        assert f"No dead letters in {namespace}.mail.welcome.dead" in _said(listed)
        replayed = _invoke(["dead-letters", "mail.welcome", "--replay"], env)
        assert replayed.exit_code == 0, replayed.output
        assert "Moved 0 dead letter(s)" in _said(replayed)
    finally:
        asyncio.run(_delete_queue(amqp_url, f"{namespace}.mail.welcome.dead"))


async def _delete_queue(url: str, name: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
