"""The service as real processes: uvicorn workers started the way an operator would."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.redis_server import free_port


class ServiceProcess:
    """One API process on a free port, configured only through its environment."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"service-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "promptstack.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
        ]
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603
                command,
                cwd=workdir,
                env={"PATH": os.environ.get("PATH", ""), **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        for _ in range(300):
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling for start-up, not an assertion
        raise RuntimeError(f"service did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def service_env(database_url: str, workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of a test's API process: fast hashing, mail to a folder of the
    test's, a random key; `settings` add to it or override it (names as in the
    environment)."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_COST": "64",
        "PASSWORD_HASH_PARALLELISM": "1",
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(workdir / "mail"),
        "LOG_LEVEL": "WARNING",
        **settings,
    }


@asynccontextmanager
async def two_services(
    env: dict[str, str], workdir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two API processes sharing one environment, and a client for each."""
    processes = [ServiceProcess(env, workdir) for _ in range(2)]
    try:
        for process in processes:
            process.wait_ready()
        async with (
            httpx.AsyncClient(base_url=processes[0].base_url, timeout=30) as a,
            httpx.AsyncClient(base_url=processes[1].base_url, timeout=30) as b,
        ):
            yield a, b
    finally:
        for process in processes:
            process.stop()
