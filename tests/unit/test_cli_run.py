"""`allocation run` starts the processes; preparing the servers is a step of its own."""

from __future__ import annotations

import argparse

import pytest

from allocation.config import settings_from
from allocation.entrypoints.cli import processes


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    monkeypatch.setattr(processes, "prepare", lambda *_: made.append("prepare") or 0)
    monkeypatch.setattr(processes.supervisor, "run", lambda commands: made.append("run") or 0)
    return made


def test_run_neither_migrates_nor_registers(calls: list[str]) -> None:
    processes.run_all(settings_from(), argparse.Namespace(prepare=False), [])
    assert calls == ["run"]


def test_run_prepares_first_when_told_to(calls: list[str]) -> None:
    processes.run_all(settings_from(), argparse.Namespace(prepare=True), [])
    assert calls == ["prepare", "run"]
