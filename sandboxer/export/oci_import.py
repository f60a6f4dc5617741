"""OCI/Docker seccomp profile → sandboxer terms: what it allows, which capabilities that amounts to, what none grants. Pure.

The reverse of `export/oci.py`, for people arriving with a profile (Docker's default, one recorded
by the Security Profiles Operator, one written by hand). Docker's format adds `archMap` and
per-entry `includes`/`excludes` (architecture, capabilities, minimum kernel) that the engine
resolves before the runtime sees the profile: `resolve_oci` does the same for one container.
Argument-checked calls (socket, clone, ioctl, the send family) are judged by evaluating the
profile's conditions on representative arguments, the way the kernel would.
"""

from __future__ import annotations

import errno as _errno

import yaml

from ..mechanisms.seccomp import groups
from ..mechanisms.seccomp.compile import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    MSG_FASTOPEN,
    SOCK_DGRAM,
    SOCK_STREAM,
    TIOCLINUX,
    TIOCSTI,
    capability_for,
)
from ..mechanisms.seccomp.tables import table
from ..model.registry import CAPABILITIES

# moby's default capability set (oci/caps/defaults.go): what an unprivileged `docker run` keeps.
DOCKER_DEFAULT_CAPS = frozenset(
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FSETID CAP_FOWNER CAP_MKNOD CAP_NET_RAW CAP_SETGID CAP_SETUID "
    "CAP_SETFCAP CAP_SETPCAP CAP_NET_BIND_SERVICE CAP_SYS_CHROOT CAP_KILL CAP_AUDIT_WRITE".split())
SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # Docker's `includes.arches` uses Go's names
ALLOWING = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")  # LOG lets the call through and logs it
SOCKET_CAPS = ("wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup", "sandboxer:ipc/unix-sockets")
# Same seccomp footprint as another capability: found together, suggested once.
IMPLIED = {"wasi:random/insecure": "wasi:random/random"}

SIGCHLD = 17
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
# What glibc's pthread_create passes to clone.
THREAD_FLAGS = 0x3D0F00  # VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
# (label, family, type): socket() calls a workload might make, each judged against the profile.
SOCKET_PROBES = (
    ("AF_UNIX", AF_UNIX, SOCK_STREAM), ("AF_INET/SOCK_STREAM", AF_INET, SOCK_STREAM),
    ("AF_INET6/SOCK_STREAM", AF_INET6, SOCK_STREAM), ("AF_INET/SOCK_DGRAM", AF_INET, SOCK_DGRAM),
    ("AF_INET6/SOCK_DGRAM", AF_INET6, SOCK_DGRAM), ("AF_INET/SOCK_RAW", AF_INET, 3),
    ("AF_NETLINK", 16, 3), ("AF_PACKET", 17, 3), ("AF_KEY", 15, 3), ("AF_CAN", 29, 3),
    ("AF_BLUETOOTH", 31, 3), ("AF_ALG", 38, 5), ("AF_VSOCK", 40, 1), ("AF_XDP", 44, 3),
)
WHY_FAMILY = {
    "AF_INET/SOCK_RAW": "raw IP sockets (crafted packets) are never granted",
    "AF_NETLINK": "netlink talks to the kernel's routing, audit and other subsystems: no capability grants it",
    "AF_PACKET": "packet sockets see and forge link-layer traffic: no capability grants them",
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _applies(entry: dict, arch: str, caps: frozenset[str], kernel: str | None) -> str | None:
    """None when the entry applies to this container, else why it does not (Docker's rules)."""
    inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
    goarch = GOARCH[arch]
    if inc.get("arches") and goarch not in inc["arches"]:
        return f"only for {', '.join(inc['arches'])}"
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return f"only with {', '.join(inc['caps'])}"
    if inc.get("minKernel") and kernel is not None and _version(kernel) < _version(inc["minKernel"]):
        return f"only on Linux {inc['minKernel']}+"
    if exc.get("arches") and goarch in exc["arches"]:
        return f"not on {', '.join(exc['arches'])}"
    if exc.get("caps") and set(exc["caps"]) & caps:
        return f"not with {', '.join(sorted(set(exc['caps']) & caps))}"
    return None


def resolve_oci(profile: dict, arch: str = "x86_64", *, caps: frozenset[str] = DOCKER_DEFAULT_CAPS,
                kernel: str | None = None) -> dict:
    """The plain OCI profile a runtime gets for one container: includes/excludes applied, archMap resolved.

    `caps` are the container's capabilities, `kernel` the host's version (None: every `minKernel` is met).
    """
    out: dict = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or ())
    for m in profile.get("archMap") or ():
        if m["architecture"] == SCMP_ARCH[arch]:
            arches = [m["architecture"], *m.get("subArchitectures", ())]
    out["architectures"] = arches or [SCMP_ARCH[arch]]
    out["syscalls"] = [{k: v for k, v in e.items() if k not in ("includes", "excludes")}
                       for e in profile.get("syscalls") or () if _applies(e, arch, caps, kernel) is None]
    return out


