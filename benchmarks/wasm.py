"""Cost of running a WASI hello-world with `sandboxer run`: cold vs cached module, confined host vs not.

Whole processes, interleaved round by round (machine noise hits all alike), same interpreter:
  python -c pass · python -c "import wasmtime" · native `sandboxer run` of /usr/bin/echo ·
  `sandboxer run` of tests/wasm/hello.wasm: cold (module cache emptied before each run; the plan
  and host-plan caches stay warm), warm (cached compiled module), and warm with the host in-process
  and unconfined (SANDBOXER_WASM_HOST=inprocess), which prices the defence in depth (the fork, the
  child's confinement steps, and the first run of wasmtime's code in a fresh process).
Then, inside one process: compile, deserialize from the cache, and the warm instantiate-and-run step
(store, WASI context, instantiate from the InstancePre, run: what the forked host does).

    .venv/bin/python benchmarks/wasm.py [-n 30]
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
HELLO = REPO / "tests" / "wasm" / "hello.wasm"

WASM_MANIFEST = """sandboxer: 1
name: wasm-hello
description: print a greeting
imports:
  wasi:cli/stdout: {}
  wasi:cli/stderr: {}
"""
NATIVE_MANIFEST = """sandboxer: 1
name: native-hello
description: print a greeting
extends: [builtin:dynamic-linking]
imports:
  wasi:filesystem/preopens:
    - {path: /usr/bin/echo, access: exec}
  wasi:cli/stdout: {}
  wasi:cli/stderr: {}
"""


def ms(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1e3, xs[int(0.9 * (len(xs) - 1))] * 1e3


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode()}")
    return dt


def in_process(n: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    import wasmtime

    from sandboxer.wasm.host import Host, make_engine, run_spec

    data = HELLO.read_bytes()
    engine = make_engine("module", False)
    compile_s, deser_s = [], []
    for _ in range(n):
        t = time.perf_counter()
        m = wasmtime.Module(engine, data)
        compile_s.append(time.perf_counter() - t)
    blob = bytes(m.serialize())
    for _ in range(n):  # from bytes, as the host loads a cache entry (sandboxer.wasm.host.load)
        t = time.perf_counter()
        compiled = wasmtime.Module.deserialize(engine, blob)
        deser_s.append(time.perf_counter() - t)
    host = Host("module", engine, compiled)  # what the parent prepares before fork: engine, module, InstancePre
    spec = {"path": str(HELLO), "kind": "module", "argv": ["hello.wasm"], "env": {}, "preopens": [],
            "stdout": False, "stderr": True, "memory_max": 64 << 20, "deadline": None}
    step = []
    for _ in range(max(n, 200)):
        t = time.perf_counter()
        assert run_spec(spec, host) == 0
        step.append(time.perf_counter() - t)
    return {"compile (cold)": statistics.median(compile_s) * 1e3, "deserialize (cached)": statistics.median(deser_s) * 1e3,
            "instantiate + run (warm)": statistics.median(step) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        wasm_m, native_m = Path(tmp) / "wasm.yaml", Path(tmp) / "native.yaml"
        wasm_m.write_text(WASM_MANIFEST)
        native_m.write_text(NATIVE_MANIFEST)
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"), PYTHONPATH=str(REPO))
        env.pop("SANDBOXER_WASM_HOST", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # or the warm-up round cannot write sandboxer's bytecode caches
        unconfined = dict(env, SANDBOXER_WASM_HOST="inprocess")
        # `sandboxer` as installed (benchmarks/installed.py): the native front, which hands a wasm run to
        # the Python launcher; bin/sandboxer itself where no C compiler was found.
        front = build_front(Path(tmp), PY)
        sb = [front, "run"] if front else [PY, str(REPO / "bin" / "sandboxer"), "run"]
        rows = {
            "python -c pass": ([PY, "-c", "pass"], env),
            "python -c 'import wasmtime'": ([PY, "-c", "import wasmtime"], env),
            # sandboxer run turns the cyclic GC off (sandboxer/__main__.py): the fair floor does the same
            "python -c 'gc.disable(); import wasmtime'": ([PY, "-c", "import gc; gc.disable(); import wasmtime"], env),
            "native sandboxer run (echo)": ([*sb, str(native_m), "--", "/usr/bin/echo", "hi"], env),
            "wasm run, cold (compile)": ([*sb, str(wasm_m), "--", str(HELLO)], env),
            "wasm run, warm (cached)": ([*sb, str(wasm_m), "--", str(HELLO)], env),
            "wasm run, warm, host unconfined": ([*sb, str(wasm_m), "--", str(HELLO)], unconfined),
        }
        for cmd, e in rows.values():  # warm the plan cache and the bytecode caches
            timed(cmd, e)
        results: dict[str, list[float]] = {k: [] for k in rows}
        module_cache = os.path.join(tmp, "cache", "sandboxer", "wasm")
        for _ in range(n):
            for name, (cmd, e) in rows.items():
                if "cold" in name:
                    shutil.rmtree(module_cache, ignore_errors=True)
                results[name].append(timed(cmd, e))
    print(f"whole processes, {n} interleaved rounds (median / p90, ms):")
    med = {}
    for name, xs in results.items():
        med[name], p90 = ms(xs)
        print(f"  {name:<44} {med[name]:7.1f} {p90:7.1f}")
    py, imp = med["python -c pass"], med["python -c 'import wasmtime'"]
    imp_nogc = med["python -c 'gc.disable(); import wasmtime'"]
    cold, warm, loose = (med["wasm run, cold (compile)"], med["wasm run, warm (cached)"],
                         med["wasm run, warm, host unconfined"])
    native = med["native sandboxer run (echo)"]
    print("ratios and targets:")
    print(f"  import wasmtime alone               {imp - py:7.1f} ms")
    print(f"  warm run vs import-wasmtime script  {warm - imp:+7.1f} ms  (target <= +3 ms)")
    print(f"  ... vs the same script without GC   {warm - imp_nogc:+7.1f} ms  (the collector's share of the import: "
          f"{imp - imp_nogc:.1f} ms)")
    print(f"  unconfined run vs import script     {loose - imp:+7.1f} ms")
    print(f"  cold - warm                         {cold - warm:7.1f} ms  (target <= 6 ms)")
    print(f"  confined host - unconfined host     {warm - loose:7.1f} ms  ({warm / loose:.2f}x)")
    print(f"  warm wasm run / native run          {warm / native:7.2f}x")
    print("inside one process (median, ms):")
    for name, v in in_process(n).items():
        print(f"  {name:<36} {v:7.3f}" + ("  (target <= 0.5 ms)" if "warm" in name else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
