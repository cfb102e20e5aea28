"""Benchmark the LLM gateway against bare FastAPI endpoints that answer the same request.

On the embedded default (SQLite in a temporary folder; the `demo` provider, which needs
no network) this starts the service and the bare app (`bench/bare_app.py`), each as one
uvicorn worker pinned to the same CPU, registers a user through the API as
`bench/run.py` does, and measures two things, alternating the two targets round by round
(ABBA) so that a drift in the machine favours neither; what it reports are ratios
service/bare per round, with their median and range, and the absolute figures beside
them. It is not a test: no figure is held to a threshold.

1. `generate`: `POST /api/v1/llm/generate` with `{"prompt": ..., "max_tokens": 64}`
   (not streamed) against the bare app's `POST /llm/generate`, which checks the JWT as
   its other endpoints do and answers a fixed completion of the same shape. Driven by
   `wrk` pinned to another CPU, with `bench/run.py`'s own driver, rounds and report: the
   ratio of the two request rates is the share of "FastAPI plus a JWT check" the
   gateway keeps after what it does per call (choosing the provider and model,
   counting the prompt's tokens, the per-user quotas, the usage ledger's two writes,
   one when the call opens and one when it closes, and the credits, which the demo
   provider's calls, costing nothing, leave untouched).
2. `stream`: time to the first byte of a streamed answer (`"stream": true`), against the
   bare app's `POST /llm/stream`, which streams the same answer as fixed server-sent
   events. wrk cannot see when the first event of an answer arrives, so a small client
   here (httpx, on this process pinned to the client CPU) opens streams one after
   another (`sequential`) and then CONCURRENCY at a time (`concurrent`), to each target
   in turn, and records the time from sending the request to the end of the first
   `delta` event, and to the end of the stream. Per round it reports p50 and p99 of each
   target and the ratios service/bare of the TTFB p50, the TTFB p99 and the whole
   stream's p50. httpx is no light client: on the two-core machine this was written on
   it spent about 1.3 ms of CPU a stream, more than the bare app's server (about 1 ms),
   and in the concurrent phase against the bare app it used most of its core, so the
   bare app's figures there are partly the client's. Both pull the ratios towards 1:
   read them as a lower bound of what the gateway adds. The client's CPU is reported
   (and warned about at 90%) for that reason.

Limits lifted, through the service's environment, because a benchmark sends one user's
calls far faster than any person would, and the figures must measure the gateway's work
rather than its refusals (a refused call is a 429, which wrk counts as an error and which
is cheaper than an answer):

- `LLM_REQUESTS_PER_MINUTE` = 10^9 (default 60): the per-user bucket of calls;
- `LLM_TOKENS_PER_MINUTE` = 10^12 (default 100,000): each call takes its prompt and
  `max_tokens` from it until it ends, which a few hundred calls a second exceed;
- `LLM_DAILY_TOKENS_FREE` = 10^12 (default 200,000): the tokens a free-tier user may use
  in a UTC day, which a run spends in under a minute.

The quotas are still taken and given back on every call, so their cost is in the
figures; only their limits are out of reach. The HTTP rate limiter is configured as
`bench/run.py` configures it (it stays on, with RATE_LIMIT_PER_MINUTE and
RATE_LIMIT_BURST at 10^9: every request comes from 127.0.0.1). New accounts get
SIGNUP_CREDITS (100) credits; the demo provider's calls are free, so no credit is held
or charged, and the run checks that the balance is still whole at the end.

Run `python bench/llm.py --help`, or `make bench-llm BENCH_ARGS="..."`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import httpx
from harness import (
    BENCH_DIR,
    SERVICE_APP,
    BenchError,
    Server,
    clean_env,
    cli,
    console,
    exit_code,
    figures_table,
    median,
    out,
    parse_settings,
    percentile,
    process_cpu_seconds,
    rounded,
    say,
    spread,
    write_json,
)
from run import (
    JSON_TYPE,
    Account,
    Mode,
    Options,
    Scenario,
    ScenarioName,
    ScenarioResult,
    Target,
    TargetName,
    Tools,
    authorization,
    bench_user,
    check_target,
    find_tools,
    measure,
    metadata_of,
    print_table,
    service_command,
    service_settings,
    summarize_scenario,
    targets_of,
)

GENERATE_PATH = "/api/v1/llm/generate"
USAGE_PATH = "/api/v1/llm/usage"
ME_PATH = "/api/v1/users/me"
BARE_GENERATE_PATH = "/llm/generate"
BARE_STREAM_PATH = "/llm/stream"
# The demo provider answers "Demo answer to: <prompt>": the bare app's fixed answer is
# that answer to this prompt (bare_app.COMPLETION_TEXT), which the checks hold to.
PROMPT = "What is event sourcing?"
MODE: Mode = "embedded"
# The per-user limits, out of reach (see the module docstring); at each setting's maximum.
LIFTED_LIMITS = {
    "LLM_REQUESTS_PER_MINUTE": str(10**9),
    "LLM_TOKENS_PER_MINUTE": str(10**12),
    "LLM_DAILY_TOKENS_FREE": str(10**12),
}
STREAM_TIMEOUT_SECONDS = 30.0
# A client on a core this busy may be the bottleneck itself.
CLIENT_BUSY = 0.9
DELTA = b"event: delta\n"
DONE = b"event: done\ndata: {}\n\n"

Phase = Literal["sequential", "concurrent"]
PHASES: tuple[Phase, ...] = ("sequential", "concurrent")

# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class LlmOptions:
    run: Options  # what bench/run.py's driver, rounds and report read
    streams: int
    concurrency: int
    stream_warmup: int
    max_tokens: int


def parse_args(argv: Sequence[str] | None = None) -> LlmOptions:
    parser = argparse.ArgumentParser(
        prog="python bench/llm.py",
        description=(
            "Benchmark the LLM gateway on the embedded default (SQLite, the demo provider) "
            "against bare FastAPI endpoints, alternating them round by round: POST "
            "/api/v1/llm/generate (JSON) against a JWT check and a fixed completion, "
            "driven by wrk; and the time to the first event of a streamed answer against "
            "a JWT check and a fixed server-sent answer, measured by an httpx client."
        ),
        epilog="Needs wrk (apt-get install wrk) and taskset (util-linux). Linux only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per target")
    parser.add_argument("--duration", type=int, default=10, help="generate: seconds per round")
    parser.add_argument(
        "--warmup", type=int, default=2, help="generate: seconds of unrecorded load per target"
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="generate: connections of the load generator"
    )
    parser.add_argument("--threads", type=int, default=1, help="generate: wrk threads")
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "python"),
        default="wrk",
        help="generate: wrk, or bench/loadgen.py where wrk cannot be installed",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="the max_tokens every call asks for"
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=300,
        help="stream: streams per target, round and phase (sequential, then concurrent)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="stream: streams open at once when concurrent"
    )
    parser.add_argument(
        "--stream-warmup",
        type=int,
        default=30,
        help="stream: unrecorded streams per target and phase first",
    )
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="CPU both servers are pinned to (taskset)"
    )
    parser.add_argument(
        "--client-cpu", type=int, default=1, help="CPU wrk and the stream client are pinned to"
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="write the results here")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for both servers (over the lifted limits), e.g. "
        "--set LLM_TOKENS_PER_MINUTE=100000; repeatable",
    )
    parser.add_argument(
        "--profile",
        dest="profile_dir",
        type=Path,
        help="generate: after the measured rounds, one more service round under py-spy, "
        "its flame graph written into this folder (not counted)",
    )
    args = parser.parse_args(argv)

    for name in ("rounds", "duration", "connections", "threads", "streams", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("warmup", "stream_warmup"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} cannot be negative")
    if args.threads > args.connections:
        parser.error("--threads cannot exceed --connections (wrk needs a connection each)")
    if not 1 <= args.max_tokens <= 4096:
        parser.error("--max-tokens must be within 1 and 4096 (the demo model's most)")
    run_options = Options(
        modes=(MODE,),
        scenarios=(),
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        json_path=args.json_path,
        # Scale-out only, which this runner does not measure.
        postgres="",
        database="",
        redis_url="",
        settings=parse_settings(parser, args.settings),
        profile_dir=args.profile_dir,
        profile_format="flamegraph",
        profile_all_threads=False,
        loadgen=args.loadgen,
    )
    return LlmOptions(
        run=run_options,
        streams=args.streams,
        concurrency=args.concurrency,
        stream_warmup=args.stream_warmup,
        max_tokens=args.max_tokens,
    )


def llm_settings(options: LlmOptions, workdir: Path) -> dict[str, str]:
    """bench/run.py's embedded settings, the per-user limits lifted, and `--set` last."""
    return service_settings(MODE, options.run, workdir) | LIFTED_LIMITS | options.run.settings


