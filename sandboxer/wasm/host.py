"""The wasmtime host: run one WASI module or component with exactly the plan's grants and limits.

It runs as its own process (`python -I -S -B -c BOOTSTRAP SANDBOXER_DIR WASMTIME_DIR SPEC_JSON`), started by sandboxer.wasm.run
through the native launcher, so the runtime itself sits under Landlock, seccomp, cgroups and the
network namespace; or in-process (run_spec: benchmarks, and SANDBOXER_WASM_HOST=inprocess).

The spec (JSON, built by sandboxer.wasm.run.build_spec): path, kind ('module' | 'component'), argv,
env {name: value}, preopens [{host, guest, write}], stdin/stdout/stderr, network, ip_name_lookup,
memory_max (bytes of linear memory, or null), wall_time_s and deadline (an absolute CLOCK_MONOTONIC
time, shared by every process on the host), cache_dir (or null), deny {p1 function: capability}.

Exit codes: the module's own (proc_exit, or wasi:cli/run's result: 0 ok, 1 error); 134 for a trap
(as `wasmtime run` and a native abort()); 137 when a limit stopped it (as the native launcher's
SIGKILL for wall time and the OOM killer); 125 when the module could not be loaded or instantiated.
"""

from __future__ import annotations

import json
import os
import sys
import time

EXIT_TRAP = 134  # 128 + SIGABRT
EXIT_LIMIT = 137  # 128 + SIGKILL
EXIT_HOST = 125
ENOTCAPABLE = 76  # WASI preview 1 errno: "extension: capabilities insufficient"
WASM_PAGE = 65536


def engine_settings(kind: str, epoch: bool) -> str:
    """The engine options a serialized module depends on (part of its cache key)."""
    return f"kind={kind};epoch={int(epoch)};parallel=0"


def _say(message: str) -> None:
    sys.stderr.write(f"sandboxer: {message}\n")
    sys.stderr.flush()


class _Outcome:
    def __init__(self) -> None:
        self.timed_out = False
        self.events: list[dict] = []  # limit records for the audit trail


def make_engine(kind: str, epoch: bool):
    import wasmtime

    cfg = wasmtime.Config()
    cfg.parallel_compilation = False  # no compiler thread pool inside the sandbox (pids, clone)
    cfg.epoch_interruption = epoch
    if kind == "component":
        cfg.wasm_component_model = True
    return wasmtime.Engine(cfg)


def load(engine, kind: str, path: str, cache_dir: str | None):
    """The compiled module or component: from the cache entry when it is usable, else compiled (and stored)."""
    from wasmtime import Module, WasmtimeError
    from wasmtime.component import Component

    from .modcache import ENTRY_FILE, store, usable

    cls = Component if kind == "component" else Module
    cached = os.path.join(cache_dir, ENTRY_FILE) if cache_dir else None
    if cached and usable(cached):
        try:
            return cls.deserialize_file(engine, cached)
        except WasmtimeError:
            pass  # written by another wasmtime build or engine config: compile again
    with open(path, "rb") as f:
        compiled = cls(engine, f.read())
    if cached:
        try:
            store(cache_dir, bytes(compiled.serialize()))
        except OSError:
            pass  # a read-only cache only costs the next run its compile time
    return compiled


def wasi_config(spec: dict):
    import wasmtime
    from wasmtime import _ffi as ffi

    w = wasmtime.WasiConfig()
    w.argv = list(spec["argv"])
    w.env = sorted(spec.get("env", {}).items())
    # Ungranted stdio: wasmtime's default is an empty stdin and discarding stdout/stderr.
    if spec.get("stdin"):
        w.inherit_stdin()
    if spec.get("stdout"):
        w.inherit_stdout()
    if spec.get("stderr"):
        w.inherit_stderr()
    for p in spec.get("preopens", ()):
        w.preopen_dir(p["host"], p["guest"], bool(p["write"]))  # fs_mutable=False: read-only stays read-only
    if spec.get("network"):
        ffi.wasi_config_inherit_network(w.ptr())  # ports: the host's Landlock rules, as for native code
    if spec.get("ip_name_lookup"):
        ffi.wasi_config_allow_ip_name_lookup(w.ptr(), True)
    return w


def _arm_deadline(engine, store, spec: dict, outcome: _Outcome) -> None:
    """Epoch interruption: one thread sleeps until the deadline, then bumps the epoch; the guest traps at its next check."""
    import _thread

    store.set_epoch_deadline(1)
    deadline = spec["deadline"]

    def tick() -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        outcome.timed_out = True
        engine.increment_epoch()

    _thread.start_new_thread(tick, ())


def _deny_p1(linker, module, deny: dict) -> None:
    """Best effort: ungranted preview 1 functions answer ENOTCAPABLE (or trap when they return nothing)."""
    from wasmtime import FuncType, Trap, ValType

    linker.allow_shadowing = True
    for imp in module.imports:
        cap = deny.get(imp.name) if imp.module in ("wasi_snapshot_preview1", "wasi_unstable") else None
        if cap is None or not isinstance(imp.type, FuncType):
            continue
        results = list(imp.type.results)

        def denied(*_args, _name=imp.name, _cap=cap, _ret=results):
            if len(_ret) == 1 and _ret[0] == ValType.i32():
                return ENOTCAPABLE
            raise Trap(f"{_name} needs {_cap}, which the manifest does not grant")

        linker.define_func(imp.module, imp.name, imp.type, denied)


