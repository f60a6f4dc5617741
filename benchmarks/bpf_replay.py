#!/usr/bin/env python3
"""Benchmark: replay a recorded syscall mix through seccomp BPF programs and report BPF instructions per syscall.

Each syscall in the mix (benchmarks/data/syscall_mix.json) is run through the emulator with typical
arguments. Since Linux 5.11 the kernel's action cache lets syscall numbers whose filter path is a
constant ALLOW skip the filter entirely, so those calls cost 0 instructions; the others cost what
the emulator counts.

    .venv/bin/python benchmarks/bpf_replay.py prog.bpf [more.bpf ...]
    .venv/bin/python benchmarks/bpf_replay.py --manifest examples/c-build.yaml --docker [--per-workload]
    .venv/bin/python benchmarks/bpf_replay.py --docker --sub-arches

Columns: insns = program length; mean = mix-weighted instructions per syscall with the action cache;
mean(nocache) = the same without it (kernels before 5.11, or every call being uncached);
max = the most expensive syscall of the mix without the cache; max(uncached) = the most expensive
syscall the cache does not cover (argument rules, or denied); worst(any) = the most expensive of
every syscall in the arch's table, mix or not (the path a denied syscall takes, for instance).
Arguments are those of TYPICAL_ARGS, zeros for syscalls not listed there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandboxer.mechanisms.seccomp import emulator  # noqa: E402

DEFAULT_MIX = ROOT / "benchmarks" / "data" / "syscall_mix.json"
DOCKER_PROFILE = ROOT.parent / "shared" / "data" / "docker-default-seccomp.json"
AUDIT_ARCH_X86_64 = 0xC000003E

_PTR = 0x7FFD_1234_5000  # a plausible user-space pointer: non-zero high word, as real ones have
_FD = 3
AT_FDCWD = -100

# Arguments a real caller typically passes (x86_64 values), for syscalls that filters often check
# by argument. Anything not listed is called with six zeros.
TYPICAL_ARGS: dict[str, tuple[int, ...]] = {
    "ioctl": (1, 0x5401, _PTR),  # TCGETS on stdout (isatty)
    "socket": (2, 1, 0),  # AF_INET, SOCK_STREAM
    "socketpair": (1, 1, 0, _PTR),  # AF_UNIX, SOCK_STREAM
    "clone": (0x1200011, 0, 0, _PTR, 0),  # glibc fork(): SIGCHLD | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID
    "clone3": (_PTR, 88),  # struct clone_args *, sizeof(struct clone_args)
    "sendto": (_FD, _PTR, 64, 0, 0, 0),
    "recvfrom": (_FD, _PTR, 4096, 0, 0, 0),
    "personality": (0xFFFFFFFF,),  # query the current persona
    "fcntl": (_FD, 2, 1),  # F_SETFD, FD_CLOEXEC
    "mmap": (0, 0x21000, 3, 0x22, -1, 0),  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    "mprotect": (_PTR, 0x1000, 1),  # PROT_READ
    "openat": (AT_FDCWD, _PTR, 0x80000, 0),  # O_RDONLY | O_CLOEXEC
    "newfstatat": (AT_FDCWD, _PTR, _PTR, 0),
    "faccessat2": (AT_FDCWD, _PTR, 4, 0),  # R_OK
    "readlinkat": (AT_FDCWD, _PTR, _PTR, 4096),
    "futex": (_PTR, 0x81, 1),  # FUTEX_WAKE | FUTEX_PRIVATE_FLAG
    "prctl": (15, _PTR),  # PR_SET_NAME
    "prlimit64": (0, 7, 0, _PTR),  # RLIMIT_NOFILE, get
    "rt_sigprocmask": (2, _PTR, _PTR, 8),  # SIG_SETMASK
    "rt_sigaction": (17, _PTR, _PTR, 8),  # SIGCHLD
    "madvise": (_PTR, 0x1000, 4),  # MADV_DONTNEED
    "wait4": (-1, _PTR, 0, 0),
    "kill": (1234, 15),  # SIGTERM
    "tgkill": (1234, 1234, 6),  # SIGABRT
    "getrandom": (_PTR, 32, 0),
    "read": (_FD, _PTR, 4096),
    "write": (1, _PTR, 64),
    "pread64": (_FD, _PTR, 4096, 0),
    "lseek": (_FD, 0, 1),  # SEEK_CUR
    "close": (_FD,),
}


@dataclass(frozen=True)
class Cost:
    """What one program costs over one syscall mix, in BPF instructions per syscall."""

    program: str
    length: int
    mean: float
    mean_nocache: float
    max: int
    max_uncached: int | None
    worst_any: int | None
    cached_calls: float  # share of the mix's calls served by the action cache


def load_mix(path: Path, workloads: Iterable[str] = ()) -> dict[str, Counter[str]]:
    """{workload: {syscall: calls}} from a syscall_mix.json, restricted to `workloads` when given."""
    data = json.loads(path.read_text())
    mix = {name: Counter(w["syscalls"]) for name, w in data["workloads"].items()}
    wanted = list(workloads)
    unknown = [w for w in wanted if w not in mix]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]!r} (recorded: {', '.join(sorted(mix))})")
    return {name: calls for name, calls in mix.items() if not wanted or name in wanted}


def syscall_table() -> Mapping[str, int]:
    """x86_64 {name: number}: sandboxer's own table, or libseccomp's until that exists."""
    try:
        from sandboxer.mechanisms.seccomp.tables.x86_64 import SYSCALLS  # type: ignore[import-not-found]
    except ImportError:
        from sandboxer.mechanisms.seccomp.libseccomp import syscall_table as libseccomp_table

        return libseccomp_table("x86_64")
    return SYSCALLS


def replay(
    name: str, prog: bytes, mix: Mapping[str, int], table: Mapping[str, int], arch: int = AUDIT_ARCH_X86_64
) -> Cost:
    """Cost of `prog` over `mix` ({syscall name: calls}); names missing from `table` must be dropped first."""
    cached = emulator.action_cache(prog, arch, table.values())

    def steps(syscall: str) -> int:
        args = TYPICAL_ARGS.get(syscall, ())
        return emulator.run(prog, table[syscall], arch, args + (0,) * (6 - len(args)))[1]

    cost = {syscall: steps(syscall) for syscall in mix}
    total = sum(mix.values())
    uncached = [s for s in mix if table[s] not in cached]
    return Cost(
        program=name,
        length=len(prog) // 8,
        mean=sum(mix[s] * cost[s] for s in uncached) / total,
        mean_nocache=sum(mix[s] * cost[s] for s in mix) / total,
        max=max(cost.values()),
        max_uncached=max((cost[s] for s in uncached), default=None),
        worst_any=max(steps(syscall) for syscall in table),
        cached_calls=1 - sum(mix[s] for s in uncached) / total,
    )


def docker_programs(path: Path, sub_arches: bool) -> list[tuple[str, bytes]]:
    """Docker's default profile built by libseccomp, linear (optimize=1) and binary tree (optimize=2)."""
    from sandboxer.mechanisms.seccomp import libseccomp

    oci = json.loads(path.read_text())
    subs = ("x86", "x32") if sub_arches else ()
    label = "docker" + "".join(f"+{a}" for a in subs)
    return [
        (f"{label} libseccomp {kind}",
         libseccomp.export_bpf(libseccomp.build_from_oci(oci, optimize=n, sub_arches=subs)))
        for n, kind in ((1, "linear"), (2, "tree"))
    ]


