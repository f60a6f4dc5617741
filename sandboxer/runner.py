"""`sandboxer run`: the lean path users type every day — cached plan in, confined workload out.

It imports no typer and, on a cache hit, no YAML or compiler: only json, the launcher and ctypes.
"""

from __future__ import annotations

import os
import sys

from .errors import SandboxerError, UsageError

NEWEST_LANDLOCK_ABI = 7  # = mechanisms.landlock.rights.NEWEST_ABI (not imported: launch path)

USAGE = """usage: sandboxer run MANIFEST|COMPILED_DIR [options] -- COMMAND [ARGS...]

Run COMMAND confined by the manifest (or by a directory written by `sandboxer compile`).

options:
  --env NAME=VALUE   add a variable to the workload's environment (repeatable)
  --keep-fd N        pass file descriptor N to the workload (repeatable)
  --timeout SECONDS  kill the whole sandbox after this long (overrides limits.wall-time)
  --best-effort      run even where this host cannot enforce something; say what was dropped
  --stats            print peak memory, CPU time and tasks on stderr when the workload ends
  --audit PATH       write audit records (JSON lines) to PATH, '-' for stderr, or fd:N
  --dry-run          print what would be enforced on this host, run nothing
  --no-cache         compile the manifest again instead of using the plan cache
  --wasm             COMMAND is a WebAssembly module or component (detected by its \\0asm magic
                     anyway): check its imports against the manifest, run it with wasmtime
  -h, --help         show this help
"""


class RunArgs:
    def __init__(self) -> None:
        self.source = ""
        self.command: list[str] = []
        self.env: list[str] = []
        self.keep_fds: list[int] = []
        self.timeout: float | None = None
        self.best_effort = False
        self.stats = False
        self.audit: str | None = None
        self.dry_run = False
        self.no_cache = False
        self.wasm = False


def parse_args(argv: list[str]) -> RunArgs:
    """Hand-rolled (argparse costs import time on every launch); errors are UsageError (exit 2)."""
    a = RunArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            a.command = argv[i + 1:]
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")

        def value() -> str:
            nonlocal i
            if eq:
                return inline
            i += 1
            if i >= len(argv):
                raise UsageError(f"{name} needs a value\n{USAGE}")
            return argv[i]

        if name in ("-h", "--help"):
            raise SystemExit(sys.stdout.write(USAGE) and 0)
        elif name == "--env":
            v = value()
            if "=" not in v:
                raise UsageError(f"--env expects NAME=VALUE, not {v!r}")
            a.env.append(v)
        elif name == "--keep-fd":
            v = value()
            if not v.isdigit():
                raise UsageError(f"--keep-fd expects a file descriptor number, not {v!r}")
            a.keep_fds.append(int(v))
        elif name == "--timeout":
            v = value()
            try:
                a.timeout = float(v.removesuffix("s"))
            except ValueError:
                raise UsageError(f"--timeout expects seconds, not {v!r}") from None
        elif name == "--audit":
            a.audit = value()
        elif name in ("--best-effort", "--stats", "--dry-run", "--no-cache", "--wasm"):
            setattr(a, name[2:].replace("-", "_"), True)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}\n{USAGE}")
        elif not a.source:
            a.source = arg
        else:  # a command without `--`: accept it, as env(1) and unshare(1) do
            a.command = argv[i:]
            break
        i += 1
    if not a.source:
        raise UsageError(f"missing MANIFEST\n{USAGE}")
    if not a.command and not a.dry_run:
        raise UsageError(f"missing COMMAND (write it after --)\n{USAGE}")
    return a


def load_plan(source: str, no_cache: bool = False) -> tuple[dict, bytes, str | None, list[tuple[str, str, str]]]:
    """(plan, BPF, manifest sha256 or None, inputs) from a compiled directory or a manifest (cached).

    inputs: (path, sha256, real directory) of every file the compiler read, the manifest first (Policy.inputs)."""
    if os.path.isdir(source):
        from .export.bundle import read_bundle

        try:
            plan, bpf = read_bundle(source)
        except (OSError, ValueError) as e:
            raise UsageError(f"{source} is not a directory written by `sandboxer compile`: {e}") from None
        return plan, bpf, None, []
    from . import cache

    machine = os.uname().machine
    target = ({"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine), NEWEST_LANDLOCK_ABI)
    if not os.path.isfile(source):
        raise UsageError(f"cannot read manifest {source!r}: no such file")
    hit = None if no_cache else cache.lookup(source, target)
    if hit:
        return hit
    # Cache miss: the only place the run path pays for YAML and the compiler.
    from .manifest.load import load_policy
    from .mechanisms.seccomp.bpf import assemble
    from .plan import Target, compile_plan

    policy = load_policy(source)
    plan = compile_plan(policy, Target(*target))
    bpf = assemble(plan["seccomp"])
    inputs = cache.store(source, target, list(policy.inputs), plan, bpf)
    return plan, bpf, policy.inputs[0][1], inputs


def _is_wasm(path: str) -> bool:
    """Does the file start with the WebAssembly magic `\\0asm`? (Regular files only: a FIFO would block.)"""
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            return f.read(4) == b"\0asm"
    except OSError:
        return False


def main(argv: list[str], front: str | None = None) -> int:
    """`sandboxer run`; `front`: the directory of the native front that handed this run over (leave it an image)."""
    try:
        args = parse_args(argv)
        plan, bpf, manifest_sha, inputs = load_plan(args.source, args.no_cache)
        if args.command and (args.wasm or _is_wasm(args.command[0])):
            from .wasm.run import run_wasm  # wasmtime itself is imported only by the host process

            return run_wasm(plan, bpf, args, args.source)
        from .launch.run import LaunchOptions, launch

        opts = LaunchOptions(env_overrides=args.env, keep_fds=args.keep_fds, timeout=args.timeout,
                             best_effort=args.best_effort, stats=args.stats, audit=args.audit,
                             dry_run=args.dry_run, manifest=args.source if manifest_sha else None,
                             manifest_sha256=manifest_sha,
                             manifest_inputs=inputs, front=front)
        return launch(plan, bpf, args.command, opts)
    except SandboxerError as e:
        sys.stderr.write(e.render() + "\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: say so in one line (the workload was killed on the way out)
        if os.environ.get("SANDBOXER_DEBUG"):
            raise
        sys.stderr.write(f"sandboxer: internal error: {type(e).__name__}: {e}\n"
                         "           (a bug in sandboxer: SANDBOXER_DEBUG=1 shows the traceback)\n")
        return 125
