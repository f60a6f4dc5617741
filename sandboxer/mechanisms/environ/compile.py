"""Policy → the workload's environment: an allow-list plus fixed values (pure)."""

from __future__ import annotations

from ...model.policy import Policy


def compile_environment(policy: Policy) -> dict:
    grant = policy.grants.get("wasi:cli/environment")
    params = grant.params if grant else {}
    return {"pass": list(params.get("vars", [])), "set": dict(sorted(params.get("set", {}).items()))}


def build_environment(section: dict, source: dict[str, str], overrides: list[str] = ()) -> dict[str, str]:
    """The exact environment for execve: passed names present in `source`, `set`, then --env K=V."""
    env = {k: source[k] for k in section["pass"] if k in source}
    env.update(section["set"])
    for item in overrides:
        key, _, value = item.partition("=")
        env[key] = value
    return env