def _matches(cond: dict, args: tuple[int, ...]) -> bool:
    """One OCI argument condition, with libseccomp's meaning (MASKED_EQ: arg & value == valueTwo)."""
    v = args[cond["index"]] if cond["index"] < len(args) else 0
    value, two, op = cond.get("value", 0), cond.get("valueTwo", 0), cond["op"]
    return {"SCMP_CMP_EQ": v == value, "SCMP_CMP_NE": v != value, "SCMP_CMP_LT": v < value,
            "SCMP_CMP_LE": v <= value, "SCMP_CMP_GT": v > value, "SCMP_CMP_GE": v >= value,
            "SCMP_CMP_MASKED_EQ": v & value == two}[op]


class _Profile:
    """A resolved profile indexed by syscall name."""

    def __init__(self, resolved: dict) -> None:
        self.default = resolved["defaultAction"]
        self.entries: dict[str, list[dict]] = {}
        for e in resolved["syscalls"]:
            for name in e.get("names") or ([e["name"]] if "name" in e else []):
                self.entries.setdefault(name, []).append(e)

    def base(self, name: str) -> str:
        """The action when no argument condition matches."""
        for e in self.entries.get(name, ()):
            if not e.get("args"):
                return e["action"]
        return self.default

    def status(self, name: str) -> str:
        """allowed | conditional | denied."""
        conds = [e for e in self.entries.get(name, ()) if e.get("args")]
        if self.base(name) in ALLOWING:
            return "conditional" if any(e["action"] not in ALLOWING for e in conds) else "allowed"
        return "conditional" if any(e["action"] in ALLOWING for e in conds) else "denied"

    def conditions(self, name: str) -> list[str]:
        out = []
        for e in self.entries.get(name, ()):
            if e.get("args"):
                when = " and ".join(_cond_text(c) for c in e["args"])
                out.append(f"{_action_word(e)} when {when}")
        return out

    def allows(self, name: str, *args: int) -> bool:
        """Whether the call with these arguments gets through (first matching conditional entry wins)."""
        for e in self.entries.get(name, ()):
            if e.get("args") and all(_matches(c, args) for c in e["args"]):
                return e["action"] in ALLOWING
        return self.base(name) in ALLOWING


def _cond_text(c: dict) -> str:
    op = {"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=",
          "SCMP_CMP_GT": ">", "SCMP_CMP_GE": ">="}.get(c["op"])
    if op:
        return f"arg{c['index']} {op} {c.get('value', 0):#x}"
    return f"arg{c['index']} & {c.get('value', 0):#x} == {c.get('valueTwo', 0):#x}"


