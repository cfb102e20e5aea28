"""Request heads are bounded in size and time by the server, before the app sees them.

A real `promptstack serve` on the embedded SQLite database, spoken to over raw sockets: a
line or a head over its limit is a problem document and a closed connection, a head at the
limits is served, a client that dribbles its head is cut off (on a fresh connection and on
a kept-alive one) while others are served, and a flood of header bytes is refused early.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.processes import ServiceProcess

LINE_LIMIT = 4096  # MAX_REQUEST_HEADER_LINE_BYTES, each line with its CRLF
HEAD_LIMIT = 12288  # MAX_REQUEST_HEAD_BYTES, the request line to the blank line that ends it
HEAD_TIMEOUT = 2.0  # REQUEST_HEAD_TIMEOUT_SECONDS
WAIT = 30.0  # a bound on any wait for the server, never a measurement

REQUEST_LINE = b"GET /health HTTP/1.1\r\n"
HOST = b"Host: 127.0.0.1\r\n"


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=WAIT)
        sock.settimeout(WAIT)
        return sock


def _serve(tmp: Path, *options: str) -> Iterator[Server]:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'heads.db'}",
        "LOG_LEVEL": "WARNING",
        "MAX_REQUEST_HEADER_LINE_BYTES": str(LINE_LIMIT),
        "MAX_REQUEST_HEAD_BYTES": str(HEAD_LIMIT),
        "REQUEST_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
    }
    process = ServiceProcess(env, tmp, serve=options)
    try:
        process.wait_ready()
        yield Server("127.0.0.1", process.port)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("heads"))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/problem+json", self.headers
        document: dict[str, Any] = json.loads(self.body)
        assert document["status"] == self.status
        return document


def _parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return Answer(int(status_line.split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (within WAIT)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed while our request was still coming in
            return received
        if not chunk:
            return received
        received += chunk


def _read_answer(sock: socket.socket) -> Answer:
    """One answer on a connection that stays open (its body sized by Content-Length)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    answer = _parse(received)
    length = int(answer.headers["content-length"])
    body = answer.body
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        body += chunk
    assert len(body) == length, "more than one answer to one request"
    return Answer(answer.status, answer.headers, body)


def _refusal(server: Server, request: bytes) -> Answer:
    """Send the whole request, then read the answer up to the server closing the socket."""
    with server.connect() as sock:
        # Refused before it was all sent, the answer still waits to be read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return _parse(_read_until_closed(sock))


def _header(name: str, length: int) -> bytes:
    """A header line of exactly `length` bytes, CRLF included."""
    start = f"{name}: ".encode()
    return start + b"a" * (length - len(start) - 2) + b"\r\n"


def _headers_filling(room: int) -> bytes:
    """Header lines, each within the line limit, of exactly `room` bytes in all."""
    lines = []
    while room > LINE_LIMIT:
        lines.append(_header(f"X-Fill-{len(lines)}", LINE_LIMIT))
        room -= LINE_LIMIT
    lines.append(_header(f"X-Fill-{len(lines)}", room))
    return b"".join(lines)


def _assert_refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["connection"] == "close"
    problem = answer.problem()
    assert problem["code"] == code
    assert problem["type"] == "/problems/" + code.replace("_", "-")
    assert problem["title"]
    assert problem["detail"]


def test_a_header_line_over_the_limit_is_431_and_the_connection_closes(server: Server) -> None:
    request = REQUEST_LINE + HOST + _header("X-Long", LINE_LIMIT + 1) + b"\r\n"
    answer = _refusal(server, request)
    _assert_refused(answer, 431, "request_header_fields_too_large")
    assert str(LINE_LIMIT) in answer.problem()["detail"]


