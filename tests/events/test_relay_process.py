"""`promptstack relay` as an operator runs it: a process of its own that delivers what
the API processes commit, and stops cleanly on SIGTERM."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from promptstack.core.settings import Settings
from tests.fixtures.redis_server import free_port
from tests.fixtures.support import Api, eventually


def _subjects(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(m["Subject"]) for m in mailbox.Maildir(folder, create=False))


def _start_relay(env: dict[str, str], log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    promptstack = str(Path(sys.executable).parent / "promptstack")
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603
            [promptstack, "relay", "--metrics-port", str(metrics_port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def test_the_relay_process_sends_what_the_api_committed(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(settings.maildir_path),
        "OUTBOX_POLL_SECONDS": "0.2",
        "LOG_JSON": "false",
    }
    log = tmp_path / "relay.log"
    metrics_port = free_port()
    process = _start_relay(env, log, metrics_port)
    try:
        await api.register(email="relayed@example.com", username="relayed")
        expected = ["Confirm your email address", "Welcome to Prompt Stack"]
        await eventually(
            lambda: _subjects(settings.maildir_path) == expected or process.poll() is not None,
            what="the emails",
        )
        assert _subjects(settings.maildir_path) == expected, log.read_text()
        # Counted in the relay process, which serves them itself.
        await _scraped(
            metrics_port,
            'promptstack_events_published_total{type="user.registered"} 1.0',
            'promptstack_events_handled_total{consumer="mail.welcome",result="handled"} 1.0',
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()


async def _scraped(port: int, *lines: str) -> None:
    async with httpx.AsyncClient() as client:

        async def present() -> bool:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            return all(line in text for line in lines)

        await eventually(present, what=f"{lines} in the relay's metrics")