def generate_body(options: LlmOptions, *, stream: bool) -> str:
    body: dict[str, Any] = {"prompt": PROMPT, "max_tokens": options.max_tokens}
    if stream:
        body["stream"] = True
    return json.dumps(body)


# --------------------------------------------------------------------------- generate


def generate_scenario(options: LlmOptions) -> Scenario:
    # bench/run.py's Scenario names its own four scenarios; this one is a fifth, which
    # its driver and report use only as a label.
    return Scenario(
        name=cast(ScenarioName, "generate"),
        method="POST",
        service_path=GENERATE_PATH,
        bare_path=BARE_GENERATE_PATH,
        baseline="bare JWT check + fixed completion",
        body=generate_body(options, stream=False),
    )


def check_generate(targets: dict[TargetName, Target]) -> None:
    """Both answer 200 with the same fields and the same text, or the ratio would
    compare different answers."""
    answers: dict[TargetName, dict[str, Any]] = {
        name: check_target(target, 200) for name, target in targets.items()
    }
    service, bare = answers["service"], answers["bare"]
    if service.keys() != bare.keys():
        raise BenchError(f"the two answers differ in shape:\nservice {service}\nbare    {bare}")
    if service["text"] != bare["text"] or service["provider"] != "demo":
        raise BenchError(
            f"the service answered {service['text']!r} from {service['provider']!r}, the bare "
            f"app {bare['text']!r}: the bench prompt and bare_app.COMPLETION_TEXT must match"
        )


