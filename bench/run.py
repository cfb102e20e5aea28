"""Benchmark the service's HTTP path against a bare FastAPI app, side by side.

For each mode (`embedded`: SQLite in a temporary folder; `scaleout`: PostgreSQL and
Redis) this starts the service and the bare app (`bench/bare_app.py`), each as one
uvicorn worker pinned to the same CPU, and drives them in turn with `wrk` pinned to
another CPU, alternating the two for several rounds. What it reports is each target's
requests per second and latency, and the ratio service/bare per round: the share of the
bare app's throughput that the service keeps. Both run in the same minutes on the same
CPU, so the ratio holds up on a noisy machine far better than either rate alone.

Each scenario pairs one request to the service with the least the bare app can do to
answer it, and they run one after another against the same two servers:

- `me`: GET /api/v1/users/me against a JWT check alone (GET /me);
- `list`: GET /api/v1/notifications?limit=20 for a user with 25 notifications, sent
  through the API by an administrator the CLI made, against a JWT check and one SELECT
  of the same 20 rows (GET /notifications);
- `write`: PATCH /api/v1/users/me setting `full_name` against a JWT check and one
  UPDATE ... RETURNING in a transaction (PATCH /me). Its report adds the service's
  p99/p50: every connection is a writer, and the tail shows how they queue.
- `order`: POST /api/v1/orders, one line of a product an administrator stocked through
  the API, paid with the sandbox's `tok_visa`, against a JWT check and one INSERT of the
  body in a transaction (POST /orders); both answer 202. The service's figure is orders
  accepted: in embedded mode the saga that settles them (payment, stock, credits, mail)
  runs in the same process and on the same core, so its cost is in the figure; in
  scale-out nothing consumes the outbox here (no relay, no worker), so the figure is
  placing alone. Orders settled end to end are `bench/shop.py`'s measurement.

Run `python bench/run.py --help`. This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from harness import (
    BENCH_DIR,
    SERVICE_APP,
    BenchError,
    Server,
    add_common_options,
    children_cpu_seconds,
    clean_env,
    cli,
    common_options,
    console,
    console_script,
    create_admin,
    exit_code,
    figures_table,
    find_taskset,
    fresh_database,
    git_state,
    median,
    out,
    package_versions,
    pinned,
    process_cpu_seconds,
    promptstack_command,
    rounded,
    say,
    spread,
    uvicorn_command,
    write_json,
)

from promptstack.core.provisioning import database_url

Mode = Literal["embedded", "scaleout"]
MODES: tuple[Mode, ...] = ("embedded", "scaleout")
ScenarioName = Literal["me", "list", "write", "order"]
SCENARIOS: tuple[ScenarioName, ...] = ("me", "list", "write", "order")
TargetName = Literal["service", "bare"]

ME_PATH = "/api/v1/users/me"
NOTIFICATIONS_PATH = "/api/v1/notifications"
PRODUCTS_PATH = "/api/v1/products"
ORDERS_PATH = "/api/v1/orders"
APP_NAME = "Prompt Stack"  # the token issuer; both apps read APP_NAME from the environment
# The service's defaults (core/settings.py), set outright: the bare app sizes its
# PostgreSQL pool from the same two settings, so `--set` changes both apps alike.
POOL_SIZE = 10
MAX_OVERFLOW = 20
PAGE = 20  # list: the page size asked for, and the bare app's
NOTIFICATIONS = 25  # list: seeded for the bench user, more than a page
SEED_TIMEOUT_SECONDS = 60.0
JSON_TYPE = "application/json"
WRITER_NAME = "Bench Writer"
# order: what the bench product holds, more than any run can sell.
ORDER_STOCK = 1_000_000_000
# write: the service's p99 should stay within this many times its p50 (embedded, 32 writers).
TAIL_GOAL = 5.0
# A client pinned to a core that is this busy may be the bottleneck itself.
CLIENT_BUSY = 0.9

# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    modes: tuple[Mode, ...]
    scenarios: tuple[ScenarioName, ...]
    rounds: int
    duration: int
    warmup: int
    connections: int
    threads: int
    server_cpu: int
    client_cpu: int
    json_path: Path | None
    postgres: str
    database: str
    redis_url: str
    settings: dict[str, str]
    profile_dir: Path | None
    profile_format: Literal["flamegraph", "speedscope"]
    profile_all_threads: bool
    loadgen: Literal["wrk", "python"]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=(
            "Benchmark the service against a bare FastAPI app that does the least the same "
            "request needs (bare), alternating them round by round, in four scenarios: "
            "me (GET /api/v1/users/me against a JWT check), list (GET "
            "/api/v1/notifications?limit=20 against a JWT check and one SELECT), write "
            "(PATCH /api/v1/users/me against a JWT check and one UPDATE ... RETURNING) and "
            "order (POST /api/v1/orders against a JWT check and one INSERT)."
        ),
        epilog="Needs wrk (apt-get install wrk) and taskset (util-linux). Linux only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--mode",
        dest="modes",
        action="append",
        choices=MODES,
        help="mode to run; repeat for several (default: both)",
    )
    parser.add_argument(
        "--scenario",
        dest="scenarios",
        action="append",
        choices=SCENARIOS,
        help="scenario to run in each mode, in the order given; repeat for several "
        "(default: all four, in the order me, list, write, order)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per target")
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unrecorded load per target first"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="connections of the load generator (in the write scenario, concurrent writers)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "python"),
        default="wrk",
        help="the load generator: wrk, or bench/loadgen.py (asyncio streams) where wrk "
        "cannot be installed",
    )
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="CPU both servers are pinned to (taskset)"
    )
    parser.add_argument("--client-cpu", type=int, default=1, help="CPU wrk is pinned to")
    add_common_options(parser, database="promptstack_bench")
    parser.add_argument(
        "--profile",
        dest="profile_dir",
        type=Path,
        help="after the measured rounds, run one more service round under py-spy and "
        "write the profile into this folder (the round is not counted)",
    )
    parser.add_argument(
        "--profile-format", choices=("flamegraph", "speedscope"), default="flamegraph"
    )
    parser.add_argument(
        "--profile-all-threads",
        action="store_true",
        help="sample every thread, not only the one holding the GIL (py-spy --gil): "
        "the idle pool threads then crowd the picture",
    )
    args = parser.parse_args(argv)

    for name in ("rounds", "duration", "connections", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup cannot be negative")
    if args.threads > args.connections:
        parser.error("--threads cannot exceed --connections (wrk needs a connection each)")
    extra = common_options(parser, args)
    return Options(
        modes=tuple(dict.fromkeys(args.modes or MODES)),
        scenarios=tuple(dict.fromkeys(args.scenarios or SCENARIOS)),
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        json_path=args.json_path,
        postgres=args.postgres,
        database=args.database,
        redis_url=args.redis_url,
        settings=extra,
        profile_dir=args.profile_dir,
        profile_format=args.profile_format,
        profile_all_threads=args.profile_all_threads,
        loadgen=args.loadgen,
    )


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tools:
    wrk: str | None
    taskset: str
    py_spy: str | None


def find_tools(options: Options) -> Tools:
    taskset = find_taskset((options.server_cpu, options.client_cpu))
    wrk = shutil.which("wrk")
    if wrk is None and options.loadgen == "wrk":
        raise BenchError(
            "wrk is not on PATH. Install it:\n"
            "  Debian/Ubuntu: sudo apt-get install -y wrk\n"
            "  Fedora:        sudo dnf install -y wrk\n"
            "  Arch:          sudo pacman -S wrk\n"
            "or, where that is impossible, use the Python load generator: --loadgen python"
        )
    if options.server_cpu == options.client_cpu:
        say(
            "The servers and the load generator share one CPU: the figures will include "
            "the load generator's own cost.",
            "yellow",
        )
    promptstack_command()  # installed, or say so before anything starts
    py_spy = console_script("py-spy")
    if options.profile_dir is not None and py_spy is None:
        raise BenchError(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
    return Tools(wrk=wrk, taskset=taskset, py_spy=py_spy)


def wrk_version(tools: Tools) -> str | None:
    if tools.wrk is None:
        return None
    done = subprocess.run(  # noqa: S603 -- our own fixed command
        [tools.wrk, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


# --------------------------------------------------------------------------- wrk


@dataclass
class Sample:
    """One wrk run against one target."""

    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu: float  # CPU seconds of the server per second of the run (1.0: one full core)
    client_cpu: float  # the same for wrk


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class LoadFigures:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def parse_wrk(text: str) -> LoadFigures:
    """Requests/sec, p50 and p99 from the output of `wrk --latency`."""
    rps = _RPS.search(text)
    requests = _REQUESTS.search(text)
    percentiles = {
        m.group(1): float(m.group(2)) * _UNITS_MS[m.group(3)] for m in _PERCENTILE.finditer(text)
    }
    if rps is None or requests is None or not {"50", "99"} <= percentiles.keys():
        raise BenchError(f"Could not read wrk's output (was --latency given?):\n{text}")
    non_2xx = _NON_2XX.search(text)
    sockets = _SOCKET.search(text)
    return LoadFigures(
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


# --------------------------------------------------------------------------- servers


def service_command(tools: Tools, cpu: int, *app: str) -> list[str]:
    return pinned(tools.taskset, cpu, uvicorn_command(*app))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Scenario:
    """One request to the service and, for the bare app, the least work that answers it."""

    name: ScenarioName
    method: str
    service_path: str
    bare_path: str
    baseline: str  # what the bare app does, for the report
    body: str | None = None
    tail_goal: float | None = None  # the service's p99/p50 to report and hold to
    status: int = 200  # what both targets answer


SCENARIO_OF: dict[ScenarioName, Scenario] = {
    "me": Scenario("me", "GET", ME_PATH, "/me", "bare JWT check"),
    "list": Scenario(
        "list",
        "GET",
        f"{NOTIFICATIONS_PATH}?limit={PAGE}",
        "/notifications",
        "bare JWT check + SELECT",
    ),
    "write": Scenario(
        "write",
        "PATCH",
        ME_PATH,
        "/me",
        "bare JWT check + UPDATE",
        body=json.dumps({"full_name": WRITER_NAME}),
        tail_goal=TAIL_GOAL,
    ),
    # The body names the bench product, which exists only once the servers run.
    "order": Scenario(
        "order",
        "POST",
        ORDERS_PATH,
        "/orders",
        "bare JWT check + INSERT",
        tail_goal=TAIL_GOAL,
        status=202,
    ),
}


def order_body(product_id: str) -> str:
    return json.dumps(
        {"items": [{"product_id": product_id, "quantity": 1}], "payment_token": "tok_visa"}
    )


@dataclass(frozen=True)
class Target:
    name: TargetName
    server: Server
    path: str
    token: str
    method: str = "GET"
    body: str | None = None  # JSON
    script: Path | None = None  # for wrk, whose flags can say neither a method nor a body


@dataclass(frozen=True)
class Account:
    id: str
    token: str


def authorization(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def log_in(client: httpx.Client, username: str, password: str) -> str:
    """The access token the service issues for these credentials."""
    login = client.post("/api/v1/auth/login", data={"username": username, "password": password})
    if login.status_code != 200:
        raise BenchError(f"login answered {login.status_code}: {login.text}")
    token: str = login.json()["access_token"]
    return token


def bench_user(base_url: str) -> Account:
    """Register a user through the API and log in: its id and the access token the
    service issued, which every scenario's service target sends."""
    password = secrets.token_urlsafe(18)
    username = f"bench_{secrets.token_hex(4)}"
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={"email": f"{username}@example.com", "username": username, "password": password},
        )
        if registered.status_code != 201:
            raise BenchError(f"register answered {registered.status_code}: {registered.text}")
        return Account(id=registered.json()["id"], token=log_in(client, username, password))


