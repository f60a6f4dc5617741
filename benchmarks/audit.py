"""Cost of recording one denial, sink + mapping part: suggest.violation() then AuditSink.emit() (µs per record).

    .venv/bin/python benchmarks/audit.py [-n 20000] [--rounds 5]

The target of ≤ 50 µs per denial is for the whole pipeline (notification receive, argument
decoding from /proc/PID/mem, this, the response ioctl); this measures the part after decoding: the
capability mapping and one JSON line written with one write(2) to an O_APPEND file (and to
/dev/null, to separate the file system's share). Median of --rounds rounds of -n records each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandboxer.audit.sink import AuditSink  # noqa: E402
from sandboxer.audit.suggest import violation  # noqa: E402

CASES = {
    "seccomp socket(AF_NETLINK)": lambda: violation(
        "seccomp", "seccomp-notify", "errno:EPERM", pid=4101, exe="/usr/bin/python3.11", syscall="socket", nr=41,
        args={"family": "AF_NETLINK", "type": "SOCK_RAW|SOCK_CLOEXEC", "protocol": 0}),
    "seccomp ptrace (no args)": lambda: violation(
        "seccomp", "seccomp-notify", "errno:EPERM", pid=4101, exe="/usr/bin/gdb", syscall="ptrace", nr=101),
    "landlock read /etc/ssl/…": lambda: violation(
        "landlock", "observe", "allow", pid=4101, exe="/usr/bin/python3.11", syscall="openat", nr=257,
        args={"dirfd": "AT_FDCWD", "path": "/etc/ssl/certs/ca-certificates.crt", "flags": "O_RDONLY|O_CLOEXEC"},
        path="/etc/ssl/certs/ca-certificates.crt", access=["read_file"], would_deny=True),
    "landlock connect :5432": lambda: violation(
        "landlock", "observe", "allow", pid=4101, exe="/usr/bin/python3.11", syscall="connect", nr=42,
        args={"fd": 3, "family": "AF_INET", "addr": "10.0.0.7", "port": 5432}, port=5432,
        access=["connect_tcp"], would_deny=True),
}


def _round(sink: AuditSink, make, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        sink.emit("violation", **make())
    return (time.perf_counter() - t0) / n * 1e6


def _median(sink: AuditSink, make, n: int, rounds: int) -> float:
    _round(sink, make, 200)  # warm caches (the syscall mapping is memoised per name)
    return statistics.median(_round(sink, make, n) for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    record = CASES["seccomp socket(AF_NETLINK)"]()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "audit.jsonl")
        with AuditSink.open(path) as file_sink, AuditSink.open(os.devnull) as null_sink:
            head = f"µs per record (median of {a.rounds} × {a.n})"
            print(f"{head:<44} {'file':>8} {'/dev/null':>10}")
            print(f"{'emit only (prebuilt fields)':<44} {_median(file_sink, lambda: record, a.n, a.rounds):>8.2f} "
                  f"{_median(null_sink, lambda: record, a.n, a.rounds):>10.2f}")
            worst = 0.0
            for name, make in CASES.items():
                f, z = _median(file_sink, make, a.n, a.rounds), _median(null_sink, make, a.n, a.rounds)
                worst = max(worst, f)
                print(f"{'violation() + emit: ' + name:<44} {f:>8.2f} {z:>10.2f}")
            size = os.path.getsize(path) / max(1, sum(file_sink.counts.values()))
    print(f"\nslowest sink+suggest: {worst:.1f} µs/record to a file ({size:.0f} bytes/record); "
          f"budget for the whole denial ≤ 50 µs")


if __name__ == "__main__":
    main()
