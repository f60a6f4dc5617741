"""Mapping denials back to capabilities: syscalls, paths and ports → the capability, the manifest line, or why never."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandboxer.audit import suggest
from sandboxer.audit.suggest import for_path, for_port, for_syscall, merge_suggestions, violation
from sandboxer.manifest.load import load_policy
from sandboxer.mechanisms.seccomp import groups
from sandboxer.model.registry import CAPABILITIES

BASE = """\
sandboxer: 1
name: base
imports:
  wasi:cli/stdout: {}
  wasi:filesystem/preopens:
    - {path: /usr/bin/python3, access: exec}
"""

TCP, PRE = "wasi:sockets/tcp", "wasi:filesystem/preopens"

SYSCALLS = [
    # (name, decoded args, expected (capability, suggest, never))
    ("getrandom", None, ("wasi:random/random", "imports: {wasi:random/random: {}}", None)),
    ("clock_nanosleep", None, ("wasi:clocks/monotonic-clock", "imports: {wasi:clocks/monotonic-clock: {}}", None)),
    ("wait4", None, ("sandboxer:process/spawn", "imports: {sandboxer:process/spawn: {}}", None)),
    ("socket", {"family": "AF_INET", "type": "SOCK_STREAM|SOCK_CLOEXEC"}, (TCP, "imports: {wasi:sockets/tcp: {}}", None)),
    ("socket", {"family": 10, "type": 2}, ("wasi:sockets/udp", "imports: {wasi:sockets/udp: {}}", None)),
    ("socket", {"family": "AF_UNIX", "type": "SOCK_STREAM"},
     ("sandboxer:ipc/unix-sockets", "imports: {sandboxer:ipc/unix-sockets: {}}", None)),
    ("socketpair", {"family": 1, "type": 1},
     ("sandboxer:ipc/unix-sockets", "imports: {sandboxer:ipc/unix-sockets: {}}", None)),
    ("socket", {"family": "AF_NETLINK", "type": 3},
     (None, None, "netlink talks to the kernel's routing, audit and other subsystems: never granted")),
    ("socket", {"family": "AF_INET", "type": "SOCK_RAW"},
     (None, None, "raw and packet IP sockets (crafted packets) are never granted; TCP and UDP are")),
    ("connect", {"family": "AF_INET", "port": 5432}, (TCP, "imports: {wasi:sockets/tcp: {connect: [5432]}}", None)),
    ("clone", {"flags": "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM"},
     ("sandboxer:process/threads", "imports: {sandboxer:process/threads: {}}", None)),
    ("clone", {"flags": 17}, ("sandboxer:process/spawn", "imports: {sandboxer:process/spawn: {}}", None)),
    ("clone", {"flags": "CLONE_NEWUSER|CLONE_NEWNET|SIGCHLD"},
     (None, None, "creating or joining namespaces is never granted")),
    ("ioctl", {"fd": 0, "request": "TIOCSTI"},
     (None, None, "TIOCSTI pushes input into the controlling terminal (an escape to the outer shell): never granted")),
    ("sendto", {"flags": ["MSG_FASTOPEN"]}, (None, None, suggest.FASTOPEN)),
    ("ptrace", {"request": "PTRACE_ATTACH"}, (None, None, "debugging or reading other processes is never granted")),
    ("io_uring_setup", None, (None, None, "io_uring operations bypass seccomp: no capability grants io_uring")),
    ("mount", None, (None, None, "the mount API is never granted")),
    ("msgget", None, (None, None, "no capability grants this system call")),
    ("unlinkat", {"dirfd": "AT_FDCWD", "path": "/srv/out/old.csv"},
     (PRE, "imports: {wasi:filesystem/preopens: [{path: /srv/out, access: write}]}", None)),
    ("openat", {"path": "/srv/out/new.csv", "flags": "O_WRONLY|O_CREAT|O_TRUNC"},
     (PRE, "imports: {wasi:filesystem/preopens: [{path: /srv/out, access: write}]}", None)),
    ("openat", {"path": "/etc/hosts", "flags": "O_RDONLY|O_CLOEXEC"},
     (PRE, "imports: {wasi:filesystem/preopens: [{path: /etc/hosts, access: read}]}", None)),
    ("fchmod", {"fd": 3}, (PRE, None, None)),  # no path: no exact line
    # argument shapes as sandboxer/audit/decode.py writes them
    ("renameat2", {"olddirfd": "AT_FDCWD", "oldpath": "/srv/in/a", "newdirfd": "AT_FDCWD", "newpath": "/srv/out/a"},
     (PRE, "imports: {wasi:filesystem/preopens: [{path: /srv/in, access: write}, {path: /srv/out, access: write}]}",
      None)),
    ("symlink", {"target": "../x", "linkpath": "/srv/out/l"},
     (PRE, "imports: {wasi:filesystem/preopens: [{path: /srv/out, access: write}]}", None)),
    ("connect", {"fd": 3, "family": "AF_INET", "address": "9.9.9.9", "port": 53,
                 "socket": {"family": "AF_INET", "type": "SOCK_DGRAM", "protocol": "IPPROTO_UDP"}},
     ("wasi:sockets/udp", "imports: {wasi:sockets/udp: {}}", None)),
    ("clone", {"flags": "CLONE_VM|CLONE_NEWNET", "exit_signal": "SIGCHLD", "namespaces": ["net"]},
     (None, None, "creating or joining namespaces is never granted")),
    ("sendto", {"fd": 3, "len": 10, "flags": "MSG_NOSIGNAL|MSG_FASTOPEN"}, (None, None, suggest.FASTOPEN)),
    ("ioctl", {"fd": 0, "request": "TIOCLINUX (0x10000541c: the kernel ignores the high 32 bits)"},
     (None, None, "TIOCLINUX pushes input into the controlling terminal (an escape to the outer shell): never granted")),
    ("unlink", {"path": "relative/x"}, (PRE, None, None)),
]


@pytest.mark.parametrize(("name", "args", "expected"), SYSCALLS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SYSCALLS)])
def test_syscall_maps_to_capability_suggestion_or_never(name: str, args: dict | None, expected: tuple) -> None:
    """Each denied system call names the capability and exact line, or why none ever allows it."""
    assert for_syscall(name, args) == expected


@pytest.mark.parametrize("name", ["read", "write", "getpid", "mmap", "futex", "rt_sigaction", "execve", "exit_group", "ioctl"])
def test_runtime_syscalls_need_no_capability(name: str) -> None:
    """The runtime base (the known gap: read, getpid… were 'no capability') maps to nothing, with a note saying why."""
    assert for_syscall(name) == (None, None, None)
    fields = violation("seccomp", "sigsys", "kill", syscall=name)
    assert (fields["capability"], fields["suggest"], fields["never"]) == (None, None, None)
    assert fields["note"].startswith(f"{name} is in the runtime base every sandbox allows: no manifest change is needed")


def test_every_never_syscall_says_why() -> None:
    """Every syscall in the NEVER table maps to its own reason, never to a capability."""
    for name, why in groups.NEVER.items():
        assert for_syscall(name) == (None, None, why)


PATHS = [
    ("/etc/ssl/certs/ca-certificates.crt", ["read_file"], False, "[{path: /etc/ssl/certs/ca-certificates.crt, access: read}]"),
    ("/etc/ssl/certs", ["read_dir"], False, "[{path: /etc/ssl/certs, access: read}]"),
    ("/usr/bin/curl", ["execute", "read_file"], False, "[{path: /usr/bin/curl, access: read+exec}]"),
    ("/srv/out/report.csv", ["make_reg"], False, "[{path: /srv/out, access: write}]"),
    ("/srv/out", ["make_reg"], True, "[{path: /srv/out, access: write}]"),
    ("/srv/data/log", ["write_file", "truncate"], False, "[{path: /srv/data/log, access: write}]"),
    ("/srv/data/./x/../log", ["read"], False, "[{path: /srv/data/log, access: read}]"),
    ("/srv/a b,c/{d}", ["read_file"], False, '[{path: "/srv/a b,c/{d}", access: read}]'),
]


@pytest.mark.parametrize(("path", "access", "directory", "entries"), PATHS)
def test_path_maps_to_the_narrowest_preopen(path: str, access: list[str], directory: bool, entries: str) -> None:
    """Reading a file grants the file; creating one grants write on its directory; odd names are quoted."""
    assert for_path(path, access, directory=directory) == (PRE, f"imports: {{{PRE}: {entries}}}", None)


def test_path_cases_without_a_rule() -> None:
    """Device nodes and outside signals are never granted; abstract sockets are unix-sockets; relative paths name no rule."""
    assert for_path("/dev/sda", ["make_block"]) == (None, None, "creating block devices is never granted")
    assert for_path(None, ["signal"]) == (None, None, "signals to processes outside the sandbox are never granted")
    assert for_path("@/tmp/.X11-unix/X0", ["abstract_unix_socket"]) == (
        "sandboxer:ipc/unix-sockets", "imports: {sandboxer:ipc/unix-sockets: {}}", None)
    assert for_path("data.csv", ["read_file"]) == (PRE, None, None)


def test_ports() -> None:
    """TCP ports go to connect/bind lists; UDP is all-or-nothing; port 0 binds are never granted."""
    assert for_port("tcp", 5432, "connect") == (TCP, "imports: {wasi:sockets/tcp: {connect: [5432]}}", None)
    assert for_port("tcp", 8080, "bind_tcp") == (TCP, "imports: {wasi:sockets/tcp: {bind: [8080]}}", None)
    assert for_port("udp", 53, "connect") == ("wasi:sockets/udp", "imports: {wasi:sockets/udp: {}}", None)
    cap, sug, never = for_port("tcp", 0, "bind")
    assert (cap, sug) == (None, None) and never.startswith("binding port 0 (any free port) is never granted")
    with pytest.raises(ValueError, match="port must be 0-65535, not 70000"):
        for_port("tcp", 70000, "connect")


def test_violation_fields_are_complete_and_prefer_the_most_specific_evidence() -> None:
    """violation() fills every schema field; a port beats the syscall, a path with rights beats the call."""
    v = violation("landlock", "kernel-audit", "errno:EACCES", pid=7, exe="/usr/bin/psql", syscall="connect",
                  nr=42, args={"family": "AF_INET", "addr": "10.0.0.7"}, access=["connect_tcp"], port=5432)
    assert v == {"mechanism": "landlock", "source": "kernel-audit", "pid": 7, "exe": "/usr/bin/psql",
                 "syscall": {"name": "connect", "nr": 42, "args": {"family": "AF_INET", "addr": "10.0.0.7"}},
                 "path": None, "access": ["connect_tcp"], "port": 5432, "action": "errno:EACCES",
                 "would_deny": False, "capability": TCP,
                 "suggest": "imports: {wasi:sockets/tcp: {connect: [5432]}}", "never": None}
    w = violation("wasi", "import-check", "kill", wasi_import="wasi:sockets/udp")
    assert (w["capability"], w["suggest"], w["import"]) == ("wasi:sockets/udp", "imports: {wasi:sockets/udp: {}}",
                                                            "wasi:sockets/udp")
    seccomp_unlink = violation("seccomp", "seccomp-notify", "allow", syscall="unlink", path="/tmp/x", would_deny=True)
    assert seccomp_unlink["suggest"] == "imports: {wasi:filesystem/preopens: [{path: /tmp, access: write}]}"
    assert seccomp_unlink["syscall"]["args"] == {}  # the path is the record's, not invented as an argument


def _all_suggestions() -> list[str]:
    out = [s for _, _, (_, s, _) in SYSCALLS if s]
    out += [for_path(p, a, directory=d)[1] for p, a, d, _ in PATHS]
    out += [for_port("tcp", 443, "connect")[1], for_port("tcp", 8443, "bind")[1]]
    out += [for_syscall(n)[1] for n in ("getrandom", "clock_gettime", "wait4") if for_syscall(n)[1]]
    return out


def _merge(base: dict, patch: dict) -> dict:
    """What a person does with the patch: union the imports into the manifest's."""
    out = dict(base)
    imports = dict(out.get("imports") or {})
    for cap, value in patch["imports"].items():
        if cap == PRE:
            imports[cap] = [*imports.get(cap, []), *value]
        elif isinstance(value, dict) and isinstance(imports.get(cap), dict):
            imports[cap] = {**imports[cap], **{k: sorted(set(imports[cap].get(k, [])) | set(v)) for k, v in value.items()}}
        else:
            imports[cap] = value
    out["imports"] = imports
    return out


