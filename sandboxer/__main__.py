"""Entry point: `sandboxer run` takes a lean path (no typer, no YAML on a cache hit); the rest is the typer app."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "run":
        from .runner import main as run_main

        return run_main(args[1:])
    from .cli import app

    return app(args=args, prog_name="sandboxer", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
