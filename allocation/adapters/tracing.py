"""OpenTelemetry traces across Kafka: a command's trace continues through the outbox to its events.

Spans follow OpenTelemetry's semantic conventions for messaging, version 1.27.0
(``messaging.operation.type`` ``process`` / ``send``). The trace context travels
as a W3C ``traceparent``: a command's header (Kafka or HTTP) is the parent of
its ``process <topic>`` span; the outbox row stores that span's context; the
relay's ``send <topic>`` span is its child and its context rides on the event.

With no exporter configured the API's no-op provider stays in place: a span
then costs a function call, yet a ``traceparent`` that arrives still travels on.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"
_PROPAGATOR = TraceContextTextMapPropagator()
# Whether ``configure`` installed the SDK. Without it a span records nothing, so a
# message or event that brings no trace context needs no span built at all
# (``start_process``, ``start_send``).
_exporting = False


def configure(service_name: str, exporter: str | None, otlp_endpoint: str | None) -> None:
    """Install the SDK when traces are to be exported: ``console``, or OTLP to an endpoint."""
    global _exporting
    if exporter in (None, "", "none") and not otlp_endpoint:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _exporting = True


@cache
def _tracer() -> trace.Tracer:
    # Asked once: each ``get_tracer`` looks the provider up in the environment, about a
    # tenth of the relay's CPU per event. Before ``configure`` the API hands out a proxy
    # that follows a provider installed later.
    return trace.get_tracer("allocation", schema_url=SCHEMA_URL)


def parent(traceparent: str | None) -> Context | None:
    """The context a W3C ``traceparent`` names, or None."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def checked(traceparent: str | None) -> str | None:
    """``traceparent`` if it names a valid trace context, else None."""
    return traceparent_of(trace.get_current_span(parent(traceparent) or Context()))


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of a span, None when it belongs to no trace."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def start_process(topic: str, traceparent: str | None, attributes: Mapping[str, str | int]) -> Span:
    """The span of applying one inbound message of ``topic``; the caller ends it."""
    if not traceparent and not _exporting:
        # What the no-op tracer would return, without its context lookups: a few
        # microseconds a command on the consumer's hot loop.
        return trace.INVALID_SPAN
    return _messaging_span("process", SpanKind.CONSUMER, topic, traceparent, attributes)


def start_send(topic: str, key: str, traceparent: str | None) -> Span:
    """The span of publishing one event to ``topic``; the caller ends it."""
    if not traceparent and not _exporting:  # as in start_process: the relay's per-row loop
        return trace.INVALID_SPAN
    attributes = {"messaging.kafka.message.key": key}
    return _messaging_span("send", SpanKind.PRODUCER, topic, traceparent, attributes)


def _messaging_span(
    operation: str,
    kind: SpanKind,
    topic: str,
    traceparent: str | None,
    attributes: Mapping[str, str | int],
) -> Span:
    return _tracer().start_span(
        f"{operation} {topic}",
        context=parent(traceparent),
        kind=kind,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": operation,
            "messaging.destination.name": topic,
            **attributes,
        },
    )
