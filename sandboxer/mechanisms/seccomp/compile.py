"""Policy + arch → the seccomp section of the plan (pure: no kernel, no libseccomp)."""

from __future__ import annotations

from ...model.policy import Policy
from ...model.registry import CAPABILITIES
from . import groups
from .tables import table

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_STREAM, SOCK_DGRAM = 1, 2
SOCK_TYPE_MASK = 0xF
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NEW_MASK = 0x7E020000
CLONE_THREAD = 0x00010000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
MSG_FASTOPEN = 0x20000000

VIOLATION_ACTIONS = {"deny": "errno:EPERM", "kill": "kill", "log": "log"}
RUNTIME = "runtime"  # the base every sandboxed process gets


def _cond(arg: int, op: str, value: int, mask: int | None = None, width: int = 32) -> dict:
    c = {"arg": arg, "op": op, "value": value, "width": width}
    if mask is not None:
        c["mask"] = mask
    return c


def compile_seccomp(policy: Policy, arch: str) -> dict:
    """The seccomp section: every allowed syscall, argument rules for the checked ones."""
    tbl = table(arch)
    allowed: dict[str, set[str]] = {}

    def allow(names, because: str) -> None:
        for name in names:
            if name in tbl.SYSCALLS:
                allowed.setdefault(name, set()).add(because)

    allow(groups.expand(["@default"]), RUNTIME)
    for name in policy.grants:
        allow(groups.expand(CAPABILITIES[name].seccomp), name)
    if any("write" in p.access for p in policy.preopens):
        allow(groups.expand(["@file-write"]), "wasi:filesystem/preopens")

    entries = {name: {"action": "allow", "because": sorted(why)} for name, why in allowed.items()}
    if policy.on_violation == "log":
        # Complain mode lets would-be denials run to record them; what no capability can ever grant
        # (ptrace, io_uring, mount…) would teach nothing and could escape, so it stays denied.
        for name, reason in groups.NEVER.items():
            if name in tbl.SYSCALLS:
                entries[name] = {"action": "errno:EPERM", "because": ["never"], "why": reason}
    for name, entry in _checked_calls(policy).items():
        if name in tbl.SYSCALLS:
            entries[name] = entry
    syscalls = [{"name": name, "nr": tbl.SYSCALLS[name], **entry} for name, entry in sorted(entries.items())]
    return {
        "arch": arch,
        "audit_arch": tbl.AUDIT_ARCH,
        "violation": VIOLATION_ACTIONS[policy.on_violation],
        "unknown": "errno:ENOSYS",
        "syscalls": syscalls,
    }


