"""`--num_workers=0`: one worker per CPU this process may use, read from its affinity and the
CPU quota of its cgroup (v1 and v2), as a container sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_server import cpu_quota


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text("".join(line + "\n" for line in mounts))
    return proc


def v2(tmp_path: Path, path: str, limits: dict[str, str]) -> Path:
    root = tmp_path / "unified"
    for directory, limit in limits.items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory / "cpu.max").write_text(limit + "\n")
    return fake_proc(tmp_path, f"0::{path}\n",
                     [f"41 31 0:38 / {root} rw,relatime - cgroup2 cgroup2 rw"])


@pytest.mark.parametrize("limits, affinity, cpus", [
    ({"": "max 100000"}, 8, 8),
    ({"": "200000 100000"}, 8, 2),
    ({"": "250000 100000"}, 8, 2),  # 2.5 CPUs: a worker per whole CPU
    ({"": "50000 100000"}, 8, 1),  # never fewer than one
    ({"": "800000 100000"}, 4, 4),  # the affinity mask caps a larger quota
    ({"": "max 100000", "pod": "300000 100000", "pod/ctr": "max 100000"}, 16, 3),
    ({"": "max 100000", "pod": "300000 100000", "pod/ctr": "100000 100000"}, 16, 1),
])
def test_the_lowest_cgroup_v2_quota_on_the_way_up_caps_the_affinity(
        tmp_path: Path, limits: dict[str, str], affinity: int, cpus: int) -> None:
    path = "/pod/ctr" if "pod/ctr" in limits else "/"
    assert cpu_quota.usable_cpus(proc=v2(tmp_path, path, limits), affinity=affinity) == cpus


@pytest.mark.parametrize("quota, period, cpus", [
    ("-1", "100000", 6),
    ("400000", "100000", 4),
    ("150000", "100000", 1),
])
def test_a_cgroup_v1_cfs_quota_caps_the_affinity(tmp_path: Path, quota: str, period: str,
                                                 cpus: int) -> None:
    root = tmp_path / "cpu,cpuacct"
    container = root / "kubepods" / "pod1"
    container.mkdir(parents=True)
    (container / "cpu.cfs_quota_us").write_text(quota + "\n")
    (container / "cpu.cfs_period_us").write_text(period + "\n")
    proc = fake_proc(tmp_path, "4:memory:/kubepods/pod1\n2:cpu,cpuacct:/kubepods/pod1\n0::/\n",
                     [f"32 31 0:29 / {root} rw,relatime - cgroup cgroup rw,cpu,cpuacct",
                      "35 31 0:32 / /nowhere rw,relatime - cgroup cgroup rw,memory"])
    assert cpu_quota.usable_cpus(proc=proc, affinity=6) == cpus


def test_a_cgroup_mounted_from_inside_is_read_relative_to_its_mount_root(tmp_path: Path) -> None:
    """Without a cgroup namespace the container's own cgroup is the root of what it mounts."""
    root = tmp_path / "cpu"
    root.mkdir()
    (root / "cpu.cfs_quota_us").write_text("200000\n")
    (root / "cpu.cfs_period_us").write_text("100000\n")
    proc = fake_proc(tmp_path, "1:cpu:/docker/abc\n",
                     [f"32 31 0:29 /docker/abc {root} rw - cgroup cgroup rw,cpu"])
    assert cpu_quota.usable_cpus(proc=proc, affinity=8) == 2


def test_without_readable_cgroups_the_affinity_counts(tmp_path: Path) -> None:
    assert cpu_quota.usable_cpus(proc=tmp_path / "missing", affinity=3) == 3
    assert cpu_quota.usable_cpus() >= 1