def print_generate(scenario: Scenario, summary: dict[str, Any], rounds: int) -> None:
    print_table(MODE, scenario, summary, rounds)
    ratios = summary["ratio_service_over_bare"]["per_round"]
    out.print(f"{scenario.name}: per round: " + ", ".join(f"{r:.3f}" for r in ratios))


# --------------------------------------------------------------------------- stream


class StreamFailed(Exception):
    """A stream that did not answer as it should."""


@dataclass(frozen=True)
class Timing:
    first_delta: float  # seconds from sending the request to the end of the first delta
    whole: float  # to the end of the stream


async def one_stream(client: httpx.AsyncClient, target: Target) -> Timing:
    headers = authorization(target.token) | {"Content-Type": JSON_TYPE}
    started = time.perf_counter()
    first: float | None = None
    received = b""
    async with client.stream("POST", target.path, content=target.body, headers=headers) as answer:
        if answer.status_code != 200:
            text = (await answer.aread()).decode(errors="replace")
            raise StreamFailed(f"answered {answer.status_code}: {text[:200]}")
        async for chunk in answer.aiter_raw():
            received += chunk
            if first is None:
                at = received.find(DELTA)
                if at >= 0 and received.find(b"\n\n", at) >= 0:
                    first = time.perf_counter()
    ended = time.perf_counter()
    if first is None or not received.endswith(DONE):
        raise StreamFailed(f"a stream without a delta or a done event: {received[-300:]!r}")
    return Timing(first - started, ended - started)


@dataclass
class Tally:
    timings: list[Timing] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def run_streams(
    client: httpx.AsyncClient, target: Target, count: int, concurrency: int
) -> Tally:
    """`count` streams, `concurrency` of them open at any time."""
    tally = Tally()
    numbers = iter(range(count))

    async def opener() -> None:
        for _ in numbers:  # shared: each opener takes the next stream to open
            try:
                tally.timings.append(await one_stream(client, target))
            except (httpx.HTTPError, StreamFailed) as exc:
                tally.errors.append(repr(exc) if isinstance(exc, httpx.HTTPError) else str(exc))

    await asyncio.gather(*(opener() for _ in range(concurrency)))
    return tally


@dataclass
class StreamSample:
    """One phase's streams against one target."""

    round: int
    streams: int
    streams_per_s: float
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    whole_p50_ms: float
    whole_p99_ms: float
    errors: int
    server_cpu: float  # CPU seconds of the server per second of the phase
    client_cpu: float  # the same for this process, the client


