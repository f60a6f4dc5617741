"""cgroup leaves against this machine's real hierarchies: limits written, workloads OOM-killed, fork bombs stopped, CPU capped, clone3 placement and cgroup.kill.

Leaves are created only below the test process's own cgroups and removed after each test; the
`no_leftovers` fixture fails a test that leaves a sandboxer-* directory anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


TOKEN = f"t{os.getpid()}"  # in every leaf name this module creates, so other users' leaves are not ours
REPO = Path(__file__).resolve().parents[2]


def own_cgroups() -> list[str]:
    """The test process's own cgroup in every mounted hierarchy (all v1 ones, named ones, cgroup2)."""
    own = {}
    for line in open("/proc/self/cgroup").read().splitlines():
        hier, ctrls, path = line.split(":", 2)
        own["" if hier == "0" else ctrls] = path
    dirs = []
    for line in open("/proc/self/mountinfo").read().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, opts = right.split()[:3]
        root, mp = left.split()[3:5]
        if fstype == "cgroup2":
            key = ""
        elif fstype == "cgroup":
            key = next((k for k in own if k and set(k.split(",")) <= set(opts.split(","))), None)
        else:
            continue
        if key is None or key not in own or not (own[key] + "/").startswith(root.rstrip("/") + "/"):
            continue
        dirs.append(os.path.join(mp, own[key][len(root.rstrip("/")):].lstrip("/")).rstrip("/"))
    return sorted(set(dirs))