def _memory_bytes(store, instance) -> int | None:
    try:
        mem = instance.exports(store).get("memory")
        return mem.data_len(store) if mem is not None else None
    except Exception:  # a component's memories are not reachable from here
        return None


def run_spec(spec: dict, engine=None, compiled=None) -> int:
    """Instantiate and run; returns the exit code and writes any sandboxer message on stderr."""
    import wasmtime

    kind, epoch = spec["kind"], spec.get("deadline") is not None
    try:
        engine = engine or make_engine(kind, epoch)
        compiled = compiled or load(engine, kind, spec["path"], spec.get("cache_dir"))
    except (OSError, wasmtime.WasmtimeError) as e:
        _say(f"cannot load {spec['path']}: {str(e).splitlines()[0]}")
        return EXIT_HOST
    store = wasmtime.Store(engine)
    if spec.get("memory_max") is not None:
        store.set_limits(memory_size=int(spec["memory_max"]))
    outcome = _Outcome()
    instance = None
    try:
        store.set_wasi(wasi_config(spec))
        if kind == "component":
            from wasmtime import component as cm

            linker = cm.Linker(engine)
            linker.add_wasip2()
            runner = next((n for n in compiled.type.exports(engine) if n.startswith("wasi:cli/run@")), None)
            if runner is None:
                _say(f"{spec['path']}: the component exports no wasi:cli/run (not a WASI command)")
                return EXIT_HOST
            if epoch:
                _arm_deadline(engine, store, spec, outcome)
            instance = linker.instantiate(store, compiled)
            func = instance.get_func(store, compiled.get_export_index("run", compiled.get_export_index(runner)))
            result = func(store)
            return 0 if getattr(result, "tag", "ok") == "ok" else 1
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        if spec.get("deny"):
            _deny_p1(linker, compiled, spec["deny"])
        if epoch:
            _arm_deadline(engine, store, spec, outcome)
        instance = linker.instantiate(store, compiled)
        start = instance.exports(store).get("_start")
        if start is None:
            _say(f"{spec['path']}: the module exports no _start (not a WASI command)")
            return EXIT_HOST
        start(store)
        return 0
    except wasmtime.ExitTrap as e:
        return e.code
    except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
        return _trap(spec, store, instance, e, outcome)
    finally:
        sys.stdout.flush()


def _reason(e: Exception) -> str:
    """The trap's cause ("wasm `unreachable` instruction executed"), not wasmtime's backtrace header."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if "Caused by:" in lines:
        lines = lines[lines.index("Caused by:") + 1:]
    reason = "; ".join(lines[:2]) if lines else type(e).__name__
    return reason.removeprefix("wasm trap: ")


def _trap(spec: dict, store, instance, e: Exception, outcome: _Outcome) -> int:
    first = _reason(e)
    if outcome.timed_out:
        _say(f"wall time of {spec['wall_time_s']:g} s exceeded: the module was stopped (epoch deadline)")
        return EXIT_LIMIT
    limit = spec.get("memory_max")
    used = _memory_bytes(store, instance) if instance is not None and limit else None
    if limit and used is not None and used + 4 * 1024 * 1024 > limit:
        # memory.grow failed at the store limit (it returns -1, the guest's allocator gave up and trapped).
        _say(f"memory limit of {limit} bytes reached ({used} bytes of linear memory in use): the module was stopped"
             f" ({first})")
        return EXIT_LIMIT
    if "instantiat" in first or "unknown import" in first:
        _say(f"cannot instantiate {spec['path']}: {first}")
        return EXIT_HOST
    _say(f"the module trapped: {first}")
    return EXIT_TRAP


BOOTSTRAP = (
    # Runs under `python -I -S -B`: no site-packages scan, no PYTHON* variables, no user site, no
    # bytecode writes. The two packages are imported from their directories by file location
    # (argv: SANDBOXER_DIR WASMTIME_DIR SPEC), so Landlock need not open the rest of site-packages,
    # and the host runs the same sandboxer code as the launcher that started it.
    "import sys,importlib.util as u\n"
    "for n,p in (('sandboxer',sys.argv[1]),('wasmtime',sys.argv[2])):\n"
    " s=u.spec_from_file_location(n,p+'/__init__.py',submodule_search_locations=[p])\n"
    " m=u.module_from_spec(s);sys.modules[n]=m;s.loader.exec_module(m)\n"
    "from sandboxer.wasm.host import main\n"
    "sys.exit(main(sys.argv[3:]))"
)


def main(argv: list[str]) -> int:
    try:
        spec = json.loads(argv[0])
    except (IndexError, ValueError) as e:
        _say(f"wasm host: bad spec: {e}")
        return EXIT_HOST
    try:
        return run_spec(spec)
    except KeyboardInterrupt:
        return 130
