"""`sandboxer run MANIFEST -- module.wasm ARGS…`: check the module's imports, then run it in a confined wasmtime host.

The imports are read first, with a small binary reader (no wasmtime): a module that imports what
the manifest does not grant is refused before wasmtime is even imported. Then this process imports
wasmtime (the one import the run pays for), builds the engine and loads the compiled module (from
the cache, or compiled and stored), and hands the native launcher the host plan and a body: the
launcher forks (or, with nothing to supervise, stays in place), takes every confinement step of a
native workload and then, instead of execve, runs the module (sandboxer.wasm.host). No second
interpreter, no second import of wasmtime.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import EXIT_USAGE, SandboxerError, UsageError

INPROCESS_ENV = "SANDBOXER_WASM_HOST"  # "inprocess": run wasmtime in this process, unconfined (benchmarks)


class ImportRefused(SandboxerError):
    """The module imports a capability the manifest does not grant (exit 2: fix the manifest)."""

    exit_code = EXIT_USAGE


def _audit(spec: str | None):
    """The audit sink for --audit (a bad spec is a usage error, exit 2, before anything runs); else None."""
    if not spec:
        return None
    from ..audit.sink import AuditSink

    return AuditSink.open(spec)


def _import_violations(sink, missing: list, action: str) -> None:
    """One violation record per import the manifest does not grant (mechanism wasi, source import-check)."""
    if sink is None:
        return
    from ..audit.suggest import violation

    for m in missing:
        for item in m.items:
            fields = violation("wasi", "import-check", action, wasi_import=m.capability or item)
            fields["import"] = item
            sink.emit("violation", **fields)


def granted(plan: dict) -> set[str]:
    return {g["capability"] for g in plan.get("grants", ())}


def read_module(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def check_module(plan: dict, path: str, manifest: str, data: bytes | None = None) -> tuple[str, list[str], list]:
    """(kind, import items, missing capabilities) for the module at `path` (its bytes: `data`) under `plan`."""
    from .imports import WasmFormatError, check_imports, read_imports

    if data is None:
        data = read_module(path)
    try:
        kind, items = read_imports(data)
    except WasmFormatError as e:
        raise UsageError(f"{path}: {e}") from None
    return kind, items, check_imports(kind, items, granted(plan))


def wasi_preopens(plan: dict) -> list[dict]:
    """The plan's preopens WASI can express: directories with read and/or write access (files and exec-only paths are native-only)."""
    out = []
    for p in (plan.get("wasi") or {}).get("preopens", ()):
        if (p.get("read") or p.get("write")) and os.path.isdir(p["host"]):
            out.append({"host": p["host"], "guest": p["guest"], "write": bool(p.get("write"))})
    return out


def build_spec(plan: dict, path: str, kind: str, args, env: dict, cache_entry: str | None,
               deny: dict[str, str], wall: float | None) -> dict:
    wasi = plan.get("wasi") or {}
    sockets = wasi.get("sockets") or {}
    return {
        "path": os.path.abspath(path),
        "kind": kind,
        "argv": [os.path.basename(path), *args.command[1:]],
        "env": env,
        "preopens": wasi_preopens(plan),
        "stdin": bool(wasi.get("stdin")), "stdout": bool(wasi.get("stdout")), "stderr": bool(wasi.get("stderr")),
        "network": bool(sockets.get("tcp") or sockets.get("udp")),
        "ip_name_lookup": bool(sockets.get("ip_name_lookup")),
        "memory_max": (plan.get("cgroups") or {}).get("memory_max"),
        "wall_time_s": wall,
        "deadline": None if wall is None else time.monotonic() + wall,
        "cache_dir": cache_entry,
        "deny": deny,
    }


def _deny_map(kind: str, missing: list) -> dict[str, str]:
    """Best effort, preview 1: the ungranted functions, answered with ENOTCAPABLE by the host."""
    if kind != "module":
        return {}
    return {item.partition(".")[2]: m.capability for m in missing if m.capability for item in m.items}


def run_wasm(plan: dict, bpf: bytes | None, args, manifest: str) -> int:
    """Check, then run the module args.command[0] under plan; the module's exit code (see host.py for the others)."""
    sink = _audit(args.audit)
    try:
        return _run(plan, args, manifest, sink)
    finally:
        if sink is not None:
            try:
                sink.close()
            except Exception:
                pass


def _check_single_threaded() -> None:
    """The host starts from this process (forked, or in place): one thread only, so that every thread is confined."""
    from ..launch.run import thread_count

    threads = thread_count()  # None without /proc: fork_into_cgroup and the tests still check it
    if threads is not None and threads != 1:
        raise SandboxerError(f"cannot fork the wasm host: this process has {threads} threads (wasmtime must not "
                             "start any before the module runs)")


def _dry_run_body() -> int:
    return 0  # never called: --dry-run forks nothing