def bare_token(settings: dict[str, str], lifetime: timedelta) -> str:
    """A token with the claims the service puts in an access token, signed alike."""
    now = datetime.now(UTC).replace(microsecond=0)
    claims = {
        "type": "access",
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
        "iss": settings["APP_NAME"],
        "ver": 0,
    }
    return jwt.encode(claims, settings["SECRET_KEY"], algorithm=settings["JWT_ALGORITHM"])


def seed_notifications(base_url: str, admin: tuple[str, str], user: Account) -> None:
    """Send the bench user NOTIFICATIONS notifications through the API as an administrator,
    and wait until they are all in its inbox.

    Delivery is asynchronous (the outbox relay in the server process), so the inbox is
    polled up to a deadline; all of them rather than the first page, since one delivered
    late would be newest and change the page the scenario reads.
    """
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        admin_token = log_in(client, *admin)
        for number in range(1, NOTIFICATIONS + 1):
            sent = client.post(
                NOTIFICATIONS_PATH,
                headers=authorization(admin_token),
                json={
                    "user_id": user.id,
                    "subject": f"Bench notification {number}",
                    "message": f"Number {number} of {NOTIFICATIONS}, for the list scenario.",
                },
            )
            if sent.status_code != 202:
                raise BenchError(f"sending a notification answered {sent.status_code}: {sent.text}")
        deadline = time.monotonic() + SEED_TIMEOUT_SECONDS
        while True:
            inbox = client.get(
                NOTIFICATIONS_PATH,
                params={"limit": NOTIFICATIONS},
                headers=authorization(user.token),
            )
            if inbox.status_code != 200:
                raise BenchError(f"the inbox answered {inbox.status_code}: {inbox.text}")
            delivered = len(inbox.json()["items"])
            if delivered == NOTIFICATIONS:
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{delivered} of {NOTIFICATIONS} notifications were delivered within "
                    f"{SEED_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(0.1)


