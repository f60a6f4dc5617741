"""Compile time per example and profile: median of N in-process compiles (interpreter start excluded).

    .venv/bin/python benchmarks/compile.py [-n 30]

Each round loads the YAML (and what it extends), validates, compiles the plan and assembles the
BPF program — the work `sandboxer compile` and a cache miss of `sandboxer run` do.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sandboxer.export.bundle import render_bundle
from sandboxer.manifest.load import load_policy
from sandboxer.plan import Target, compile_plan

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    n = ap.parse_args().n
    files = sorted((REPO / "examples").glob("*.yaml")) + sorted((REPO / "profiles").glob("*.yaml"))
    print(f"{'manifest':<36} {'median ms':>9} {'max ms':>8}  (n={n}, load+validate+compile+BPF+OCI)")
    worst = 0.0
    for f in files:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            render_bundle(compile_plan(load_policy(f), Target("x86_64", 7)))
            times.append((time.perf_counter() - t0) * 1000)
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{f.relative_to(REPO)!s:<36} {med:>9.2f} {max(times):>8.2f}")
    print(f"\nslowest median: {worst:.2f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