def _action_word(e: dict) -> str:
    action = e["action"]
    if action == "SCMP_ACT_ERRNO" and "errnoRet" in e:
        return f"errno {_errno.errorcode.get(e['errnoRet'], e['errnoRet'])}"
    return {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_LOG": "allow+log"}.get(action, action.removeprefix("SCMP_ACT_").lower())


def _on_violation(resolved: dict) -> tuple[str, str | None]:
    """The manifest's on-violation for the profile's default action, and a note when it is not exact."""
    action = resolved["defaultAction"]
    if action == "SCMP_ACT_ERRNO":
        code = resolved.get("defaultErrnoRet", _errno.EPERM)
        return "deny", None if code == _errno.EPERM else f"the profile returns {_errno.errorcode.get(code, code)}, sandboxer EPERM"
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"):
        return "kill", None if action != "SCMP_ACT_TRAP" else "SIGSYS is delivered instead of a kill"
    if action == "SCMP_ACT_LOG":
        return "log", None
    if action == "SCMP_ACT_ALLOW":
        return "deny", "the profile allows every call it does not list (a deny list); sandboxer allows only what is granted"
    return "deny", f"default action {action} has no sandboxer equivalent"


def import_oci(profile: dict, arch: str = "x86_64", *, caps: frozenset[str] = DOCKER_DEFAULT_CAPS,
               kernel: str | None = None) -> dict:
    """What the profile allows for one container on `arch`, in sandboxer's capabilities."""
    tbl = table(arch)
    resolved = resolve_oci(profile, arch, caps=caps, kernel=kernel)
    prof = _Profile(resolved)
    skipped = [{"names": sorted(e.get("names") or ()), "why": why} for e in profile.get("syscalls") or ()
               if (why := _applies(e, arch, caps, kernel))]
    listed = sorted({n for e in resolved["syscalls"] for n in e.get("names") or ()})
    unknown = [n for n in listed if n not in tbl.SYSCALLS]
    status = {name: prof.status(name) for name in sorted(tbl.SYSCALLS)}
    allowed = [n for n, s in status.items() if s == "allowed"]
    conditional = {n: prof.conditions(n) for n, s in status.items() if s == "conditional"}
    passes = set(allowed) | set(conditional)
    runtime = groups.expand(["@default"])

    fam = {label: prof.allows("socket", f, t) for label, f, t in SOCKET_PROBES}
    fork = prof.allows("clone", SIGCHLD) or "fork" in passes or "vfork" in passes
    thread = prof.allows("clone", THREAD_FLAGS)
    arg_checks = {
        "wasi:sockets/tcp": fam["AF_INET/SOCK_STREAM"] or fam["AF_INET6/SOCK_STREAM"],
        "wasi:sockets/udp": fam["AF_INET/SOCK_DGRAM"] or fam["AF_INET6/SOCK_DGRAM"],
        "sandboxer:ipc/unix-sockets": fam["AF_UNIX"] or prof.allows("socketpair", AF_UNIX),
        "sandboxer:process/spawn": fork,
        "sandboxer:process/threads": thread,
    }
    arg_checks["wasi:sockets/ip-name-lookup"] = arg_checks["wasi:sockets/tcp"] and arg_checks["wasi:sockets/udp"]

    capabilities: dict[str, dict] = {}
    for name, cap in CAPABILITIES.items():
        footprint = sorted(n for n in groups.expand(cap.seccomp) if n in tbl.SYSCALLS and n not in runtime)
        if name in arg_checks:
            found = arg_checks[name] and (name in SOCKET_CAPS or not footprint or any(n in passes for n in footprint))
        else:
            found = bool(footprint) and any(n in passes for n in footprint)
        if found:
            capabilities[name] = {"syscalls": [n for n in footprint if n in passes],
                                  "missing": [n for n in footprint if n not in passes]}
    write = sorted(n for n in groups.expand(["@file-write"]) if n in tbl.SYSCALLS)
    write_access = "wasi:filesystem/preopens" in capabilities and any(n in passes for n in write)
    if write_access:
        capabilities["wasi:filesystem/preopens"]["write"] = [n for n in write if n in passes]

    never = {n: groups.NEVER[n] for n in sorted(passes) if n in groups.NEVER}
    granted_somewhere = set(runtime) | set(write)
    for cap in CAPABILITIES.values():
        granted_somewhere |= groups.expand(cap.seccomp)
    checked = {"clone", "clone3", "socket", "socketpair", "ioctl", "sendto", "sendmsg", "sendmmsg"}
    beyond = [{"what": n, "why": capability_for(n)[1] or "no capability grants this system call"}
              for n in sorted(passes) if n not in granted_somewhere and n not in never and n not in checked]
    for label, ok in fam.items():
        if ok and label not in ("AF_UNIX", "AF_INET/SOCK_STREAM", "AF_INET6/SOCK_STREAM",
                                "AF_INET/SOCK_DGRAM", "AF_INET6/SOCK_DGRAM"):
            beyond.append({"what": f"socket({label})",
                           "why": WHY_FAMILY.get(label, "no capability grants this socket family")})
    if prof.allows("clone", SIGCHLD | CLONE_NEWNET) or prof.allows("clone", SIGCHLD | CLONE_NEWUSER):
        beyond.append({"what": "clone(CLONE_NEW*)", "why": groups.NEVER["unshare"]})
    if status.get("clone3") != "denied":
        beyond.append({"what": "clone3", "why": "clone3 flags live in memory seccomp cannot read: sandboxer answers ENOSYS"})
    for code, label in ((TIOCSTI, "TIOCSTI"), (TIOCLINUX, "TIOCLINUX")):
        if prof.allows("ioctl", 0, code):
            beyond.append({"what": f"ioctl({label})", "why": "injects input into the terminal: always denied"})
    if arg_checks["wasi:sockets/tcp"] and any(prof.allows(n, 0, 0, MSG_FASTOPEN, MSG_FASTOPEN) for n in ("sendto", "sendmsg", "sendmmsg")):
        beyond.append({"what": "sendto/sendmsg/sendmmsg(MSG_FASTOPEN)",
                       "why": "TCP Fast Open connects past Landlock's port rules: denied with wasi:sockets/tcp"})
    on_violation, note = _on_violation(resolved)
    return {
        "arch": arch,
        "assumed": {"caps": sorted(caps), "kernel": kernel},
        "default_action": resolved["defaultAction"],
        "on_violation": on_violation,
        "on_violation_note": note,
        "architectures": resolved["architectures"],
        "entries": {"total": len(profile.get("syscalls") or ()), "applied": len(resolved["syscalls"]),
                    "skipped": skipped},
        "unknown": unknown,
        "allowed": allowed,
        "conditional": conditional,
        "denied": sum(1 for s in status.values() if s == "denied"),
        "runtime": sorted(n for n in passes if n in runtime),
        "socket_families": {label: ok for label, ok in fam.items()},
        "capabilities": capabilities,
        "never": never,
        "beyond": beyond,
        "by_syscall": {n: _attribution(n, runtime) for n in sorted(passes)},
    }


def _attribution(name: str, runtime: set[str]) -> dict:
    if name in runtime:
        return {"capability": "runtime", "reason": None}
    cap, reason = capability_for(name)
    return {"capability": cap, "reason": reason}


def render_import(report: dict) -> str:
    """The report for people: what is allowed, as capabilities, and what sandboxer would refuse."""
    caps = report["assumed"]["caps"]
    out = [f"OCI seccomp profile on {report['arch']} (default action {report['default_action']}),",
           f"as resolved for a container with {len(caps)} capabilities"
           f" ({', '.join(c.removeprefix('CAP_') for c in caps) or 'none'})"
           f" on {'Linux ' + report['assumed']['kernel'] if report['assumed']['kernel'] else 'a current kernel'}:",
           f"  {report['entries']['applied']} of {report['entries']['total']} entries apply;"
           f" {len(report['allowed'])} system calls allowed, {len(report['conditional'])} conditionally,"
           f" {report['denied']} denied; {len(report['unknown'])} listed names are not {report['arch']} calls.",
           "", "Capabilities it amounts to:"]
    for cap, info in sorted(report["capabilities"].items()):
        extra = ""
        if info.get("write"):
            extra = " (with write access)"
        if info["missing"]:
            extra += f" — but not {', '.join(info['missing'][:6])}{' …' if len(info['missing']) > 6 else ''}"
        out.append(f"  {cap}{extra}")
    if not report["capabilities"]:
        out.append("  none beyond the runtime base")
    out += ["", f"Allowed, but no capability ever grants it ({len(report['never'])}):"]
    by_reason: dict[str, list[str]] = {}
    for name, why in report["never"].items():
        by_reason.setdefault(why, []).append(name)
    out += [f"  {', '.join(names)}: {why}" for why, names in by_reason.items()] or ["  nothing"]
    out += ["", f"Allowed beyond every capability's groups ({len(report['beyond'])}):"]
    by_reason = {}
    for b in report["beyond"]:
        by_reason.setdefault(b["why"], []).append(b["what"])
    out += [f"  {', '.join(whats)}: {why}" for why, whats in by_reason.items()] or ["  nothing"]
    if report["conditional"]:
        out += ["", "Conditional:"]
        out += [f"  {name}: {'; '.join(conds)}" for name, conds in report["conditional"].items()]
    if report["entries"]["skipped"]:
        out += ["", "Entries that do not apply to this container:"]
        out += [f"  {', '.join(s['names'][:5])}{' …' if len(s['names']) > 5 else ''}: {s['why']}"
                for s in report["entries"]["skipped"]]
    if report["on_violation_note"]:
        out += ["", f"Note: {report['on_violation_note']}."]
    return "\n".join(out) + "\n"


def suggest_manifest(report: dict, name: str = "imported") -> str:
    """A manifest skeleton granting the capabilities found (seccomp cannot tell paths, ports or limits)."""
    caps = report["capabilities"]
    imports: dict = {}
    for cap in sorted(caps):
        if IMPLIED.get(cap) in caps or (cap == "wasi:sockets/ip-name-lookup"):
            continue
        if cap == "wasi:filesystem/preopens":
            access = "read+write" if caps[cap].get("write") else "read"
            imports[cap] = [{"path": "/data", "access": access}]
        elif cap == "wasi:sockets/tcp":
            imports[cap] = {"connect": [], "bind": []}
        else:
            imports[cap] = {}
    doc = {"sandboxer": 1, "name": name,
           "description": "Imported from an OCI seccomp profile: fill in paths, ports and limits.",
           "imports": imports, "on-violation": report["on_violation"]}
    head = ["Manifest skeleton from an OCI seccomp profile (`sandboxer import-oci`).",
            "A seccomp profile says which system calls a program may make, not which files, ports or",
            "environment it needs: replace /data with the real paths (read, write, exec), list the TCP",
            "ports, add wasi:cli/stdout, stderr, environment and limits, then `sandboxer explain` it."]
    if "wasi:sockets/ip-name-lookup" in caps:
        head.append("The profile also allows DNS lookups: add wasi:sockets/ip-name-lookup if the program resolves names.")
    if report["never"]:
        head.append(f"Not carried over (no capability grants them): {', '.join(report['never'])}.")
    if report["beyond"]:
        head.append("Not carried over either: " + ", ".join(b["what"] for b in report["beyond"]) + ".")
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    return "".join(f"# {line}\n" for line in _wrap(head)) + body


def _wrap(lines: list[str], width: int = 98) -> list[str]:
    out = []
    for line in lines:
        words, cur = line.split(" "), ""
        for w in words:
            if cur and len(cur) + 1 + len(w) > width:
                out.append(cur)
                cur = "  " + w
            else:
                cur = f"{cur} {w}" if cur else w
        out.append(cur)
    return out
