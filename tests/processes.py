"""The service as real processes: uvicorn workers started the way an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
