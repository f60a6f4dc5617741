"""Launch cost of `sandboxer run /bin/true` against bare exec, bwrap, firejail and a stdlib-only lower bound.

`sandboxer` is measured as installed: the native front (sandboxer/launch/front.c, built here from this
tree) running the cached launch image, and the Python launcher it hands everything else to (what
`sandboxer` is where no C compiler was available at install). Every command runs N times,
interleaved round by round (so machine noise hits all alike), with the same interpreter. Prints
median and p90 in ms and ratios. Usage:

    .venv/bin/python benchmarks/launch.py [-n 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from installed import build_front

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

STRICT = """sandboxer: 1
name: true-strict
extends: [builtin:dynamic-linking]
imports:
  wasi:filesystem/preopens:
    - {path: /usr/bin/true, access: exec}
"""
LIMITS = STRICT + "limits: {memory: 64Mi, pids: 8, cpu: 0.5}\n"

# The v2 placement row. These machines are hybrid: the limits are enforced by v1 hierarchies, which a
# child can only join by writing cgroup.procs (≈ 11-15 ms: the write waits for an RCU grace period).
# cgroup2 (/sys/fs/cgroup/unified) has no controllers here, so a pure-v2 launch cannot be measured
# with its limits; this shim hides the v1 hierarchies from the probe and runs with --best-effort, so
# the launcher still creates its cgroup2 leaf, starts the child in it with clone3(CLONE_INTO_CGROUP),
# kills with cgroup.kill and removes it: the placement cost only, no limit files written.
V2_SHIM = """
import sys
from sandboxer.mechanisms.cgroups import probe
_probe = probe.probe_cgroups
probe.probe_cgroups = lambda: _probe().replace(layout="v2", v1_dirs={}, v1_writable={}, memsw=False)
from sandboxer.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
NO_LIMITS = "sandboxer run (cached, strict): native front, launch image"
PYTHON_RUN = "sandboxer run (cached, strict): the Python launcher"
AUDIT = "sandboxer run --audit (supervised: PID namespace + init)"
V1_LIMITS = "sandboxer run + memory+pids+cpu, v1 (child writes cgroup.procs)"
V2_BASE = "v2 shim, no limits"
V2_PLACEMENT = "v2 shim + limits: clone3 into unified leaf, no ctrl"

# The floor for any Python launcher: fork, no_new_privs, a Landlock ruleset, a seccomp filter, exec.
LB_TEARDOWN = "python lower bound, exiting through interpreter teardown"
LOWER_BOUND = r"""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
attr = struct.pack("QQQ", 0xFFFF, 0x3, 0x3)
prog = struct.pack("<HBBI", 0x06, 0, 0, 0x7FFF0000)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
fprog = Fprog(1, prog)
fd = libc.syscall(444, attr, len(attr), 0)
for path in ("/usr", "/etc/ld.so.cache"):
    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    rule = struct.pack("<Qi", 0x5 | (0x8 if path == "/usr" else 0), pfd)  # execute, read_file, read_dir
    assert libc.syscall(445, fd, 1, rule, 0) == 0
    os.close(pfd)
pid = os.fork()
if pid == 0:
    libc.prctl(38, 1, 0, 0, 0)
    libc.syscall(446, fd, 0)
    libc.syscall(317, 1, 0, ctypes.byref(fprog))
    os.execv("/usr/bin/true", ["true"])
_, status = os.waitpid(pid, 0)
os._exit(os.waitstatus_to_exitcode(status))  # as sandboxer does: no interpreter teardown
"""


