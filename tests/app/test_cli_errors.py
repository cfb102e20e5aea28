"""What a command says when the database is not there, not reachable or not migrated:
one line that names the problem and what to do, never a traceback."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from promptstack.cli import app
from promptstack.core.provisioning import create_database, drop_database
from tests.conftest import POSTGRES_ADMIN_DSN

COMMANDS = [
    pytest.param(["migrate"], id="migrate"),
    pytest.param(["create-admin", "--email", "a@example.com", "--password", "x" * 12], id="admin"),
    pytest.param(["relay"], id="relay"),
]


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def run(args: list[str], database_url: str, tmp_path: Path) -> Result:
    env = {
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "MAILDIR_PATH": str(tmp_path / "mail"),
        "LOG_JSON": "false",
    }
    return CliRunner().invoke(app, args, env=env)


def said(result: Result) -> str:
    return " ".join(result.output.split())


def assert_one_plain_error(result: Result, *phrases: str) -> None:
    text = said(result)
    assert result.exit_code == 1, result.output
    assert text.startswith("Error: "), text
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for phrase in phrases:
        assert phrase in text


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize(
    ("url", "phrases"),
    [
        pytest.param(
            "postgresql+asyncpg://postgres@127.0.0.1:1/app",
            ("cannot connect to PostgreSQL at 127.0.0.1:1", "connection refused", "DATABASE_URL"),
            id="refused",
        ),
        pytest.param(
            "postgresql+asyncpg://postgres@no-such-host.invalid/app",
            ("cannot find the host of PostgreSQL at no-such-host.invalid:5432",),
            id="unknown-host",
        ),
    ],
)
def test_an_unreachable_server_is_one_line(
    tmp_path: Path, args: list[str], url: str, phrases: tuple[str, ...]
) -> None:
    assert_one_plain_error(run(args, url, tmp_path), *phrases)


@pytest.mark.postgres
@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        pytest.param(
            {"database": "promptstack_no_such_database"},
            ('the database "promptstack_no_such_database" does not exist', "--create-database"),
            id="missing-database",
        ),
        pytest.param(
            {"username": "nobody_at_all"},
            ('refused the user "nobody_at_all"', "DATABASE_URL"),
            id="unknown-user",
        ),
    ],
)
def test_a_database_the_server_refuses_is_one_line(
    postgres_url: str,
    tmp_path: Path,
    args: list[str],
    change: dict[str, str],
    phrases: tuple[str, ...],
) -> None:
    url = make_url(postgres_url).set(**change).render_as_string(hide_password=False)

    assert_one_plain_error(run(args, url, tmp_path), *phrases)


@pytest.mark.parametrize("args", COMMANDS)
def test_an_unopenable_sqlite_file_is_one_line(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/no/such/folder/app.db"

    result = run(args, url, tmp_path)

    assert_one_plain_error(result, f"{tmp_path}/no/such/folder/app.db")


@pytest.mark.parametrize("args", [["migrate"], ["serve", "--host", "203.0.113.1"]])
def test_a_missing_sqlite_folder_is_named_before_anything_opens(
    tmp_path: Path, args: list[str]
) -> None:
    result = run(args, f"sqlite+aiosqlite:///{tmp_path}/absent/app.db", tmp_path)

    assert_one_plain_error(result, f"the folder {tmp_path}/absent does not exist")
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("args", [arg for arg in COMMANDS if arg.id != "migrate"])
def test_a_command_run_elsewhere_finds_no_database_and_makes_none(
    tmp_path: Path, args: list[str]
) -> None:
    result = run(args, "sqlite+aiosqlite:///./promptstack.db", tmp_path)

    assert_one_plain_error(result, "there is no database at", "run `promptstack migrate`")
    assert not Path("promptstack.db").exists()


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("postgresq://u@h/db", "names the unknown database 'postgresq'"),
        ("mysql://u@h/db", "names the unknown database 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "needs postgresql+asyncpg"),
        ("localhost:5432", "is not a database URL"),
        ("not a url", "is not a database URL"),
    ],
)
def test_a_database_url_typo_is_refused_when_settings_load(
    tmp_path: Path, url: str, phrase: str
) -> None:
    result = run(["migrate"], url, tmp_path)

    assert result.exit_code == 2, result.output
    assert said(result).startswith("Configuration error: DATABASE_URL: ")
    assert phrase in said(result)
    assert "Value error" not in result.output


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    name = f"promptstack_cli_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(create_database(POSTGRES_ADMIN_DSN, name))
    asyncio.run(drop_database(POSTGRES_ADMIN_DSN, name))
    yield url
    asyncio.run(drop_database(POSTGRES_ADMIN_DSN, name))


@pytest.mark.postgres
def test_migrate_creates_a_missing_database_when_asked(fresh_postgres: str, tmp_path: Path) -> None:
    refused = run(["migrate"], fresh_postgres, tmp_path)
    assert_one_plain_error(refused, "does not exist")

    created = run(["migrate", "--create-database"], fresh_postgres, tmp_path)
    again = run(["migrate", "--create-database"], fresh_postgres, tmp_path)

    assert created.exit_code == 0, created.output
    assert "Created the database" in said(created)
    assert again.exit_code == 0, again.output
    assert "Created" not in said(again)
    assert "Database is up to date." in said(again)


# `serve` is asked to listen on an address no machine here has: were the check missing,
# it would fail to bind rather than serve on.
@pytest.mark.postgres
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["serve", "--host", "203.0.113.1"], id="serve"),
        *COMMANDS[1:],
    ],
)
def test_a_schema_behind_the_code_stops_a_command_before_it_starts(
    fresh_postgres: str, tmp_path: Path, args: list[str]
) -> None:
    migrated = run(["migrate", "0004", "--create-database"], fresh_postgres, tmp_path)
    assert migrated.exit_code == 0, migrated.output
    assert "Database is at revision 0004." in said(migrated)

    result = run(args, fresh_postgres, tmp_path)

    assert_one_plain_error(result, "schema is at revision 0004", "run `promptstack migrate`")
    assert "Serving on" not in said(result)


@pytest.mark.postgres
def test_an_empty_database_stops_serve(fresh_postgres: str, tmp_path: Path) -> None:
    asyncio.run(create_database(POSTGRES_ADMIN_DSN, make_url(fresh_postgres).database or ""))

    result = run(["serve", "--host", "203.0.113.1"], fresh_postgres, tmp_path)

    assert_one_plain_error(result, "no schema yet", "run `promptstack migrate`")


def _with_broker(tmp_path: Path, amqp: str) -> Result:
    database = f"sqlite+aiosqlite:///{tmp_path}/app.db"
    assert run(["migrate"], database, tmp_path).exit_code == 0
    env = {"DATABASE_URL": database, "AMQP_URL": amqp, "ENVIRONMENT": "test"}
    return CliRunner().invoke(app, ["dead-letters", "mail.welcome"], env=env)


def assert_ends_in_one_plain_error(result: Result, *phrases: str) -> None:
    """The broker's client logs its own attempt first; the command's last word is ours."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.output
    for phrase in phrases:
        assert phrase in last


def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    result = _with_broker(tmp_path, "amqp://guest:guest@127.0.0.1:1/")

    assert_ends_in_one_plain_error(
        result, "cannot connect to the broker at 127.0.0.1:1", "AMQP_URL"
    )


def test_a_broker_that_refuses_the_user_is_one_line(tmp_path: Path, amqp_url: str) -> None:
    parts = urlsplit(amqp_url)
    wrong = parts._replace(netloc=f"nobody:wrong@{parts.hostname}:{parts.port or 5672}")

    result = _with_broker(tmp_path, urlunsplit(wrong))

    assert_ends_in_one_plain_error(result, "refused the user 'nobody'", "AMQP_URL")
