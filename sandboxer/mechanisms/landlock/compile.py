"""Policy + target ABI → the Landlock section of the plan, and what that ABI cannot enforce (pure)."""

from __future__ import annotations

from ...model.policy import Policy
from .rights import FS_RIGHTS, KERNEL_FOR_ABI, NET_RIGHTS, SCOPES, rights_at

ACCESS_RIGHTS = {
    "read": ("read_file", "read_dir"),
    "write": ("write_file", "remove_dir", "remove_file", "make_dir", "make_reg", "make_sock",
              "make_fifo", "make_sym", "refer", "truncate", "ioctl_dev"),
    # execve opens the file for reading too: Landlock asks for read_file and execute
    # (security/landlock/fs.c, get_required_file_open_access)
    "exec": ("execute", "read_file"),
}

# Files a capability needs beyond the manifest's own paths (skipped at launch when absent).
IMPLIED_PATHS = {
    "wasi:random/random": ("/dev/random", "/dev/urandom"),
    "wasi:random/insecure": ("/dev/urandom",),
    "wasi:sockets/ip-name-lookup": ("/etc/gai.conf", "/etc/host.conf", "/etc/hosts",
                                    "/etc/nsswitch.conf", "/etc/resolv.conf"),
}
DNS_PORT = 53


def compile_landlock(policy: Policy, abi: int) -> tuple[dict, list[dict]]:
    """The Landlock section for ABI `abi`, and the degradations that ABI implies."""
    handled_fs = rights_at(FS_RIGHTS, abi)
    handled_net = rights_at(NET_RIGHTS, abi)
    scoped = [s for s in rights_at(SCOPES, abi)
              if not (s == "abstract_unix_socket" and policy.has("sandboxer:ipc/unix-sockets"))]

    paths: dict[str, dict] = {}
    for p in policy.preopens:
        rights = {r for mode in p.access for r in ACCESS_RIGHTS[mode] if r in handled_fs}
        paths[p.path] = {"path": p.path, "access": sorted(rights), "because": ["wasi:filesystem/preopens"],
                         "at": str(p.at), **({"why": p.why} if p.why else {})}
    for cap, files in IMPLIED_PATHS.items():
        if policy.has(cap):
            for f in files:
                entry = paths.setdefault(f, {"path": f, "access": [], "because": [], "optional": True})
                entry["access"] = sorted(set(entry["access"]) | {"read_file"})
                entry["because"] = sorted(set(entry["because"]) | {cap})

    ports: dict[tuple[int, str], set[str]] = {}
    if handled_net:
        tcp = policy.grants.get("wasi:sockets/tcp")
        for kind, right in (("connect", "connect_tcp"), ("bind", "bind_tcp")):
            for port in (tcp.params.get(kind, []) if tcp else []):
                ports.setdefault((port, right), set()).add("wasi:sockets/tcp")
        if policy.has("wasi:sockets/ip-name-lookup"):
            ports.setdefault((DNS_PORT, "connect_tcp"), set()).add("wasi:sockets/ip-name-lookup")
    port_rules: dict[int, dict] = {}
    for (port, right), because in sorted(ports.items()):
        rule = port_rules.setdefault(port, {"port": port, "access": [], "because": []})
        rule["access"] = sorted({*rule["access"], right})
        rule["because"] = sorted({*rule["because"], *because})

    section = {
        "abi": abi,
        "handled_fs": handled_fs,
        "handled_net": handled_net,
        "scoped": scoped,
        "paths": [paths[k] for k in sorted(paths)],
        "ports": [port_rules[k] for k in sorted(port_rules)],
        "restrict_flags": [],
    }
    return section, _degradations(policy, abi)


def _degradations(policy: Policy, abi: int) -> list[dict]:
    """What this ABI cannot enforce of what the policy asks (severity 'error' fails strict)."""
    out = []

    def add(capability, what, needs, at, severity="error"):
        out.append({"mechanism": "landlock", "capability": capability, "what": what,
                    "needs": f"Landlock ABI {needs} (Linux {KERNEL_FOR_ABI[needs]})",
                    "targeted": f"Landlock ABI {abi}", "at": str(at) if at else None,
                    "severity": severity})

    tcp = policy.grants.get("wasi:sockets/tcp")
    if abi < 4 and tcp:
        add("wasi:sockets/tcp", "TCP ports are not filtered (any port can be connected to or bound)", 4, tcp.at)
    if abi < 4 and policy.has("wasi:sockets/ip-name-lookup"):
        add("wasi:sockets/ip-name-lookup", "TCP connects are not limited to port 53", 4,
            policy.grants["wasi:sockets/ip-name-lookup"].at)
    if abi < 6:
        # Not a grant the manifest made, so not a refusal: launch prints it (a PID namespace would close it).
        add(None, "signals to processes outside the sandbox are not blocked", 6, None, "warning")
    if abi < 3 and policy.preopens:
        add("wasi:filesystem/preopens", "files readable but not writable can still be truncated", 3,
            policy.preopens[0].at)
    if abi < 5 and policy.preopens:
        add("wasi:filesystem/preopens", "ioctl on devices opened inside is not restricted", 5,
            policy.preopens[0].at, "note")
    return out