def lua_string(text: str) -> str:
    """`text` as a Lua long string, which needs no escapes (`text` must not start with a
    line break, which Lua would drop)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def wrk_script(path: Path, method: str, body: str | None) -> Path:
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines += [f"wrk.body = {lua_string(body)}", f'wrk.headers["Content-Type"] = "{JSON_TYPE}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def targets_of(
    scenario: Scenario,
    servers: dict[TargetName, Server],
    user: Account,
    settings: dict[str, str],
    workdir: Path,
) -> dict[TargetName, Target]:
    """The scenario's two targets. The bare app of `me` gets a token of its own, for no
    user, as it reads no row; in the others both apps read or write the bench user's
    rows, so both get the token the service issued it."""
    bare = bare_token(settings, timedelta(days=1)) if scenario.name == "me" else user.token
    script = None
    if scenario.method != "GET" or scenario.body is not None:
        script = wrk_script(workdir / f"{scenario.name}.lua", scenario.method, scenario.body)

    def target(name: TargetName, path: str, token: str) -> Target:
        return Target(name, servers[name], path, token, scenario.method, scenario.body, script)

    return {
        "service": target("service", scenario.service_path, user.token),
        "bare": target("bare", scenario.bare_path, bare),
    }


def probe(target: Target) -> httpx.Response:
    headers = authorization(target.token)
    if target.body is not None:
        headers["Content-Type"] = JSON_TYPE
    return httpx.request(
        target.method,
        target.server.url + target.path,
        headers=headers,
        content=target.body,
        timeout=10.0,
    )


def check_target(target: Target, status: int) -> Any:
    """One request by hand before any load: it must answer `status`, or the figures mean
    nothing. The answer's JSON."""
    answer = probe(target)
    if answer.status_code != status:
        raise BenchError(f"{target.name} answered {answer.status_code}: {answer.text}")
    return answer.json()


