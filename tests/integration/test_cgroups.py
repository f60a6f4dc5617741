"""cgroup leaves against this machine's real hierarchies: limits written, workloads OOM-killed, fork bombs stopped, CPU capped, clone3 placement and cgroup.kill.

Leaves are created only below the test process's own cgroups and removed after each test; the
`no_leftovers` fixture fails a test that leaves a sandboxer-* directory anywhere.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import sys
import time
from types import MappingProxyType

import pytest

from sandboxer.launch.fork import fork_into_cgroup
from sandboxer.mechanisms.cgroups.apply import CgroupError, Leaf, create_leaf
from sandboxer.mechanisms.cgroups.probe import CgroupHost, LimitPlacement, Placement, plan_placement, probe_cgroups

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs the integration tests as root)"),
]

HOST = probe_cgroups()
MI = 1 << 20
SECTION = {
    "memory_max": 64 * MI, "swap_max": 0, "pids_max": 16, "cpu": {"quota_us": 25000, "period_us": 100000},
    "v2": {"memory.max": str(64 * MI), "memory.swap.max": "0", "memory.oom.group": "1",
           "pids.max": "16", "cpu.max": "25000 100000"},
    "v1": {"memory": {"memory.limit_in_bytes": str(64 * MI), "memory.memsw.limit_in_bytes": str(64 * MI)},
           "pids": {"pids.max": "16"}, "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "25000"}},
}  # fmt: skip

HOG = """
import sys
hog = []
for mb in range(1, 201):
    block = bytearray(1 << 20)
    block[::4096] = b"x" * 256  # touch every page
    hog.append(block)
    print(mb, flush=True)
