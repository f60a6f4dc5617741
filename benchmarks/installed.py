"""`sandboxer` as pip installs it, built from this tree for the benchmarks: the native front and sandboxer-py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_front(tmp: Path, python: str) -> str | None:
    """The front (sandboxer/launch/front.c) and its sandboxer-py (bin/sandboxer run by `python`) in tmp.

    Returns the front's path, or None without a C compiler (then `sandboxer` is the Python launcher).
    sandboxer-py puts this tree first on sys.path itself: the front starts it isolated (-I), without PYTHONPATH.
    """
    sys.path.insert(0, str(REPO))
    from sandboxer.launch.build_front import compile_front

    try:
        compile_front(str(tmp / "sandboxer"))
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"no native front ({e}): `sandboxer` is the Python launcher", file=sys.stderr)
        return None
    launcher = tmp / "sandboxer-py"
    launcher.write_text(f"#!{python}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                        + (REPO / "bin" / "sandboxer").read_text().split("\n", 1)[1])
    launcher.chmod(0o755)
    return str(tmp / "sandboxer")
