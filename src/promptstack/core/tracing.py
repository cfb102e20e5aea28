"""Optional OpenTelemetry tracing, on when an OTLP endpoint is configured.

FastAPI traces requests itself when it is given a tracer provider; this module builds
one that exports over OTLP/HTTP. The SDK and exporter are an extra
(`pip install 'promptstack[otel]'`), so a service without tracing carries neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptstack import __version__
from promptstack.core.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def tracer_provider(settings: Settings) -> TracerProvider | None:
    """A provider exporting to `OTEL_EXPORTER_OTLP_ENDPOINT`, or None when it is unset."""
    if settings.otel_exporter_otlp_endpoint is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'promptstack[otel]'"
        ) from exc
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.version": __version__,
                "deployment.environment": settings.environment,
            }
        )
    )
    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider
