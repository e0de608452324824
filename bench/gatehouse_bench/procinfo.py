"""CPU time and resident memory of server processes, read from /proc (Linux only).

A server's CPU is the run time of each of its threads to the nanosecond, from
/proc/<pid>/task/<tid>/schedstat (`tree_runtime_seconds`). utime+stime of /proc/<pid>/stat come
in clock ticks (10 ms each) and are truncated per reading: a block of 30 chat messages used
about 7 ticks of server CPU, so each block's figure could be off by a quarter. Run time misses a
thread that exits within the block (its time goes with it); the servers' thread pools keep their
threads. Ticks still decide when a server has gone quiet (`meters.Meters.quiesce`), and
measure Redis, whose one process serves the whole machine.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may itself hold spaces or parentheses.
    head, _, rest = raw.rpartition(")")
    return [head.split("(", 1)[1], *rest.split()]


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in _PROC.iterdir() if entry.name.isdigit()]


def process_tree(root: int) -> list[int]:
    """The root and every live descendant (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[2]), []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def own_cpu_seconds() -> float:
    """utime+stime of the calling process (the load driver, the floor's relay)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pids: Iterable[int]) -> float:
    return sum(cpu_by_pid(pids).values())


def tree_cpu_seconds(root: int | None) -> float:
    return cpu_seconds(process_tree(root)) if root else 0.0


def tree_runtime_seconds(root: int | None) -> float:
    """CPU seconds of every live thread of the root and its descendants, to the nanosecond."""
    return _tree_sum(root, _threads_runtime)


def tree_rss_mib(root: int | None) -> float:
    """Resident set size of the tree, from statm (pages); shared pages count in each process."""
    return _tree_sum(root, _rss_mib)


def _tree_sum(root: int | None, read: Callable[[int], float | None]) -> float:
    """`read` summed over the root and its descendants; a process gone meanwhile reads None."""
    if not root:
        return 0.0
    return sum(read(pid) or 0.0 for pid in process_tree(root))


def _threads_runtime(pid: int) -> float | None:
    try:
        tasks = [int(task.name) for task in (_PROC / str(pid) / "task").iterdir()]
    except OSError:
        return None
    return sum(runtime_by_pid(tasks).values())


def _rss_mib(pid: int) -> float | None:
    try:
        return int((_PROC / str(pid) / "statm").read_text().split()[1]) * _PAGE_MIB
    except (OSError, IndexError, ValueError):
        return None


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """utime+stime of each process: fields 14 and 15 of stat, at index 12 and 13 here (the
    list starts at the command name, field 2)."""
    found = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            found[pid] = (int(fields[12]) + int(fields[13])) * _TICK_S
    return found


def runtime_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds of single-threaded processes, or of threads by their id, to the nanosecond
    (first field of schedstat). For the database backends: dozens of processes each using a few
    milliseconds would all read 0 in stat's whole ticks, which are truncated per process."""
    found = {}
    for pid in pids:
        try:
            found[pid] = int((_PROC / str(pid) / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return found


def pids_named(prefix: str) -> list[int]:
    """The processes whose command name starts with `prefix` ("redis-server", "postgres")."""
    found = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[0].startswith(prefix):
            found.append(pid)
    return found


def redis_pids() -> list[int]:
    """Redis serves the whole machine; its CPU is read whole and reported as indicative."""
    return pids_named("redis-server")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy, all cores together (first line of /proc/stat:
    everything but idle and iowait)."""
    fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) * _TICK_S
