"""The entry point (sandboxer/__main__.py)."""

from __future__ import annotations

import gc

from sandboxer.__main__ import main


def test_run_called_in_process_leaves_the_callers_collector_on() -> None:
    """`run` turns the cyclic GC off for the launcher's own process; a caller of main(argv) gets it back."""
    assert gc.isenabled()
    assert main(["run", "/nonexistent/manifest.yaml", "--", "true"]) == 2
    assert gc.isenabled()
