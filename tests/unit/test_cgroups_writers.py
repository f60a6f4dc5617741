"""What the cgroup writers would write for every example (golden), the --stats and outcome texts, and the launcher's strict/best-effort cgroup messages on simulated hosts (no root, no real cgroups)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandboxer.launch import run as run_mod
from sandboxer.launch.errors import LaunchError
from sandboxer.manifest.load import load_policy
from sandboxer.mechanisms.cgroups import apply, probe
from sandboxer.mechanisms.cgroups.apply import create_leaf, format_size, stats_line, v1_writes, v2_writes
from sandboxer.mechanisms.cgroups.probe import CgroupHost, plan_placement
from sandboxer.plan import Target, compile_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))

# Golden: "file=value" in write order. v2 (cgroup2 leaf) and v1 (one leaf per hierarchy). These
# machines have no cgroup2 controllers, so the v2 writers are pinned here rather than against real files.
GOLDEN_V2 = {
    "c-build": "cpu.max=200000 100000 memory.max=1073741824 memory.oom.group=1 memory.swap.max=0 pids.max=64",
    "data-processor": "cpu.max=100000 100000 memory.max=268435456 memory.oom.group=1 memory.swap.max=0 pids.max=8",
    "git-commit": "memory.max=268435456 memory.oom.group=1 memory.swap.max=0 pids.max=32",
    "hello": "memory.max=67108864 memory.oom.group=1 memory.swap.max=0 pids.max=4",
    "shell-pipeline": "memory.max=134217728 memory.oom.group=1 memory.swap.max=0 pids.max=16",
    "sqlite": "memory.max=134217728 memory.oom.group=1 memory.swap.max=0 pids.max=4",
    "tcp-client": "memory.max=134217728 memory.oom.group=1 memory.swap.max=0 pids.max=4",
}
GOLDEN_V1 = {
    "c-build": "memory/memory.limit_in_bytes=1073741824 memory/memory.memsw.limit_in_bytes=1073741824 "
    "pids/pids.max=64 cpu/cpu.cfs_period_us=100000 cpu/cpu.cfs_quota_us=200000",
    "data-processor": "memory/memory.limit_in_bytes=268435456 memory/memory.memsw.limit_in_bytes=268435456 "
    "pids/pids.max=8 cpu/cpu.cfs_period_us=100000 cpu/cpu.cfs_quota_us=100000",
    "git-commit": "memory/memory.limit_in_bytes=268435456 memory/memory.memsw.limit_in_bytes=268435456 pids/pids.max=32",
    "hello": "memory/memory.limit_in_bytes=67108864 memory/memory.memsw.limit_in_bytes=67108864 pids/pids.max=4",
    "shell-pipeline": "memory/memory.limit_in_bytes=134217728 memory/memory.memsw.limit_in_bytes=134217728 "
    "pids/pids.max=16",
    "sqlite": "memory/memory.limit_in_bytes=134217728 memory/memory.memsw.limit_in_bytes=134217728 pids/pids.max=4",
    "tcp-client": "memory/memory.limit_in_bytes=134217728 memory/memory.memsw.limit_in_bytes=134217728 pids/pids.max=4",
}
ALL = ("memory", "pids", "cpu")


def section_of(example: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(ROOT)  # relative manifest paths keep `at` stable
    return compile_plan(load_policy(f"examples/{example}.yaml"), Target("x86_64", 7))["cgroups"]


def test_every_example_with_limits_has_golden_writes():
    """The golden tables cover exactly the examples (all of them set limits)."""
    assert sorted(GOLDEN_V2) == sorted(GOLDEN_V1) == EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES)
def test_v2_writes_golden(example: str, monkeypatch: pytest.MonkeyPatch):
    """cgroup2 files and values, in write order, for all limits placed on v2."""
    got = " ".join(f"{k}={v}" for k, v in v2_writes(section_of(example, monkeypatch), ALL))
    assert got == GOLDEN_V2[example]


@pytest.mark.parametrize("example", EXAMPLES)
def test_v1_writes_golden(example: str, monkeypatch: pytest.MonkeyPatch):
    """v1 files per hierarchy, in write order: limit_in_bytes before memsw, period before quota."""
    section = section_of(example, monkeypatch)
    got = " ".join(f"{c}/{k}={v}" for c in ALL for k, v in v1_writes(section, c))
    assert got == GOLDEN_V1[example]


def test_v2_writes_only_the_limits_placed_on_v2(monkeypatch: pytest.MonkeyPatch):
    """A limit placed on v1 (or nowhere) writes nothing into the cgroup2 leaf."""
    assert v2_writes(section_of("c-build", monkeypatch), ("pids",)) == [("pids.max", "64")]
    assert v2_writes(section_of("c-build", monkeypatch), ()) == []


def test_create_leaf_v2_writer_sequence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On a (simulated) root cgroup2 with all controllers: enable them, mkdir the leaf, write the golden files."""
    section = section_of("c-build", monkeypatch)
    (tmp_path / "cgroup.subtree_control").write_text("\n")
    host = CgroupHost("v2", str(tmp_path), str(tmp_path), frozenset(ALL), frozenset(), True, True)
    writes: list[tuple[str, str]] = []
    monkeypatch.setattr(apply, "_write", lambda path, value: writes.append((os.path.relpath(path, tmp_path), value)))
    monkeypatch.setattr(apply, "OPTIONAL_FILES", frozenset())  # as on a host with swap accounting
    leaf = create_leaf(section, host, plan_placement(host, section), "golden")
    try:
        assert leaf.v2_dir == f"{tmp_path}/sandboxer-golden" and leaf.v1_dirs == {}
        assert writes[0] == ("cgroup.subtree_control", "+memory +pids +cpu")
        assert writes[1:] == [(f"sandboxer-golden/{k}", v) for k, v in v2_writes(section, ALL)]
        assert (leaf.memory_max, leaf.pids_max) == (1 << 30, 64)
    finally:
        leaf.remove()
    assert not (tmp_path / "sandboxer-golden").exists()


