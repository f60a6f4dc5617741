"""Launch real commands under hand-built plans (docs/plan.md) and check what the workload sees (root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandboxer.launch.errors import LaunchError
from sandboxer.launch.run import LaunchOptions, launch
from sandboxer.mechanisms.landlock.rights import FS_RIGHTS, rights_at

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="launch integration tests run as root (CI is root)"),
]

REPO = str(Path(__file__).resolve().parents[2])
PY = "/usr/bin/python3"  # the workload's interpreter: under /usr, so the base plan lets it run


def insn(code: int, jt: int, jf: int, k: int) -> bytes:
    """One struct sock_filter, little endian."""
    return struct.pack("<HBBI", code, jt, jf, k)


RET = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
ALLOW_ALL = insn(RET, 0, 0, SECCOMP_RET_ALLOW)
NO_RETURN = insn(0x20, 0, 0, 0)  # ld [0] and nothing after it: the kernel's checker rejects it (EINVAL)


def deny_syscall(nr: int, action: int) -> bytes:
    """x86_64 filter: foreign arch killed, syscall `nr` gets `action`, everything else allowed."""
    return b"".join([
        insn(0x20, 0, 0, 4),                      # ld [4]: seccomp_data.arch
        insn(0x15, 1, 0, 0xC000003E),             # jeq AUDIT_ARCH_X86_64, +1
        insn(RET, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(0x20, 0, 0, 0),                      # ld [0]: seccomp_data.nr
        insn(0x15, 0, 1, nr),                     # jeq nr, 0, +1
        insn(RET, 0, 0, action),
        insn(RET, 0, 0, SECCOMP_RET_ALLOW),
    ])


NR_UNAME = 63
ALL_FS = rights_at(FS_RIGHTS, 7)
READ = ["read_file", "read_dir"]
EXEC = ["execute", "read_file", "read_dir"]


def rule(path: str, access: list[str], at: str) -> dict:
    return {"path": path, "access": access, "because": ["wasi:filesystem/preopens"], "at": at}


BASE_PATHS = [
    rule("/", READ, "test.yaml:6:7"),
    rule("/dev/null", ["write_file"], "test.yaml:7:7"),
    rule("/usr", EXEC, "test.yaml:8:7"),
]


def make_plan(*, paths: list[dict] | None = None, netns: str = "host", landlock: bool = True, **top: object) -> dict:
    """A plan as `sandboxer compile` writes it (format 1), small enough to read in a test."""
    plan: dict = {
        "format": 1,
        "name": "launch-test",
        "description": "hand-built plan for the launch tests",
        "target": {"arch": "x86_64", "landlock_abi": 7},
        "on_violation": "deny",
        "compat": {"seccomp": "strict", "landlock": "strict", "cgroups": "strict", "netns": "strict"},
        "grants": [
            {"capability": "wasi:filesystem/preopens", "params": {}, "why": None, "at": "test.yaml:5:3"},
        ],
        "seccomp": {},
        "landlock": {
            "abi": 7,
            "handled_fs": ALL_FS,
            "handled_net": [],
            "scoped": [],
            "paths": sorted(BASE_PATHS if paths is None else paths, key=lambda r: r["path"]),
            "ports": [],
            "restrict_flags": [],
        } if landlock else {},
        "cgroups": {},
        "rlimits": {},
        "netns": {"mode": netns},
        "environment": {"pass": ["PATH"], "set": {}},
        "wall_time_s": None,
        "wasi": {},
        "degradations": [],
    }
    plan.update(top)
    return plan


def run(plan: dict, argv: list[str], bpf: bytes = ALLOW_ALL, **opts: object) -> int:
    return launch(plan, bpf, argv, LaunchOptions(**opts))  # type: ignore[arg-type]


def children() -> list[str]:
    """Pids of this process's children (the test process is single-threaded)."""
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        return f.read().split()


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def gone(pid: int, timeout: float = 3.0) -> bool:
    """True once `pid` no longer runs (absent or a zombie awaiting its reaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


# A launcher in its own process, for what a test cannot do to itself (receive SIGTERM, be SIGKILLed).
RUNNER = """
import json, sys
sys.path.insert(0, {repo!r})
from sandboxer.launch.errors import LaunchError
from sandboxer.launch.run import LaunchOptions, launch
spec = json.loads(sys.argv[1])
try:
    code = launch(spec["plan"], bytes.fromhex(spec["bpf"]), spec["argv"], LaunchOptions(**spec["opts"]))
