"""Settings come from the environment only, and production refuses to start insecurely."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from promptstack.bootstrap import bootstrap
from promptstack.core.logging import configure_logging
from promptstack.core.settings import DEFAULT_SECRET_KEY, Settings

pytestmark = pytest.mark.usefixtures("no_dotenv")


def _settings() -> Settings:
    return Settings(_env_file=None)


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(None, id="missing"),
        pytest.param(DEFAULT_SECRET_KEY, id="default"),
        pytest.param("x" * 31, id="short"),
        pytest.param("", id="empty"),
    ],
)
def test_deployments_refuse_an_unsafe_secret_key(
    monkeypatch: pytest.MonkeyPatch, secret: str | None, environment: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    if secret is not None:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="SECRET_KEY") as caught:
        _settings()
    assert environment in str(caught.value)


def test_production_accepts_a_long_random_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(36)
    assert len(secret) == 48
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", secret)
    settings = _settings()
    assert settings.environment == "production"
    assert settings.secret_key.get_secret_value() == secret
    assert secret not in repr(settings)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_the_default_secret_key_is_allowed_only_in_development_and_test(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    assert _settings().secret_key.get_secret_value() == DEFAULT_SECRET_KEY


@pytest.fixture
def app_logging() -> None:
    """Logging as every process sets it up (structlog through the standard library);
    done before the test, so that caplog's handler is the one in place when it runs."""
    configure_logging("INFO", json=False)


def _insecure_key_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.levelname
        for record in caplog.records
        if record.name == "promptstack.bootstrap"
        and isinstance(record.msg, dict)
        and record.msg.get("event") == "insecure_secret_key"
    ]


@pytest.mark.usefixtures("app_logging")
async def test_development_on_the_default_key_warns_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db")  # type: ignore[call-arg]
    container = bootstrap(settings)
    await container.aclose()
    assert _insecure_key_warnings(caplog) == ["WARNING"]


@pytest.mark.usefixtures("app_logging")
async def test_a_real_key_in_development_draws_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db",
        secret_key=secrets.token_urlsafe(48),
    )
    container = bootstrap(settings)
    await container.aclose()
    assert _insecure_key_warnings(caplog) == []


def test_development_needs_no_configuration_at_all() -> None:
    settings = Settings()  # reads a `.env` in the (empty) working directory: there is none
    assert settings.environment == "development"
    assert settings.is_sqlite
    assert settings.database_url == "sqlite+aiosqlite:///./promptstack.db"
    assert settings.email_backend == "maildir"
    assert settings.trusted_proxies == []
    assert settings.trusted_proxy_networks == ()


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("EMAIL_BACKEND=console\nAPP_NAME=From dotenv\n")
    settings = Settings()
    assert settings.email_backend == "console"
    assert settings.app_name == "From dotenv"


def test_the_environment_wins_over_the_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("EMAIL_BACKEND=console\n")
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    assert Settings().email_backend == "smtp"


def test_trusted_proxies_parse_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", " 10.0.0.0/8, 192.168.1.7 ,,2001:db8::/32 ")
    settings = _settings()
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
    assert settings.trusted_proxy_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )


def test_trusted_proxies_accept_host_bits_in_a_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.1.2.3/8")
    assert _settings().trusted_proxy_networks == (ipaddress.ip_network("10.0.0.0/8"),)


def test_empty_trusted_proxies_mean_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    assert _settings().trusted_proxies == []


@pytest.mark.parametrize(
    "value", ["garbage", "10.0.0.0/8,not-an-address", "10.0.0.0/33", "300.1.1.1", "[/64]"]
)
def test_trusted_proxies_reject_garbage(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError, match="trusted_proxies"):
        _settings()


@pytest.mark.parametrize("name", ["DATABASE_URL", "database_url", "Database_Url"])
def test_environment_variable_names_are_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    url = "postgresql+asyncpg://app@db.internal:5432/promptstack"
    monkeypatch.setenv(name, url)
    settings = _settings()
    assert settings.database_url == url
    assert not settings.is_sqlite


def test_values_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_BACKEND", "carrier-pigeon")
    monkeypatch.setenv("SMTP_PORT", "70000")
    with pytest.raises(ValidationError) as caught:
        _settings()
    assert {error["loc"][0] for error in caught.value.errors()} == {"email_backend", "smtp_port"}


def test_settings_are_frozen() -> None:
    settings = _settings()
    with pytest.raises(ValidationError):
        settings.environment = "production"  # type: ignore[misc]