def test_headers_each_within_the_line_limit_but_over_the_total_are_431(server: Server) -> None:
    room = HEAD_LIMIT + 1 - len(REQUEST_LINE + HOST) - 2
    request = REQUEST_LINE + HOST + _headers_filling(room) + b"\r\n"
    assert len(request) == HEAD_LIMIT + 1
    answer = _refusal(server, request)
    _assert_refused(answer, 431, "request_header_fields_too_large")
    assert str(HEAD_LIMIT) in answer.problem()["detail"]


def test_a_request_line_over_the_line_limit_is_414(server: Server) -> None:
    target = b"/health?q=" + b"a" * LINE_LIMIT
    answer = _refusal(server, b"GET " + target + b" HTTP/1.1\r\n" + HOST + b"\r\n")
    _assert_refused(answer, 414, "uri_too_long")


def test_requests_at_the_limits_are_served_one_after_another(server: Server) -> None:
    at_line_limit = REQUEST_LINE + HOST + _header("X-Long", LINE_LIMIT) + b"\r\n"
    room = HEAD_LIMIT - len(REQUEST_LINE + HOST) - 2
    at_head_limit = REQUEST_LINE + HOST + _headers_filling(room) + b"\r\n"
    assert len(at_head_limit) == HEAD_LIMIT
    with server.connect() as sock:
        # Twice each on one kept-alive connection: every request gets the whole allowance.
        for request in (at_line_limit, at_head_limit, at_head_limit, at_line_limit):
            sock.sendall(request)
            answer = _read_answer(sock)
            assert answer.status == 200, answer
            assert json.loads(answer.body) == {"status": "ok"}


def _dribble(sock: socket.socket, server: Server) -> bytes:
    """Send a head one byte at a time, never finishing it, while another client asks for
    /health, until the server answers or closes; return what it sent."""
    endless_head = REQUEST_LINE + HOST + b"X-Slow: " + b"a" * LINE_LIMIT
    with httpx.Client(base_url=f"http://{server.host}:{server.port}", timeout=WAIT) as other:
        deadline = time.monotonic() + WAIT
        for byte in endless_head:
            assert time.monotonic() < deadline, "the slow client was never cut off"
            # Waiting for the server to speak, a fifth of a second at most: the pace.
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                return _read_until_closed(sock)
            sock.sendall(bytes([byte]))
            assert other.get("/health").status_code == 200
    pytest.fail("the whole head was accepted, a byte at a time")


def test_a_client_that_dribbles_its_head_is_cut_off_while_others_are_served(
    server: Server,
) -> None:
    with server.connect() as sock:
        answer = _parse(_dribble(sock, server))
    _assert_refused(answer, 408, "request_timeout")


def test_a_dribbled_head_on_a_kept_alive_connection_is_cut_off_too(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(REQUEST_LINE + HOST + b"\r\n")
        assert _read_answer(sock).status == 200
        answer = _parse(_dribble(sock, server))
    _assert_refused(answer, 408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    with server.connect() as sock:
        assert _read_until_closed(sock) == b""


def test_fifty_mebibytes_of_header_are_refused_early(server: Server) -> None:
    flood = 50 * 1024 * 1024
    piece = b"a" * 65536
    sent, closed = 0, False
    with server.connect() as sock:
        sock.sendall(REQUEST_LINE + HOST + b"X-Flood: ")
        try:
            while sent < flood:
                sent += sock.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        answer = _read_until_closed(sock)
    # What was sent is the limit, what the server read at once, and the two sockets'
    # kernel buffers; a server reading on would have taken all fifty.
    assert closed, f"all {sent} bytes were accepted"
    assert sent < 16 * 1024 * 1024, sent
    assert answer == b"" or _parse(answer).status == 431


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("heads-workers"), "--workers", "2")


def test_the_limits_hold_in_every_worker_process(workers: Server) -> None:
    for _ in range(4):  # with --workers the first process only supervises; these serve
        answer = _refusal(workers, REQUEST_LINE + HOST + _header("X-Long", LINE_LIMIT + 1))
        _assert_refused(answer, 431, "request_header_fields_too_large")