async def stream_sample(
    round_: int, client: httpx.AsyncClient, target: Target, count: int, concurrency: int
) -> tuple[StreamSample, list[str]]:
    server_before = process_cpu_seconds(target.server.pid)
    client_before = time.process_time()
    started = time.monotonic()
    tally = await run_streams(client, target, count, concurrency)
    elapsed = time.monotonic() - started
    if not tally.timings:
        raise BenchError(f"every stream to {target.name} failed: {tally.errors[0]}")
    first = [t.first_delta * 1000 for t in tally.timings]
    whole = [t.whole * 1000 for t in tally.timings]
    sample = StreamSample(
        round=round_,
        streams=len(tally.timings),
        streams_per_s=len(tally.timings) / elapsed,
        ttfb_p50_ms=percentile(first, 0.50),
        ttfb_p99_ms=percentile(first, 0.99),
        whole_p50_ms=percentile(whole, 0.50),
        whole_p99_ms=percentile(whole, 0.99),
        errors=len(tally.errors),
        server_cpu=(process_cpu_seconds(target.server.pid) - server_before) / elapsed,
        client_cpu=(time.process_time() - client_before) / elapsed,
    )
    return sample, tally.errors


@dataclass
class PhaseResult:
    phase: Phase
    concurrency: int
    samples: dict[TargetName, list[StreamSample]] = field(
        default_factory=lambda: {"service": [], "bare": []}
    )
    warnings: list[str] = field(default_factory=list)

    def ratios(self, figure: Callable[[StreamSample], float]) -> list[float]:
        pairs = zip(self.samples["service"], self.samples["bare"], strict=True)
        return [figure(s) / figure(b) for s, b in pairs if figure(b) > 0]


def read_events(raw: str) -> list[tuple[str, Any]]:
    """A whole server-sent answer as (event, data) pairs."""
    events = []
    for block in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event", ""), json.loads(fields.get("data", "null"))))
    return events


async def check_streams(
    clients: dict[TargetName, httpx.AsyncClient], targets: dict[TargetName, Target]
) -> None:
    """One stream of each by hand: deltas of the same text, then usage and done."""
    texts: dict[TargetName, str] = {}
    for name, target in targets.items():
        headers = authorization(target.token) | {"Content-Type": JSON_TYPE}
        answer = await clients[name].post(target.path, content=target.body, headers=headers)
        if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            raise BenchError(f"{name} answered {answer.status_code}: {answer.text[:300]}")
        events = read_events(answer.text)
        kinds = [kind for kind, _ in events]
        deltas = [data["text"] for kind, data in events if kind == "delta"]
        if not deltas or kinds[-2:] != ["usage", "done"] or len(deltas) != len(kinds) - 2:
            raise BenchError(f"{name} streamed {kinds}: expected deltas, usage and done")
        texts[name] = "".join(deltas)
    if texts["service"] != texts["bare"]:
        raise BenchError(f"the two apps streamed different answers: {texts}")


