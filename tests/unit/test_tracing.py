from allocation.adapters import tracing
from testkit.processes import run_snippet

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-01"


def test_without_an_exporter_the_callers_trace_still_travels() -> None:
    span = tracing.start_process("allocate", PARENT, {})
    carried = tracing.traceparent_of(span)
    assert carried is not None
    assert carried.split("-")[1] == TRACE


def test_without_an_exporter_an_events_trace_still_travels() -> None:
    carried = tracing.traceparent_of(tracing.start_send("line-allocated", "sku", PARENT))
    assert carried is not None
    assert carried.split("-")[1] == TRACE


def test_no_trace_in_gives_no_trace_out() -> None:
    assert tracing.traceparent_of(tracing.start_process("allocate", None, {})) is None
    assert tracing.traceparent_of(tracing.start_send("line-allocated", "sku", None)) is None
    assert tracing.checked("garbage") is None
    assert tracing.checked(PARENT) == PARENT


def test_the_console_exporter_prints_each_span_under_the_callers_trace() -> None:
    script = (
        "from allocation.adapters import tracing\n"
        "tracing.configure('allocation-test', 'console', None)\n"
        f"span = tracing.start_process('allocate', {PARENT!r}, {{}})\n"
        "print('child', tracing.traceparent_of(span))\n"
        "span.end()\n"
    )
    out = run_snippet(script)
    assert out.returncode == 0, out.stderr
    assert '"name": "process allocate"' in out.stdout
    assert f"0x{TRACE}" in out.stdout
    child = next(line for line in out.stdout.splitlines() if line.startswith("child"))
    assert child.split("-")[1] == TRACE
    assert child.split("-")[2] != "b7ad6b7169203331"  # a span of its own, recorded


def test_with_an_exporter_a_message_or_event_without_a_trace_starts_one() -> None:
    # Without the SDK such a message gets no span at all; with it, it is a trace's root.
    script = (
        "from allocation.adapters import tracing\n"
        "tracing.configure('allocation-test', 'console', None)\n"
        "span = tracing.start_process('allocate', None, {})\n"
        "print('root', tracing.traceparent_of(span))\n"
        "span.end()\n"
        "sent = tracing.start_send('line-allocated', 'sku', None)\n"
        "print('sent', tracing.traceparent_of(sent))\n"
        "sent.end()\n"
    )
    out = run_snippet(script)
    assert out.returncode == 0, out.stderr
    root = next(line for line in out.stdout.splitlines() if line.startswith("root "))
    assert root != "root None"
    assert '"name": "process allocate"' in out.stdout
    sent = next(line for line in out.stdout.splitlines() if line.startswith("sent "))
    assert sent != "sent None"
    assert '"name": "send line-allocated"' in out.stdout


def test_the_api_adds_no_http_spans_of_its_frameworks_own_beside_the_projects() -> None:
    # FastAPI (0.142 on) traces each request itself once a provider is installed, in conventions
    # of its choosing; the project's tracing is pinned to one version of OpenTelemetry's.
    script = (
        "from fastapi.testclient import TestClient\n"
        "from allocation.adapters import tracing\n"
        "from allocation.bootstrap import bootstrap\n"
        "from allocation.config import settings_from\n"
        "from allocation.entrypoints.api import create_app\n"
        "from tests.fakes import FakeUnitOfWork\n"
        "tracing.configure('allocation-test', 'console', None)\n"
        "uow = FakeUnitOfWork()\n"
        "client = TestClient(create_app(bootstrap(settings_from(), uow_factory=lambda: uow)))\n"
        "body = {'ref': 'b1', 'sku': 'LAMP', 'qty': 5}\n"
        "print('status', client.post('/batches', json=body).status_code)\n"
        "print('status', client.get('/livez').status_code)\n"
    )
    out = run_snippet(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("status 20") == 2
    assert '"name":' not in out.stdout, out.stdout
