"""Log lines as people or machines read them, and librdkafka's own lines kept in proportion.

``LOG_FORMAT=json`` writes one JSON object per line with the time, level, logger
and message, plus ``event_id``, ``message_id``, ``correlation_id`` and
``trace_id`` when the code logging the line passed them (``extra=``).
librdkafka's lines come through Python logging (the client's ``logger``
setting); a broker outage repeats the same line many times a second, so a line
already logged is held back for ``LIBRDKAFKA_REPEAT_S`` and then logged once
with the count of the lines held back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

CONTEXT_FIELDS = ("event_id", "message_id", "correlation_id", "trace_id")
LIBRDKAFKA = logging.getLogger("librdkafka")
LIBRDKAFKA_REPEAT_S = 30.0


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class RepeatLimiter(logging.Filter):
    """Lets a given line through once per ``every_s`` seconds, noting how many it held back."""

    def __init__(self, every_s: float = LIBRDKAFKA_REPEAT_S) -> None:
        super().__init__()
        self._every_s = every_s
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # librdkafka's lines differ only in their numbers from one retry to the next.
        key = (record.levelno, "".join(c for c in record.getMessage() if not c.isdigit()))
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (-self._every_s, 0))
            if now - last < self._every_s:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:  # never a leak: old keys go
                self._seen.clear()
        if held:
            record.msg = f"{record.getMessage()} ({held} like it held back)"
            record.args = None
        return True


def configure(level: str, fmt: str) -> None:
    """Root logging at ``level`` in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per registry request is noise at INFO.
    for chatty in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    if not any(isinstance(f, RepeatLimiter) for f in LIBRDKAFKA.filters):
        LIBRDKAFKA.addFilter(RepeatLimiter())
