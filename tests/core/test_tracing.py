"""With an OTLP endpoint configured, request spans reach a collector over the real wire."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from promptstack.bootstrap import bootstrap
from promptstack.main import create_app
from tests.conftest import make_settings


class Collector(HTTPServer):
    """Just enough of an OpenTelemetry collector: it keeps every export it is sent."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        super().__init__(("127.0.0.1", 0), _Receive)


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.exports.append(request)
        self.server.content_types.append(self.headers["Content-Type"])
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


async def test_request_spans_are_exported(
    collector: Collector, sqlite_template: Path, tmp_path: Path
) -> None:
    database = tmp_path / "traced.db"
    shutil.copyfile(sqlite_template, database)
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    settings = make_settings(
        f"sqlite+aiosqlite:///{database}",
        tmp_path,
        otel_exporter_otlp_endpoint=endpoint,
        otel_service_name="promptstack-test",
    )
    container = bootstrap(settings)
    app = create_app(container=container)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/v1/features")).status_code == 200
    app.state.tracer_provider.force_flush()
    app.state.tracer_provider.shutdown()
    await container.aclose()

    assert collector.content_types == ["application/x-protobuf"] * len(collector.exports)
    spans = [
        (resource.resource, span)
        for export in collector.exports
        for resource in export.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = {span.name for _, span in spans}
    assert "GET /api/v1/features" in names
    resource = spans[0][0]
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == "promptstack-test"


def test_no_endpoint_means_no_tracing(tmp_path: Path) -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path))
    assert app.state.tracer_provider is None
