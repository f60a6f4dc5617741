"""Stage ③: Policy + Target → Plan, the canonical JSON every launcher and exporter consumes (pure)."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass

from . import __version__
from .errors import Diagnostic, ManifestError, Span
from .mechanisms.cgroups.compile import compile_cgroups
from .mechanisms.environ.compile import compile_environment
from .mechanisms.landlock.compile import compile_landlock
from .mechanisms.landlock.rights import NEWEST_ABI
from .mechanisms.netns.compile import compile_netns
from .mechanisms.rlimits.compile import compile_rlimits
from .mechanisms.seccomp.compile import compile_seccomp
from .mechanisms.wasi.compile import compile_wasi
from .model.policy import Policy

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Target:
    """What the plan is compiled for: explicit, never read from the running kernel."""

    arch: str = "x86_64"
    landlock_abi: int = NEWEST_ABI

    @staticmethod
    def host_arch() -> str:
        machine = platform.machine()
        return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def compile_plan(policy: Policy, target: Target) -> dict:
    """The whole plan; raises ManifestError when compat is strict and the target falls short."""
    landlock, degradations = compile_landlock(policy, target.landlock_abi)
    environment = compile_environment(policy)
    plan = {
        "format": PLAN_FORMAT,
        "sandboxer": __version__,
        "name": policy.name,
        "description": policy.description,
        "target": {"arch": target.arch, "landlock_abi": target.landlock_abi},
        "on_violation": policy.on_violation,
        "compat": policy.compat,
        "grants": [{"capability": g.capability, "params": g.params, "why": g.why, "at": str(g.at)}
                   for g in policy.grants.values()],
        "seccomp": compile_seccomp(policy, target.arch),
        "landlock": landlock,
        "cgroups": compile_cgroups(policy.limits),
        "rlimits": compile_rlimits(policy.limits),
        "netns": compile_netns(policy),
        "environment": environment,
        "stdio": {s: policy.has(f"wasi:cli/{s}") for s in ("stdin", "stdout", "stderr")},
        "wall_time_s": policy.limits.wall_time,
        "wasi": compile_wasi(policy, environment),
        "degradations": degradations,
    }
    refused = [d for d in degradations
               if d["severity"] == "error" and policy.compat[d["mechanism"]] == "strict"]
    if refused:
        raise ManifestError([_refusal(d) for d in refused])
    return plan


def _refusal(d: dict) -> Diagnostic:
    span = None
    if d["at"]:
        file, line, col = d["at"].rsplit(":", 2)
        span = Span(file, int(line), int(col))
    what = d["capability"] or "the sandbox"
    return Diagnostic(span, f"{what} needs {d['needs']}; the target is {d['targeted']}: {d['what']}",
                      f"set compat.{d['mechanism']}: best-effort to run without it, or target a newer kernel")


def dumps(obj: object) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline (byte-identical reruns)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