def test_every_suggestion_is_a_manifest_fragment(tmp_path: Path) -> None:
    """Each suggest string parses as YAML and, merged into a base manifest, validates through load_policy."""
    for i, sug in enumerate(_all_suggestions()):
        patch = yaml.safe_load(sug)
        assert set(patch) == {"imports"} and set(patch["imports"]) <= set(CAPABILITIES), sug
        f = tmp_path / f"m{i}.yaml"
        f.write_text(yaml.safe_dump(_merge(yaml.safe_load(BASE), patch), sort_keys=False))
        policy = load_policy(f)
        assert set(patch["imports"]) <= set(policy.grants), sug


def _records() -> list[dict]:
    return [
        {"type": "violation", **violation("landlock", "observe", "allow", syscall="openat", path="/srv/out/a.csv",
                                          access=["make_reg"], would_deny=True)},
        {"type": "violation", **violation("landlock", "observe", "allow", path="/srv/out/sub/b.csv",
                                          access=["write_file"], would_deny=True)},  # covered by /srv/out write
        {"type": "violation", **violation("landlock", "observe", "allow", path="/srv/out", access=["read_dir"],
                                          directory=True, would_deny=True)},
        {"type": "violation", **violation("landlock", "kernel-audit", "errno:EACCES", path="/etc/hosts",
                                          access=["read_file"])},
        {"type": "violation", **violation("landlock", "kernel-audit", "errno:EACCES", path="/etc/hosts",
                                          access=["read_file"])},
        {"type": "violation", **violation("landlock", "observe", "allow", syscall="connect", port=5432,
                                          access=["connect_tcp"], would_deny=True)},
        {"type": "violation", **violation("landlock", "observe", "allow", syscall="bind", port=8080,
                                          access=["bind_tcp"], would_deny=True)},
        {"type": "violation", **violation("landlock", "observe", "allow", syscall="connect", port=443,
                                          access=["connect_tcp"], would_deny=True)},
        {"type": "violation", **violation("seccomp", "seccomp-notify", "allow", syscall="clone",
                                          args={"flags": "SIGCHLD"}, would_deny=True)},
        {"type": "violation", **violation("seccomp", "seccomp-notify", "errno:EPERM", syscall="ptrace",
                                          args={"request": "PTRACE_TRACEME"})},
        {"type": "violation", **violation("seccomp", "seccomp-notify", "allow", syscall="fsync",
                                          args={"fd": 5}, would_deny=True)},
        {"type": "launch", "mode": "complain"},  # not a violation: ignored
    ]


