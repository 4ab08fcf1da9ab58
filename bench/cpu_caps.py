"""CPU caps for the scale-out figure: a cgroup v1 ``cpu`` group per capped process (CFS quota).

Each capped process goes into ``<mount>/allocation-bench-cap-<bench pid>/<name>``, whose
``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` is the share of one core it may use, and whose
``cpu.shares`` (weight) is high enough that it gets that share on a busy machine; threads and
children it starts later stay in the group. These groups live in the v1 ``cpu`` hierarchy only:
the v2 groups ``bench/cpu.py`` meters with are another hierarchy, so a process is both capped
here and metered there. ``close()`` (also on Ctrl-C or SIGTERM: see ``cpu.signals_deferred``)
moves every process still in a group back where it came from and removes the groups; a benchmark
killed outright leaves them, and the next one removes them (``remove_stale``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.cpu import signals_deferred

PREFIX = "allocation-bench-cap-"
PERIOD_US = 100_000
# The groups' weight: 8 times a process's default (1024). On a machine shared with other people's
# work a top-level group competes as one runnable task would; with this weight a capped consumer
# gets its quota when the machine is busy too, so the cap is also what it can count on.
SHARES = 8192


class CapsUnavailable(Exception):
    """No cgroup v1 ``cpu`` hierarchy this process can make groups in; the message says why."""


def quota_us(cores: float, period_us: int = PERIOD_US) -> int:
    """The CFS quota that lets a group use ``cores`` of a CPU (0.33: a third of one core)."""
    if cores <= 0:
        raise ValueError(f"a CPU cap must be above 0 cores, not {cores}")
    return max(1000, round(cores * period_us))  # the kernel's smallest quota is 1 ms


def cpu_mount(mounts: str) -> Path | None:
    """Where the v1 ``cpu`` controller is mounted, from the text of /proc/self/mounts."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return Path(fields[1])
    return None


def cpu_path(proc_cgroup: str) -> str:
    """The ``cpu`` group a process is in, from the text of /proc/<pid>/cgroup ("/" if none)."""
    for line in proc_cgroup.splitlines():
        _id, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path or "/"
    return "/"


def parse_stat(text: str) -> dict[str, int]:
    """cpu.stat of a v1 group: nr_periods, nr_throttled, throttled_time (ns), ..."""
    return {name: int(value) for name, value in (line.split() for line in text.splitlines())}


class CpuCaps:
    """The capped groups of one benchmark process under ``mount``."""

    def __init__(self, mount: Path, owner: int | None = None) -> None:
        self.mount = mount
        self.root = mount / f"{PREFIX}{owner or os.getpid()}"
        self.homes: dict[int, Path] = {}  # pid -> the group it came from
        self.cores: dict[str, float] = {}

    def cap(self, name: str, cores: float) -> Path:
        """A group named ``name`` whose processes together may use ``cores`` of a CPU."""
        group = self.root / name
        group.mkdir(parents=True, exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota_us(cores)))
        (group / "cpu.shares").write_text(str(SHARES))
        self.cores[name] = cores
        return group

    def enter(self, name: str, pid: int) -> None:
        """Move process ``pid`` (every thread of it) into group ``name``."""
        try:
            home = self.mount / cpu_path(Path(f"/proc/{pid}/cgroup").read_text()).lstrip("/")
        except OSError:
            return  # exited meanwhile
        self.homes.setdefault(pid, home)
        with contextlib.suppress(ProcessLookupError):
            (self.root / name / "cgroup.procs").write_text(str(pid))

    def throttling(self, name: str) -> dict[str, int]:
        return parse_stat((self.root / name / "cpu.stat").read_text())

    def describe(self) -> list[str]:
        """The set-up, one line per group, as the benchmark prints it."""
        return [
            f"{self.root / name}: cpu.cfs_quota_us={quota_us(cores)} "
            f"cpu.cfs_period_us={PERIOD_US} cpu.shares={SHARES} ({cores:.2f} of a core), pids "
            f"{' '.join(str(p) for p in members(self.root / name)) or '(none)'}"
            for name, cores in self.cores.items()
        ]

    def close(self) -> None:
        """Every process back to where it came from; the groups removed."""
        with signals_deferred():
            remove(self.root, lambda pid: self.homes.get(pid))


def members(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove(root: Path, home: Callable[[int], Path | None]) -> None:
    """Move the processes of ``root``'s groups to ``home(pid)`` (the hierarchy's root if None),
    then remove the groups and ``root``."""
    mount = root.parent
    groups = [g for g in root.iterdir() if g.is_dir()] if root.exists() else []
    for group in groups:
        for pid in members(group):
            target = home(pid)
            target = target if target is not None and target.exists() else mount
            try:
                with contextlib.suppress(ProcessLookupError):
                    (target / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                print(f"warning: could not move pid {pid} out of {group}: {exc}", file=sys.stderr)
    for group in [*groups, root]:
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            print(f"warning: could not remove {group}: {exc}", file=sys.stderr)


def stale_roots(mount: Path) -> list[Path]:
    """The groups of benchmarks that were killed outright (their owner's pid is gone)."""
    return [
        root
        for root in sorted(mount.glob(f"{PREFIX}*"))
        if root.name.removeprefix(PREFIX).isdigit()
        and not Path(f"/proc/{root.name.removeprefix(PREFIX)}").exists()
    ]


@contextmanager
def capped(mounts_file: Path = Path("/proc/self/mounts")) -> Iterator[CpuCaps]:
    """``CpuCaps`` for the block, removed afterwards; CapsUnavailable saying why if none can be
    made (no v1 ``cpu`` mount, not root, a read-only hierarchy)."""
    mount = cpu_mount(mounts_file.read_text())
    if mount is None:
        raise CapsUnavailable("no cgroup v1 `cpu` controller is mounted (see /proc/self/mounts)")
    for root in stale_roots(mount):
        print(f"removing the CPU caps of a killed benchmark: {root}", file=sys.stderr)
        remove(root, lambda _pid: None)
    caps = CpuCaps(mount)
    try:
        caps.root.mkdir()
    except OSError as exc:
        raise CapsUnavailable(f"cannot make a cgroup under {mount}: {exc}") from exc
    try:
        yield caps
    finally:
        caps.close()