"""
FORK_BOMB = """
import errno, os, time
kids = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as e:
        print(kids, errno.errorcode[e.errno], flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids += 1
else:
    print(kids, "OK", flush=True)
"""
BURNER = "import os\nos.fork()\nwhile True: pass\n"  # two processes: the cap is per cgroup, not per task


def require(ok: bool, why: str) -> None:
    """Skip (or fail, when SANDBOXER_KERNEL_SKIPS_FAIL=1 as in CI) unless `ok`."""
    if ok:
        return
    if os.environ.get("SANDBOXER_KERNEL_SKIPS_FAIL") == "1":
        pytest.fail(why)
    pytest.skip(why)


def require_v1(*controllers: str) -> None:
    for c in controllers:
        require(HOST.v1_writable.get(c, False), f"needs a writable cgroup v1 {c} hierarchy (layout: {HOST.layout})")


def require_v2() -> None:
    require(HOST.v2_dir is not None and HOST.v2_writable, f"needs a writable cgroup2 hierarchy (layout: {HOST.layout})")


def own_dirs() -> list[str]:
    return sorted({d for d in [HOST.v2_dir, *HOST.v1_dirs.values()] if d})


@pytest.fixture(autouse=True)
def no_leftovers():
    """After each test, no sandboxer-* directory remains below any of our own cgroups."""
    yield
    left = [p for d in own_dirs() for p in glob.glob(os.path.join(d, "sandboxer-*"))]
    for p in left:  # clean up so one failure does not cascade, then fail
        try:
            os.rmdir(p)
        except OSError:
            pass
    assert left == []


def spawn(leaf: Leaf, argv: list[str], *, clone3: bool = False) -> tuple[int, int]:
    """Start argv inside `leaf`, placed before it may run; returns (pid, read end of its stdout)."""
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = fork_into_cgroup(leaf.v2_dir_fd) if clone3 else os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(out_r)
            os.dup2(out_w, 1)
            os.read(go_r, 1)  # wait until the parent has placed us
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(go_r)
    os.close(out_w)
    leaf.place(pid, already_in_v2=clone3)
    os.write(go_w, b"x")
    os.close(go_w)
    return pid, out_r


def finish(pid: int, out_r: int, timeout: float = 30.0) -> tuple[int, str]:
    """Wait for pid (killing it after `timeout`); returns (wait status, its stdout)."""
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    chunks = []
    os.set_blocking(out_r, False)
    try:
        while chunk := os.read(out_r, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    os.close(out_r)
    return done[1], b"".join(chunks).decode()


def make_leaf(name: str, host: CgroupHost = HOST, section: dict = SECTION) -> Leaf:
    return create_leaf(section, host, plan_placement(host, section), name)


def test_limits_are_written_to_v1_files():
    """A 64Mi + 16 pids + 0.25 cpu section lands in the v1 memory, pids and cpu files."""
    require_v1("memory", "pids", "cpu")
    with make_leaf("files") as leaf:
        read = lambda c, f: open(os.path.join(leaf.v1_dirs[c], f)).read().strip()  # noqa: E731
        assert read("memory", "memory.limit_in_bytes") == str(64 * MI)
        if HOST.memsw:
            assert read("memory", "memory.memsw.limit_in_bytes") == str(64 * MI)
        assert read("pids", "pids.max") == "16"
        assert (read("cpu", "cpu.cfs_period_us"), read("cpu", "cpu.cfs_quota_us")) == ("100000", "25000")
        assert all(d.endswith("/sandboxer-files") for d in leaf.created)


def test_memory_hog_is_oom_killed():
    """A process touching 200 MB under a 64 MiB limit dies of SIGKILL and stats() reports the OOM kill."""
    require_v1("memory")
    with make_leaf("oom") as leaf:
        status, out = finish(*spawn(leaf, [sys.executable, "-c", HOG]))
        stats = leaf.stats()["memory"]
    reached = int(out.split()[-1]) if out.split() else 0
    print(f"\nOOM: killed after {reached} MB; stats {stats}")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert reached < 64
    assert stats["oom"] and stats["oom_kills"] >= 1  # memory.failcnt stays 0 on Linux 6.18
    assert 48 * MI <= stats["peak_bytes"] <= 64 * MI


def test_fork_bomb_stops_at_pids_max():
    """A loop forking 200 sleepers gets EAGAIN far below 200 and stats() counts pids.max events."""
    require_v1("pids")
    with make_leaf("pids") as leaf:
        status, out = finish(*spawn(leaf, [sys.executable, "-c", FORK_BOMB]))
        stats = leaf.stats()["pids"]
    print(f"\npids: {out.strip()}; stats {stats}")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    kids, err = out.split()
    assert (int(kids), err) == (15, "EAGAIN")  # 16 = the bomb itself + 15 children
    assert stats["max_events"] >= 1
    assert stats["peak"] in (None, 16)


def test_cpu_burner_is_capped_at_a_quarter_core():
    """Two busy loops under cpu 0.25 get at most 0.35 cores over 3 s, and are throttled."""
    require_v1("cpu")
    with make_leaf("cpu") as leaf:
        pid, out_r = spawn(leaf, [sys.executable, "-c", BURNER])
        time.sleep(0.3)  # past interpreter start-up
        u0, t0 = leaf.stats()["cpu"]["usage_usec"], time.monotonic()
        time.sleep(3)
        stats, t1 = leaf.stats()["cpu"], time.monotonic()
        leaf.kill()
        finish(pid, out_r)
    share = (stats["usage_usec"] - u0) / 1e6 / (t1 - t0)
    print(f"\ncpu: {share:.3f} cores; stats {stats}")
    assert 0.1 < share <= 0.35
    assert stats["nr_throttled"] > 0


def test_clone3_places_child_in_v2_leaf_and_cgroup_kill_kills_the_tree():
    """clone3(CLONE_INTO_CGROUP) starts the child in the v2 leaf; cgroup.kill then kills it and its children."""
    require_v2()
    with make_leaf("clone3") as leaf:
        rel = leaf.v2_dir[len(HOST.v2_mount.rstrip("/")) :]
        pid, out_r = spawn(leaf, ["/bin/sh", "-c", "sleep 60 & sleep 60 & sleep 60 & echo started; wait"], clone3=True)
        assert f"0::{rel}\n" in open(f"/proc/{pid}/cgroup").read()
        while len(open(os.path.join(leaf.v2_dir, "cgroup.procs")).read().split()) < 4:
            time.sleep(0.005)
        leaf.kill()
        status, _ = finish(pid, out_r, timeout=5)
        leaf.wait_empty(timeout=2)
        events = open(os.path.join(leaf.v2_dir, "cgroup.events")).read()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert "populated 0" in events


def test_clone3_into_a_non_cgroup2_fd_raises_oserror_and_forks_nothing():
    """clone3 given a cgroup v1 directory fails with OSError in the parent, so the caller can fall back."""
    require_v1("pids")
    fd = os.open(HOST.v1_dirs["pids"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as exc:
            if fork_into_cgroup(fd) == 0:
                os._exit(0)  # must not happen; never return into pytest in a child
    finally:
        os.close(fd)
    assert "clone3(CLONE_INTO_CGROUP) failed" in str(exc.value)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize("with_freezer", [True, False], ids=["freezer", "sigkill-loop"])
def test_v1_only_kill(with_freezer: bool):
    """Without cgroup2, kill() empties the leaf through the v1 freezer, or by SIGKILL rounds over cgroup.procs."""
    require_v1("memory", "pids", "cpu", *(["freezer"] if with_freezer else []))
    v1 = {c: d for c, d in HOST.v1_dirs.items() if with_freezer or c != "freezer"}
    host = dataclasses.replace(HOST, layout="v1", v2_dir=None, v2_mount=None, v2_writable=False,
                               v1_dirs=MappingProxyType(v1))  # fmt: skip
    with make_leaf("v1kill", host) as leaf:
        assert leaf.v2_dir is None and ("freezer" in leaf.v1_dirs) == with_freezer
        pid, out_r = spawn(leaf, ["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"])
        while len(open(os.path.join(leaf.v1_dirs["pids"], "cgroup.procs")).read().split()) < 3:
            time.sleep(0.005)
        leaf.kill()
        status, _ = finish(pid, out_r, timeout=5)
        leaf.wait_empty(timeout=2)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_remove_is_idempotent_and_tolerates_removed_dirs():
    """remove() twice, after someone else already removed the directories, does not raise."""
    leaf = make_leaf("idem")
    for d in leaf.created:
        os.rmdir(d)
    leaf.remove()
    leaf.remove()
    assert leaf.v2_dir_fd is None


def test_existing_leaf_name_is_an_error_naming_file_and_errno():
    """create_leaf refuses to reuse a directory that already exists, and cleans up what it made."""
    require_v2()
    path = os.path.join(HOST.v2_dir, "sandboxer-dup")
    os.mkdir(path)
    try:
        with pytest.raises(CgroupError) as exc:
            make_leaf("dup")
    finally:
        os.rmdir(path)
    assert exc.value.message == f"cgroups: mkdir {path} failed: EEXIST: File exists"


def test_enabling_a_controller_under_a_cgroup_with_processes_explains_the_rule():
    """A v2 parent that has processes of its own cannot hand controllers down: the error says why."""
    require_v2()
    with make_leaf("busy") as busy:
        pid, out_r = spawn(busy, ["/bin/sleep", "60"], clone3=True)
        try:
            host = dataclasses.replace(HOST, v2_dir=busy.v2_dir, v1_dirs=MappingProxyType({}))
            placement = Placement((LimitPlacement("pids", "v2"),))
            with pytest.raises(CgroupError) as exc:
                create_leaf(SECTION, host, placement, "inner")
        finally:
            busy.kill()
            finish(pid, out_r)
    control = f"{busy.v2_dir}/cgroup.subtree_control"
    assert exc.value.message == (
        f"cgroups: cannot enable pids in {control}: {busy.v2_dir} has processes of its own, and cgroup2 lets "
        "a non-root cgroup give controllers to its children only while it has none ('no internal processes' "
        "rule; the kernel would answer EBUSY)"
    )
    assert "systemd-run --user --scope -p Delegate=yes" in exc.value.hint
