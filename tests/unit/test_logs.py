import json
import logging

from allocation.adapters.logs import JsonFormatter, RepeatLimiter


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("allocation.test", logging.WARNING, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_json_line_carries_the_context_it_was_given() -> None:
    line = json.loads(
        JsonFormatter().format(record("dead-lettering", message_id="id:m-1", trace_id="ab" * 16))
    )
    assert line["message"] == "dead-lettering"
    assert (line["level"], line["logger"]) == ("WARNING", "allocation.test")
    assert (line["message_id"], line["trace_id"]) == ("id:m-1", "ab" * 16)
    assert "event_id" not in line


def test_a_repeated_line_is_held_back_then_counted() -> None:
    limiter = RepeatLimiter(every_s=60)
    assert limiter.filter(record("127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed"))
    held = [
        limiter.filter(record(f"127.0.0.1:9092/1: Connect failed after {n} ms")) for n in range(5)
    ]
    assert held[0] is True  # another line
    assert held[1:] == [False] * 4
    assert limiter.filter(record("something else entirely"))


def test_a_held_back_line_comes_back_with_its_count() -> None:
    limiter = RepeatLimiter(every_s=0.0)
    limiter._seen.clear()
    first, again = record("broker down 1"), record("broker down 2")
    assert limiter.filter(first)
    limiter._every_s = 60
    assert not limiter.filter(record("broker down 3"))
    limiter._every_s = 0.0
    assert limiter.filter(again)
    assert "(1 like it held back)" in again.getMessage()
