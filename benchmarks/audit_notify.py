#!/usr/bin/env python3
"""Benchmark: the cost of one recorded seccomp denial (user notification answered by the parent).

A forked child installs the real filter of a manifest's plan and makes N denied syscalls (mkdir,
which examples/hello.yaml does not grant) in a loop, timing itself:

  errno     the plan's filter as is: the kernel answers EPERM, nothing is recorded (the baseline)
  notify    assemble(plan["seccomp"], violation="notify"): each denial waits for the parent,
            which receives it and answers EPERM
  recorded  as notify, and the parent also decodes the arguments (path read from /proc/PID/mem),
            checks the notification id, builds the JSON record and writes it to a file

It also times an allowed syscall (getppid) under the errno and the notify filter: the kernel's
action cache makes allowed calls skip the filter, so auditing must not change their cost.

    .venv/bin/python benchmarks/audit_notify.py [-n 20000] [--manifest examples/hello.yaml]

Must run as root (or with ptrace access to its own children). Target: <= 50 us per recorded denial.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandboxer.audit import notify  # noqa: E402
from sandboxer.audit.decode import decode  # noqa: E402
from sandboxer.launch import kernel  # noqa: E402
from sandboxer.manifest.load import load_policy  # noqa: E402
from sandboxer.mechanisms.seccomp.apply import prepare_filter  # noqa: E402
from sandboxer.mechanisms.seccomp.bpf import assemble  # noqa: E402
from sandboxer.plan import Target, compile_plan  # noqa: E402


def child_loop(n: int, path: bytes) -> dict:
    """Runs under the filter: time n denied mkdirs, then n allowed getppids."""
    t0 = time.perf_counter()
    denied = 0
    for _ in range(n):
        try:
            os.mkdir(path)
        except PermissionError:
            denied += 1
    t1 = time.perf_counter()
    for _ in range(n):
        os.getppid()
    t2 = time.perf_counter()
    return {"denied": denied, "deny_us": (t1 - t0) / n * 1e6, "allowed_us": (t2 - t1) / n * 1e6}


def run(prog: bytes, mode: str, n: int, path: bytes, sink) -> dict:
    filt = prepare_filter(prog, notify.SECCOMP_FILTER_FLAG_NEW_LISTENER if mode != "errno" else 0)
    res_r, res_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            kernel.set_no_new_privs()
            fd = filt.install()
            if mode != "errno":
                notify.child_handoff(fd, report_w, ack_r)
            os.write(res_w, pickle.dumps(child_loop(n, path)))
        finally:
            os._exit(0)
    for fd in (res_w, report_w, ack_r):
        os.close(fd)
    answered = 0
    if mode != "errno":
        listener = notify.parent_handoff(pid, report_r, ack_w)
        seq = 0
        while listener.wait(5) == 1:
            notif = listener.recv()
            if notif is None:
                continue
            if mode == "recorded":
                call = decode(notif)
                trusted = listener.id_valid(notif.id)
                seq += 1
                rec = {"v": 1, "type": "violation", "seq": seq, "mechanism": "seccomp", "pid": notif.pid,
                       "syscall": call, "trusted": trusted, "action": "errno:EPERM"}
                sink.write(json.dumps(rec) + "\n")
            listener.respond(notif.id, error=errno.EPERM)
            answered += 1
        listener.close()
        notify.forget(pid)
    for fd in (report_r, ack_w):
        os.close(fd)
    data = b""
    while chunk := os.read(res_r, 65536):
        data += chunk
    os.close(res_r)
    os.waitpid(pid, 0)
    out = pickle.loads(data)
    out["answered"] = answered
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--manifest", default=str(ROOT / "examples" / "hello.yaml"))
    ap.add_argument("--rounds", type=int, default=3, help="best of this many runs per mode")
    opts = ap.parse_args()
    plan = compile_plan(load_policy(opts.manifest), Target(Target.host_arch(), 7))
    section = plan["seccomp"]
    assert not any(e["name"] in ("mkdir", "mkdirat") for e in section["syscalls"]), "mkdir must be denied"
    progs = {"errno": assemble(section), "notify": assemble(section, violation="notify")}
    path = b"/nonexistent-sandboxer-bench/dir"
    results = {}
    with open(os.devnull, "w") as sink:
        for mode in ("errno", "notify", "recorded"):
            best = None
            for _ in range(opts.rounds):
                r = run(progs["errno" if mode == "errno" else "notify"], mode, opts.n, path, sink)
                assert r["denied"] == opts.n, r
                assert mode == "errno" or r["answered"] == opts.n, r
                if best is None or r["deny_us"] < best["deny_us"]:
                    best = r
            results[mode] = best
    base = results["errno"]["deny_us"]
    print(f"{opts.n} denied mkdir() per run, best of {opts.rounds}; manifest {os.path.relpath(opts.manifest)}")
    print(f"{'mode':<10} {'us/denial':>10} {'ratio':>7} {'allowed getppid us':>19}")
    for mode, r in results.items():
        print(f"{mode:<10} {r['deny_us']:>10.2f} {r['deny_us'] / base:>6.1f}x {r['allowed_us']:>19.3f}")
    rec = results["recorded"]["deny_us"]
    print(f"recorded denial: {rec:.1f} us (target <= 50 us): {'OK' if rec <= 50 else 'OVER TARGET'}")
    return 0 if rec <= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
