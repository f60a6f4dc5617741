"""The native plan the wasmtime host process runs under: the manifest's own plan plus what the runtime needs.

Defence in depth: a bug in wasmtime (or in this package) must not hand over more than the manifest
grants. So the host gets the manifest's Landlock rules (its preopens, its TCP ports), seccomp filter,
cgroup limits, rlimits and network namespace, and only these additions, each with its reason:

Landlock (read-only unless said):
  - the interpreter's real file: execute (the exec itself) and its ELF loader: execute
  - /usr/lib and /etc/ld.so.cache: the shared libraries (libc, libm, libffi for ctypes)
  - the interpreter's prefix (stdlib, lib-dynload, libpython) and the venv's pyvenv.cfg
  - the `sandboxer` and `wasmtime` package directories only (not all of site-packages: the
    bootstrap imports both by file location, so nothing else there is listed or read)
  - the module file itself
  - the module's cache entry directory: read, write and create files (one entry, not the cache)
seccomp (allowed in addition to the manifest's grants; Landlock still decides which paths):
  - @file-read: opening the stdlib, the packages and the module
  - @file-write: writing the compiled module into its cache entry (rename over the old one)
  - @clock: the epoch thread sleeps until the wall-time deadline
  - @random: CPython's hash seed and wasmtime's own randomness (getrandom)
  - clone with CLONE_THREAD, never namespace flags: the epoch thread, and wasmtime-wasi's blocking
    I/O pool (tokio's spawn_blocking: every filesystem call runs on a pool thread; 4 threads for a
    small program that reads one file)
limits:
  - memory: the manifest's limit applies to the module's linear memory (store limits, in the host);
    the host's cgroup gets that plus HOST_MEMORY_OVERHEAD for the interpreter, wasmtime and code
  - pids: the manifest's limit + HOST_THREADS. A module cannot create processes or threads at all
    (no wasi-threads here), so pids bounds only the runtime's own threads, which it needs: when
    tokio cannot start a pool thread, the guest's filesystem call never returns
  - wall time: the module's deadline is enforced inside the runtime (clean message, exit 137); the
    native launcher's kill is a backstop HOST_WALL_GRACE_S later
  - address-space (RLIMIT_AS) is not applied to the host: wasmtime reserves several GiB of virtual
    space per linear memory (guard regions); memory is bounded by the store limit and the cgroup
stdio: the host keeps fds 0-2 so that its own messages reach the user; what the module sees of
stdio is decided by the WASI configuration (ungranted streams are empty / discarded).
"""

from __future__ import annotations

import json
import os
import sys

HOST = "sandboxer:wasm-host"
HOST_MEMORY_OVERHEAD = 128 * 1024 * 1024
HOST_WALL_GRACE_S = 2.0
HOST_THREADS = 32
HOST_SECCOMP_GROUPS = ("@file-read", "@file-write", "@clock", "@random")
CLONE_NEW_MASK = 0x7E020000  # = mechanisms.seccomp.compile.CLONE_NEW_MASK
CLONE_THREAD = 0x00010000

READ = ["read_file", "read_dir"]


def _elf_interpreter(path: str) -> str | None:
    """The PT_INTERP of an ELF file (the dynamic loader the kernel executes), or None."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only (x86_64, aarch64)
                return None
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
                if p_type == 3:  # PT_INTERP
                    f.seek(p_offset)
                    return f.read(p_filesz).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def interpreter() -> str:
    return os.path.realpath(sys.executable)


def host_paths(module: str, cache_entry: str | None, package_dir: str, wasmtime_dir: str) -> list[dict]:
    """The Landlock rules the host adds (each with its reason); paths that do not exist are left out."""
    exe = interpreter()
    rules = [(exe, ["execute", "read_file"], "the Python interpreter that runs wasmtime")]
    loader = _elf_interpreter(exe)
    if loader:
        rules.append((os.path.realpath(loader), ["execute", "read_file"], "the interpreter's ELF loader"))
    rules += [
        ("/usr/lib", READ, "shared libraries (libc, libm, libffi)"),
        ("/etc/ld.so.cache", ["read_file"], "the loader's library index"),
        (os.path.realpath(sys.base_prefix), READ, "the interpreter's standard library and libpython"),
        (os.path.realpath(package_dir), READ, "the sandboxer package (the host's own code)"),
        (os.path.realpath(wasmtime_dir), READ, "the wasmtime package and its shared library"),
        (os.path.realpath(module), ["read_file"], "the module to run"),
    ]
    if sys.prefix != sys.base_prefix:
        rules.append((os.path.join(os.path.realpath(sys.prefix), "pyvenv.cfg"), ["read_file"], "the venv's settings"))
    if cache_entry:
        rules.append((os.path.realpath(cache_entry),
                      ["read_file", "read_dir", "write_file", "make_reg", "remove_file", "truncate"],
                      "this module's compiled-code cache entry"))
    out = []
    for path, access, why in rules:
        if os.path.exists(path):
            out.append({"path": path, "access": sorted(access), "at": None, "because": [HOST], "why": why})
    return out


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
    if "clone" not in entries:
        entries["clone"] = {"name": "clone", "nr": tbl.SYSCALLS["clone"], "action": "violation", "because": [HOST],
                            "rules": [{"when": [{"arg": 0, "op": "masked_eq", "value": CLONE_THREAD,
                                                 "mask": CLONE_NEW_MASK | CLONE_THREAD, "width": 32}],
                                       "action": "allow", "why": "the wasm host's threads (epoch timer, I/O pool) only"}]}
    section["syscalls"] = sorted(entries.values(), key=lambda e: e["name"])


def derive_host_plan(plan: dict, module: str, cache_entry: str | None, package_dir: str,
                     wasmtime_dir: str) -> tuple[dict, bytes]:
    """(host plan, its BPF program): the manifest's plan plus the additions listed in this module's docstring."""
    from ..mechanisms.seccomp.bpf import assemble

    host = json.loads(json.dumps(plan))  # a deep copy; the caller's (cached) plan stays untouched
    landlock = host.get("landlock") or {}
    if landlock.get("handled_fs"):
        extra = host_paths(module, cache_entry, package_dir, wasmtime_dir)
        handled = set(landlock["handled_fs"])
        for rule in extra:
            rule["access"] = [a for a in rule["access"] if a in handled]
        landlock["paths"] = [*landlock.get("paths", []), *(r for r in extra if r["access"])]
    cgroups = host.get("cgroups") or {}
    _add_memory_overhead(cgroups)
    _add_threads(cgroups)
    host["rlimits"] = {k: v for k, v in (host.get("rlimits") or {}).items() if k != "AS"}
    if host.get("wall_time_s") is not None:
        host["wall_time_s"] = host["wall_time_s"] + HOST_WALL_GRACE_S
    host["stdio"] = {"stdin": True, "stdout": True, "stderr": True}
    _seccomp(host["seccomp"])
    return host, assemble(host["seccomp"])