@pytest.mark.parametrize(
    ("n", "text"), [(67108864, "64Mi"), (1 << 30, "1Gi"), (1536, "1536"), (3 << 10, "3Ki"), (0, "0"), (5, "5")]
)
def test_format_size(n: int, text: str):
    """Sizes come back in the manifest's binary-unit spelling where exact."""
    assert format_size(n) == text


def test_stats_line_exact():
    """The --stats cgroup line, with every value accounted, and with n/a where the host has no counter."""
    st = {
        "memory": {"peak_bytes": 1048576, "oom_kills": 1, "oom": True, "max_hits": 3},
        "pids": {"max_events": 2, "peak": 4},
        "cpu": {"usage_usec": 1500, "nr_periods": 30, "nr_throttled": 7, "throttled_usec": 900},
    }
    assert stats_line(st) == (
        "sandboxer: stats: cgroup: peak memory 1048576 B, cpu time 1500 us, tasks (peak) 4, oom kills 1, "
        "pids limit hits 2, cpu throttled 7 of 30 periods (900 us)"
    )
    none = {"memory": {"peak_bytes": None, "oom_kills": None}, "pids": {"max_events": None, "peak": None},
            "cpu": {"usage_usec": None, "nr_throttled": None, "throttled_usec": None}}  # fmt: skip
    assert stats_line(none) == (
        "sandboxer: stats: cgroup: peak memory n/a, cpu time n/a, tasks (peak) n/a, oom kills n/a, "
        "pids limit hits n/a, cpu throttled n/a"
    )


# --- the launcher's compat handling on simulated hosts -------------------------------------------------

SECTION = {
    "memory_max": 64 << 20, "swap_max": 0, "pids_max": 16,
    "v2": {"memory.max": str(64 << 20), "memory.swap.max": "0", "memory.oom.group": "1", "pids.max": "16"},
    "v1": {"memory": {"memory.limit_in_bytes": str(64 << 20)}, "pids": {"pids.max": "16"}},
    "at": {"memory": "test.yaml:12:18", "pids": "test.yaml:12:30"},
}  # fmt: skip
NO_PIDS = CgroupHost(  # hybrid like these machines, but without a pids hierarchy
    "hybrid", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified", frozenset({"hugetlb"}), frozenset(), True, True,
    {"memory": "/sys/fs/cgroup/memory/me"}, {"memory": True},
)
PURE_V2_SCOPE = CgroupHost(  # a systemd user scope: controllers delegated, the launcher (and a shell) inside
    "v2", "/sys/fs/cgroup", "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope",
    frozenset(ALL), frozenset(), True, False, v2_procs=2,
)


