"""The stack's server processes, found the way ``stack/stack.sh`` finds them.

The broker and the registry by their command lines (a fixed token, then a path under
``STACK_HOME``); PostgreSQL's postmaster and every one of its children by their working
directory, the cluster's data directory. ``STACK_HOME`` defaults to the repository's ``.stack/``;
a worktree measuring another checkout's stack sets it (``STACK_HOME=/work/main/.stack``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Servers:
    """The pids of one stack's servers."""

    home: Path
    broker: int
    registry: int
    postmaster: int
    pg_data: Path

    def postgres(self) -> list[int]:
        """The postmaster first, then every process running in the data directory."""
        return [self.postmaster, *(p for p in in_directory(self.pg_data) if p != self.postmaster)]


def stack_home() -> Path:
    # Normalised but symlinks kept, as stack/common.sh does (`realpath -ms`): the servers'
    # command lines hold this spelling of the path.
    return Path(os.path.abspath(os.environ.get("STACK_HOME") or REPO_ROOT / ".stack"))


def find_servers(home: Path | None = None) -> Servers:
    """The running servers of the stack at ``home``; LookupError naming what is missing."""
    home = home or stack_home()
    # .stack/data/postgres is a symlink when the stack moved the cluster to /var/tmp.
    pg_data = (home / "data" / "postgres").resolve()
    kafka_props = str(home / "run" / "kafka.properties")
    registry_jars = str(home / "cache" / "apicurio-registry-app-")
    found: dict[str, int] = {}
    for pid, argv in processes():
        if _follows(argv, "kafka.Kafka", lambda a: a == kafka_props):
            found["broker"] = pid
        elif _follows(argv, "-jar", lambda a: a.startswith(registry_jars)):
            found["registry"] = pid
        elif "-D" in argv and Path(argv[0]).name == "postgres" and _cwd_is(pid, pg_data):
            found["postmaster"] = pid
    missing = {"broker", "registry", "postmaster"} - set(found)
    if missing:
        raise LookupError(
            f"no {', '.join(sorted(missing))} of the stack at STACK_HOME={home} is running "
            "(set STACK_HOME to the stack the benchmark talks to)"
        )
    return Servers(home, found["broker"], found["registry"], found["postmaster"], pg_data)


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process that can be read now."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        if raw:
            yield int(entry.name), raw.rstrip(b"\0").decode(errors="replace").split("\0")


def in_directory(directory: Path) -> list[int]:
    """Pids of the processes whose working directory is ``directory``."""
    return [pid for pid, _ in processes() if _cwd_is(pid, directory)]


def _follows(argv: list[str], token: str, matches: Callable[[str], bool]) -> bool:
    """Whether ``token`` is an argument and the one after it ``matches``."""
    return any(a == token and matches(b) for a, b in itertools.pairwise(argv))


def _cwd_is(pid: int, directory: Path) -> bool:
    try:
        return os.path.samefile(f"/proc/{pid}/cwd", directory)
    except OSError:
        return False
