"""Command resolution (launch/command.py): the path execve will use, as the kernel (and the native front) resolve it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandboxer.launch.command import resolve_command
from sandboxer.paths import absolute as _absolute


def test_dot_and_double_slash_are_folded_but_dotdot_is_kept() -> None:
    assert _absolute("/usr//bin/./true") == "/usr/bin/true"
    assert _absolute("link/../prog") == os.getcwd().rstrip("/") + "/link/../prog"


def test_dotdot_after_a_symlink_names_what_the_kernel_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sym/../prog` is the prog next to sym's target, not the one next to sym (os.path.abspath got that wrong)."""
    for d in ("a", "b/inner"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("a", "b"):
        prog = tmp_path / d / "prog"
        prog.write_text("#!/bin/sh\n")
        prog.chmod(0o755)
    (tmp_path / "a" / "sym").symlink_to(tmp_path / "b" / "inner")
    monkeypatch.chdir(tmp_path / "a")
    resolved = resolve_command("sym/../prog", {}, {})
    assert os.path.realpath(resolved.path) == str(tmp_path / "b" / "prog")
