"""`promptstack relay` as an operator runs it: a process of its own that delivers what
the API processes commit, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import mailbox
import os
import signal
import subprocess
import sys
from pathlib import Path

from promptstack.core.settings import Settings
from tests.support import Api


def _subjects(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(m["Subject"]) for m in mailbox.Maildir(folder, create=False))


def _start_relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603
            [str(Path(sys.executable).parent / "promptstack"), "relay"],
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
    process = _start_relay(env, log)
    try:
        await api.register(email="relayed@example.com", username="relayed")
        expected = ["Confirm your email address", "Welcome to Prompt Stack"]
        for _ in range(600):
            if _subjects(settings.maildir_path) == expected or process.poll() is not None:
                break
            await asyncio.sleep(0.05)  # polling for the outcome, not an assertion on time
        assert _subjects(settings.maildir_path) == expected, log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()
