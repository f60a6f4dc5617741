"""The wasmtime host: run one WASI module or component with exactly the plan's grants and limits.

It runs in the forked child of `sandboxer run`, or in `sandboxer run` itself when there is nothing to
supervise, without exec (sandboxer.wasm.run, docs/wasm.md): the launcher imports wasmtime, builds the
engine and loads the compiled module (prepare()); the native launcher forks (or stays in place), takes
every confinement step a native workload takes (Landlock, seccomp, cgroup, netns, rlimits,
no_new_privs), and then, where a native child would execve, calls run_body(), which instantiates and
runs the module and returns the exit code for _exit. With
SANDBOXER_WASM_HOST=inprocess, run_spec() runs in `sandboxer run` itself, unconfined (benchmarks).

Nothing may be imported in the child after Landlock (the stdlib and site-packages are not granted):
everything run_spec() touches is imported by prepare() in the parent.

The spec (built by sandboxer.wasm.run.build_spec): path, kind ('module' | 'component'), argv,
env {name: value}, preopens [{host, guest, write}], stdin/stdout/stderr, network, ip_name_lookup,
memory_max (bytes of linear memory, or null), wall_time_s and deadline (an absolute CLOCK_MONOTONIC
time), cache_dir (the module cache entry, or null; read by the parent only), deny {p1 function: capability}.

Exit codes: the module's own (proc_exit, or wasi:cli/run's result: 0 ok, 1 error); 134 for a trap
(as `wasmtime run` and a native abort()); 137 when a limit stopped it (as the native launcher's
SIGKILL for wall time and the OOM killer); 125 when the module could not be loaded or instantiated.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

import wasmtime
from wasmtime import _ffi as ffi

from sandboxer.launch import libc
from sandboxer.wasm.modcache import ENTRY_FILE, read_entry, runtime_version, store

RUNTIME_VERSION = runtime_version(os.path.dirname(os.path.abspath(wasmtime.__file__)))  # part of the cache key

EXIT_TRAP = 134  # 128 + SIGABRT
EXIT_LIMIT = 137  # 128 + SIGKILL
EXIT_HOST = 125
ENOTCAPABLE = 76  # WASI preview 1 errno: "extension: capabilities insufficient"
WASM_PAGE = 65536


def engine_settings(kind: str, epoch: bool) -> str:
    """The engine options a serialized module depends on (part of its cache key)."""
    return f"kind={kind};epoch={int(epoch)};parallel=0;cow=0"


def _say(message: str) -> None:
    sys.stderr.write(f"sandboxer: {message}\n")
    sys.stderr.flush()


class _Outcome:
    def __init__(self) -> None:
        self.timed_out = False
        self.events: list[dict] = []  # limit records for the audit trail


def make_engine(kind: str, epoch: bool) -> wasmtime.Engine:
    cfg = wasmtime.Config()
    # No compiler thread pool: the parent must be single-threaded when it forks the host (a thread
    # that exists only in the parent is missing in the child), and the sandbox's pids/clone budget is
    # for the runtime's own I/O threads.
    cfg.parallel_compilation = False
    # Linear memory is initialised by copying, not from a copy-on-write image: such an image is a
    # memfd (or the .cwasm file) that wasmtime keeps open and maps at instantiation, and the child
    # instantiates once, after closing the fds it was not granted.
    cfg.memory_init_cow = False
    cfg.epoch_interruption = epoch
    if kind == "component":
        cfg.wasm_component_model = True
    return wasmtime.Engine(cfg)


def _module_class(kind: str):
    if kind == "component":
        from wasmtime.component import Component  # only components pay for wasmtime.component (~6 ms)

        return Component
    return wasmtime.Module


def load(engine: wasmtime.Engine, kind: str, data: bytes, cache_dir: str | None):
    """The compiled module or component: from the cache entry when it is usable, else compiled from `data` (and stored)."""
    cls = _module_class(kind)
    cached = os.path.join(cache_dir, ENTRY_FILE) if cache_dir else None
    blob = read_entry(cached) if cached else None
    if blob is not None:
        # From bytes, not deserialize_file: a file-backed module keeps its fd open and maps from it
        # later, and the launcher's child closes every fd it did not grant (close_range).
        try:
            return cls.deserialize(engine, blob)
        except wasmtime.WasmtimeError:
            pass  # written by another wasmtime build or engine config: compile again
    compiled = cls(engine, data)
    if cached:
        try:
            store(cache_dir, bytes(compiled.serialize()))
        except OSError:
            pass  # a read-only cache only costs the next run its compile time
    return compiled


class Host:
    """What does not change from run to run: engine, compiled module, linker (and for a module its InstancePre).

    Built by the parent before fork (prepare()); the child, and the in-process path, only create a
    store, set its WASI context and limits, instantiate and run (run_spec(), the warm step). Nothing
    here runs guest code: an InstancePre only resolves and type-checks the imports.
    """

    def __init__(self, kind: str, engine: wasmtime.Engine, compiled, deny: dict | None = None) -> None:
        self.kind = kind
        self.engine = engine
        self.compiled = compiled
        self.pre = None
        self.runner = None
        if kind == "component":
            from wasmtime import component as cm  # only components pay for wasmtime.component (~6 ms)

            self.linker = cm.Linker(engine)
            self.linker.add_wasip2()
            self.runner = next((n for n in compiled.type.exports(engine) if n.startswith("wasi:cli/run@")), None)
        else:
            self.linker = wasmtime.Linker(engine)
            self.linker.define_wasi()
            if deny:
                _deny_p1(self.linker, compiled, deny)
            self.pre = self.linker.instantiate_pre(compiled)


class Prepared:
    """The host as the parent leaves it to the forked child: the Host, the spec, wasmtime's trap handlers."""

    def __init__(self, spec: dict, host: Host) -> None:
        self.spec = spec
        self.host = host
        self.trap_handlers = save_trap_handlers()

    def run_body(self) -> int:
        """The forked host child's body, after the launcher's last confinement step: run, and return the exit code."""
        try:
            restore_trap_handlers(self.trap_handlers)
            return run_spec(self.spec, self.host)
        except BaseException as e:  # noqa: BLE001 - the child must end in _exit with a code, never unwind
            try:
                _say(f"wasm host: {type(e).__name__}: {e}")
            except BaseException:  # noqa: BLE001
                pass
            return EXIT_HOST