except LaunchError as e:
    sys.stderr.write(e.render() + "\\n")
    code = e.exit_code
sys.exit(code)
"""


def launcher_argv(
    plan: dict, argv: list[str], bpf: bytes = ALLOW_ALL, python: str = sys.executable, **opts: object
) -> list[str]:
    """argv of a separate launcher process (RUNNER) for `plan`; it exits with launch()'s code."""
    spec = {"plan": plan, "bpf": bpf.hex(), "argv": argv, "opts": opts}
    return [python, "-c", RUNNER.format(repo=REPO), json.dumps(spec)]


# --- exit status -----------------------------------------------------------------------------------


def test_exit_code_is_passed_through():
    """The launcher returns the workload's own exit code."""
    assert run(make_plan(), ["sh", "-c", "exit 7"]) == 7


def test_death_by_signal_is_128_plus_n():
    """A workload killed by SIGUSR1 (10) gives 138, as a shell reports it."""
    assert run(make_plan(), ["sh", "-c", "kill -USR1 $$"]) == 138


def test_seccomp_kill_is_159(capfd):
    """A syscall the filter kills (SIGSYS, 31) gives 159."""
    assert run(make_plan(), ["uname"], bpf=deny_syscall(NR_UNAME, SECCOMP_RET_KILL_PROCESS)) == 159


def test_seccomp_errno_reaches_the_workload(capfd):
    """A syscall the filter answers with EPERM fails inside the workload, which carries on."""
    code = run(make_plan(), ["sh", "-c", "uname; echo after=$?"], bpf=deny_syscall(NR_UNAME, SECCOMP_RET_ERRNO | 1))
    out, err = capfd.readouterr()
    assert code == 0
    assert "after=1" in out and "Operation not permitted" in err


# --- signals and time --------------------------------------------------------------------------------