def manifest_program(path: Path) -> tuple[str, bytes]:
    """sandboxer's own BPF for a manifest, compiled in-process for x86_64."""
    from sandboxer.manifest.load import load_policy
    from sandboxer.mechanisms.seccomp.bpf import assemble
    from sandboxer.plan import Target, compile_plan

    plan = compile_plan(load_policy(path), Target("x86_64", 7))
    return f"sandboxer {path.stem}", assemble(plan["seccomp"])


def render(costs: list[Cost]) -> str:
    """The table printed for a list of costs."""
    width = max([len("program"), *(len(c.program) for c in costs)])
    head = f"{'program':<{width}}  {'insns':>5}  {'mean':>6}  {'mean(nocache)':>13}  {'max':>4}  " \
           f"{'max(uncached)':>13}  {'worst(any)':>10}  {'cached':>6}"
    rows = [head]
    for c in costs:
        unc = "-" if c.max_uncached is None else str(c.max_uncached)
        rows.append(
            f"{c.program:<{width}}  {c.length:>5}  {c.mean:>6.2f}  {c.mean_nocache:>13.1f}  {c.max:>4}  "
            f"{unc:>13}  {c.worst_any:>10}  {c.cached_calls:>6.1%}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("programs", nargs="*", type=Path, help="raw BPF files (struct sock_filter[])")
    parser.add_argument("--manifest", action="append", default=[], type=Path,
                        help="also compile this sandboxer manifest in-process (repeatable)")
    parser.add_argument("--docker", nargs="?", const=DOCKER_PROFILE, type=Path, metavar="OCI_JSON",
                        help="also build an OCI profile with libseccomp (default: Docker's default profile)")
    parser.add_argument("--sub-arches", action="store_true",
                        help="with --docker: add the x86 and x32 sub-architectures, as runc does")
    parser.add_argument("--mix", type=Path, default=DEFAULT_MIX)
    parser.add_argument("--workload", action="append", default=[], help="only this workload (repeatable)")
    parser.add_argument("--per-workload", action="store_true", help="also print a table per workload")
    args = parser.parse_args(argv)

    programs: list[tuple[str, bytes]] = []
    for path in args.programs:
        programs.append((str(path), path.read_bytes()))
    programs += [manifest_program(path) for path in args.manifest]
    if args.docker:
        if not args.docker.exists():
            print(f"bpf_replay: no OCI profile at {args.docker}; pass its path: --docker PATH", file=sys.stderr)
            return 2
        programs += docker_programs(args.docker, args.sub_arches)
    if not programs:
        parser.error("give BPF files, --manifest or --docker")
    for name, prog in programs:
        try:
            emulator.check(prog)
        except emulator.MalformedProgram as exc:
            print(f"bpf_replay: {name}: {exc}", file=sys.stderr)
            return 2

    table = syscall_table()
    try:
        mixes = load_mix(args.mix, args.workload)
    except ValueError as exc:
        print(f"bpf_replay: {exc}", file=sys.stderr)
        return 2
    missing = sorted({s for calls in mixes.values() for s in calls if s not in table})
    if missing:
        print(f"bpf_replay: not in the syscall table, left out: {', '.join(missing)}", file=sys.stderr)
    mixes = {w: Counter({s: n for s, n in calls.items() if s in table}) for w, calls in mixes.items()}
    combined: Counter[str] = sum(mixes.values(), Counter())

    print(f"mix: {', '.join(sorted(mixes))} ({sum(combined.values())} calls, {len(combined)} syscalls)")
    print(render([replay(name, prog, combined, table) for name, prog in programs]))
    if args.per_workload:
        for workload, calls in sorted(mixes.items()):
            print(f"\n{workload} ({sum(calls.values())} calls)")
            print(render([replay(name, prog, calls, table) for name, prog in programs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
