"""Logs read well for a person in development and parse as JSON everywhere else."""

from __future__ import annotations

import json
import logging

import pytest

from promptstack.core.logging import configure_logging, get_logger
from promptstack.core.settings import Settings


@pytest.mark.parametrize(
    ("values", "as_json"),
    [
        ({"environment": "development"}, False),
        ({"environment": "production"}, True),
        ({"environment": "staging"}, True),
        ({"environment": "development", "log_json": True}, True),
        ({"environment": "production", "log_json": False}, False),
    ],
)
def test_the_environment_chooses_unless_log_json_is_set(
    values: dict[str, object], as_json: bool
) -> None:
    settings = Settings(_env_file=None, secret_key="k" * 40, **values)  # type: ignore[call-arg]
    assert settings.logs_as_json is as_json


@pytest.mark.parametrize("as_json", [True, False])
def test_each_format_carries_the_event_and_its_fields(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=as_json)
    try:
        get_logger(f"format.{as_json}").info("order_placed", order="o-1")
        logging.getLogger("stdlib.module").warning("from the standard library")
    finally:
        configure_logging("WARNING", json=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    if as_json:
        first, second = (json.loads(line) for line in lines)
        assert (first["event"], first["order"], first["level"]) == ("order_placed", "o-1", "info")
        assert second["logger"] == "stdlib.module"
    else:
        assert "order_placed" in lines[0]
        assert "order=o-1" in lines[0]  # no colours: the stream is not a terminal
        assert "from the standard library" in lines[1]
        for line in lines:
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
