"""CPU time by group of processes over a measurement window, exited processes included.

For the window, each group's processes (the broker, PostgreSQL's postmaster and children, the
consumer, ...) go into a cgroup of their own in the cgroup v2 hierarchy, where the kernel adds up
the CPU of every process in it (``cpu.stat``): children forked meanwhile land there too, and a
backend that exits before the window closes still counts. The groups enable no controller, so
nothing is limited or rescheduled. When the window closes (also on Ctrl-C) every process goes back
to the cgroup it came from and the groups are removed; a benchmark killed outright leaves its
groups behind, and the next one moves their processes back to the root and removes them.

Without a writable cgroup v2 hierarchy (not root, no cgroup2 mount) it falls back to sampling
/proc, which misses processes that exit inside the window; ``method`` says which was used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Part of the broker's figure, not added to the total again: the CPU of the JVM's JIT compiler
# threads. A broker compiles its hot paths in its first minutes under load (and again after a
# restart), which a long-running broker no longer pays; it is shown apart so a run just after
# the stack started can be told from a warm one.
BROKER_JIT = "broker_jit"
PARTS = ("bench", BROKER_JIT)  # not the pipeline's own: left out of ``total``

Lister = Callable[[], list[int]]
Sample = dict[str, dict[int, float]]  # group -> pid (0 for a whole cgroup) -> CPU seconds
PREFIX = "allocation-bench-"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    """What ``Meter.window()`` measured, filled in as its block ends: the CPU seconds of each
    group over the block (``Meter.used``) and the groups left without a process by then."""

    used: dict[str, float] = field(default_factory=dict)
    emptied: list[str] = field(default_factory=list)

    def per_unit_us(self, units: int) -> dict[str, float]:
        return per_unit_us(self.used, units)


class Meter:
    """Samples each group's CPU; ``used(earlier, later)`` is seconds per group in between,
    plus ``bench`` (this process: producer and event reader) and ``machine`` (every CPU)."""

    method = "proc"

    def __init__(self, groups: dict[str, Lister]) -> None:
        self.groups = groups

    @contextmanager
    def window(self) -> Iterator[Window]:
        """The CPU over the ``with`` block; nothing is measured if the block raises."""
        taken = Window()
        before = self.sample()
        yield taken
        taken.used = self.used(before, self.sample())
        taken.emptied = self.emptied()

    def sample(self) -> Sample:
        sample = self._groups()
        sample["bench"] = {0: proc_seconds(os.getpid()) or 0.0}
        sample["machine"] = {0: machine_busy_seconds()}
        if "broker" in self.groups:
            sample[BROKER_JIT] = {pid: _jit_seconds(pid) for pid in self.groups["broker"]()}
        return sample

    def _groups(self) -> Sample:
        sample: Sample = {}
        for name, listed in self.groups.items():
            seconds = {pid: proc_seconds(pid) for pid in listed()}
            sample[name] = {pid: s for pid, s in seconds.items() if s is not None}
        return sample

    @staticmethod
    def used(earlier: Sample, later: Sample) -> dict[str, float]:
        # A pid born inside the window is counted from zero; one that died is lost (not so
        # with cgroups, where the whole group is one entry).
        return {
            name: sum(s - earlier[name].get(pid, 0.0) for pid, s in pids.items())
            for name, pids in later.items()
        }

    def emptied(self) -> list[str]:
        """Groups none of whose processes is left: a server restarted by someone else inside
        the window (its new process, outside the group, went unmeasured)."""
        return [
            name
            for name, listed in self.groups.items()
            if all(proc_seconds(pid) is None for pid in listed())
        ]

    def close(self) -> None:
        pass


class CgroupMeter(Meter):
    method = "cgroup2"

    def __init__(self, groups: dict[str, Lister], mount: Path) -> None:
        super().__init__(groups)
        self.mount = mount
        self.root = mount / f"{PREFIX}{os.getpid()}"
        self.homes: dict[int, Path] = {}  # pid -> the cgroup it came from
        self.group_homes: dict[str, Path] = {}  # for children forked inside the window
        self.root.mkdir()
        try:
            for name, listed in groups.items():
                (self.root / name).mkdir()
                # Twice: a child forked while its parent was being moved may have stayed behind.
                for _ in range(2):
                    for pid in listed():
                        self._enter(name, pid)
        except BaseException:
            self.close()
            raise

    def _enter(self, name: str, pid: int) -> None:
        home = self._home_of(pid)
        if home is None:
            return  # exited meanwhile
        self.homes.setdefault(pid, home)
        self.group_homes.setdefault(name, home)
        _move(pid, self.root / name)

    def _home_of(self, pid: int) -> Path | None:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        path = next((line[3:] for line in lines if line.startswith("0::")), "/")
        parts = [p for p in path.split("/") if p]
        # Already in a benchmark's group (ours: the second pass): its home is above that group.
        for n, part in enumerate(parts):
            if part.startswith(PREFIX):
                if part != self.root.name:
                    print(
                        f"warning: pid {pid} was in {part}: another benchmark measures the same"
                        " servers, and the CPU figures of both are wrong",
                        file=sys.stderr,
                    )
                parts = parts[:n]
                break
        return self.mount.joinpath(*parts)

    def _groups(self) -> Sample:
        return {name: {0: _usage_seconds(self.root / name)} for name in self.groups}

    def emptied(self) -> list[str]:
        return [name for name in self.groups if not _members(self.root / name)]

    def close(self) -> None:
        restore(self.root, lambda pid, name: self.homes.get(pid) or self.group_homes.get(name))


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM inside the block (or just before it, not yet handled) acts after it:
    the way back must not be cut short."""
    pending: list[int] = []
    try:
        previous = {
            s: signal.signal(s, lambda signum, _frame: pending.append(signum))
            for s in (signal.SIGINT, signal.SIGTERM)
        }
    except ValueError:  # not the main thread: signals are not handled here anyway
        previous = {}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending:
            signal.raise_signal(pending[0])


