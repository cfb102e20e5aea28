"""The HTTP protocol `promptstack serve` runs: uvicorn's httptools one, with a bounded head.

Why: httptools (llhttp) sets no limit on a request line or a header. It appends to a
header until its line ends, so one client could make the process hold gigabytes, and
uvicorn adds no bound of its own, nor any limit on how long a client may take to send a
head (its keep-alive timeout only runs between requests, so a slow client holds its
connection for ever). This protocol counts each head's bytes before the parser sees them,
and refuses a line or a head longer than `Settings` allows (431, or 414 for the request
line) and a head slower than `request_head_timeout_seconds` (408), with a problem
document, then closes the connection; the app never sees such a request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from promptstack.core.settings import Settings
from promptstack.http.problems import PROBLEM_MEDIA_TYPE, Problem, problem_type

_LINE_BREAKS = frozenset(b"\r\n")
_BLANK_LINES = (b"\n", b"\r\n")


@dataclass(frozen=True)
class RequestHeadLimits:
    """How large a request head may be, and how long a client may take to send it."""

    head_bytes: int  # the request line and every header line, with their line breaks
    line_bytes: int  # any one of those lines, with its line break
    timeout_seconds: float  # from a connection's opening, or a request's first byte

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestHeadLimits:
        return cls(
            head_bytes=settings.max_request_head_bytes,
            line_bytes=settings.max_request_header_line_bytes,
            timeout_seconds=settings.request_head_timeout_seconds,
        )


def bounded_http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """What to pass uvicorn as `http=`: its httptools protocol, bound to our limits."""
    # uvicorn only calls `http` (with config, server_state, app_state, _loop) to make each
    # connection's protocol, and pickles it into the processes of `--workers` and
    # `--reload`. A class made here would not pickle; a partial of a module-level class
    # does, so it stands in for the class uvicorn's annotation asks for.
    limits = RequestHeadLimits.from_settings(settings)
    return cast("type[asyncio.Protocol]", partial(BoundedHeadProtocol, limits=limits))


class BoundedHeadProtocol(HttpToolsProtocol):
    """httptools, fed only head bytes that were counted first, and on a deadline.

    While a head is being read, each chunk is scanned line by line and handed to the
    parser only up to the head's end; a line or a head over its limit is refused before
    the parser has buffered it. The body is then fed up to its end (its Content-Length,
    or line by line when chunked, since a chunked body ends at a line break), so the next
    request's head on the connection is counted from its first byte as well.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: RequestHeadLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        # Set by the parser's callbacks: True from one message's end to the next head's end.
        self._reading_head = True
        self._body_remaining: int | None = None  # a Content-Length body's bytes yet to come
        self._reset_head()

    def _reset_head(self) -> None:
        self._head_bytes = 0
        self._line_bytes = 0
        self._line_start = b""  # the current line's first two bytes, to tell a blank one
        self._complete_lines = 0  # none yet: the line being read is the request line

    # Protocol interface

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._start_head_timer()  # a connection that never sends a head is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        position = 0
        while position < len(data) and self._speaking_http():
            if self._reading_head:
                head_end = self._count_head(data, position)
                if self._refused:
                    return
                stop = len(data) if head_end is None else head_end
            else:
                stop = self._body_piece_end(data, position)
            super().data_received(data[position:stop])
            position = stop

    # Parser callbacks

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._reading_head = False
        self._reset_head()
        self._body_remaining = self._content_length()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._body_remaining = None

    # The head's bytes

    def _count_head(self, data: bytes, start: int) -> int | None:
        """Count the head's bytes in `data[start:]` and say where the head ends (None: it
        goes on past this chunk). At the first line or head over a limit, refuse."""
        limits = self.limits
        if self._head_bytes == 0:
            self._start_head_timer()  # a request on a kept-alive connection: its first byte
            if data[start] not in _LINE_BREAKS:
                # The common case, a whole head shorter than both limits in one chunk,
                # needs no line-by-line look.
                shortest = min(limits.line_bytes, limits.head_bytes)
                blank = data.find(b"\r\n\r\n", start, start + shortest)
                if blank >= 0:
                    self._head_bytes = blank + 4 - start
                    self._complete_lines = 1
                    return blank + 4
        position = start
        while position < len(data):
            newline = data.find(b"\n", position)
            stop = len(data) if newline < 0 else newline + 1
            self._line_bytes += stop - position
            self._head_bytes += stop - position
            self._line_start = (self._line_start + data[position : min(stop, position + 2)])[:2]
            if self._line_bytes > limits.line_bytes or self._head_bytes > limits.head_bytes:
                self._refuse_oversized_head()
                return None
            position = stop
            if newline < 0:
                break
            blank = self._line_start in _BLANK_LINES
            self._line_bytes, self._line_start = 0, b""
            if not blank:
                self._complete_lines += 1
            elif self._complete_lines:
                return stop
            # A blank line before the request line is skipped, as the parser does.
        return None

    def _body_piece_end(self, data: bytes, start: int) -> int:
        """Where to stop feeding the body so that its end falls at the end of a piece."""
        if self._body_remaining:
            stop = min(len(data), start + self._body_remaining)
            self._body_remaining -= stop - start
            return stop
        # A chunked body ends just after a line feed: stop at each, to see whether it did.
        newline = data.find(b"\n", start)
        return len(data) if newline < 0 else newline + 1

    def _content_length(self) -> int | None:
        """The body's length as declared; None for a chunked body (or none at all)."""
        declared = dict(self.headers)
        if b"transfer-encoding" in declared or b"content-length" not in declared:
            return None
        try:
            # The parser has already refused a malformed or repeated Content-Length.
            return int(declared[b"content-length"])
        except ValueError:
            return None

    def _speaking_http(self) -> bool:
        # After a WebSocket upgrade the transport belongs to another protocol.
        return not self.transport.is_closing() and self.transport.get_protocol() is self

    # Refusals

    def _refuse_oversized_head(self) -> None:
        limits = self.limits
        if self._complete_lines == 0:
            limit = min(limits.line_bytes, limits.head_bytes)
            self._refuse(414, "URI Too Long", f"The request line is longer than {limit} bytes.")
        elif self._line_bytes > limits.line_bytes:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"A header line is longer than {limits.line_bytes} bytes.",
            )
        else:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"The request line and headers are longer than {limits.head_bytes} bytes.",
            )

    def _refuse(self, status: int, title: str, detail: str) -> None:
        """Answer with a problem document and close; the parser sees nothing more."""
        self._refused = True
        self._stop_head_timer()
        self.logger.warning("Request head refused (%d): %s", status, detail)
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered, and nothing
            # may be written into its answer: read no more, and close once it is sent.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        code = title.lower().replace(" ", "_")
        body = Problem(
            type=problem_type(code), title=title, status=status, detail=detail, code=code
        ).model_dump_json()  # request_id null: the app, which names requests, never saw it
        encoded = body.encode()
        head = [f"HTTP/1.1 {status} {title}\r\n".encode("ascii")]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            f"content-type: {PROBLEM_MEDIA_TYPE}\r\n".encode("ascii"),
            f"content-length: {len(encoded)}\r\n".encode("ascii"),
            b"connection: close\r\n\r\n",
            encoded,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()

    # The head's deadline

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.timeout_seconds, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing was asked, so nothing is answered
            return
        seconds = f"{self.limits.timeout_seconds:g}"
        self._refuse(408, "Request Timeout", f"The request head took over {seconds} seconds.")