def prepare(spec: dict, data: bytes) -> Prepared:
    """Parent side, before fork: engine, compiled module (deserialized from the cache, or compiled and stored), linker.

    Raises OSError or wasmtime.WasmtimeError when the module cannot be compiled or its imports not
    resolved. Imports here everything run_spec() needs: the child imports nothing once Landlock
    hides the stdlib.
    """
    kind = spec["kind"]
    engine = make_engine(kind, spec.get("deadline") is not None)
    compiled = load(engine, kind, data, spec.get("cache_dir"))
    return Prepared(spec, Host(kind, engine, compiled, spec.get("deny")))


# The signals wasmtime turns into traps (out-of-bounds access through the guard pages, ud2, integer
# division): its handlers are installed once per process, when the parent creates the first engine.
# The launcher's child resets every disposition to SIG_DFL (as it must for a native workload), so the
# host body puts wasmtime's own handlers back, as they were in the parent, before running wasm.
_TRAP_SIGNALS = (7, 4, 8, 11)  # SIGBUS, SIGILL, SIGFPE, SIGSEGV (x86_64 and aarch64)
_SIGACTION_SIZE = 256  # >= glibc's struct sigaction (152 bytes on LP64); used opaquely, both ways


_sigaction = libc.function("sigaction", libc.c_int, libc.c_int, libc.c_void_p, libc.c_void_p)


def save_trap_handlers() -> list:
    """The current struct sigaction of each trap signal (parent side, before fork)."""
    saved = []
    for sig in _TRAP_SIGNALS:
        buf = libc.buffer(_SIGACTION_SIZE)
        if _sigaction(sig, None, buf) != 0:
            raise OSError(libc.get_errno(), f"sigaction({sig})")
        saved.append((sig, buf))
    return saved


def restore_trap_handlers(saved: list) -> None:
    """Install the saved handlers again (child side: rt_sigaction only, nothing opened or imported)."""
    for sig, buf in saved:
        if _sigaction(sig, buf, None) != 0:
            raise OSError(libc.get_errno(), f"sigaction({sig})")


def wasi_config(spec: dict) -> wasmtime.WasiConfig:
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
    store.set_epoch_deadline(1)
    deadline = spec["deadline"]

    def tick() -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        outcome.timed_out = True
        engine.increment_epoch()

    _thread.start_new_thread(tick, ())


def _deny_p1(linker, module, deny: dict) -> None:
    """Best effort: ungranted preview 1 functions answer ENOTCAPABLE (or trap when they return nothing)."""
    FuncType, Trap, ValType = wasmtime.FuncType, wasmtime.Trap, wasmtime.ValType
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


def run_spec(spec: dict, host: Host) -> int:
    """Store, WASI context, limits, instantiate, run (the warm step); the exit code, any message on stderr."""
    epoch = spec.get("deadline") is not None
    store = wasmtime.Store(host.engine)
    if spec.get("memory_max") is not None:
        store.set_limits(memory_size=int(spec["memory_max"]))
    outcome = _Outcome()
    instance = None
    try:
        store.set_wasi(wasi_config(spec))
        if host.kind == "component":
            if host.runner is None:
                _say(f"{spec['path']}: the component exports no wasi:cli/run (not a WASI command)")
                return EXIT_HOST
            if epoch:
                _arm_deadline(host.engine, store, spec, outcome)
            instance = host.linker.instantiate(store, host.compiled)
            compiled = host.compiled
            func = instance.get_func(store, compiled.get_export_index("run", compiled.get_export_index(host.runner)))
            result = func(store)
            return 0 if getattr(result, "tag", "ok") == "ok" else 1
        if epoch:
            _arm_deadline(host.engine, store, spec, outcome)
        instance = host.pre.instantiate(store)
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
        sys.stderr.flush()


def reason(e: Exception) -> str:
    """The trap's cause ("wasm `unreachable` instruction executed"), not wasmtime's backtrace header."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if "Caused by:" in lines:
        lines = lines[lines.index("Caused by:") + 1:]
    reason = "; ".join(lines[:2]) if lines else type(e).__name__
    return reason.removeprefix("wasm trap: ")


def _trap(spec: dict, store, instance, e: Exception, outcome: _Outcome) -> int:
    first = reason(e)
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