def restore(root: Path, home: Callable[[int, str], Path | None]) -> None:
    """Move every process under ``root`` to its home (the hierarchy's root if none), then
    remove the groups."""
    with signals_deferred():
        _restore(root, home)


def _restore(root: Path, home: Callable[[int, str], Path | None]) -> None:
    mount = root.parent
    groups = [g for g in root.iterdir() if g.is_dir()] if root.exists() else []
    for _ in range(20):  # processes may fork while they move
        left = False
        for group in groups:
            for pid in _members(group):
                left = True
                target = home(pid, group.name) or mount
                try:
                    _move(pid, target if target.exists() else mount)
                except OSError as exc:
                    print(
                        f"warning: could not move pid {pid} out of {group}: {exc}", file=sys.stderr
                    )
        if not left:
            break
        time.sleep(0.05)
    for group in [*groups, root]:
        try:
            group.rmdir()
        except OSError as exc:
            print(f"warning: could not remove {group}: {exc}", file=sys.stderr)


def remove_stale(mount: Path) -> None:
    """Groups of benchmarks that were killed outright: their processes back to the root."""
    for root in mount.glob(f"{PREFIX}*"):
        owner = root.name.removeprefix(PREFIX)
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            print(f"moving the processes of a killed benchmark out of {root}", file=sys.stderr)
            restore(root, lambda _pid, _name: None)


@contextmanager
def metered(groups: dict[str, Lister]) -> Iterator[Meter]:
    """A meter over ``groups`` (name -> function listing its pids) for the ``with`` block."""
    mount = cgroup2_mount()
    meter: Meter
    try:
        if mount is None:
            raise OSError(errno.ENOENT, "no cgroup2 hierarchy mounted")
        remove_stale(mount)
        meter = CgroupMeter(groups, mount)
    except OSError as exc:
        print(f"CPU from /proc samples (exited processes missed): {exc}", file=sys.stderr)
        meter = Meter(groups)
    try:
        yield meter
    finally:
        meter.close()


def per_unit_us(used: dict[str, float], units: int) -> dict[str, float]:
    """Microseconds of CPU per command (or request) by group; ``total`` is the pipeline's (the
    servers and the service), ``other`` what the rest of the machine used meanwhile."""
    us = {name: seconds / units * 1e6 for name, seconds in used.items()}
    machine = us.pop("machine")
    us["total"] = sum(v for name, v in us.items() if name not in PARTS)
    us["other"] = machine - us["total"] - us["bench"]
    return us


def cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent on anything but idling, since boot."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in first[1:8])
    return (user + nice + system + irq + softirq) / TICK


def _ticks(stat: Path) -> tuple[str, int]:
    """A process's or thread's name and user plus system CPU ticks, from its ``stat`` file."""
    name, fields = stat.read_text().split("(", 1)[1].rsplit(")", 1)
    values = fields.split()
    return name, int(values[11]) + int(values[12])


def proc_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of the process (all its threads); None once it exited."""
    try:
        return _ticks(Path(f"/proc/{pid}/stat"))[1] / TICK
    except OSError:
        return None


def _jit_seconds(pid: int) -> float:
    """CPU seconds of the JVM's compiler threads ("C1 CompilerThre", "C2 CompilerThre") in
    ``pid``; 0 for a process that has none or has exited."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                name, ticks = _ticks(task / "stat")
                if "CompilerThre" in name:
                    total += ticks
    return total / TICK


def _usage_seconds(group: Path) -> float:
    for line in (group / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    raise LookupError(f"no usage_usec in {group}/cpu.stat")


def _members(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _move(pid: int, group: Path) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited meanwhile
        (group / "cgroup.procs").write_text(str(pid))