def cgroups_below(depth: int = 3) -> set[str]:
    """Every cgroup directory below our own cgroups, in every hierarchy, `depth` levels deep."""
    found: set[str] = set()

    def walk(d: str, level: int) -> None:
        try:
            entries = [e for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for e in entries:
            found.add(e.path)
            if level < depth:
                walk(e.path, level + 1)

    for d in own_cgroups():
        walk(d, 1)
    return found


@pytest.fixture(autouse=True)
def no_leftovers():
    """Lists the cgroups below ours in every hierarchy before and after each test; fails on any new one of ours."""
    before = cgroups_below()
    yield
    new = sorted(p for p in cgroups_below() - before if TOKEN in os.path.basename(p))
    for p in sorted(new, key=len, reverse=True):  # clean up so one failure does not cascade, then fail
        try:
            os.rmdir(p)
        except OSError:
            pass
    assert new == []


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
    return create_leaf(section, host, plan_placement(host, section), f"{name}-{TOKEN}")


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
        assert all(d.endswith(f"/sandboxer-files-{TOKEN}") for d in leaf.created)


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
    host = HOST.replace(layout="v1", v2_dir=None, v2_mount=None, v2_writable=False, v1_dirs=v1)
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
    path = os.path.join(HOST.v2_dir, f"sandboxer-dup-{TOKEN}")
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
            host = HOST.replace(v2_dir=busy.v2_dir, v1_dirs={})
            placement = Placement((LimitPlacement("pids", "v2"),))
            with pytest.raises(CgroupError) as exc:
                create_leaf(SECTION, host, placement, f"inner-{TOKEN}")
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


# --- `sandboxer run` end to end: exit codes, outcome lines, --stats, leftovers, rootless ------------------

MANIFEST = """sandboxer: 1
name: cg{token}-{kind}
extends: [builtin:python3, builtin:shell]
imports:
  wasi:cli/stdout: {{}}
  wasi:cli/stderr: {{}}
  sandboxer:process/spawn: {{}}
limits: {limits}
"""
PY3 = "/usr/bin/python3"


def manifest(directory: Path, kind: str, limits: str) -> Path:
    path = directory / f"{kind}.yaml"
    path.write_text(MANIFEST.format(token=TOKEN, kind=kind, limits=limits))
    return path


def sandboxer_run(path: Path, argv: list[str], *opts: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandboxer", "run", str(path), *opts, "--", *argv],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)  # fmt: skip


N = r"(\d+|n/a)"  # n/a: the hierarchy that would account it is not used for this plan's limits
STATS_RE = (
    r"sandboxer: stats: exit (?P<exit>\d+), wall \d+\.\d{3} s, user \d+\.\d{3} s, sys \d+\.\d{3} s, "
    r"max rss \d+ KiB\n"
    rf"sandboxer: stats: cgroup: peak memory (?:(?P<peak>\d+) B|n/a), cpu time (?:(?P<cpu>\d+) us|n/a), "
    rf"tasks \(peak\) (?P<tasks>{N[1:-1]}), oom kills (?P<ooms>{N[1:-1]}), pids limit hits (?P<pids_hits>{N[1:-1]}), "
    r"cpu throttled (?:(?P<throttled>\d+) of (?P<periods>\d+) periods \((?P<throttled_us>\d+) us\)|n/a)\n"
)


def parse_stats(stderr: str) -> dict[str, int | None]:
    """The two --stats lines as numbers (None for n/a); fails unless both lines have exactly that format."""
    m = re.search(STATS_RE, stderr)
    assert m, stderr
    return {k: None if v in (None, "n/a") else int(v) for k, v in m.groupdict().items()}


def test_run_stats_lines_exact_format(tmp_path: Path):
    """--stats prints the rusage line and the cgroup line (peak memory, cpu time, tasks, oom kills, pids, throttling)."""
    require_v1("memory", "pids", "cpu")
    r = sandboxer_run(manifest(tmp_path, "stats", "{memory: 64Mi, pids: 16, cpu: 0.5}"),
                      ["sh", "-c", "true & true & wait"], "--stats")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(STATS_RE, r.stderr), r.stderr
    st = parse_stats(r.stderr)
    assert (st["exit"], st["ooms"], st["pids_hits"]) == (0, 0, 0)
    assert st["peak"] > 0 and st["cpu"] > 0 and st["tasks"] >= 2 and st["throttled"] <= st["periods"]


def test_run_memory_hog_exits_137_with_out_of_memory_line(tmp_path: Path):
    """A hog under memory: 64Mi is OOM-killed (137) and sandboxer says so, without --stats."""
    require_v1("memory")
    r = sandboxer_run(manifest(tmp_path, "oom", "{memory: 64Mi, pids: 16}"), [PY3, "-c", HOG])
    assert r.returncode == 137, r.stderr
    assert "out of memory: limit 64Mi" in r.stderr
    assert re.fullmatch(
        r"sandboxer: out of memory: limit 64Mi \(limits\.memory, \S+/oom\.yaml:8:18\): "
        r"the kernel OOM-killed \d+ process(es)?\n", r.stderr), r.stderr  # fmt: skip


def test_run_fork_bomb_stops_far_below_1000_and_says_pids_limit_reached(tmp_path: Path):
    """A bomb that wants 1000 sleeping children gets 15 (pids: 16); the pids line is printed; all die at exit."""
    require_v1("pids")
    bomb = FORK_BOMB.replace("range(200)", "range(1000)")
    r = sandboxer_run(manifest(tmp_path, "bomb", "{pids: 16}"), [PY3, "-c", bomb], "--stats")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["15", "EAGAIN"]
    st = parse_stats(r.stderr)
    assert (st["tasks"], st["peak"], st["ooms"]) == (16, None, None) and st["pids_hits"] >= 1
    assert re.search(r"^sandboxer: pids limit reached: 16 \(limits\.pids, \S+/bomb\.yaml:8:16\): "
                     r"\d+ fork/clone calls? failed with EAGAIN$", r.stderr, re.M), r.stderr  # fmt: skip


def test_run_cpu_throttling_is_reported(tmp_path: Path):
    """A burner under cpu: 0.25, stopped by wall-time, shows throttled periods in --stats."""
    require_v1("cpu")
    r = sandboxer_run(manifest(tmp_path, "cpu", "{cpu: 0.25, wall-time: 1s}"), [PY3, "-c", "while True: pass"],
                      "--stats")  # fmt: skip
    assert r.returncode == 137, r.stderr
    st = parse_stats(r.stderr)
    assert st["throttled"] > 0 and st["throttled_us"] > 0 and st["tasks"] is None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("how", ["exit", "timeout"])
def test_run_leftover_children_are_killed(tmp_path: Path, how: str):
    """Children that escape the process group (setsid) die with the sandbox when it exits and when it times out."""
    require_v1("pids")
    script = "setsid sleep 60 & echo $!; setsid sleep 60 & echo $!" + ("; sleep 60" if how == "timeout" else "")
    opts = ["--timeout", "0.5"] if how == "timeout" else []
    r = sandboxer_run(manifest(tmp_path, f"left-{how}", "{pids: 16}"), ["sh", "-c", script], *opts)
    assert r.returncode == (137 if how == "timeout" else 0), r.stderr
    kids = [int(p) for p in r.stdout.split()]
    assert len(kids) == 2 and _all_gone(kids)


# --- rootless: nobody has no delegated cgroup on these machines ---------------------------------------

SETPRIV = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def nobody_dir():
    """A directory nobody can read manifests from and write its plan cache to."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    d = tempfile.mkdtemp(prefix="sandboxer-cg-nobody-")
    os.chmod(d, 0o755)
    cache = os.path.join(d, "cache")
    os.mkdir(cache)
    shutil.chown(cache, "nobody", "nogroup")
    yield Path(d)
    shutil.rmtree(d)


def as_nobody(path: Path, *opts: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(path.parent / "cache")}
    r = subprocess.run([*SETPRIV, sys.executable, "-m", "sandboxer", "run", str(path), *opts, "--", "/usr/bin/true"],
                       capture_output=True, text=True, cwd="/", env=env, timeout=60)  # fmt: skip
    if "Permission denied" in r.stderr and "python" in r.stderr.lower() and r.returncode not in (0, 125):
        pytest.skip(f"nobody cannot run {sys.executable}: {r.stderr.strip()}")
    return r


def test_rootless_strict_refuses_naming_limit_line_and_fix(nobody_dir: Path):
    """As nobody without a delegated cgroup, compat.cgroups: strict refuses with the exact message."""
    require_v1("memory", "pids")
    path = manifest(nobody_dir, "rootless", "{memory: 64Mi, pids: 16}")
    r = as_nobody(path)
    mem, pids = HOST.v1_dirs["memory"], HOST.v1_dirs["pids"]
    v2 = f"the launcher's cgroup2 cgroup {HOST.v2_dir} is not writable" if HOST.v2_dir else "no cgroup2 hierarchy is mounted"
    assert (r.returncode, r.stderr) == (125, (
        "sandboxer: the plan's resource limits cannot be enforced here:\n"
        f"           limits.memory ({path}:8:18): the memory limit cannot be enforced: {v2}, "
        f"and the cgroup v1 memory cgroup {mem} is not writable\n"
        f"           limits.pids ({path}:8:30): the pids limit cannot be enforced: {v2}, "
        f"and the cgroup v1 pids cgroup {pids} is not writable\n"
        "           delegate the controller: run under `systemd-run --user --scope -p Delegate=yes …`, "
        "or set compat.cgroups: best-effort\n"
    ))


def test_rootless_best_effort_runs_and_warns(nobody_dir: Path):
    """As nobody with --best-effort, the workload runs and each dropped limit is named with its manifest line."""
    require_v1("memory", "pids")
    path = manifest(nobody_dir, "rootless", "{memory: 64Mi, pids: 16}")
    r = as_nobody(path, "--best-effort")
    assert r.returncode == 0, r.stderr
    warnings = r.stderr.splitlines()
    assert [w.split(": the ", 1)[0] for w in warnings] == ["sandboxer: warning"] * 2
    assert warnings[0].startswith("sandboxer: warning: the memory limit cannot be enforced: ")
    assert warnings[0].endswith(f": limits.memory ({path}:8:18) is not enforced (compat.cgroups: best-effort)")
    assert warnings[1].endswith(f": limits.pids ({path}:8:30) is not enforced (compat.cgroups: best-effort)")
