"""Policy → which network namespace the workload gets (pure)."""

from __future__ import annotations

from ...model.policy import Policy

SOCKET_CAPABILITIES = ("wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup")


def compile_netns(policy: Policy) -> dict:
    """none (private, nothing up) unless sockets are granted (host) or the manifest says otherwise."""
    if policy.network:
        return {"mode": policy.network}
    return {"mode": "host" if any(policy.has(c) for c in SOCKET_CAPABILITIES) else "none"}