PATCH = """\
# Manifest patch from `sandboxer audit --suggest`: allows what 11 recorded violations needed.
# Merge it into the manifest's imports, or save it below `sandboxer: 1` and
# `extends: [path/to/manifest.yaml]` to use it as a manifest that extends the original.
# Recorded in complain mode (on-violation: log): set on-violation back to deny once it runs clean.
imports:
  sandboxer:process/spawn: {}  # 1 violation
  wasi:filesystem/preopens:
    - {path: /etc/hosts, access: read}  # 2 violations
    - {path: /srv/out, access: read+write}  # 2 violations
  wasi:sockets/tcp: {bind: [8080], connect: [443, 5432]}  # 3 violations
# No capability grants these (no manifest change allows them):
#   debugging or reading other processes is never granted: ptrace(request=PTRACE_TRACEME)
# Not in the patch: the records lack what a rule would name:
#   wasi:filesystem/preopens: no exact line (the record names no absolute path): fsync(fd=5)
"""


def test_merge_suggestions_text() -> None:
    """One patch: deduplicated, sorted, covered paths dropped, ports unioned, what cannot be granted listed as comments."""
    assert merge_suggestions(_records()) == PATCH


def test_merged_patch_validates_as_a_manifest(tmp_path: Path) -> None:
    """The patch merged into a base manifest, and the patch as a manifest extending it, both load."""
    patch = yaml.safe_load(merge_suggestions(_records()))
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump(_merge(yaml.safe_load(BASE), patch), sort_keys=False))
    policy = load_policy(merged)
    assert {"sandboxer:process/spawn", TCP, PRE} <= set(policy.grants)
    assert policy.grants[TCP].params == {"bind": [8080], "connect": [443, 5432]}
    assert {p.path: sorted(p.access) for p in policy.preopens} == {
        "/etc/hosts": ["read"], "/srv/out": ["read", "write"], "/usr/bin/python3": ["exec"]}

    (tmp_path / "base.yaml").write_text(BASE)
    extending = tmp_path / "draft.yaml"
    extending.write_text("sandboxer: 1\nextends: [./base.yaml]\n" + merge_suggestions(_records()))
    again = load_policy(extending)
    assert [(p.path, p.access) for p in again.preopens] == [(p.path, p.access) for p in policy.preopens]
    assert again.grants[TCP].params == policy.grants[TCP].params


