"""How many CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota.

`os.cpu_count()` counts the machine: a container limited to 2 CPUs on a 64-core node sees 64
there. The quota is what the kernel enforces (CFS bandwidth): cgroup v2's `cpu.max` ("200000
100000" is 2 CPUs, "max" none) or cgroup v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1:
none), read in this process's cgroup and every cgroup above it, where the lowest quota wins.
A fractional quota rounds down, never below 1 (as Go's automaxprocs does): a process on part
of a CPU is throttled, not faster, and each worker costs a copy of every model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_V2 = "cgroup2"


def usable_cpus(*, proc: Path = Path("/proc/self"), affinity: int | None = None) -> int:
    """CPUs of the affinity mask, at most the CPU quota; `proc` and `affinity` are for tests."""
    allowed = len(os.sched_getaffinity(0)) if affinity is None else affinity
    quota = min((_quota(directory, kind) for directory, kind in _cpu_cgroups(proc)),
                default=math.inf)
    return max(1, allowed if math.isinf(quota) else min(allowed, math.floor(quota)))


def _cpu_cgroups(proc: Path) -> list[tuple[Path, str]]:
    """The directories of this process's CPU cgroup and its ancestors, each with its kind."""
    try:
        memberships = (proc / "cgroup").read_text().splitlines()
        mounts = (proc / "mountinfo").read_text().splitlines()
    except OSError:
        return []
    paths: dict[str, str] = {}  # "cgroup2", or "cpu" for the v1 hierarchy holding it
    for line in memberships:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            paths[_V2] = path
        elif "cpu" in controllers.split(","):
            paths["cpu"] = path
    found: list[tuple[Path, str]] = []
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        mount_root, mount_point = fields.split()[3:5]
        fs_type, _, super_options = tail.split()[:3]
        kind = _V2 if fs_type == _V2 else (
            "cpu" if fs_type == "cgroup" and "cpu" in super_options.split(",") else None)
        if kind is None or kind not in paths:
            continue
        relative = os.path.relpath(paths[kind], mount_root)
        if relative.startswith(".."):
            continue  # this process's cgroup lies outside what is mounted here
        directory = Path(mount_point) / relative
        while True:
            found.append((directory, kind))
            if directory == Path(mount_point):
                break
            directory = directory.parent
    return found


def _quota(directory: Path, kind: str) -> float:
    """CPUs the cgroup at `directory` may use (inf: no quota, or nothing readable)."""
    try:
        if kind == _V2:
            limit, period = (directory / "cpu.max").read_text().split()[:2]
        else:
            limit = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return math.inf
    if limit == "max" or int(limit) <= 0 or int(period) <= 0:
        return math.inf
    return int(limit) / int(period)
