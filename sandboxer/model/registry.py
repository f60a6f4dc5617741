"""The capability registry: one table that drives validation, compile, `explain`, the schema and the README."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    """One parameter of a grant: its kind decides parsing, schema and help."""

    kind: str  # "ports" | "names" | "env-set" | "bool"
    help: str


@dataclass(frozen=True)
class Capability:
    """A grantable capability and what it opens in each mechanism."""

    name: str
    summary: str
    seccomp: tuple[str, ...] = ()  # syscall groups and names it allows
    seccomp_note: str = ""  # what compile adds beyond the groups (argument-checked calls)
    landlock: str = "—"
    other: str = "—"
    min_kernel: str = "3.17 (seccomp)"
    params: dict[str, Param] = field(default_factory=dict)
    shape: str = "mapping"  # "mapping" or "preopens" (a list of path entries)
    wasi: bool = True  # a WASI/WIT import (else a native sandboxer: power)


PORTS = Param("ports", "TCP ports, 1-65535")

CAPABILITIES: dict[str, Capability] = {c.name: c for c in (
    Capability(
        "wasi:cli/environment", "pass named environment variables (everything else is scrubbed)",
        other="environment allow-list",
        params={"vars": Param("names", "variable names passed from the launcher's environment"),
                "set": Param("env-set", "variables set to fixed values")}),
    Capability("wasi:cli/stdin", "read standard input (otherwise it is /dev/null)",
               other="fd 0 inherited"),
    Capability("wasi:cli/stdout", "write standard output (otherwise it is /dev/null)",
               other="fd 1 inherited"),
    Capability("wasi:cli/stderr", "write standard error (otherwise it is /dev/null)",
               other="fd 2 inherited"),
    Capability("wasi:clocks/monotonic-clock", "read the monotonic clock and sleep",
               seccomp=("@clock",),
               other="clock reads through the vDSO cannot be filtered by seccomp"),
    Capability("wasi:clocks/wall-clock", "read the wall clock (never set it)",
               seccomp=("@clock",),
               other="clock reads through the vDSO cannot be filtered by seccomp"),
    Capability("wasi:random/random", "cryptographically secure random bytes",
               seccomp=("@random",), landlock="read /dev/urandom /dev/random"),
    Capability("wasi:random/insecure", "non-cryptographic random bytes (same kernel source)",
               seccomp=("@random",), landlock="read /dev/urandom"),
    Capability(
        "wasi:filesystem/preopens", "files and directories, each with read / write / exec access",
        seccomp=("@file-read", "@file-transfer"),
        seccomp_note="+ @file-write when any entry has write access",
        landlock="path-beneath rules with read, write, exec rights",
        other="WASI: preopened directories with the same permissions",
        min_kernel="5.13 (Landlock ABI 1); truncate 6.2 (ABI 3); device ioctls 6.10 (ABI 5)",
        shape="preopens"),
    Capability(
        "wasi:sockets/tcp", "TCP sockets: connect to and bind the listed ports",
        seccomp=("@network-io",),
        seccomp_note="socket(AF_INET/AF_INET6, SOCK_STREAM); send*(MSG_FASTOPEN) denied",
        landlock="connect_tcp / bind_tcp port rules", other="network namespace: host",
        min_kernel="6.7 (Landlock ABI 4)",
        params={"connect": PORTS, "bind": PORTS}),
    Capability(
        "wasi:sockets/udp", "UDP sockets (any port: Landlock cannot filter UDP)",
        seccomp=("@network-io",), seccomp_note="socket(AF_INET/AF_INET6, SOCK_DGRAM)",
        other="network namespace: host"),
    Capability(
        "wasi:sockets/ip-name-lookup", "resolve host names (resolver files, DNS over UDP/TCP 53)",
        seccomp=("@network-io",), seccomp_note="socket(AF_INET/AF_INET6, SOCK_DGRAM or SOCK_STREAM)",
        landlock="read /etc/resolv.conf /etc/hosts /etc/nsswitch.conf …; connect_tcp 53",
        other="network namespace: host"),
    Capability(
        "sandboxer:process/spawn", "start child processes (fork, exec of exec-granted paths)",
        seccomp=("@process",), seccomp_note="clone without CLONE_NEW* flags",
        landlock="execute right on exec paths", other="pids limit", wasi=False),
    Capability(
        "sandboxer:process/threads", "start threads", seccomp=("@sync",),
        seccomp_note="clone with CLONE_THREAD, without CLONE_NEW* flags", wasi=False),
    Capability(
        "sandboxer:ipc/unix-sockets", "unix domain sockets (abstract ones too) and socketpair",
        seccomp=("@network-io",), seccomp_note="socket(AF_UNIX), socketpair(AF_UNIX)",
        landlock="abstract unix socket scope lifted", min_kernel="6.12 (Landlock ABI 6 scopes)",
        wasi=False),
)}

ACCESS_MODES = ("read", "write", "exec")

LIMITS: dict[str, tuple[str, str]] = {
    # key: (kind, help)
    "memory": ("size", "memory limit (cgroup memory.max / memory.limit_in_bytes), e.g. 256Mi"),
    "swap": ("size", "swap allowed on top of memory (default 0)"),
    "pids": ("count", "maximum number of tasks (cgroup pids.max)"),
    "cpu": ("cores", "CPU time in cores, e.g. 0.5 (cgroup cpu.max)"),
    "wall-time": ("duration", "kill the sandbox after this long, e.g. 30s"),
    "open-files": ("count", "RLIMIT_NOFILE"),
    "core": ("size", "RLIMIT_CORE (default 0: no core dumps)"),
    "stack": ("size", "RLIMIT_STACK"),
    "address-space": ("size", "RLIMIT_AS"),
}

ON_VIOLATION = {
    "deny": "the call fails with EPERM (EACCES from Landlock)",
    "kill": "the whole workload is killed (SIGSYS for seccomp)",
    "log": "complain mode: the call proceeds and is recorded",
}

COMPAT_MECHANISMS = ("seccomp", "landlock", "cgroups", "netns")
COMPAT_MODES = ("strict", "best-effort")
NETWORK_MODES = ("none", "loopback", "host")

TOP_LEVEL = ("sandboxer", "name", "description", "extends", "imports", "limits",
             "on-violation", "compat", "network")
