"""Paths as the kernel resolves them: joined to the current directory, "." and "//" folded, ".." kept.

os.path.abspath and normpath fold "link/.." as text, which names another file than open(2) and
execve(2) do when `link` is a symlink. Code that decides which file is meant (the command to run, a
relative `extends:`, the cache's record of what was read) uses these instead.
"""

from __future__ import annotations

import os


def fold(path: str) -> str:
    """`path` with "." components and repeated slashes removed; ".." and symlinks left to the kernel.

    A trailing slash stays: it asks for a directory, and the kernel refuses a file named so (ENOTDIR).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    out = ("/" if path.startswith("/") else "") + "/".join(parts)
    if parts and (path.endswith("/") or path.endswith("/.")):
        out += "/"
    return out or "."


def absolute(path: str) -> str:
    """`path` from the current directory, folded: the name open(2) would resolve, as one absolute string."""
    return fold(path if path.startswith("/") else os.path.join(os.getcwd(), path))
