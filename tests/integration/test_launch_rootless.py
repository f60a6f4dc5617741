"""The same launcher run as nobody (setpriv): seccomp, Landlock, no_new_privs and a private netns need no privilege."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.test_launch import (
    ALLOW_ALL,
    EXEC,
    NET_PROBE,
    NR_UNAME,
    PY,
    READ,
    REPO,
    SECCOMP_RET_ERRNO,
    deny_syscall,
    gone,
    launcher_argv,
    make_plan,
    rule,
    status_fields,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody with setpriv"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed"),
]

NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
# /usr readable and executable (enough for sh, cat and python3) and /proc readable; not /etc.
USR_ONLY = [
    rule("/usr", EXEC, "test.yaml:8:7"),
    rule("/dev/null", ["write_file"], "test.yaml:7:7"),
    rule("/proc", READ, "test.yaml:9:7"),
]


def as_nobody(plan: dict, argv: list[str], bpf: bytes = ALLOW_ALL, **opts: object) -> subprocess.CompletedProcess:
    """Run the launcher as uid/gid 65534 without supplementary groups; capture its output."""
    return subprocess.run(
        SETPRIV + launcher_argv(plan, argv, bpf, **opts),
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
        timeout=60,
    )


@pytest.fixture(scope="module", autouse=True)
def nobody_can_run_the_launcher() -> None:
    """Skip (with the reason) when nobody cannot import the launcher with this interpreter."""
    probe = subprocess.run(
        SETPRIV + [sys.executable, "-c", f"import sys; sys.path.insert(0, {REPO!r}); import sandboxer.launch.run"],
        capture_output=True, text=True, cwd="/", timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run {sys.executable} with the repository on sys.path: {probe.stderr.strip()}")


def test_rootless_confinement_is_in_place():
    """As nobody: no capabilities, no_new_privs, a seccomp filter, and the same uid inside."""
    r = as_nobody(make_plan(paths=USR_ONLY), ["cat", "/proc/self/status"])
    assert r.returncode == 0, r.stderr
    status = status_fields(r.stdout)
    assert status["Uid"].split()[0] == str(NOBODY)
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_rootless_seccomp_denies():
    """A filter installed without privilege answers uname with EPERM."""
    r = as_nobody(make_plan(paths=USR_ONLY), ["sh", "-c", "uname; echo after=$?"],
                  bpf=deny_syscall(NR_UNAME, SECCOMP_RET_ERRNO | 1))
    assert r.returncode == 0, r.stderr
    assert "after=1" in r.stdout and "Operation not permitted" in r.stderr


def test_rootless_landlock_denies_what_unix_permissions_allow():
    """/etc/hostname is world-readable, but the plan grants only /usr: Landlock says no."""
    control = as_nobody(make_plan(landlock=False), ["cat", "/etc/hostname"])
    assert control.returncode == 0, control.stderr
    r = as_nobody(make_plan(paths=USR_ONLY), ["cat", "/etc/hostname"])
    assert r.returncode == 1
    assert "Permission denied" in r.stderr


@pytest.mark.parametrize("mode, expect", [("none", "ENETUNREACH"), ("loopback", "ECONNREFUSED")])
def test_rootless_private_network_namespace(mode, expect):
    """As nobody, the private netns comes from a user namespace mapping nobody to itself."""
    probe = NET_PROBE + "print(open('/proc/self/uid_map').read().split())\nprint(os.getuid())\n"
    r = as_nobody(make_plan(paths=USR_ONLY, netns=mode), [PY, "-I", "-c", probe])
    assert r.returncode == 0, r.stderr
    names, result, ns, uid_map, uid = r.stdout.splitlines()
    assert names == "['lo']"
    assert result == expect
    assert ns != os.readlink("/proc/self/ns/net")
    assert uid_map == str([str(NOBODY), str(NOBODY), "1"])
    assert uid == str(NOBODY)


def test_rootless_user_namespace_caps_are_dropped_too():
    """Inside its own user namespace the child held every capability; none survive to the workload."""
    r = as_nobody(make_plan(paths=USR_ONLY, netns="none"), ["cat", "/proc/self/status"])
    assert r.returncode == 0, r.stderr
    status = status_fields(r.stdout)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, key


def test_rootless_workload_in_a_user_namespace_dies_with_the_launcher():
    """PR_SET_PDEATHSIG survives the unshare(CLONE_NEWUSER) credential change."""
    proc = subprocess.Popen(
        SETPRIV + launcher_argv(make_plan(paths=USR_ONLY, netns="none"), ["sh", "-c", "echo $$; exec sleep 100"]),
        stdout=subprocess.PIPE, text=True, cwd="/",
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


def test_rootless_exit_codes_pass_through():
    """Exit codes and signals come back the same way as for root."""
    assert as_nobody(make_plan(paths=USR_ONLY), ["sh", "-c", "exit 7"]).returncode == 7
    assert as_nobody(make_plan(paths=USR_ONLY), ["sh", "-c", "kill -USR1 $$"]).returncode == 138


def test_rootless_cgroup_limits_are_refused_when_strict():
    """nobody cannot create cgroups here: strict compat refuses with the reason, best-effort warns and runs."""
    cgroups = {"pids_max": 16, "v2": {"pids.max": "16"}, "v1": {"pids": {"pids.max": "16"}},
               "at": {"pids": "test.yaml:12:3"}}
    r = as_nobody(make_plan(paths=USR_ONLY, cgroups=cgroups), ["true"])
    assert r.returncode == 125
    assert r.stderr.startswith("sandboxer: the plan's resource limits cannot be enforced here:\n")
    r = as_nobody(make_plan(paths=USR_ONLY, cgroups=cgroups), ["true"], best_effort=True)
    assert r.returncode == 0, r.stderr
    assert "sandboxer: warning: the pids limit cannot be enforced" in r.stderr