def _checked_calls(policy: Policy) -> dict[str, dict]:
    """Syscalls whose arguments decide: clone, socket, socketpair, ioctl, the send family, clone3."""
    # Terminal injection is never granted: in complain mode too it stays refused (recorded, not run).
    inject = "errno:EPERM" if policy.on_violation == "log" else "violation"
    out: dict[str, dict] = {
        "clone3": {"action": "errno:ENOSYS", "because": [RUNTIME],
                   "why": "clone3 flags live in memory seccomp cannot read: ENOSYS makes libc fall back to clone"},
        "ioctl": {"action": "allow", "because": [RUNTIME], "rules": [
            {"when": [_cond(1, "eq", TIOCSTI)], "action": inject,
             "why": "TIOCSTI pushes input into the terminal (an escape to the outer shell)"},
            {"when": [_cond(1, "eq", TIOCLINUX)], "action": inject,
             "why": "TIOCLINUX can paste console selections into the terminal"},
        ]},
    }
    spawn, threads = policy.has("sandboxer:process/spawn"), policy.has("sandboxer:process/threads")
    if spawn or threads:
        because = [c for c in ("sandboxer:process/spawn", "sandboxer:process/threads") if policy.has(c)]
        if spawn and threads:
            when = [_cond(0, "masked_eq", 0, CLONE_NEW_MASK)]
        elif spawn:
            when = [_cond(0, "masked_eq", 0, CLONE_NEW_MASK | CLONE_THREAD)]
        else:
            when = [_cond(0, "masked_eq", CLONE_THREAD, CLONE_NEW_MASK | CLONE_THREAD)]
        out["clone"] = {"action": "violation", "because": because, "rules": [
            {"when": when, "action": "allow",
             "why": "new processes or threads, never new namespaces" if spawn and threads else
             "new processes, never threads or namespaces" if spawn else "new threads only, never namespaces"}]}
    if policy.on_violation == "log":
        # Complain mode lets would-be violations run, but new namespaces are never granted (unshare and
        # setns are on the never list): clone with a CLONE_NEW* flag stays refused.
        entry = out.get("clone") or {"action": "violation", "because": [RUNTIME], "rules": []}
        entry["rules"] = [*entry["rules"], {"when": [_cond(0, "masked_eq", 0, CLONE_NEW_MASK)], "action": "violation",
                                            "why": "complain mode: recorded, then run"}]
        entry["action"] = "errno:EPERM"
        entry["why"] = "clone with a CLONE_NEW* flag: new namespaces are never granted"
        out["clone"] = entry

    families: list[tuple[int, int | None, str]] = []
    if policy.has("wasi:sockets/tcp"):
        families += [(AF_INET, SOCK_STREAM, "wasi:sockets/tcp"), (AF_INET6, SOCK_STREAM, "wasi:sockets/tcp")]
    if policy.has("wasi:sockets/udp"):
        families += [(AF_INET, SOCK_DGRAM, "wasi:sockets/udp"), (AF_INET6, SOCK_DGRAM, "wasi:sockets/udp")]
    if policy.has("wasi:sockets/ip-name-lookup"):
        for fam in (AF_INET, AF_INET6):
            families += [(fam, SOCK_DGRAM, "wasi:sockets/ip-name-lookup"),
                         (fam, SOCK_STREAM, "wasi:sockets/ip-name-lookup")]
    if policy.has("sandboxer:ipc/unix-sockets"):
        families.append((AF_UNIX, None, "sandboxer:ipc/unix-sockets"))
        out["socketpair"] = {"action": "violation", "because": ["sandboxer:ipc/unix-sockets"], "rules": [
            {"when": [_cond(0, "eq", AF_UNIX)], "action": "allow", "why": "AF_UNIX pairs only"}]}
    if families:
        rules, seen = [], set()
        for fam, typ, cap in families:
            if (fam, typ) in seen:
                continue
            seen.add((fam, typ))
            when = [_cond(0, "eq", fam)]
            if typ is not None:
                when.append(_cond(1, "masked_eq", typ, SOCK_TYPE_MASK))
            rules.append({"when": when, "action": "allow", "why": cap})
        out["socket"] = {"action": "violation", "because": sorted({c for _, _, c in families}), "rules": rules}
        send_because = sorted({c for _, _, c in families})
        tcp = policy.has("wasi:sockets/tcp")
        for name, flags_arg in (("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)):
            entry: dict = {"action": "allow", "because": send_because}
            if tcp:  # Landlock does not see connects made by sendto(MSG_FASTOPEN)
                entry["rules"] = [{"when": [_cond(flags_arg, "masked_eq", MSG_FASTOPEN, MSG_FASTOPEN)],
                                   "action": "violation",
                                   "why": "TCP Fast Open connects past Landlock's port rules"}]
            out[name] = entry
    return out


_capability_cache: dict[str, tuple[str | None, str | None]] = {}


def capability_for(syscall: str) -> tuple[str | None, str | None]:
    """The capability that would allow a syscall, or (None, reason) when none ever does (remembered per name:
    the audit supervisor asks once per refused call)."""
    hit = _capability_cache.get(syscall)
    if hit is None:
        hit = _capability_cache[syscall] = _capability_for(syscall)
    return hit


def _capability_for(syscall: str) -> tuple[str | None, str | None]:
    if syscall in groups.NEVER:
        return None, groups.NEVER[syscall]
    special = {"clone": "sandboxer:process/spawn", "fork": "sandboxer:process/spawn",
               "vfork": "sandboxer:process/spawn", "socketpair": "sandboxer:ipc/unix-sockets",
               "socket": "wasi:sockets/tcp", "sendto": "wasi:sockets/tcp", "sendmsg": "wasi:sockets/tcp",
               "sendmmsg": "wasi:sockets/tcp"}
    if syscall in special:
        return special[syscall], None
    if syscall in groups.expand(["@file-write"]):
        return "wasi:filesystem/preopens", None
    for name, cap in CAPABILITIES.items():
        if syscall in groups.expand(cap.seccomp):
            return name, None
    return None, "no capability grants this system call"