def check_targets(scenario: Scenario, targets: dict[TargetName, Target], user: Account) -> None:
    """Both targets answer as they should and, beyond `me`, what the scenario asks for:
    else the ratio would compare different work."""
    answers = {name: check_target(target, scenario.status) for name, target in targets.items()}
    if scenario.name == "list":
        listed: dict[TargetName, list[Any]] = {}
        for name, answer in answers.items():
            items = answer.get("items") or []
            if len(items) != PAGE or answer.get("next_cursor") is None:
                raise BenchError(
                    f"{name} answered {str(answer)[:300]}: expected {PAGE} notifications "
                    "and a next cursor"
                )
            listed[name] = [item.get("id") for item in items]
        if listed["service"] != listed["bare"]:
            raise BenchError(f"the two apps listed different notifications: {listed}")
    elif scenario.name == "write":
        for name, answer in answers.items():
            if answer.get("id") != user.id or answer.get("full_name") != WRITER_NAME:
                raise BenchError(f"{name} answered {answer}: expected {user.id} renamed")
    elif scenario.name == "order":
        for name, answer in answers.items():
            if answer.get("user_id") != user.id or answer.get("status") != "pending":
                raise BenchError(f"{name} answered {answer}: expected a pending order")


# --------------------------------------------------------------------------- load


