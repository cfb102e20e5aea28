"""What the benchmark runners share, so each runner holds only its scenario.

`bench/run.py` (the HTTP path), `bench/events.py` (the event backbone), `bench/shop.py`
(the saga) and `bench/order_reads.py` (lists and loads) need a fresh PostgreSQL database
that goes away whatever happens, summaries of their samples, tables, and results written
as JSON; most also start the service, run its CLI, wait for servers and stop them. One
copy of each, here, so the runners cannot drift apart in how they clean up, count or
report. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import httpx
from rich.console import Console
from rich.table import Table

from promptstack.core import provisioning
from promptstack.core.provisioning import DATABASE_NAME

BENCH_DIR = Path(__file__).resolve().parent
# The service reads every setting from the environment; child processes get a clean one
# with only these passed through from ours, so a stray DATABASE_URL or .env cannot leak in.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0

console = Console(stderr=True)  # progress and trouble
out = Console()  # results


class BenchError(Exception):
    """A reason to stop the run, told to the user without a traceback."""


def say(text: str, style: str | None = None) -> None:
    """A progress line on stderr, printed as is (no console markup)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def exit_code(body: Callable[[], object]) -> int:
    """Run a benchmark to its end and say how it went as an exit status: 0, 2 for a
    `BenchError` (told without a traceback), 130 for a Ctrl-C. A plain `kill` unwinds
    like Ctrl-C, so whatever the body started (servers, databases) is cleaned up too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        body()
    except BenchError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("Interrupted; everything started has been stopped.")
        return 130
    return 0


# --------------------------------------------------------------------------- tools


def console_script(name: str) -> str | None:
    """A console script of this interpreter's environment, else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def find_taskset(cpus: Iterable[int]) -> str:
    """taskset, once it is clear that each of `cpus` can be pinned to here."""
    if sys.platform != "linux":
        raise BenchError("The benchmark pins processes to CPUs with taskset: Linux only.")
    taskset = shutil.which("taskset")
    if taskset is None:
        raise BenchError("taskset is not on PATH: install util-linux.")
    allowed = os.sched_getaffinity(0)
    for cpu in cpus:
        if cpu not in allowed:
            raise BenchError(f"CPU {cpu} is not available here (usable: {sorted(allowed)}).")
    return taskset


def pinned(taskset: str, cpu: int, command: Sequence[str]) -> list[str]:
    """`command`, run on `cpu` only."""
    return [taskset, "--cpu-list", str(cpu), *command]


# --------------------------------------------------------------------------- processes


def clean_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a child process: `settings` and only `PASSED_THROUGH` of ours."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return env | settings


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User plus system CPU time of the child processes that have ended so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def uvicorn_command(*app: str) -> list[str]:
    """One worker, no reload, no access log: the request path and nothing around it.
    `app` names the factory (and, for an app outside the package, `--app-dir`)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        *app,
        "--factory",
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-proxy-headers",
        "--timeout-graceful-shutdown",
        "5",
    ]


SERVICE_APP = "promptstack.main:create_app"


def promptstack_command() -> str:
    found = console_script("promptstack")
    if found is None:
        raise BenchError("The promptstack command is not installed: run `make bench`.")
    return found


def cli(env: dict[str, str], workdir: Path, *args: str) -> None:
    """Run a promptstack command with the service's environment, as an operator would."""
    done = subprocess.run(  # noqa: S603 -- our own fixed command
        [promptstack_command(), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise BenchError(f"promptstack {args[0]} failed:\n{done.stdout}\n{done.stderr}")


def create_admin(env: dict[str, str], workdir: Path) -> tuple[str, str]:
    """An administrator made with the CLI, since the API makes none: its email and
    password (only an administrator sends notifications or stocks products)."""
    email = f"bench_admin_{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    cli(env, workdir, "create-admin", "--email", email, "--password", password)
    return email, password


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A service process, its output kept in a log file.

    It leads a session of its own: a Ctrl-C at the terminal reaches only the runner,
    which then stops its processes in order, and stopping one also ends whatever it
    forked (Celery's pool, uvicorn's workers)."""

    stop_timeout = STOP_TIMEOUT_SECONDS

    def __init__(self, name: str, command: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._command = command
        self._env = env
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError(f"{self.name} is not running")
        return self._process.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 -- our own fixed command
                self._command,
                env=self._env,
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> None:
        """Raise if the process has ended: what waits on it would only time out."""
        if self._process is not None and self._process.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self._process.returncode}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop on SIGTERM; killing it.", "yellow")
        # Whatever is left of its session (a pool process the parent did not reap).
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Server(Process):
    """A process serving HTTP on a free local port: `command` is run with `--host` and
    `--port` appended."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            name, [*command, "--host", "127.0.0.1", "--port", str(self.port)], env, workdir
        )

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.check()
                with suppress(httpx.TransportError):
                    if client.get(path).status_code == 200:
                        return
                time.sleep(0.1)
        raise BenchError(f"{self.name} was not ready within {READY_TIMEOUT_SECONDS:.0f} s")


# --------------------------------------------------------------------------- PostgreSQL


def add_common_options(parser: argparse.ArgumentParser, *, database: str) -> None:
    """The options every runner takes: where results go, and the scale-out servers."""
    parser.add_argument("--json", dest="json_path", type=Path, help="write the results here")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="scaleout: an administrative connection, to create and drop the bench database",
    )
    parser.add_argument(
        "--database",
        default=database,
        help="scaleout: the database to create, migrate and drop (its name must say 'bench')",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/15", help="scaleout: REDIS_URL"
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for every service process, e.g. --set DATABASE_POOL_SIZE=20; "
        "repeatable",
    )