@contextmanager
def pinned_here(cpu: int) -> Iterator[None]:
    """This thread (the stream client's event loop) on `cpu` only, for a while."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


async def measure_streams(
    targets: dict[TargetName, Target], options: LlmOptions
) -> dict[Phase, PhaseResult]:
    concurrency: dict[Phase, int] = {"sequential": 1, "concurrent": options.concurrency}
    results = {phase: PhaseResult(phase, concurrency[phase]) for phase in PHASES}
    limits = httpx.Limits(
        max_connections=options.concurrency, max_keepalive_connections=options.concurrency
    )
    clients = {
        name: httpx.AsyncClient(
            base_url=target.server.url, limits=limits, timeout=STREAM_TIMEOUT_SECONDS
        )
        for name, target in targets.items()
    }
    rounds = options.run.rounds
    try:
        await check_streams(clients, targets)
        if options.stream_warmup:
            say(f"stream: warming up ({options.stream_warmup} streams per target and phase)")
            for phase in PHASES:
                for name, target in targets.items():
                    await run_streams(
                        clients[name], target, options.stream_warmup, concurrency[phase]
                    )
        for round_ in range(1, rounds + 1):
            order: tuple[TargetName, ...] = (
                ("service", "bare") if round_ % 2 else ("bare", "service")
            )
            for phase in PHASES:
                result = results[phase]
                for name in order:
                    sample, errors = await stream_sample(
                        round_, clients[name], targets[name], options.streams, concurrency[phase]
                    )
                    result.samples[name].append(sample)
                    say(
                        f"stream {phase:10} {round_}/{rounds} {name:7} "
                        f"{sample.streams_per_s:6.0f} streams/s  TTFB p50 "
                        f"{sample.ttfb_p50_ms:6.2f} p99 {sample.ttfb_p99_ms:6.2f} ms  "
                        f"whole p50 {sample.whole_p50_ms:6.2f} ms  cpu {sample.server_cpu:4.0%} "
                        f"client {sample.client_cpu:4.0%}"
                    )
                    note_stream_trouble(result, name, sample, errors)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients.values()))
    return results


def note_stream_trouble(
    result: PhaseResult, name: TargetName, sample: StreamSample, errors: list[str]
) -> None:
    problems = []
    if errors:
        problems.append(f"{len(errors)} streams failed (the first: {errors[0]})")
    if sample.client_cpu >= CLIENT_BUSY:
        problems.append(
            f"the client used {sample.client_cpu:.0%} of its CPU: it may be the bottleneck"
        )
    for problem in problems:
        message = f"round {sample.round}, {name}: {problem}"
        result.warnings.append(message)
        say(f"stream {result.phase}: {message}", "yellow")


def stream_targets(
    servers: dict[TargetName, Server], user: Account, options: LlmOptions
) -> dict[TargetName, Target]:
    body = generate_body(options, stream=True)
    return {
        "service": Target("service", servers["service"], GENERATE_PATH, user.token, "POST", body),
        "bare": Target("bare", servers["bare"], BARE_STREAM_PATH, user.token, "POST", body),
    }


def run_event_loop(coroutine: Awaitable[dict[Phase, PhaseResult]]) -> dict[Phase, PhaseResult]:
    async def main() -> dict[Phase, PhaseResult]:
        return await coroutine

    try:
        import uvloop  # noqa: PLC0415 -- optional; it comes with uvicorn[standard]
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


# --------------------------------------------------------------------------- report

FIGURES: dict[str, Callable[[StreamSample], float]] = {
    "ttfb_p50": lambda s: s.ttfb_p50_ms,
    "ttfb_p99": lambda s: s.ttfb_p99_ms,
    "whole_p50": lambda s: s.whole_p50_ms,
}


def summarize_phase(result: PhaseResult) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for name, samples in result.samples.items():
        targets[name] = {
            "median_streams_per_s": median([s.streams_per_s for s in samples]),
            "median_ttfb_p50_ms": median([s.ttfb_p50_ms for s in samples]),
            "median_ttfb_p99_ms": median([s.ttfb_p99_ms for s in samples]),
            "median_whole_p50_ms": median([s.whole_p50_ms for s in samples]),
            "median_whole_p99_ms": median([s.whole_p99_ms for s in samples]),
            "median_server_cpu": median([s.server_cpu for s in samples]),
            "median_client_cpu": median([s.client_cpu for s in samples]),
            "errors": sum(s.errors for s in samples),
            "rounds": [asdict(s) for s in samples],
        }
    ratios = {}
    for figure, of in FIGURES.items():
        per_round = result.ratios(of)
        ratios[f"{figure}_service_over_bare"] = {"per_round": per_round, **spread(per_round)}
    return {
        "phase": result.phase,
        "concurrency": result.concurrency,
        "targets": targets,
        **ratios,
        "warnings": result.warnings,
    }


def print_phase(summary: dict[str, Any], rounds: int) -> None:
    phase = summary["phase"]
    rows = [
        (
            name,
            f"{figures['median_streams_per_s']:.1f}",
            f"{figures['median_ttfb_p50_ms']:.2f}",
            f"{figures['median_ttfb_p99_ms']:.2f}",
            f"{figures['median_whole_p50_ms']:.2f}",
            f"{figures['median_whole_p99_ms']:.2f}",
            f"{figures['median_server_cpu']:.0%}",
            f"{figures['median_client_cpu']:.0%}",
            str(figures["errors"]),
        )
        for name, figures in summary["targets"].items()
    ]
    out.print(
        figures_table(
            f"{MODE} stream, {phase} ({summary['concurrency']} at a time): POST "
            f"{GENERATE_PATH} stream=true vs bare fixed SSE, median of {rounds} rounds",
            (
                "target",
                "streams/s",
                "TTFB p50 ms",
                "TTFB p99 ms",
                "whole p50 ms",
                "whole p99 ms",
                "server CPU",
                "client CPU",
                "errors",
            ),
            rows,
        )
    )
    for figure, label in (
        ("ttfb_p50", "TTFB p50"),
        ("ttfb_p99", "TTFB p99"),
        ("whole_p50", "whole stream p50"),
    ):
        ratio = summary[f"{figure}_service_over_bare"]
        per_round = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
        out.print(
            f"stream {phase}: {label} service/bare: median {ratio['median']:.2f}, "
            f"min {ratio['min']:.2f}, max {ratio['max']:.2f} (per round: {per_round})"
        )
    if summary["warnings"]:
        out.print(f"[yellow]stream {phase}: {len(summary['warnings'])} warning(s):[/yellow]")
        for warning in summary["warnings"]:
            out.print(f"  {warning}", markup=False, highlight=False)


def ledger_check(base_url: str, user: Account) -> dict[str, Any]:
    """What the service holds of the run: the calls in its usage ledger and the user's
    credits, which free calls leave as they were."""
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        usage = client.get(USAGE_PATH, params={"limit": 1}, headers=authorization(user.token))
        me = client.get(ME_PATH, headers=authorization(user.token))
    if usage.status_code != 200 or me.status_code != 200:
        raise BenchError(f"usage answered {usage.status_code}, me {me.status_code}")
    return {"ledger": usage.json()["totals"], "credits": me.json()["credits"]}


# --------------------------------------------------------------------------- run


@dataclass
class Results:
    generate: ScenarioResult | None = None
    streams: dict[Phase, PhaseResult] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)


def run_servers(
    options: LlmOptions, tools: Tools, results: Results, settings: dict[str, str], workdir: Path
) -> None:
    env = clean_env(settings)
    cli(env, workdir, "migrate")
    cpu = options.run.server_cpu
    servers: dict[TargetName, Server] = {
        "service": Server("service", service_command(tools, cpu, SERVICE_APP), env, workdir),
        "bare": Server(
            "bare",
            service_command(tools, cpu, "--app-dir", str(BENCH_DIR), "bare_app:create_app"),
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
        credits_before = ledger_check(service.url, user)["credits"]

        scenario = generate_scenario(options)
        targets = targets_of(scenario, servers, user, settings, workdir)
        check_generate(targets)
        results.generate = measure(MODE, scenario, targets, options.run, tools)

        with pinned_here(options.run.client_cpu):
            results.streams = run_event_loop(
                measure_streams(stream_targets(servers, user, options), options)
            )
        results.service = {"credits_before": credits_before, **ledger_check(service.url, user)}
    except BenchError as exc:
        raise BenchError(
            f"{exc}\n--- service log ---\n{service.log_tail()}\n--- bare log ---\n{bare.log_tail()}"
        ) from exc
    finally:
        for server in (service, bare):
            server.stop()


def print_service(service: dict[str, Any]) -> None:
    ledger = service["ledger"]
    out.print(
        f"usage ledger: {ledger['calls']} calls, {ledger['prompt_tokens']} prompt and "
        f"{ledger['completion_tokens']} completion tokens, {ledger['credits_charged']} credits "
        f"charged; the user's credits {service['credits_before']} before, "
        f"{service['credits']} after"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report: dict[str, Any] = {}

    def run_all() -> None:
        tools = find_tools(options.run)
        meta = metadata_of(options.run, tools)
        meta["options"] = {k: v for k, v in meta["options"].items() if k != "scenarios"} | {
            "streams": options.streams,
            "concurrency": options.concurrency,
            "stream_warmup": options.stream_warmup,
            "max_tokens": options.max_tokens,
        }
        report["meta"] = meta
        results = Results()
        with tempfile.TemporaryDirectory(prefix="promptstack-bench-llm-") as tmp:
            workdir = Path(tmp)
            settings = llm_settings(options, workdir)
            report["settings"] = {k: v for k, v in settings.items() if k != "SECRET_KEY"}
            try:
                run_servers(options, tools, results, settings, workdir)
            finally:
                # Whatever was measured before a failure is still reported.
                if results.generate is not None:
                    report["generate"] = summarize_scenario(results.generate)
                report["stream"] = {p: summarize_phase(r) for p, r in results.streams.items()}
                report["service"] = results.service
        rounds = options.run.rounds
        if results.generate is not None:
            print_generate(results.generate.scenario, report["generate"], rounds)
        for summary in report["stream"].values():
            print_phase(summary, rounds)
        if results.service:
            print_service(results.service)

    try:
        return exit_code(run_all)
    finally:
        if options.run.json_path is not None and "generate" in report:
            write_json(options.run.json_path, rounded(report))
            console.print(f"Results written to {options.run.json_path}")


if __name__ == "__main__":
    sys.exit(main())
