"""Reaching the real servers from tests; a missing server fails the run with how to start it."""

from __future__ import annotations

import pytest

START_HINT = (
    "Start the native stack with `make stack-up` "
    "(or, with Docker, `docker compose -f docker-compose.kafka.yml up -d`)."
)


def server_missing(what: str, where: str, error: BaseException) -> None:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    pytest.fail(f"{what} is not reachable at {where}: {first_line}\n{START_HINT}", pytrace=False)
