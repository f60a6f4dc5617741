"""The native plan the wasmtime host runs under: the manifest's own plan plus what the running runtime needs.

Defence in depth: a bug in wasmtime (or in this package) must not hand over more than the manifest
grants. The host is the forked child of `sandboxer run` (or, with nothing to supervise, `sandboxer run`
itself) and never executes anything: everything it runs (the interpreter, the stdlib, sandboxer,
wasmtime and its shared library, the compiled module) was loaded or mapped before its confinement steps. So the host gets the manifest's Landlock rules (its
preopens, its TCP ports), seccomp filter, cgroup limits, rlimits and network namespace, with only
these changes, each with its reason:

Landlock: no additions. The child opens only what the module's preopens reach (the manifest's
  rules); the compiled module is already mapped and the cache is written by the parent. wasmtime
  opens nothing of its own once running (checked with `strace -f`: the only path lookups after
  landlock_restrict_self are the guest's, under its preopens).
seccomp (the manifest's filter, then):
  - ioctl TIOCSCTTY, TIOCSPGRP, TIOCNOTTY: refused. A host run in place keeps its caller's session and
    terminal (sandboxer.launch.sequence), so it must not take a terminal or move its foreground group
  - execve and execveat: refused (SECCOMP violation action), whatever the manifest grants. The host
    has no reason to exec; a runtime bug that reaches execve gets EPERM (or the kill action).
  - clone with CLONE_THREAD and no namespace flags: the epoch thread (wall-time deadline) and
    wasmtime-wasi's blocking I/O pool (tokio's spawn_blocking: every filesystem call of the guest
    runs on a pool thread). clone3 stays ENOSYS, so glibc falls back to clone, whose flags the
    filter can read.
  - @clock: the epoch thread sleeps until the deadline (clock_nanosleep); tokio's pool threads wait
    with a timeout (futex, and clock_gettime outside the vDSO)
  - @random: getrandom, for wasmtime's and tokio's hash seeds
limits:
  - memory: the manifest's limit applies to the module's linear memory (store limits, in the host);
    the host's cgroup gets that plus HOST_MEMORY_OVERHEAD for what the child writes of the
    interpreter's and wasmtime's memory (copy-on-write pages) and the compiled code
  - pids: the manifest's limit + HOST_THREADS. A module cannot create processes or threads at all
    (no wasi-threads here), so pids bounds only the runtime's own threads, which it needs: when
    tokio cannot start a pool thread, the guest's filesystem call never returns
  - wall time: the module's deadline is enforced inside the runtime (clean message, exit 137); the
    native launcher's kill is a backstop HOST_WALL_GRACE_S later (sandboxer.wasm.run passes it as
    LaunchOptions.grace_s, for the manifest's wall-time and --timeout alike)
  - address-space (RLIMIT_AS) is not applied to the host: wasmtime reserves several GiB of virtual
    space per linear memory (guard regions); memory is bounded by the store limit and the cgroup
stdio: the host keeps fds 0-2 so that its own messages reach the user; what the module sees of
stdio is decided by the WASI configuration (ungranted streams are empty / discarded).
"""

from __future__ import annotations

import marshal
import os

HOST = "sandboxer:wasm-host"
# asm-generic/ioctls.h (x86_64 and aarch64 alike)
JOB_CONTROL_IOCTLS = (("TIOCSCTTY", 0x540E), ("TIOCSPGRP", 0x5410), ("TIOCNOTTY", 0x5422))
HOST_PLAN_FORMAT = 6  # bump when derive_host_plan changes what it produces (the host-plan cache key)
HOST_MEMORY_OVERHEAD = 128 * 1024 * 1024
HOST_WALL_GRACE_S = 2.0
HOST_THREADS = 32
HOST_SECCOMP_GROUPS = ("@clock", "@random")
HOST_SECCOMP_REFUSED = ("execve", "execveat")
CLONE_NEW_MASK = 0x7E020000  # = mechanisms.seccomp.compile.CLONE_NEW_MASK
CLONE_THREAD = 0x00010000


def _add_memory_overhead(cgroups: dict) -> None:
    if cgroups.get("memory_max") is None:
        return
    cgroups["memory_max"] += HOST_MEMORY_OVERHEAD
    for section in (cgroups.get("v1") or {}).get("memory", {}), cgroups.get("v2") or {}:
        for key in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max"):
            if key in section and str(section[key]).isdigit():
                section[key] = str(int(section[key]) + HOST_MEMORY_OVERHEAD)


def _add_threads(cgroups: dict) -> None:
    if cgroups.get("pids_max") is not None:
        cgroups["pids_max"] += HOST_THREADS
        for section in (cgroups.get("v1") or {}).get("pids", {}), cgroups.get("v2") or {}:
            if "pids.max" in section:
                section["pids.max"] = str(cgroups["pids_max"])