def drive(
    tools: Tools, options: Options, target: Target, seconds: int, profile: Path | None = None
) -> tuple[LoadFigures, float, float]:
    """One run of the load generator: its figures, the server's and the load generator's
    CPU use per second of the run."""
    url = target.server.url + target.path
    header = f"Authorization: Bearer {target.token}"
    if options.loadgen == "wrk" and tools.wrk is not None:
        command = [
            tools.wrk,
            "--threads",
            str(options.threads),
            "--connections",
            str(options.connections),
            "--duration",
            f"{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "--header",
            header,
            *(["--script", str(target.script)] if target.script is not None else []),
            url,
        ]
    else:
        command = [
            sys.executable,
            str(BENCH_DIR / "loadgen.py"),
            "--connections",
            str(options.connections),
            "--duration",
            str(seconds),
            "--header",
            header,
            "--method",
            target.method,
            *(["--body", target.body] if target.body is not None else []),
            url,
        ]
    command = pinned(tools.taskset, options.client_cpu, command)
    spy = start_py_spy(tools, options, target, seconds, profile) if profile else None
    server_before = process_cpu_seconds(target.server.pid)
    client_before = children_cpu_seconds()
    started = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603 -- our own fixed command
            command, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
    finally:
        if spy is not None:
            finish_py_spy(spy, profile)
    elapsed = time.monotonic() - started
    server_cpu = (process_cpu_seconds(target.server.pid) - server_before) / elapsed
    client_cpu = (children_cpu_seconds() - client_before) / elapsed
    if done.returncode != 0:
        raise BenchError(
            f"{options.loadgen} failed ({done.returncode}):\n{done.stderr or done.stdout}"
        )
    if options.loadgen == "wrk":
        if target.script is not None and done.stderr.strip():
            # wrk says a script's error and carries on with plain GETs, exiting 0.
            raise BenchError(f"wrk could not run {target.script}:\n{done.stderr}")
        return parse_wrk(done.stdout), server_cpu, client_cpu
    return LoadFigures(**json.loads(done.stdout)), server_cpu, client_cpu