def cgroups_step(monkeypatch: pytest.MonkeyPatch, host: CgroupHost, best_effort: bool) -> run_mod.Preparation:
    """Run the launcher's cgroup step against `host` (dry run: nothing is created)."""
    monkeypatch.setattr(probe, "probe_cgroups", lambda: host)
    prep = run_mod.Preparation(child=None, command=None, env={})  # type: ignore[arg-type]
    plan = {"cgroups": SECTION, "compat": {"cgroups": "strict"}}
    run_mod._cgroups(plan, run_mod.LaunchOptions(best_effort=best_effort, dry_run=True), prep)
    return prep


def test_strict_refusal_names_limit_manifest_line_and_fix(monkeypatch: pytest.MonkeyPatch):
    """compat.cgroups: strict on a host without the pids controller: the exact refusal."""
    with pytest.raises(LaunchError) as exc:
        cgroups_step(monkeypatch, NO_PIDS, best_effort=False)
    assert exc.value.exit_code == 125
    assert str(exc.value) == (
        "the plan's resource limits cannot be enforced here:\n"
        "           limits.pids (test.yaml:12:30): the pids limit cannot be enforced: the pids controller is not "
        "delegated to /sys/fs/cgroup/unified (cgroup.controllers: hugetlb), and no cgroup v1 pids hierarchy is "
        "mounted\n"
        "           delegate the controller: run under `systemd-run --user --scope -p Delegate=yes …`, "
        "or set compat.cgroups: best-effort"
    )


def test_best_effort_warns_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch):
    """compat best-effort: one warning per dropped limit; memory still goes to v1."""
    prep = cgroups_step(monkeypatch, NO_PIDS, best_effort=True)
    assert prep.warnings == [
        "the pids limit cannot be enforced: the pids controller is not delegated to /sys/fs/cgroup/unified "
        "(cgroup.controllers: hugetlb), and no cgroup v1 pids hierarchy is mounted: limits.pids (test.yaml:12:30) "
        "is not enforced (compat.cgroups: best-effort)"
    ]
    assert prep.placement.backend("memory") == "v1" and prep.leaf is None


def test_no_internal_processes_refusal_explains_what_to_delegate(monkeypatch: pytest.MonkeyPatch):
    """Pure v2, launcher inside a delegated scope: the refusal names the rule, why delegation alone fails, and the options."""
    with pytest.raises(LaunchError) as exc:
        cgroups_step(monkeypatch, PURE_V2_SCOPE, best_effort=False)
    d = PURE_V2_SCOPE.v2_dir
    rule = (
        f"but not enabled in its cgroup.subtree_control, and cannot be: that cgroup has 2 processes of its own, "
        "this launcher among them (cgroup2 'no internal processes' rule: only a cgroup without processes may "
        "enable controllers for its children), and no cgroup v1"
    )
    assert str(exc.value) == (
        "the plan's resource limits cannot be enforced here:\n"
        f"           limits.memory (test.yaml:12:18): the memory limit cannot be enforced: the memory controller "
        f"is delegated to {d} {rule} memory hierarchy is mounted\n"
        f"           limits.pids (test.yaml:12:30): the pids limit cannot be enforced: the pids controller "
        f"is delegated to {d} {rule} pids hierarchy is mounted\n"
        f"           sandboxer creates its leaf below {d} and never moves itself out of it, so delegating that "
        "cgroup (`systemd-run --user --scope -p Delegate=yes …`) does not help by itself: the launcher would "
        "still be one of its processes. cgroup2 lets only a cgroup without processes (or the hierarchy root) "
        "enable controllers for its children. Let systemd hold the same limits around the whole run "
        "(`systemd-run --user --scope -p MemoryMax=67108864 -p MemorySwapMax=0 -p TasksMax=16 -- sandboxer run "
        "--best-effort …`), run sandboxer from the cgroup2 root or on a host with cgroup v1 controllers, or set "
        "compat.cgroups: best-effort"
    )