def _seccomp(section: dict) -> None:
    from ..mechanisms.seccomp import groups
    from ..mechanisms.seccomp.tables import table

    tbl = table(section["arch"])
    entries = {e["name"]: e for e in section["syscalls"]}
    for name in sorted(groups.expand(list(HOST_SECCOMP_GROUPS))):
        if name in tbl.SYSCALLS and name not in entries:
            entries[name] = {"name": name, "nr": tbl.SYSCALLS[name], "action": "allow", "because": [HOST]}
        elif name in entries and entries[name].get("action") != "allow" and "rules" not in entries[name]:
            entries[name] = dict(entries[name], action="allow", because=[*entries[name]["because"], HOST])
    # Refused even in complain mode (where "violation" lets calls run): errno, and "never" so a supervised
    # run still records them (audit/filter.py).
    refused = "errno:EPERM" if section.get("violation") == "log" else "violation"
    for name in HOST_SECCOMP_REFUSED:
        if name in tbl.SYSCALLS:
            entries[name] = {"name": name, "nr": tbl.SYSCALLS[name], "action": refused, "because": [HOST, "never"]}
    threads = {"when": [{"arg": 0, "op": "masked_eq", "value": CLONE_THREAD, "mask": CLONE_NEW_MASK | CLONE_THREAD,
                         "width": 32}], "action": "allow", "why": "the wasm host's threads (epoch timer, I/O pool) only"}
    if "clone" not in entries:
        entries["clone"] = {"name": "clone", "nr": tbl.SYSCALLS["clone"], "action": refused, "because": [HOST],
                            "rules": [threads]}
    elif threads not in entries["clone"].get("rules", ()):
        # The manifest's own clone entry (complain mode always has one): the host's threads come first.
        entries["clone"] = dict(entries["clone"], rules=[threads, *entries["clone"].get("rules", ())])
    # Job control: a host run in place keeps the caller's session and terminal (no setsid), so the ioctls
    # that take a terminal or move its foreground group are refused too (TIOCSTI already is, for all).
    if "ioctl" in entries:
        taken = [{"when": [{"arg": 1, "op": "eq", "value": cmd, "width": 32}], "action": refused,
                  "why": f"{name}: the wasm host never does job control on the caller's terminal"}
                 for name, cmd in JOB_CONTROL_IOCTLS]
        entries["ioctl"] = dict(entries["ioctl"], rules=[*entries["ioctl"].get("rules", ()), *taken])
    section["syscalls"] = sorted(entries.values(), key=lambda e: e["name"])


def cached_host_plan(plan: dict, use_cache: bool = True) -> tuple[dict, bytes]:
    """derive_host_plan(plan), from the host-plan cache when it holds this plan's entry.

    Deriving costs the seccomp group tables and the BPF assembler (~10 ms of imports), on every run;
    the result depends only on the plan and this code, so it is kept next to the module cache, keyed
    by the plan's bytes and sandboxer's version, and used under the module cache's rule (a regular
    file owned by us, not group/other-writable). A cache that cannot be written only costs the time.
    """
    from .. import __version__
    from . import modcache

    blob = marshal.dumps(plan)
    key = modcache.sha256_hex(f"{__version__}\0{HOST_PLAN_FORMAT}\0{marshal.version}\0".encode() + blob)[:32]
    root = os.path.join(os.path.dirname(modcache.cache_root()), "wasm-host")
    path = os.path.join(root, key)
    if use_cache:
        data = modcache.read_entry(path)
        if data is not None:
            try:
                host, bpf = marshal.loads(data)
                if isinstance(host, dict) and isinstance(bpf, bytes):
                    return host, bpf
            except (ValueError, EOFError, TypeError):
                pass
    host, bpf = derive_host_plan(plan)
    if use_cache:
        try:
            modcache.write_atomic(path, marshal.dumps((host, bpf)))  # makes its directories 0700
        except OSError:
            pass
    return host, bpf


def derive_host_plan(plan: dict) -> tuple[dict, bytes]:
    """(host plan, its BPF program): the manifest's plan with the changes listed in this module's docstring."""
    from ..mechanisms.seccomp.bpf import assemble

    host = marshal.loads(marshal.dumps(plan))  # a deep copy (plain data); the caller's (cached) plan stays untouched
    cgroups = host.get("cgroups") or {}
    _add_memory_overhead(cgroups)
    _add_threads(cgroups)
    host["rlimits"] = {k: v for k, v in (host.get("rlimits") or {}).items() if k != "AS"}
    host["stdio"] = {"stdin": True, "stdout": True, "stderr": True}
    _seccomp(host["seccomp"])
    return host, assemble(host["seccomp"])