def start_py_spy(
    tools: Tools, options: Options, target: Target, seconds: int, output: Path
) -> subprocess.Popen[bytes]:
    assert tools.py_spy is not None  # find_tools made sure
    output.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603 -- our own fixed command
        pinned(
            tools.taskset,
            options.client_cpu,
            [
                tools.py_spy,
                "record",
                "--pid",
                str(target.server.pid),
                "--duration",
                str(seconds),
                "--format",
                options.profile_format,
                "--output",
                str(output),
                *([] if options.profile_all_threads else ["--gil"]),
            ],
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # let it attach before the load starts
    return process


def finish_py_spy(process: subprocess.Popen[bytes], output: Path | None) -> None:
    try:
        _, errors = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, errors = process.communicate()
    if process.returncode == 0 and output is not None and output.exists():
        console.print(f"Profile written to {output}")
    else:
        say(
            f"py-spy failed ({process.returncode}); it needs ptrace rights "
            f"(root, or CAP_SYS_PTRACE):\n{errors.decode(errors='replace')}",
            "yellow",
        )


# --------------------------------------------------------------------------- modes


@dataclass
class ScenarioResult:
    scenario: Scenario
    samples: dict[TargetName, list[Sample]] = field(
        default_factory=lambda: {"service": [], "bare": []}
    )
    warnings: list[str] = field(default_factory=list)
    loadavg_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loadavg_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    profile: str | None = None

    def ratios(self) -> list[float]:
        pairs = zip(self.samples["service"], self.samples["bare"], strict=True)
        return [s.rps / b.rps for s, b in pairs if b.rps > 0]

    def tail_ratios(self) -> list[float]:
        """The service's p99 over its p50, per round: how far the slowest requests stray."""
        return [s.p99_ms / s.p50_ms for s in self.samples["service"] if s.p50_ms > 0]


@dataclass
class ModeResult:
    mode: Mode
    settings: dict[str, str]
    scenarios: dict[ScenarioName, ScenarioResult] = field(default_factory=dict)


def service_settings(mode: Mode, options: Options, workdir: Path) -> dict[str, str]:
    settings = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_ALGORITHM": "HS256",
        "APP_NAME": APP_NAME,
        # A token that outlives the longest run (the default is 15 minutes).
        "ACCESS_TOKEN_EXPIRE_MINUTES": str(24 * 60),
        "LOG_LEVEL": "WARNING",
        # The rate limiter stays on, since it is part of every request's cost, with limits
        # no run reaches: every request comes from 127.0.0.1 and would soon be refused.
        "RATE_LIMIT_PER_MINUTE": str(10**9),
        "RATE_LIMIT_BURST": str(10**9),
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(workdir / "mail"),
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        "DATABASE_MAX_OVERFLOW": str(MAX_OVERFLOW),
        # What is left in the outbox at the end is thrown away with the database: stop
        # without flushing it for long (orders leave a backlog of saga steps).
        "SHUTDOWN_GRACE_SECONDS": "1",
    }
    if mode == "embedded":
        settings["DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    else:
        settings["DATABASE_URL"] = database_url(options.postgres, options.database)
        settings["REDIS_URL"] = options.redis_url
        settings["CACHE_NAMESPACE"] = options.database  # keys of their own, never flushed
    return settings | options.settings


def bench_product(base_url: str, admin: tuple[str, str]) -> str:
    """A product the order scenario buys, stocked through the API: its id."""
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        created = client.post(
            PRODUCTS_PATH,
            headers=authorization(log_in(client, *admin)),
            json={
                "sku": f"BENCH-{secrets.token_hex(4)}",
                "name": "Bench mug",
                "price_cents": 1250,
                "currency": "EUR",
                "stock": ORDER_STOCK,
            },
        )
    if created.status_code != 201:
        raise BenchError(f"creating the product answered {created.status_code}: {created.text}")
    product_id: str = created.json()["id"]
    return product_id


def run_mode(mode: Mode, options: Options, tools: Tools) -> ModeResult:
    with tempfile.TemporaryDirectory(prefix=f"promptstack-bench-{mode}-") as tmp:
        workdir = Path(tmp)
        settings = service_settings(mode, options, workdir)
        result = ModeResult(
            mode=mode,
            settings={k: v for k, v in settings.items() if k != "SECRET_KEY"},
        )
        if mode == "scaleout":
            with fresh_database(options.postgres, options.database):
                _run_servers(result, settings, options, tools, workdir)
        else:
            _run_servers(result, settings, options, tools, workdir)
        return result


def _run_servers(
    result: ModeResult,
    settings: dict[str, str],
    options: Options,
    tools: Tools,
    workdir: Path,
) -> None:
    env = clean_env(settings)
    # The service is started by uvicorn itself rather than `promptstack serve`, after an
    # explicit `promptstack migrate`: the same command for both modes and both apps, and
    # the flags that matter here (one worker, no reload, no access log) said outright.
    cli(env, workdir, "migrate")
    needs_admin = {"list", "order"} & set(options.scenarios)
    admin = create_admin(env, workdir) if needs_admin else None
    servers: dict[TargetName, Server] = {
        "service": Server(
            "service",
            service_command(tools, options.server_cpu, SERVICE_APP),
            env,
            workdir,
        ),
        "bare": Server(
            "bare",
            service_command(
                tools, options.server_cpu, "--app-dir", str(BENCH_DIR), "bare_app:create_app"
            ),
            env,
            workdir,
        ),
    }
    service, bare = servers["service"], servers["bare"]
    try:
        for server, ready in ((service, "/health/ready"), (bare, "/health")):
            server.start()
            server.wait_ready(ready)
        user = bench_user(service.url)
        if admin is not None and "list" in options.scenarios:
            seed_notifications(service.url, admin, user)
        body: dict[ScenarioName, str] = {}
        if admin is not None and "order" in options.scenarios:
            body["order"] = order_body(bench_product(service.url, admin))
        # One scenario after another against the same two servers; each is checked just
        # before its load, as the one before may have changed what it reads.
        for name in options.scenarios:
            scenario = SCENARIO_OF[name]
            if name in body:
                scenario = replace(scenario, body=body[name])
            targets = targets_of(scenario, servers, user, settings, workdir)
            check_targets(scenario, targets, user)
            result.scenarios[name] = measure(result.mode, scenario, targets, options, tools)
    except BenchError as exc:
        raise BenchError(
            f"{exc}\n--- service log ---\n{service.log_tail()}\n--- bare log ---\n{bare.log_tail()}"
        ) from exc
    finally:
        for server in (service, bare):
            server.stop()


def measure(
    mode: Mode,
    scenario: Scenario,
    targets: dict[TargetName, Target],
    options: Options,
    tools: Tools,
) -> ScenarioResult:
    result = ScenarioResult(scenario)
    label = f"{mode} {scenario.name}"
    result.loadavg_before = os.getloadavg()
    if options.warmup:
        say(f"{label}: warming up ({options.warmup} s each)")
        for target in targets.values():
            drive(tools, options, target, options.warmup)
    for round_ in range(1, options.rounds + 1):
        # ABBA order: a drift in the machine's load favours neither target.
        order: tuple[TargetName, ...] = ("service", "bare") if round_ % 2 else ("bare", "service")
        for name in order:
            figures, server_cpu, client_cpu = drive(tools, options, targets[name], options.duration)
            sample = Sample(
                round=round_, server_cpu=server_cpu, client_cpu=client_cpu, **asdict(figures)
            )
            result.samples[name].append(sample)
            say(
                f"{label} {round_}/{options.rounds} {name:7} {sample.rps:7.0f} rps "
                f"p50 {sample.p50_ms:6.2f} p99 {sample.p99_ms:7.2f} ms "
                f"cpu {sample.server_cpu:4.0%} client {sample.client_cpu:4.0%}"
            )
            note_trouble(label, result, targets[name], sample)
    result.loadavg_after = os.getloadavg()
    if options.profile_dir is not None:
        suffix = "svg" if options.profile_format == "flamegraph" else "speedscope.json"
        path = options.profile_dir.resolve() / f"profile-{mode}-{scenario.name}.{suffix}"
        say(f"{label}: profiling the service for {options.duration} s (not counted)")
        drive(tools, options, targets["service"], options.duration, profile=path)
        result.profile = str(path) if path.exists() else None
    return result


def note_trouble(label: str, result: ScenarioResult, target: Target, sample: Sample) -> None:
    problems = []
    if sample.non_2xx or sample.socket_errors:
        # The figures of such a round measure the error path; one request tells which.
        try:
            answer = probe(target)
            now = f"a request now answers {answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            now = f"a request now fails: {exc!r}"
        problems.append(
            f"{sample.non_2xx} non-2xx answers and {sample.socket_errors} socket errors ({now})"
        )
    if sample.client_cpu >= CLIENT_BUSY:
        problems.append(
            f"the load generator used {sample.client_cpu:.0%} of its CPU: it may be the bottleneck"
        )
    for problem in problems:
        message = f"round {sample.round}, {target.name}: {problem}"
        result.warnings.append(message)
        say(f"{label}: {message}", "yellow")


# --------------------------------------------------------------------------- report


def summarize(result: ModeResult) -> dict[str, Any]:
    return {
        "settings": result.settings,
        "scenarios": {name: summarize_scenario(r) for name, r in result.scenarios.items()},
    }


def summarize_scenario(result: ScenarioResult) -> dict[str, Any]:
    scenario = result.scenario
    targets: dict[str, Any] = {}
    for name, samples in result.samples.items():
        targets[name] = {
            "median_rps": median([s.rps for s in samples]),
            "median_p50_ms": median([s.p50_ms for s in samples]),
            "median_p99_ms": median([s.p99_ms for s in samples]),
            "median_server_cpu": median([s.server_cpu for s in samples]),
            "median_client_cpu": median([s.client_cpu for s in samples]),
            "errors": sum(s.non_2xx + s.socket_errors for s in samples),
            "rounds": [asdict(s) for s in samples],
        }
    ratios = result.ratios()
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "requests": {
            "service": f"{scenario.method} {scenario.service_path}",
            "bare": f"{scenario.method} {scenario.bare_path}",
            "body": scenario.body,
        },
        "targets": targets,
        "ratio_service_over_bare": {"per_round": ratios, **spread(ratios)},
    }
    if scenario.tail_goal is not None:
        tails = result.tail_ratios()
        summary["service_p99_over_p50"] = {
            "per_round": tails,
            **spread(tails),
            "goal": scenario.tail_goal,
        }
    return summary | {
        "loadavg_before": result.loadavg_before,
        "loadavg_after": result.loadavg_after,
        "warnings": result.warnings,
        "profile": result.profile,
    }


