"""Policy → a WASI runtime configuration (preopens with permissions, env, stdio, clocks, random)."""

from __future__ import annotations

from ...model.policy import Policy


def compile_wasi(policy: Policy, environment: dict) -> dict:
    tcp = policy.grants.get("wasi:sockets/tcp")
    return {
        "preopens": [{"host": p.path, "guest": p.path, "read": "read" in p.access,
                      "write": "write" in p.access} for p in policy.preopens],
        "env": environment,
        "stdin": policy.has("wasi:cli/stdin"),
        "stdout": policy.has("wasi:cli/stdout"),
        "stderr": policy.has("wasi:cli/stderr"),
        "clocks": sorted(c.removeprefix("wasi:clocks/") for c in policy.grants if c.startswith("wasi:clocks/")),
        "random": sorted(c.removeprefix("wasi:random/") for c in policy.grants if c.startswith("wasi:random/")),
        "sockets": {"tcp": dict(tcp.params) if tcp else None, "udp": policy.has("wasi:sockets/udp"),
                    "ip_name_lookup": policy.has("wasi:sockets/ip-name-lookup")},
    }