def test_merge_with_nothing_to_grant_is_still_valid_yaml() -> None:
    """Only never-grantable records: `imports: {}` and the reasons as comments."""
    text = merge_suggestions([{"type": "violation", **violation("seccomp", "sigsys", "kill", syscall="kexec_load")}])
    assert yaml.safe_load(text) == {"imports": {}}
    assert "#   host administration is never granted: kexec_load()" in text


def test_merge_survives_foreign_suggestions() -> None:
    """A suggestion this reader cannot parse is listed, not fatal."""
    rec = {"type": "violation", "capability": TCP, "suggest": "imports: [not, a, mapping", "syscall": {"name": "connect"}}
    text = merge_suggestions([rec])
    assert "wasi:sockets/tcp: no exact line (unreadable suggestion 'imports: [not, a, mapping')" in text


@pytest.mark.parametrize("text", ["/srv/plain", "/srv/a: b", "/srv/#x", "/srv/é", "yes", "123", "-x", "/srv/[x]"])
def test_yaml_scalar_round_trips(text: str) -> None:
    """A quoted or plain scalar reads back as the same string inside a flow mapping."""
    assert yaml.safe_load(f"{{k: {suggest.yaml_scalar(text)}}}") == {"k": text}


def test_a_call_on_an_open_file_suggests_its_path():
    """fdatasync(fd) on a file: the fd's path names the grant (a write grant on it)."""
    cap, sug, never = for_syscall("fdatasync", {"fd": 4, "fd_path": "/srv/out/report.db"})
    assert cap == "wasi:filesystem/preopens" and never is None
    assert sug == "imports: {wasi:filesystem/preopens: [{path: /srv/out/report.db, access: write}]}"


def test_per_process_proc_files_are_never_granted_by_path():
    """/proc/1586/cgroup names one run's process: no manifest line can grant it, and the record says why."""
    cap, sug, never = for_path("/proc/1586/cgroup", ["read_file"])
    assert (cap, sug) == (None, None) and "pid differs on every run" in never
    assert for_path("/proc/cpuinfo", ["read_file"])[1] == "imports: {wasi:filesystem/preopens: [{path: /proc/cpuinfo, access: read}]}"
