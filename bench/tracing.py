"""What tracing costs (issue 11): the end-to-end run without an exporter and with one.

Each run measures the pipeline twice, back to back: as shipped (no exporter configured: the
OpenTelemetry API's no-op provider, a span is a function call) and with
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a discard sink in the benchmark's own process, so
that the consumer and the relay make every span, batch it (``BatchSpanProcessor``) and post it
over OTLP/HTTP as they would to a collector. The sink counts the spans it received, to show they
were really exported. Apart from that, the cost of the no-op spans themselves is timed in this
process: what one command's two spans (the consumer's ``process``, the relay's ``send``) cost
when no exporter is configured.
"""

from __future__ import annotations

import time
from typing import Any

from bench import scenarios
from bench.environment import BenchDatabase
from bench.otlp_sink import DiscardSink

PIPELINE = ["consumer", "relay"]
# As shipped: whatever the caller's environment says, no exporter and no endpoint.
NO_EXPORTER = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
}
SPANS_PER_COMMAND = 2  # the consumer's `process allocate`, the relay's `send line-allocated`


def tracing_cost(db: BenchDatabase, sizes: scenarios.Sizes) -> dict[str, Any]:
    """One run: the e2e figure without an exporter, then with one, and the spans received."""
    with DiscardSink() as sink:
        off = scenarios.e2e(db, sizes, PIPELINE, NO_EXPORTER)
        stray = sink.take()[1]
        on = scenarios.e2e(db, sizes, PIPELINE, sink.env())
        exports, spans = sink.take()
    return {
        "off": off,
        "on": on,
        "spans_exported": spans,
        "spans_expected": sizes.commands * SPANS_PER_COMMAND,
        "exports": exports,
        "spans_without_exporter": stray,  # must stay 0: nothing leaves a process as shipped
        "noop_span_us_per_cmd": noop_span_us(),
    }


def noop_span_us(samples: int = 100_000) -> float:
    """CPU microseconds of one command's spans under the no-op provider (this process never
    installs the SDK): the consumer's and the relay's span started, its context read, ended."""
    from allocation.adapters import tracing

    # The consumer's attributes (allocation/entrypoints/inbound.py).
    attributes: dict[str, str | int] = {
        "messaging.kafka.offset": 1,
        "messaging.destination.partition.id": "0",
    }
    started = time.process_time()
    for _ in range(samples):
        span = tracing.start_process("allocate", None, attributes)
        tracing.traceparent_of(span)
        span.end()
        span = tracing.start_send("line-allocated", "sku", None)
        tracing.traceparent_of(span)
        span.end()
    return (time.process_time() - started) / samples * 1e6


def tracing_figures(summary: dict[str, Any]) -> dict[str, float]:
    """The figures of the medians: both sides, and what the exporter adds (on minus off)."""
    off, on = summary["off"], summary["on"]
    values = {
        "tracing_off_cmds_per_s": off["cmds_per_s"],
        "tracing_on_cmds_per_s": on["cmds_per_s"],
        "tracing_on_vs_off_cmds_per_s_pct": percent_change(off["cmds_per_s"], on["cmds_per_s"]),
    }
    for name in ("consumer", "relay", "total"):
        before, after = off["cpu_us_per_cmd"][name], on["cpu_us_per_cmd"][name]
        values[f"tracing_off_cpu_us_per_cmd_{name}"] = before
        values[f"tracing_on_cpu_us_per_cmd_{name}"] = after
        values[f"tracing_exporter_adds_cpu_us_per_cmd_{name}"] = after - before
    values["tracing_spans_exported_pct"] = (
        100 * summary["spans_exported"] / summary["spans_expected"]
    )
    values["tracing_noop_span_us_per_cmd"] = summary["noop_span_us_per_cmd"]
    return values


def percent_change(before: float, after: float) -> float:
    """How far ``after`` is from ``before``, in percent of ``before`` (negative: lower)."""
    return (after - before) / before * 100
