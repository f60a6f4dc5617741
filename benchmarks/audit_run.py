"""What auditing costs a workload, end to end through `sandboxer run` (the real supervisor and records).

The workload (python3 under builtin:python3) times four loops itself and prints µs per call:
  allowed   os.getppid() N times: allowed calls never reach the supervisor, so --audit must not change it
  recorded  mkdir(/nonexistent/<i>) N times: refused; with --audit each one is notified, its path read
            from the workload's memory, answered and written as its own JSON record by the parent
  folded    socket(AF_INET) N times: refused; identical, so after 1000 records the rest are counted
  registers setuid(100000+i) N times: refused (never granted), arguments in registers, each recorded
Each configuration runs R times, interleaved; medians are printed with the ratios. Root only (the
listener hand-over uses pidfd_getfd on the child). Target: <= 50 µs per recorded denial.

    .venv/bin/python benchmarks/audit_run.py [-n 20000] [-r 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = "/usr/bin/python3"

MANIFEST = """sandboxer: 1
name: audit-bench
extends: [builtin:python3]
imports:
  wasi:cli/stdout: {}
"""

WORKLOAD = r"""
import os, socket, sys, time
n = int(sys.argv[1])
t = time.perf_counter()
for _ in range(n):
    os.getppid()
allowed = (time.perf_counter() - t) / n * 1e6
t = time.perf_counter()
for _ in range(n):
    try:
        socket.socket()
    except PermissionError:
        pass
folded = (time.perf_counter() - t) / n * 1e6
t = time.perf_counter()
for i in range(n):
    try:
        os.mkdir(f"/nonexistent/{i}")
    except PermissionError:
        pass
recorded = (time.perf_counter() - t) / n * 1e6
t = time.perf_counter()
for i in range(n):
    try:
        os.setuid(100000 + i)
    except PermissionError:
        pass
registers = (time.perf_counter() - t) / n * 1e6
print(f"{allowed:.4f} {recorded:.4f} {folded:.4f} {registers:.4f}")
"""


def once(manifest: Path, n: int, audit: Path | None, env: dict) -> tuple[float, float, float]:
    cmd = [sys.executable, "-m", "sandboxer", "run", str(manifest)]
    if audit is not None:
        cmd += ["--audit", str(audit)]
    out = subprocess.run([*cmd, "--", PY, "-c", WORKLOAD, str(n)], capture_output=True, text=True, cwd=REPO,
                         env=env, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]), float(out[3])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("-r", type=int, default=5)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        manifest = tmp / "m.yaml"
        manifest.write_text(MANIFEST)
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(REPO)}
        once(manifest, 100, None, env)  # warm the plan cache
        plain: list[tuple[float, ...]] = []
        audited: list[tuple[float, ...]] = []
        for i in range(a.r):
            plain.append(once(manifest, a.n, None, env))
            audit = tmp / f"audit-{i}.jsonl"
            audited.append(once(manifest, a.n, audit, env))
            lines = audit.read_text().count('"type":"violation"')
            assert lines >= a.n, f"{lines} violation records for {a.n} recorded denials"
            audit.unlink()
    pa, pr, pf, pg = (statistics.median(x[i] for x in plain) for i in (0, 1, 2, 3))
    aa, ar, af, ag = (statistics.median(x[i] for x in audited) for i in (0, 1, 2, 3))
    print(f"{a.n} calls per loop, {a.r} interleaved runs, medians (µs per call, timed inside the workload)")
    print(f"{'':34}{'without --audit':>16}{'with --audit':>14}{'ratio':>8}")
    print(f"{'allowed getppid()':34}{pa:>16.3f}{aa:>14.3f}{aa / pa:>7.2f}x")
    print(f"{'refused mkdir(), each recorded':34}{pr:>16.3f}{ar:>14.3f}{ar / pr:>7.2f}x")
    print(f"{'refused setuid(n), each recorded':34}{pg:>16.3f}{ag:>14.3f}{ag / pg:>7.2f}x")
    print(f"{'refused socket(), folded':34}{pf:>16.3f}{af:>14.3f}{af / pf:>7.2f}x")
    print(f"\none recorded denial costs the workload {ag - pg:.1f} µs more than a plain EPERM with its arguments in "
          f"registers, {ar - pr:.1f} µs with a path read from its memory (target <= 50 µs); a folded one {af - pf:.1f} µs")


if __name__ == "__main__":
    main()
