"""A Celery worker as a real process: `promptstack worker`, started the way an operator would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """One `promptstack worker`, configured only through its environment.

    It leads a process group of its own (Celery's parent and its pool processes), so the
    whole worker can be killed at once, as a machine or container going away would.
    """

    def __init__(self, env: dict[str, str], workdir: Path, *, concurrency: int = 2) -> None:
        self.log = workdir / f"worker-{len(list(workdir.glob('worker-*.log')))}.log"
        command = [
            str(Path(sys.executable).parent / "promptstack"),
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
        ]
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603
                command,
                cwd=workdir,
                # The job modules of the tests are imported from the repository.
                env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPOSITORY), **env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL to the whole worker: no warm shutdown, no acknowledgement."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM to Celery's parent), then whatever is left is killed."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")