def print_tables(mode: Mode, summary: dict[str, Any], rounds: int) -> None:
    for name, scenario_summary in summary["scenarios"].items():
        print_table(mode, SCENARIO_OF[name], scenario_summary, rounds)


def print_table(mode: Mode, scenario: Scenario, summary: dict[str, Any], rounds: int) -> None:
    rows = [
        (
            name,
            f"{figures['median_rps']:.1f}",
            f"{figures['median_p50_ms']:.2f}",
            f"{figures['median_p99_ms']:.2f}",
            f"{figures['median_server_cpu']:.0%}",
            f"{figures['median_client_cpu']:.0%}",
            str(figures["errors"]),
        )
        for name, figures in summary["targets"].items()
    ]
    out.print(
        figures_table(
            f"{mode} {scenario.name}: {scenario.method} {scenario.service_path} "
            f"vs {scenario.baseline}, median of {rounds} rounds",
            ("target", "req/s", "p50 ms", "p99 ms", "server CPU", "client CPU", "errors"),
            rows,
        )
    )
    ratio = summary["ratio_service_over_bare"]
    out.print(
        f"{scenario.name}: ratio service/bare (req/s, per round): median {ratio['median']:.3f}, "
        f"min {ratio['min']:.3f}, max {ratio['max']:.3f}"
    )
    tail = summary.get("service_p99_over_p50")
    if tail is not None:
        verdict = ""
        if mode == "embedded":
            verdict = ", met" if tail["median"] <= tail["goal"] else ", [yellow]missed[/yellow]"
        out.print(
            f"{scenario.name}: service p99/p50 (per round): median {tail['median']:.2f}, "
            f"min {tail['min']:.2f}, max {tail['max']:.2f} "
            f"(goal in embedded: at most {tail['goal']:g}{verdict})"
        )
    if summary["warnings"]:
        out.print(f"[yellow]{scenario.name}: {len(summary['warnings'])} warning(s):[/yellow]")
        for warning in summary["warnings"]:
            out.print(f"  {warning}", markup=False, highlight=False)


def metadata_of(options: Options, tools: Tools) -> dict[str, Any]:
    versions = package_versions(
        ("promptstack", "fastapi", "uvicorn", "sqlalchemy", "pyjwt", "uvloop", "httptools")
    )
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git": git_state(),
        "loadgen": options.loadgen,
        "wrk": wrk_version(tools),
        "versions": versions,
        "options": {
            "scenarios": options.scenarios,
            "rounds": options.rounds,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "connections": options.connections,
            "threads": options.threads,
            "server_cpu": options.server_cpu,
            "client_cpu": options.client_cpu,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report: dict[str, Any] = {"meta": {}, "modes": {}}

    def run_modes() -> None:
        tools = find_tools(options)
        report["meta"] = metadata_of(options, tools)
        for mode in options.modes:
            summary = summarize(run_mode(mode, options, tools))
            report["modes"][mode] = summary
            print_tables(mode, summary, options.rounds)

    try:
        return exit_code(run_modes)
    finally:
        if options.json_path is not None and report["modes"]:
            write_json(options.json_path, rounded(report))
            console.print(f"Results written to {options.json_path}")


if __name__ == "__main__":
    sys.exit(main())