def _run(plan: dict, args, manifest: str, sink) -> int:
    from ..launch.run import LaunchOptions, compute_environment, launch
    from . import modcache
    from .imports import render_missing

    path = args.command[0]
    data = read_module(path)
    kind, _items, missing = check_module(plan, path, manifest, data)
    refuse = bool(missing) and (not args.best_effort or any(m.capability is None for m in missing))
    _import_violations(sink, missing, "refused" if refuse else "errno:ENOTCAPABLE")
    if missing:
        text = render_missing(missing, path, manifest)
        if refuse:
            if sink is not None:  # nothing ran: the exit record says what sandboxer returned, and why
                sink.emit("exit", code=None, signal=None, exit_code=EXIT_USAGE, duration_s=0.0,
                          cpu={"user_s": 0.0, "sys_s": 0.0}, memory_peak_bytes=None, tasks=None,
                          records={"violations": sink.counts.get("violation", 0)},
                          note="refused before running: the module imports what the manifest does not grant")
            raise ImportRefused(text + "\n  (or run with --best-effort: ungranted functions then fail with ENOTCAPABLE)")
        sys.stderr.write(f"sandboxer: warning: {text}\n  running anyway (--best-effort)\n")
    inprocess = os.environ.get(INPROCESS_ENV) == "inprocess"
    sockets = (plan.get("wasi") or {}).get("sockets") or {}
    if inprocess and (sockets.get("tcp") or sockets.get("udp")):
        what = "wasi:sockets grants need the host's native confinement to hold the manifest's ports"
        if not args.best_effort:
            raise SandboxerError(f"{what}; unset {INPROCESS_ENV} or run with --best-effort")
        sys.stderr.write(f"sandboxer: warning: {what}: the module may use any port\n")
    env = compute_environment(plan.get("environment") or {}, args.env, os.environ)
    wall = min([t for t in (args.timeout, plan.get("wall_time_s")) if t is not None], default=None)
    try:
        from . import host  # imports wasmtime: the one import a wasm run pays for
    except ImportError as e:
        if e.name != "wasmtime":
            raise
        raise SandboxerError("the wasmtime package is not installed (pip install wasmtime==50.0.1)") from None

    cache_entry = None
    if not args.no_cache:
        try:
            cache_entry = modcache.prepare_entry(modcache.sha256_hex(data), host.engine_settings(kind, wall is not None),
                                                 runtime=host.RUNTIME_VERSION)
        except OSError as e:
            sys.stderr.write(f"sandboxer: warning: no compiled-module cache ({e}); compiling every run\n")
    spec = build_spec(plan, path, kind, args, env, cache_entry, _deny_map(kind, missing), wall)
    if args.dry_run:
        prepared = None
    else:
        try:
            prepared = host.prepare(spec, data)
        except (OSError, host.wasmtime.WasmtimeError) as e:  # not compilable, or an import wasmtime cannot link
            sys.stderr.write(f"sandboxer: cannot load {path}: {host.reason(e)}\n")
            return host.EXIT_HOST
    if inprocess:  # benchmarks only: no native confinement, so no launch/exit records either
        code = 0 if prepared is None else host.run_spec(spec, prepared.host)
    else:
        from .host_plan import HOST_WALL_GRACE_S, cached_host_plan

        _check_single_threaded()
        host_plan, host_bpf = cached_host_plan(plan, use_cache=not args.no_cache)
        session = None
        if sink is not None and not args.dry_run:
            from ..audit.session import AuditSession

            session = AuditSession(None, host_plan, host_bpf, sink=sink)  # the host is supervised like a native run
            session.exit_limits = lambda code: _limit_records(code, spec)
        # --timeout is enforced in the runtime (epoch deadline, in spec); the native kill a grace period later
        # is the backstop for a guest blocked in a host call, as for the manifest's wall-time (host_plan).
        opts = LaunchOptions(env_overrides=args.env, keep_fds=args.keep_fds, timeout=args.timeout,
                             grace_s=HOST_WALL_GRACE_S,
                             best_effort=args.best_effort, stats=args.stats, audit=args.audit, dry_run=args.dry_run,
                             manifest=manifest, manifest_sha256=_sha(manifest), session=session)
        # The child's "workload" is the body; argv is what --dry-run and error messages show.
        code = launch(host_plan, host_bpf, [spec["path"], *spec["argv"][1:]], opts,
                      body=_dry_run_body if prepared is None else prepared.run_body)
    return code


def _sha(manifest: str) -> str | None:
    try:
        from ..cache import _sha256

        return _sha256(manifest)
    except OSError:
        return None


def _limit_records(code: int, spec: dict) -> list[dict]:
    """137 from the host: the epoch deadline passed (wall time), or else linear memory hit the store limit."""
    if code != 137:
        return []
    if spec["deadline"] is not None and time.monotonic() >= spec["deadline"]:
        return [{"kind": "wall_time", "limit": spec["wall_time_s"], "count": None,
                 "detail": f"the module was stopped at its epoch deadline after {spec['wall_time_s']:g} s"}]
    if spec["memory_max"] is not None:
        return [{"kind": "memory_max", "limit": spec["memory_max"], "count": None,
                 "detail": "linear memory reached the store limit and the module trapped"}]
    return []


def check_or_raise(plan: dict, path: str, manifest: str) -> None:
    """`sandboxer check MANIFEST --wasm MODULE`: the run-time import check, without running (ImportRefused, exit 2)."""
    from .imports import render_missing

    _kind, _items, missing = check_module(plan, path, manifest)
    if missing:
        raise ImportRefused(render_missing(missing, path, manifest))