def commands(tmp: Path) -> dict[str, list[str]]:
    strict, limits = tmp / "true.yaml", tmp / "true-limits.yaml"
    strict.write_text(STRICT)
    limits.write_text(LIMITS)
    # bin/sandboxer is the Python launcher as installed (pip only rewrites its #! line); PYTHONPATH below
    # makes it import this working tree rather than whatever version is installed. The front is built
    # next to a copy of it named sandboxer-py, as setup.py installs them.
    sandboxer = [PY, str(REPO / "bin" / "sandboxer"), "run"]
    cmds = {
        "bare /bin/true": ["/bin/true"],
        "python -c pass": [PY, "-c", "pass"],
        "python lower bound (fork+landlock+seccomp+exec)": [PY, "-c", LOWER_BOUND],
        LB_TEARDOWN: [PY, "-c", LOWER_BOUND.replace("os._exit(", "raise SystemExit(")],
        PYTHON_RUN: [*sandboxer, str(strict), "--", "/usr/bin/true"],
        # A supervised run: seccomp listener handed to sandboxer, the workload under an init of its own
        # PID namespace, launch and exit records (written to a file, appended).
        AUDIT: [*sandboxer, str(strict), "--audit", str(tmp / "audit.jsonl"), "--", "/usr/bin/true"],
    }
    front = build_front(tmp, PY)
    if front:
        cmds[NO_LIMITS] = [front, "run", str(strict), "--", "/usr/bin/true"]
    if os.geteuid() == 0:  # creating cgroups below our own needs root on these machines
        shim = [PY, "-c", V2_SHIM, "run"]
        cmds[V1_LIMITS] = [*sandboxer, str(limits), "--", "/usr/bin/true"]
        cmds[V2_BASE] = [*shim, str(strict), "--", "/usr/bin/true"]
        cmds[V2_PLACEMENT] = [*shim, "--best-effort", str(limits), "--", "/usr/bin/true"]
    if shutil.which("bwrap"):
        cmds["bwrap --ro-bind / / --unshare-all"] = ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "/bin/true"]
    if shutil.which("firejail"):
        cmds["firejail --noprofile"] = ["firejail", "--quiet", "--noprofile", "/bin/true"]
    return cmds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with bytecode caches, as installed code has
        cmds = commands(tmp)
        for cmd in cmds.values():  # warm up: fills the plan cache, page cache
            subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(n):
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"launch of /bin/true, {n} interleaved rounds, interpreter {PY}")
    print(f"{'command':<64} {'median ms':>10} {'p90 ms':>8}")
    for k, v in times.items():
        print(f"{k:<64} {med[k]:>10.2f} {statistics.quantiles(v, n=10)[-1]:>8.2f}")
    lb = med["python lower bound (fork+landlock+seccomp+exec)"]
    rows = [("sandboxer", med[NO_LIMITS])] if NO_LIMITS in med else []
    rows.append(("Python launcher", med[PYTHON_RUN]))
    print()
    for label, ours in rows:
        print(f"{label + ' / lower bound':<34} = {ours / lb:.2f}x   (target <= 1.3; both skip interpreter teardown)")
        print(f"{label + ' / lower bound exiting normally':<34} = {ours / med[LB_TEARDOWN]:.2f}x")
        if "firejail --noprofile" in med:
            print(f"{label + ' / firejail':<34} = {ours / med['firejail --noprofile']:.2f}x   (target <= 0.5)")
        if "bwrap --ro-bind / / --unshare-all" in med:
            print(f"{label + ' / bwrap':<34} = {ours / med['bwrap --ro-bind / / --unshare-all']:.2f}x")
    ours = med[PYTHON_RUN]  # the rows below go through the Python launcher: compare with its own plain run
    print(f"supervised (--audit)         = {med[AUDIT] - ours:+.2f} ms over the same run unsupervised "
          "(audit imports, records, listener hand-over, PID namespace and its init)")
    if V1_LIMITS in med:
        print(f"limits, v1 placement         = {med[V1_LIMITS] - ours:+.2f} ms over no limits "
              "(memory, pids, cpu leaves; the child's cgroup.procs write waits for an RCU grace period)")
        print(f"limits, v2 clone3 placement  = {med[V2_PLACEMENT] - med[V2_BASE]:+.2f} ms over the same shim "
              "without limits (target <= 3; placement, cgroup.kill and rmdir only: cgroup2 has no controllers here)")


if __name__ == "__main__":
    main()
