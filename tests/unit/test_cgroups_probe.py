"""probe_cgroups and plan_placement on fake /proc/self/cgroup + mountinfo texts over fake cgroup trees (pure v2, pure v1, hybrid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxer.mechanisms.cgroups.probe import (
    FIX_HINT,
    CgroupHost,
    LimitPlacement,
    plan_placement,
    probe_cgroups,
)

ALL = {"memory_max": 1 << 26, "pids_max": 16, "cpu": {"quota_us": 25000, "period_us": 100000}}
SCOPE = "/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope"


def fake(tmp: Path, own: str, mounts: list[tuple[str, str, str, str]], files: dict[str, str]) -> CgroupHost:
    """Probe a fake host: `mounts` are (fstype, root, mount point below tmp, super options)."""
    lines = [
        f"{30 + i} 23 0:{40 + i} {root} {tmp}{mp} rw,nosuid shared:{i} - {fstype} {fstype} {opts}"
        for i, (fstype, root, mp, opts) in enumerate(mounts)
    ]
    (tmp / "mountinfo").write_text("22 1 0:21 / /sys rw - sysfs sysfs rw\n" + "\n".join(lines) + "\n")
    (tmp / "cgroup").write_text(own)
    for rel, text in files.items():
        path = tmp / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for _, _, mp, _ in mounts:  # every own path below every mount point: the probe checks W_OK on them
        for path in {line.split(":", 2)[2] for line in own.splitlines()}:
            (tmp / mp.lstrip("/") / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return probe_cgroups(str(tmp / "cgroup"), str(tmp / "mountinfo"))


def v2_host(tmp: Path, controllers: str, subtree: str, procs: str) -> CgroupHost:
    """A systemd host on pure cgroup2, the launcher in a scope of the delegated user@1000.service."""
    d = f"/sys/fs/cgroup{SCOPE}"
    return fake(
        tmp,
        f"0::{SCOPE}\n",
        [("cgroup2", "/", "/sys/fs/cgroup", "rw,nsdelegate,memory_recursiveprot")],
        {f"{d}/cgroup.controllers": controllers, f"{d}/cgroup.subtree_control": subtree,
         f"{d}/cgroup.procs": procs, f"{d}/cgroup.type": "domain\n"},
    )  # fmt: skip


def test_pure_v2_delegated_scope_is_found_through_mountinfo(tmp_path: Path):
    """The launcher's v2 cgroup dir, its delegated and enabled controllers come from mountinfo + cgroup files."""
    host = v2_host(tmp_path, "cpu memory pids\n", "\n", "4242\n")
    assert host.layout == "v2"
    assert host.v2_mount == f"{tmp_path}/sys/fs/cgroup"
    assert host.v2_dir == f"{tmp_path}/sys/fs/cgroup{SCOPE}"
    assert (host.v2_available, host.v2_enabled) == ({"cpu", "memory", "pids"}, frozenset())
    assert host.v2_writable and not host.v2_can_enable
    assert dict(host.v1_dirs) == {} and not host.memsw


def test_pure_v2_scope_with_processes_cannot_enforce_and_says_why(tmp_path: Path):
    """A delegated scope holding the launcher cannot enable controllers: placement names the rule and the fix."""
    host = v2_host(tmp_path, "cpu memory pids\n", "\n", "4242\n")
    placement = plan_placement(host, ALL)
    assert [p.backend for p in placement.limits] == ["none", "none", "none"]
    assert placement.unenforced[0] == LimitPlacement(
        "memory",
        "none",
        f"the memory limit cannot be enforced: the memory controller is delegated to {host.v2_dir} but not enabled "
        "in its cgroup.subtree_control, and cannot be: that cgroup has a process of its own, this launcher "
        "(cgroup2 'no internal processes' rule: only a cgroup without processes may enable controllers for "
        "its children), and no cgroup v1 memory hierarchy is mounted",
        f"sandboxer creates its leaf below {host.v2_dir} and never moves itself out of it, so delegating that "
        "cgroup (`systemd-run --user --scope -p Delegate=yes …`) does not help by itself: the launcher would "
        "still be one of its processes. cgroup2 lets only a cgroup without processes (or the hierarchy root) "
        "enable controllers for its children. Let systemd hold the same limits around the whole run "
        "(`systemd-run --user --scope -p MemoryMax=67108864 -p TasksMax=16 -p CPUQuota=25% -- sandboxer run "
        "--best-effort …`), run sandboxer from the cgroup2 root or on a host with cgroup v1 controllers, or set "
        "compat.cgroups: best-effort",
    )
    assert host.v2_procs == 1


