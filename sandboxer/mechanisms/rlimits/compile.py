"""Policy limits → resource limits set in the child before exec (pure)."""

from __future__ import annotations

from ...model.policy import Limits


def compile_rlimits(limits: Limits) -> dict:
    """{RLIMIT name: [soft, hard]}; core dumps are off unless the manifest sets limits.core."""
    out = {"CORE": [limits.core or 0, limits.core or 0]}
    for name, value in (("NOFILE", limits.open_files), ("STACK", limits.stack), ("AS", limits.address_space)):
        if value is not None:
            out[name] = [value, value]
    return out
