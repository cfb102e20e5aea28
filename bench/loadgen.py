"""A small HTTP/1.1 keep-alive load generator on asyncio streams: the fallback for wrk.

`bench/run.py --loadgen python` runs it, pinned to the client CPU, when wrk cannot be
installed. It opens N connections, each sending the same request one after another for D
seconds (a GET, or `--method` with a `--body`, sent as `--content-type`), and prints one
JSON object: requests/sec, p50, p99, requests, non-2xx answers, socket errors.

Raw streams rather than httpx on purpose: on the machine this was written on, httpx's
AsyncClient with 32 connections reached ~200 requests/sec with its core at 100%, slower
than the service it would measure; these streams on uvloop kept up with wrk against the
bare app (~3,000 requests/sec) using under 20% of a core. `run.py` reports the client's
CPU either way, and warns when it nears a full core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    socket_errors: int = 0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request and read its whole answer; the status code."""
    writer.write(request)
    head = await reader.readuntil(HEADER_END)
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ConnectionError("an answer without Content-Length (chunked is not supported)")
    await reader.readexactly(length)
    return status


async def _connection(host: str, port: int, request: bytes, deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.socket_errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = await _exchange(reader, writer, request)
                tally.latencies.append(time.perf_counter() - started)
                if not 200 <= status < 400:
                    tally.non_2xx += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.socket_errors += 1
        finally:
            writer.close()


def _percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of sorted values, in milliseconds."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index] * 1000.0


def build_request(
    url: str, headers: list[str], method: str, body: str | None, content_type: str
) -> tuple[str, int, bytes]:
    """The host, port and bytes of the one request every connection sends over and over."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", *headers]
    payload = b""
    if body is not None:
        payload = body.encode()
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
    return host, port, "\r\n".join([*lines, "", ""]).encode() + payload


async def run(
    url: str,
    headers: list[str],
    connections: int,
    seconds: float,
    method: str = "GET",
    body: str | None = None,
    content_type: str = "application/json",
) -> dict[str, float]:
    host, port, request = build_request(url, headers, method, body, content_type)
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(host, port, request, deadline, tally) for _ in range(connections))
    )
    elapsed = time.monotonic() - started
    ordered = sorted(tally.latencies)
    return {
        "rps": len(ordered) / elapsed,
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "requests": len(ordered),
        "non_2xx": tally.non_2xx,
        "socket_errors": tally.socket_errors,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", help="the request body, sent with a Content-Length")
    parser.add_argument("--content-type", default="application/json", help="of the --body")
    args = parser.parse_args(argv)
    coroutine = run(
        args.url,
        args.header,
        args.connections,
        args.duration,
        method=args.method.upper(),
        body=args.body,
        content_type=args.content_type,
    )
    try:
        import uvloop  # noqa: PLC0415 -- optional; it comes with uvicorn[standard]
    except ImportError:
        result = asyncio.run(coroutine)
    else:
        result = uvloop.run(coroutine)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
