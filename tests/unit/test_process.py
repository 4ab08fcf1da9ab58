"""What every long-running process does to itself before its loop starts."""

from __future__ import annotations

from testkit.processes import run_snippet


def test_settling_the_heap_freezes_what_exists_and_collects_the_young_less_often() -> None:
    # In a process of its own: the collector's settings are the whole interpreter's.
    script = (
        "import gc\n"
        "from allocation.entrypoints.process import GEN0_THRESHOLD, settle_heap\n"
        "before = gc.get_threshold()\n"
        "settle_heap()\n"
        "after = gc.get_threshold()\n"
        "assert gc.get_freeze_count() > 0, 'nothing frozen'\n"
        "assert after == (GEN0_THRESHOLD, *before[1:]), after\n"
        "assert GEN0_THRESHOLD > before[0]\n"
        "cycle = []\n"
        "cycle.append(cycle)\n"
        "del cycle\n"
        "assert gc.collect() >= 1, 'cycles are still collected'\n"
    )
    out = run_snippet(script)
    assert out.returncode == 0, out.stderr
