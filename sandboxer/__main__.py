"""Entry point: `sandboxer run` takes a lean path (no typer, no YAML on a cache hit); the rest is the typer app."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Set by the native front (launch/front.c) when it hands a run over, to its own directory: write the
    # launch image it missed, for that install. Removed here, before anything could pass it on to a workload.
    # Only an isolated interpreter (-I, which the front adds) writes one: with PYTHONPATH another copy of
    # sandboxer could be the one compiling, and its image would be served as this install's.
    front = os.environ.pop("SANDBOXER_FROM_FRONT", None)
    front = front if front and front.startswith("/") and sys.flags.isolated else None
    if args and args[0] == "run":
        # A launcher lives briefly and refcounting frees what it allocates: the cyclic collector would only
        # cost time (~3.5 ms of a wasm run, while wasmtime's import allocates). A supervisor turns it back
        # on once the workload runs (launch/run.py), since it may serve notifications for hours.
        import gc

        collecting = gc.isenabled()
        gc.disable()
        from .runner import main as run_main

        try:
            code = run_main(args[1:], front=front)
        finally:
            if collecting and argv is not None:  # called in-process: leave the caller's collector as it was
                gc.enable()
        if argv is None:  # the process is ours: skip interpreter teardown (~3 ms a launch)
            _exit_now(code)
        return code
    from .cli import app

    return app(args=args, prog_name="sandboxer", standalone_mode=True) or 0


def _exit_now(code: int) -> None:
    """Flush what Python buffers, then leave without finalising modules.

    Everything the run path must release is released before run_main returns (cgroup leaf removed,
    fds closed, audit records written with one write(2) each), so the teardown only costs time.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