def test_sigterm_to_the_launcher_reaches_the_workload():
    """SIGTERM sent to the launcher is forwarded; the workload's trap decides the exit code."""
    script = 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.05; done'
    proc = subprocess.Popen(launcher_argv(make_plan(), ["sh", "-c", script]), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        assert proc.wait(timeout=10) == 42
        assert "got-term" in out
    finally:
        proc.kill()
        proc.wait()


def test_workload_dies_with_the_launcher():
    """PR_SET_PDEATHSIG: when the launcher is SIGKILLed, the workload gets SIGKILL too."""
    proc = subprocess.Popen(
        launcher_argv(make_plan(), ["sh", "-c", "echo $$; exec sleep 100"]), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        workload = int(proc.stdout.readline())
        proc.kill()
        proc.wait(timeout=10)
        assert gone(workload)
    finally:
        proc.kill()
        proc.wait()


def test_timeout_kills_the_process_group_with_a_background_grandchild(capfd):
    """--timeout kills the whole process group, including a grandchild left running in the background."""
    started = time.monotonic()
    code = run(make_plan(), ["sh", "-c", "sleep 100 & echo $!; sleep 100"], timeout=0.5)
    elapsed = time.monotonic() - started
    out, err = capfd.readouterr()
    assert code == 128 + signal.SIGKILL
    assert elapsed < 5
    assert "wall time of 0.5 s exceeded" in err
    assert gone(int(out.split()[0]))
    assert children() == []


def test_plan_wall_time_applies():
    """The plan's wall_time_s kills the sandbox like --timeout."""
    assert run(make_plan(wall_time_s=0.3), ["sleep", "100"]) == 137


def test_background_processes_end_with_the_workload(capfd):
    """A background process left in the workload's group is killed when the workload exits."""
    assert run(make_plan(), ["sh", "-c", "sleep 100 & echo $!"]) == 0
    assert gone(int(capfd.readouterr().out.split()[0]))


# --- what the workload inherits ------------------------------------------------------------------------


def test_fds_above_2_are_closed(capfd):
    """An inheritable fd of the launcher does not reach the workload."""
    fd = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        assert run(make_plan(), ["sh", "-c", "ls /proc/$$/fd"]) == 0
    finally:
        os.close(fd)
    assert capfd.readouterr().out.split() == ["0", "1", "2"]


def test_keep_fd_passes_one_fd(capfd):
    """--keep-fd N leaves fd N open (and inheritable) in the workload, and only that one."""
    r, w = os.pipe()  # both close-on-exec, as Python creates them
    other = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(other, True)
    os.write(w, b"hello")
    os.close(w)
    try:
        assert run(make_plan(), ["sh", "-c", f"ls /proc/$$/fd; cat /proc/self/fd/{r}"], keep_fds=[r]) == 0
    finally:
        os.close(r)
        os.close(other)
    *fds, data = capfd.readouterr().out.split()
    assert sorted(map(int, fds)) == [0, 1, 2, r]
    assert data == "hello"


def test_keep_fd_must_be_open():
    """--keep-fd of a closed fd is refused before fork."""
    with pytest.raises(LaunchError) as e:
        run(make_plan(), ["true"], keep_fds=[987])
    assert e.value.exit_code == 125
    assert str(e.value) == "--keep-fd 987: not an open file descriptor"


def test_environment_is_exactly_the_allow_list(capfd, monkeypatch):
    """The workload sees the passed variables, the plan's fixed values and --env, nothing else."""
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    plan = make_plan(environment={"pass": ["PATH", "LANG", "NOT_SET_HERE"], "set": {"FIXED": "v"}})
    assert run(plan, ["env"], env_overrides=["EXTRA=a=b", "HOME"]) == 0
    got = dict(line.split("=", 1) for line in capfd.readouterr().out.splitlines())
    assert got == {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "FIXED": "v", "EXTRA": "a=b", "HOME": "/root"}


def test_rlimits_are_applied(capfd):
    """rlimits from the plan are set before exec."""
    plan = make_plan(rlimits={"NOFILE": [64, 64], "CORE": [0, 0]})
    assert run(plan, ["sh", "-c", "ulimit -n; ulimit -c"]) == 0
    assert capfd.readouterr().out.split() == ["64", "0"]


# --- privileges ---------------------------------------------------------------------------------------


def test_capabilities_dropped_and_no_new_privs(capfd):
    """Root's workload has no capability in any set, an empty bounding set, and no_new_privs."""
    assert run(make_plan(), ["cat", "/proc/self/status"]) == 0
    status = status_fields(capfd.readouterr().out)
    assert status["Uid"].split()[0] == "0"
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, key
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_new_session_and_default_signals(capfd):
    """The workload leads its own session, blocks no signal and ignores none (Python ignores SIGPIPE)."""
    assert run(make_plan(), ["cat", "/proc/self/status"]) == 0
    status = status_fields(capfd.readouterr().out)
    assert status["NSsid"] == status["Pid"]
    assert int(status["SigBlk"], 16) == 0
    assert int(status["SigIgn"], 16) == 0


def test_unsupervised_workload_stays_in_the_launchers_pid_namespace(capfd):
    """Only supervised runs (--audit, complain mode) get a PID namespace and an init: a plain run's workload
    is the launcher's own child, with one pid (NSpid has a single entry)."""
    assert run(make_plan(), ["cat", "/proc/self/status"]) == 0
    status = status_fields(capfd.readouterr().out)
    assert status["NSpid"].split() == [status["Pid"]]
    assert int(status["PPid"]) == os.getpid()


PRIVILEGE_PROBE = r"""
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def res(ret):
    return "ok" if ret == 0 else errno.errorcode[ctypes.get_errno()]
print("uid", os.getuid())
print("mount", res(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
print("chroot", res(libc.chroot(b"/")))
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("raw ok")
except OSError as e:
    print("raw", errno.errorcode[e.errno])
"""


def test_root_inside_cannot_mount_chroot_or_open_raw_sockets(capfd):
    """With capabilities dropped (no Landlock, which would also stop mount), uid 0 gets EPERM."""
    assert run(make_plan(landlock=False), [PY, "-I", "-c", PRIVILEGE_PROBE]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out == ["uid 0", "mount EPERM", "chroot EPERM", "raw EPERM"]


# --- network namespace ------------------------------------------------------------------------------

NET_PROBE = r"""
import errno, os, socket
print(sorted(name for _, name in socket.if_nameindex()))
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", 9))
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
print(os.readlink("/proc/self/ns/net"))
"""


@pytest.mark.parametrize(
    "mode, expect",
    [("none", "ENETUNREACH"), ("loopback", "ECONNREFUSED")],
)
def test_private_network_namespace(capfd, mode, expect):
    """none: only lo, and it is down; loopback: lo is up (connecting to a closed port is refused)."""
    assert run(make_plan(netns=mode), [PY, "-I", "-c", NET_PROBE]) == 0
    names, result, ns = capfd.readouterr().out.splitlines()
    assert names == "['lo']"
    assert result == expect
    assert ns != os.readlink("/proc/self/ns/net")


def test_unavailable_netns_is_refused_or_degraded_per_compat(monkeypatch, capfd):
    """Without user namespaces, strict compat refuses with the reason; best-effort runs on the host network."""
    import sandboxer.launch.run as run_mod
    from sandboxer.mechanisms.netns.probe import NetnsHost

    reason = "user namespaces are disabled (sysctl user.max_user_namespaces=0)"
    monkeypatch.setattr(run_mod, "probe_netns", lambda: NetnsHost(False, True, reason))
    with pytest.raises(LaunchError) as e:
        run(make_plan(netns="none"), ["true"])
    assert e.value.exit_code == 125
    assert str(e.value).startswith(f"the plan asks for a private network namespace (netns: none), but {reason}.\n")
    assert run(make_plan(netns="none"), ["readlink", "/proc/self/ns/net"], best_effort=True) == 0
    out, err = capfd.readouterr()
    assert out.strip() == os.readlink("/proc/self/ns/net")
    assert "running on the host network (compat.netns: best-effort)" in err


def test_host_network(capfd):
    """host: the workload shares the launcher's network namespace."""
    assert run(make_plan(netns="host"), ["readlink", "/proc/self/ns/net"]) == 0
    assert capfd.readouterr().out.strip() == os.readlink("/proc/self/ns/net")


# --- failures before and after fork -----------------------------------------------------------------


def test_bad_bpf_fails_in_the_child_with_125_and_leaves_no_child():
    """A program the kernel rejects: the child reports step + errno, the parent says so, nothing is left."""
    with pytest.raises(LaunchError) as e:
        run(make_plan(), ["true"], bpf=NO_RETURN)
    assert e.value.exit_code == 125
    assert e.value.render().startswith("sandboxer: seccomp(SECCOMP_SET_MODE_FILTER) failed: EINVAL: Invalid argument\n")
    assert children() == []


def test_bpf_of_wrong_size_is_refused_before_fork():
    """A program that is not whole instructions never reaches the kernel."""
    with pytest.raises(LaunchError) as e:
        run(make_plan(), ["true"], bpf=ALLOW_ALL[:5])
    assert e.value.exit_code == 125
    assert str(e.value) == "the seccomp program is 5 bytes, not a non-empty multiple of 8"


def test_missing_landlock_path_names_its_manifest_line():
    """A granted path that does not exist is an error naming its `at`, before fork."""
    plan = make_plan(paths=[*BASE_PATHS, rule("/nonexistent/data", READ, "test.yaml:9:7")])
    with pytest.raises(LaunchError) as e:
        run(plan, ["true"])
    assert e.value.exit_code == 125
    assert str(e.value).startswith(
        "cannot open /nonexistent/data (test.yaml:9:7) for a Landlock rule: ENOENT: No such file or directory."
    )
    assert children() == []


def test_missing_landlock_path_is_a_warning_with_best_effort(capfd):
    """--best-effort skips the rule of a missing path with a warning, and runs."""
    plan = make_plan(paths=[*BASE_PATHS, rule("/nonexistent/data", READ, "test.yaml:9:7")])
    assert run(plan, ["true"], best_effort=True) == 0
    err = capfd.readouterr().err
    assert "sandboxer: warning: cannot open /nonexistent/data (test.yaml:9:7)" in err


def test_landlock_is_enforced(capfd, tmp_path):
    """A file outside the granted paths cannot be written (the base plan grants only reads)."""
    target = tmp_path / "out"
    assert run(make_plan(), ["sh", "-c", f"echo x > {target}"]) != 0
    assert not target.exists()
    assert "Permission denied" in capfd.readouterr().err


# --- command resolution -----------------------------------------------------------------------------


def test_command_not_found_lists_the_searched_dirs():
    """127, naming every PATH directory that was searched."""
    plan = make_plan(environment={"pass": [], "set": {"PATH": "/nonexistent-a:/nonexistent-b"}})
    with pytest.raises(LaunchError) as e:
        run(plan, ["no-such-command"])
    assert e.value.exit_code == 127
    assert str(e.value) == "no-such-command: command not found; searched /nonexistent-a, /nonexistent-b"


def test_command_not_executable(tmp_path):
    """126 for a file without execute permission."""
    f = tmp_path / "script"
    f.write_text("#!/bin/sh\n")
    f.chmod(0o644)
    plan = make_plan(paths=[*BASE_PATHS, rule(str(tmp_path), EXEC, "test.yaml:9:7")])
    with pytest.raises(LaunchError) as e:
        run(plan, [str(f)])
    assert e.value.exit_code == 126
    assert str(e.value) == f"{f}: not executable (permission denied)"


def test_command_not_granted_names_the_grant_to_add(tmp_path):
    """125 for a command the plan does not let the child execute, with the line to change."""
    exe = tmp_path / "mytrue"
    shutil.copy("/usr/bin/true", exe)
    plan = make_plan(environment={"pass": [], "set": {"PATH": f"{tmp_path}:/usr/bin"}})
    with pytest.raises(LaunchError) as e:
        run(plan, ["mytrue"])
    assert e.value.exit_code == 125
    assert str(e.value) == (
        f"the manifest does not let the sandbox execute {exe} (found as 'mytrue' on PATH).\n"
        f"           Add {{path: {exe}, access: exec}} to wasi:filesystem/preopens (test.yaml:6:7)."
    )


def test_path_search_skips_ungranted_copies(capfd, tmp_path):
    """An ungranted file earlier on PATH is passed over for a granted one."""
    shutil.copy("/usr/bin/true", tmp_path / "sh")
    plan = make_plan(environment={"pass": [], "set": {"PATH": f"{tmp_path}:/usr/bin"}})
    assert run(plan, ["sh", "-c", "exit 3"]) == 3


def test_exec_time_enoent_is_127(tmp_path):
    """execve failing with ENOENT in the child (missing #! interpreter) gives 127 and the errno."""
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    plan = make_plan(paths=[*BASE_PATHS, rule(str(tmp_path), EXEC, "test.yaml:9:7")])
    with pytest.raises(LaunchError) as e:
        run(plan, [str(script)])
    assert e.value.exit_code == 127
    assert str(e.value).startswith(f"execve({script}) failed: ENOENT: No such file or directory\n")
    assert children() == []


def test_exec_time_eacces_is_126(tmp_path):
    """An interpreter without the exec grant: Landlock makes execve fail with EACCES, giving 126."""
    shutil.copy("/usr/bin/dash", tmp_path / "interp")
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "script"
    script.write_text(f"#!{tmp_path}/interp\nexit 0\n")
    script.chmod(0o755)
    plan = make_plan(paths=[*BASE_PATHS, rule(str(tmp_path / "bin"), EXEC, "test.yaml:9:7")])
    with pytest.raises(LaunchError) as e:
        run(plan, [str(script)])
    assert e.value.exit_code == 126
    assert str(e.value).startswith(f"execve({script}) failed: EACCES: Permission denied\n")


# --- cgroups, dry run, stats -------------------------------------------------------------------------

PIDS_ONLY = {
    "pids_max": 64,
    "v2": {"pids.max": "64"},
    "v1": {"pids": {"pids.max": "64"}},
    "at": {"pids": "test.yaml:12:3"},
}


def _leaves() -> list[str]:
    found = []
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids"):
        if os.path.isdir(root):
            found += [os.path.join(root, d) for d in os.listdir(root) if d.startswith("sandboxer-launch-test")]
    return found


def test_workload_runs_in_its_cgroup_leaf_which_is_removed(capfd):
    """With limits in the plan, the workload is in a fresh leaf (v1 and v2); the leaf is gone afterwards."""
    assert run(make_plan(cgroups=PIDS_ONLY), ["cat", "/proc/self/cgroup", "/proc/self/limits"]) == 0
    out = capfd.readouterr().out
    lines = [ln for ln in out.splitlines() if "sandboxer-launch-test" in ln]
    assert any(ln.split(":")[1] == "pids" for ln in lines), out
    if os.path.isdir("/sys/fs/cgroup/unified"):
        assert any(ln.startswith("0::") for ln in lines), out
    assert _leaves() == []


def test_timeout_kills_a_grandchild_that_left_the_group_through_the_cgroup(capfd):
    """A grandchild in a new session escapes killpg, not the cgroup: it dies with the sandbox."""
    code = run(make_plan(cgroups=PIDS_ONLY), ["sh", "-c", "setsid sleep 100 & echo $!; sleep 100"], timeout=0.5)
    assert code == 137
    assert gone(int(capfd.readouterr().out.split()[0]))
    assert _leaves() == []


def test_dry_run_starts_nothing(capfd, tmp_path):
    """--dry-run prints what would be enforced and runs nothing."""
    marker = tmp_path / "ran"
    assert run(make_plan(netns="loopback"), ["touch", str(marker)], dry_run=True) == 0
    out = capfd.readouterr().out
    assert not marker.exists()
    assert "command      /usr/bin/touch" in out
    assert "netns        loopback: private network namespace, lo up" in out
    assert "capabilities all dropped, bounding set" in out


def test_stats_are_printed(capfd):
    """--stats adds one line with exit code, times and peak memory on stderr."""
    assert run(make_plan(), ["true"], stats=True) == 0
    assert capfd.readouterr().err.startswith("sandboxer: stats: exit 0, wall ")


# --- the run path stays small -------------------------------------------------------------------------


def test_launch_path_imports_no_heavy_modules():
    """Importing the launcher pulls in none of typer, yaml, pyseccomp, rich (or click)."""
    code = (
        f"import sys; sys.path.insert(0, {REPO!r}); import sandboxer.launch.run;"
        " print(sorted(m for m in ('typer', 'yaml', 'pyseccomp', 'rich', 'click') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


IMPORT_SPY = """
import os, sys
sys.path.insert(0, {repo!r})
from sandboxer.launch.run import LaunchOptions, launch
from tests.integration.test_launch import ALLOW_ALL, PIDS_ONLY, make_plan

class Spy:
    def find_spec(self, name, path=None, target=None):
        os.write(2, b"import %d %s\\n" % (os.getpid(), name.encode()))
        return None

parent = os.getpid()
launch(make_plan(netns="loopback", rlimits={{"NOFILE": [64, 64]}}, cgroups=PIDS_ONLY), ALLOW_ALL, ["/bin/true"],
       LaunchOptions())  # warm: the parent's lazy imports happen here
sys.meta_path.insert(0, Spy())
code = launch(make_plan(netns="loopback", rlimits={{"NOFILE": [64, 64]}}, cgroups=PIDS_ONLY), ALLOW_ALL,
              ["/bin/true"], LaunchOptions())
os.write(2, b"parent %d exit %d\\n" % (parent, code))
"""


def test_child_imports_nothing_between_fork_and_exec():
    """An import hook installed before fork sees no import at all from the child."""
    r = subprocess.run([sys.executable, "-c", IMPORT_SPY.format(repo=REPO)], capture_output=True, text=True, cwd=REPO)
    lines = r.stderr.splitlines()
    parent = next(ln for ln in lines if ln.startswith("parent ")).split()[1]
    assert lines[-1] == f"parent {parent} exit 0", r.stderr
    assert [ln for ln in lines if ln.startswith("import ") and ln.split()[1] != parent] == []


def test_a_cached_run_imports_only_the_launch_path(tmp_path):
    """`sandboxer run` of a cached plan (the command as installed, bin/sandboxer) loads none of the heavy or
    unrelated modules: no CLI, YAML, JSON, re, enum, typing, dataclasses, ctypes, audit or wasm code."""
    m = tmp_path / "true.yaml"
    m.write_text("sandboxer: 1\nname: t\nextends: [builtin:dynamic-linking]\nimports:\n"
                 "  wasi:filesystem/preopens:\n    - {path: /usr/bin/true, access: exec}\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": REPO}
    cmd = [sys.executable, "-X", "importtime", os.path.join(REPO, "bin", "sandboxer"), "run", str(m), "--", "/usr/bin/true"]
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # fills the plan cache
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    loaded = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    heavy = {"typer", "click", "rich", "yaml", "pyseccomp", "json", "re", "enum", "typing", "dataclasses", "ctypes",
             "wasmtime", "hashlib", "signal", "argparse"}
    assert loaded & heavy == set()
    assert not {m for m in loaded if m.startswith(("sandboxer.audit", "sandboxer.wasm", "sandboxer.mechanisms.cgroups"))}