@pytest.mark.parametrize("subtree", ["cpu memory pids\n", "\n"], ids=["enabled", "enable-able"])
def test_pure_v2_empty_delegated_cgroup_enforces_everything_on_v2(tmp_path: Path, subtree: str):
    """With no processes of its own, a delegated cgroup enforces all three limits on v2."""
    host = v2_host(tmp_path, "cpu memory pids\n", subtree, "")
    assert host.v2_can_enable
    placement = plan_placement(host, ALL)
    assert placement.on("v2") == ("memory", "pids", "cpu") and placement.unenforced == ()


def test_pure_v2_undelegated_controller_message(tmp_path: Path):
    """A controller missing from cgroup.controllers (systemd's default user delegation) is reported by name."""
    host = v2_host(tmp_path, "memory pids\n", "memory pids\n", "")
    placement = plan_placement(host, ALL)
    assert (placement.backend("memory"), placement.backend("pids"), placement.backend("cpu")) == ("v2", "v2", "none")
    (cpu,) = placement.unenforced
    assert cpu.reason == (
        f"the cpu limit cannot be enforced: the cpu controller is not delegated to {host.v2_dir} "
        "(cgroup.controllers: memory pids), and no cgroup v1 cpu hierarchy is mounted"
    )
    assert cpu.hint == FIX_HINT


def test_pure_v1_with_comounted_cpu_cpuacct(tmp_path: Path):
    """Pure v1: each controller's own dir, cpu and cpuacct share one co-mounted hierarchy, memsw detected."""
    own = (
        "12:pids:/user.slice/user-1000.slice/session-2.scope\n"
        "8:cpu,cpuacct:/user.slice\n"
        "5:memory:/user.slice/user-1000.slice/session-2.scope\n"
        "3:freezer:/\n"
        "1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n"
    )
    mounts = [
        ("cgroup", "/", "/sys/fs/cgroup/systemd", "rw,xattr,name=systemd"),
        ("cgroup", "/", "/sys/fs/cgroup/cpu,cpuacct", "rw,cpu,cpuacct"),
        ("cgroup", "/", "/sys/fs/cgroup/memory", "rw,memory"),
        ("cgroup", "/", "/sys/fs/cgroup/pids", "rw,pids"),
        ("cgroup", "/", "/sys/fs/cgroup/freezer", "rw,freezer"),
    ]
    mem = "/sys/fs/cgroup/memory/user.slice/user-1000.slice/session-2.scope"
    host = fake(tmp_path, own, mounts, {f"{mem}/memory.memsw.limit_in_bytes": "9223372036854771712\n"})
    root = f"{tmp_path}/sys/fs/cgroup"
    assert host.layout == "v1" and host.v2_dir is None
    assert dict(host.v1_dirs) == {
        "cpu": f"{root}/cpu,cpuacct/user.slice",
        "cpuacct": f"{root}/cpu,cpuacct/user.slice",
        "memory": f"{tmp_path}{mem}",
        "pids": f"{root}/pids/user.slice/user-1000.slice/session-2.scope",
        "freezer": f"{root}/freezer",
    }
    assert host.memsw and all(host.v1_writable.values())
    assert plan_placement(host, ALL).on("v1") == ("memory", "pids", "cpu")