def common_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Check what `add_common_options` added: the extra settings, by name."""
    if not is_bench_database_name(args.database):
        parser.error("--database must be a plain lowercase name containing 'bench'")
    return parse_settings(parser, args.settings)


def parse_settings(parser: argparse.ArgumentParser, items: Iterable[str]) -> dict[str, str]:
    """The settings of `--set NAME=VALUE` options, by name (upper-cased)."""
    extra: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes NAME=VALUE, not {item!r}")
        extra[name.upper()] = value
    return extra


def is_bench_database_name(name: str) -> bool:
    """A plain name, and plainly a benchmark's: it will be dropped WITH (FORCE)."""
    return bool(DATABASE_NAME.fullmatch(name)) and "bench" in name


async def create_database(admin_dsn: str, name: str) -> str:
    """Database `name`, dropped first if it exists, through `admin_dsn`; its URL."""
    try:
        return await provisioning.create_database(admin_dsn, name, replace=True)
    except ImportError as exc:
        raise BenchError("PostgreSQL needs asyncpg: pip install -e '.[postgres]'") from exc
    except Exception as exc:  # refused, unknown role, no such database: all say the same
        raise BenchError(f"PostgreSQL at {admin_dsn} is not usable: {exc!r}") from exc


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database `name`; a failure is said, not raised, so as not to hide what ended
    the run."""
    try:
        await provisioning.drop_database(admin_dsn, name)
    except Exception as exc:
        say(f"Could not drop the database {name}: {exc!r}", "yellow")


@contextmanager
def fresh_database(admin_dsn: str, name: str) -> Iterator[str]:
    """A fresh database for a runner without an event loop, dropped afterwards whatever
    happens; yields its URL."""
    url = asyncio.run(create_database(admin_dsn, name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(admin_dsn, name))


# --------------------------------------------------------------------------- summaries


def median(values: Sequence[float]) -> float:
    """The median, NaN when there is nothing to summarize."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max: how far apart repeated measurements of one thing are."""
    return {
        "median": median(values),
        "min": min(values, default=float("nan")),
        "max": max(values, default=float("nan")),
    }


def figures_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    label_justify: Literal["left", "right"] = "left",
) -> Table:
    """A table of figures: a label in the first column, right-aligned figures after it."""
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify=label_justify if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


# --------------------------------------------------------------------------- results


def rounded(value: Any) -> Any:
    """Floats to 4 decimals, for a JSON file people read and paste."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item) for item in value]
    return value


def write_json(path: Path, results: Any) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and whether src/ had changes on top of it."""
    git = shutil.which("git")
    if git is None:
        return {}
    root = BENCH_DIR.parent

    def ask(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 -- our own fixed command
            [git, "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": ask("rev-parse", "HEAD") or None,
        "src_changed": bool(ask("status", "--porcelain", "--", "src")),
    }


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each package, None for one that is not installed."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