HYBRID_OWN = (
    "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
    "4:memory:/process_api/abc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"
)
HYBRID_MOUNTS = [
    ("cgroup", "/", "/sys/fs/cgroup/cpu", "rw,cpu"),
    ("cgroup", "/", "/sys/fs/cgroup/cpuacct", "rw,cpuacct"),
    ("cgroup", "/", "/sys/fs/cgroup/memory", "rw,memory"),
    ("cgroup", "/", "/sys/fs/cgroup/freezer", "rw,freezer"),
    ("cgroup", "/", "/sys/fs/cgroup/pids", "rw,pids"),
    ("cgroup", "/", "/sys/fs/cgroup/systemd", "rw,name=systemd"),
    ("cgroup2", "/", "/sys/fs/cgroup/unified", "rw"),
]
HYBRID_FILES = {"/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n",
                "/sys/fs/cgroup/unified/cgroup.subtree_control": "\n",
                "/sys/fs/cgroup/unified/cgroup.procs": "1\n2\n"}  # fmt: skip


def test_hybrid_layout_like_the_ci_machines(tmp_path: Path):
    """Hybrid: v1 controllers enforce the limits; cgroup2 (root, no controllers) is there for placement and kill."""
    host = fake(tmp_path, HYBRID_OWN, HYBRID_MOUNTS, HYBRID_FILES)
    assert host.layout == "hybrid"
    assert host.v2_dir == host.v2_mount == f"{tmp_path}/sys/fs/cgroup/unified"
    assert host.v2_available == {"hugetlb"} and host.v2_writable
    assert host.v2_can_enable  # the root cgroup (no cgroup.type) is exempt from the rule
    assert host.v1_dirs["memory"] == f"{tmp_path}/sys/fs/cgroup/memory/process_api/abc"
    assert host.v1_dirs["cpu"] == f"{tmp_path}/sys/fs/cgroup/cpu" and not host.memsw
    assert plan_placement(host, ALL).on("v1") == ("memory", "pids", "cpu")


def test_hybrid_without_v1_pids_cannot_enforce_pids(tmp_path: Path):
    """Hybrid with no pids hierarchy anywhere: the reason names both backends."""
    mounts = [m for m in HYBRID_MOUNTS if "pids" not in m[3]]
    host = fake(tmp_path, HYBRID_OWN, mounts, HYBRID_FILES)
    (pids,) = plan_placement(host, ALL).unenforced
    assert pids.reason == (
        f"the pids limit cannot be enforced: the pids controller is not delegated to {host.v2_dir} "
        "(cgroup.controllers: hugetlb), and no cgroup v1 pids hierarchy is mounted"
    )


def test_container_mount_root_and_escaped_mount_point(tmp_path: Path):
    """A cgroup2 mount of a subtree maps /proc/self/cgroup through its root; octal escapes are decoded."""
    own = "0::/kubepods/pod1/ctr/sub\n"
    host = fake(tmp_path, own, [("cgroup2", "/kubepods/pod1/ctr", "/sys/fs/my\\040cgroup", "rw")], {})
    assert host.v2_dir == f"{tmp_path}/sys/fs/my cgroup/sub"
    outside = fake(tmp_path, "0::/elsewhere\n", [("cgroup2", "/kubepods/pod1/ctr", "/sys/fs/cg", "rw")], {})
    assert outside.v2_dir is None and outside.layout == "none"


def test_unwritable_and_missing_backends_messages():
    """Not writable and not mounted are each reported; an empty section places nothing."""
    host = CgroupHost(
        "hybrid", "/cg2", "/cg2/me", frozenset({"memory"}), frozenset(), False, False,
        {"memory": "/v1/memory/me"}, {"memory": False},
    )  # fmt: skip
    (mem,) = plan_placement(host, {"memory_max": 1}).unenforced
    assert mem.reason == (
        "the memory limit cannot be enforced: the launcher's cgroup2 cgroup /cg2/me is not writable, "
        "and the cgroup v1 memory cgroup /v1/memory/me is not writable"
    )
    (none,) = plan_placement(CgroupHost("none"), {"pids_max": 4}).unenforced
    assert none.reason == (
        "the pids limit cannot be enforced: no cgroup2 hierarchy is mounted, and no cgroup v1 pids hierarchy is mounted"
    )
    assert plan_placement(host, {}).limits == ()
    assert plan_placement(host, {"memory_max": None, "pids_max": None, "cpu": None}).limits == ()
