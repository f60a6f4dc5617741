"""Stage ⑤, mapping back: a denied call, path or port → the capability that would allow it and the manifest line.

Every answer is a triple `(capability, suggest, never)`:
  - `capability`: the import that would allow it (None when none does, or none is needed);
  - `suggest`: a one-line manifest fragment, valid YAML, e.g.
    `imports: {wasi:sockets/tcp: {connect: [5432]}}` (None when the record lacks what it would name,
    such as the path of an fd-only call);
  - `never`: why no capability will ever allow it (ptrace, the mount API, AF_NETLINK…).
All three None means the call is in the runtime base every sandbox allows: it should never be a
violation at all, and `violation()` says so in a `note`.

Decoded arguments (the `args` of a record's `syscall`) are read by these keys, each a name or a
number: `family`, `type` (socket, socketpair, connect, bind), `flags` (clone: CLONE_*; open/openat:
O_*; the send family: MSG_*), `request` (ioctl), `port`, and a path under `path`, `pathname`,
`filename`, `oldpath` or `newpath`.
"""

from __future__ import annotations

import json
import posixpath

from ..mechanisms.seccomp import groups
from ..mechanisms.seccomp.compile import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    CLONE_NEW_MASK,
    CLONE_THREAD,
    MSG_FASTOPEN,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOCK_TYPE_MASK,
    TIOCLINUX,
    TIOCSTI,
    capability_for,
)
from ..model.registry import ACCESS_MODES, CAPABILITIES

PREOPENS, TCP, UDP = "wasi:filesystem/preopens", "wasi:sockets/tcp", "wasi:sockets/udp"
UNIX, SPAWN, THREADS = "sandboxer:ipc/unix-sockets", "sandboxer:process/spawn", "sandboxer:process/threads"

RUNTIME = frozenset(groups.expand(["@default"]) | {"ioctl"})  # ioctl: allowed but for TIOCSTI/TIOCLINUX
RUNTIME_NOTE = ("{name} is in the runtime base every sandbox allows: no manifest change is needed, and "
                "a denial means the call came through a foreign architecture or x32 (which the arch "
                "guard kills) or the filter does not match the plan")
CLONE3_NOTE = ("clone3 is answered ENOSYS by design (seccomp cannot read its flags) so that libc "
               "falls back to clone: no manifest change is needed")

FAMILIES = {"AF_UNIX": AF_UNIX, "AF_LOCAL": AF_UNIX, "AF_INET": AF_INET, "AF_INET6": AF_INET6,
            "AF_KEY": 15, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_CAN": 29, "AF_BLUETOOTH": 31,
            "AF_ALG": 38, "AF_VSOCK": 40, "AF_XDP": 44}
SOCK_TYPES = {"SOCK_STREAM": SOCK_STREAM, "SOCK_DGRAM": SOCK_DGRAM, "SOCK_RAW": 3, "SOCK_RDM": 4,
              "SOCK_SEQPACKET": 5, "SOCK_PACKET": 10, "SOCK_NONBLOCK": 0o4000, "SOCK_CLOEXEC": 0o2000000}
WHY_FAMILY = {
    "AF_NETLINK": "netlink talks to the kernel's routing, audit and other subsystems: never granted",
    "AF_PACKET": "packet sockets see and forge link-layer traffic: never granted",
    "AF_KEY": "IPsec key management sockets change host state: never granted",
    "AF_ALG": "the kernel crypto API is kernel attack surface: never granted",
    "AF_VSOCK": "vsock talks to the hypervisor or its guests: never granted",
    "AF_XDP": "XDP sockets bypass the network stack: never granted",
}
RAW_IP = "raw and packet IP sockets (crafted packets) are never granted; TCP and UDP are"
CLONE_FLAGS = {
    "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_SIGHAND": 0x800,
    "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000, "CLONE_VFORK": 0x4000, "CLONE_PARENT": 0x8000,
    "CLONE_THREAD": CLONE_THREAD, "CLONE_NEWNS": 0x20000, "CLONE_SYSVSEM": 0x40000,
    "CLONE_SETTLS": 0x80000, "CLONE_PARENT_SETTID": 0x100000, "CLONE_CHILD_CLEARTID": 0x200000,
    "CLONE_DETACHED": 0x400000, "CLONE_UNTRACED": 0x800000, "CLONE_CHILD_SETTID": 0x1000000,
    "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
    "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
    "CLONE_IO": 0x80000000,
}
OPEN_FLAGS = {"O_RDONLY": 0, "O_WRONLY": 0o1, "O_RDWR": 0o2, "O_CREAT": 0o100, "O_EXCL": 0o200,
              "O_NOCTTY": 0o400, "O_TRUNC": 0o1000, "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000,
              "O_DIRECTORY": 0o200000, "O_NOFOLLOW": 0o400000, "O_CLOEXEC": 0o2000000,
              "O_PATH": 0o10000000, "O_TMPFILE": 0o20200000}
IOCTLS = {"TIOCSTI": TIOCSTI, "TIOCLINUX": TIOCLINUX}
TERMINAL_INJECTION = "{req} pushes input into the controlling terminal (an escape to the outer shell): never granted"
FASTOPEN = ("TCP Fast Open (MSG_FASTOPEN) connects past Landlock's port rules: never granted; "
            "connect() first, then send")

# Which access in the manifest each Landlock right (or manifest mode) needs, and on what: the
# object itself, or the directory whose entries change (creating, removing, renaming).
ACCESS_ON_SELF = {"read": "read", "read_file": "read", "read_dir": "read",
                  "exec": "exec", "execute": "exec",
                  "write": "write", "write_file": "write", "truncate": "write", "ioctl_dev": "write"}
ACCESS_ON_PARENT = frozenset(("make_reg", "make_dir", "make_sym", "make_sock", "make_fifo",
                              "remove_file", "remove_dir", "refer"))
NEVER_ACCESS = {"make_char": "creating character devices is never granted",
                "make_block": "creating block devices is never granted",
                "signal": "signals to processes outside the sandbox are never granted"}
# Seccomp-denied file calls: those that change a directory's entries need write on the parent.
CHANGES_PARENT = frozenset("creat link linkat mkdir mkdirat mknod mknodat rename renameat renameat2 rmdir "
                           "symlink symlinkat unlink unlinkat".split())
WRITE_CALLS = frozenset(groups.expand(["@file-write"]))
PATH_KEYS = ("path", "pathname", "filename", "oldpath", "newpath", "linkpath", "fd_path")  # fd_path: calls on an open file
# The entries a call creates or removes (rename: both; link: the new one; symlink: the link).
ENTRY_KEYS = {"rename": ("oldpath", "newpath"), "renameat": ("oldpath", "newpath"),
              "renameat2": ("oldpath", "newpath"), "link": ("newpath",), "linkat": ("newpath",),
              "symlink": ("linkpath",), "symlinkat": ("linkpath",)}

_cache: dict[str, tuple[str | None, str | None, str | None]] = {}


# --- YAML fragments ---------------------------------------------------------------------------
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-@~%=")


_YAML11_WORDS = frozenset("y n yes no on off true false null".split())


def yaml_scalar(text: str) -> str:
    """`text` as a YAML scalar that is safe in flow context: plain when it can be, else double-quoted."""
    if (text and text[0] not in "-.~@%=0123456789" and _PLAIN.issuperset(text)
            and text.lower() not in _YAML11_WORDS):
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def access_text(modes) -> str:
    """Manifest spelling of a set of modes, in registry order: read+write, read+exec…"""
    return "+".join(m for m in ACCESS_MODES if m in modes)


def _grant(capability: str) -> str:
    return f"imports: {{{capability}: {{}}}}"


def _preopens(entries: list[tuple[str, set[str]]]) -> str:
    items = ", ".join(f"{{path: {yaml_scalar(p)}, access: {access_text(m)}}}" for p, m in entries)
    return f"imports: {{{PREOPENS}: [{items}]}}"


# --- the mapping ------------------------------------------------------------------------------
def _number(value, names: dict[str, int]) -> int | None:
    """An argument given as a number, a name, a list of names or 'A|B|0x40' → its integer value.

    Names this table does not know count as 0 (decode.py names bits this module never checks);
    None when the value is no number at all."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.split(" ", 1)[0].split("|")  # "TIOCSTI (0x…: the kernel ignores…)" → "TIOCSTI"
    if not isinstance(value, (list, tuple)):
        return None
    total = 0
    for part in value:
        if isinstance(part, int):
            total |= part
        elif isinstance(part, str) and part in names:
            total |= names[part]
        elif isinstance(part, str):
            try:
                total |= int(part, 0)
            except ValueError:
                pass
    return total


def _family_name(value) -> str | None:
    if isinstance(value, str) and value in FAMILIES:
        return "AF_UNIX" if value == "AF_LOCAL" else value
    n = _number(value, FAMILIES)
    if n is None:
        return None
    return next((k for k, v in FAMILIES.items() if v == n and k != "AF_LOCAL"), f"family {n}")


def _socket_type(args: dict):
    """The socket type from socket()'s own argument, or decode.py's look at a connect/bind fd."""
    sock = args.get("socket")
    return args.get("type", sock.get("type") if isinstance(sock, dict) else None)


def _path_arg(args: dict) -> str | None:
    for key in PATH_KEYS:
        if isinstance(args.get(key), str):
            return args[key]
    return None


def for_syscall(name: str, args: dict | None = None) -> tuple[str | None, str | None, str | None]:
    """(capability, suggest, never) for a denied system call, refined by its decoded arguments."""
    if not args:
        hit = _cache.get(name)
        if hit is None:
            hit = _cache[name] = _for_syscall(name, {})
        return hit
    return _for_syscall(name, args)


def _for_syscall(name: str, args: dict) -> tuple[str | None, str | None, str | None]:
    if name in groups.NEVER:
        return None, None, groups.NEVER[name]
    if name == "ioctl":
        req = args.get("request", args.get("cmd"))
        n = _number(req, IOCTLS)
        label = next((k for k, v in IOCTLS.items() if v == n), None)
        if label:
            return None, None, TERMINAL_INJECTION.format(req=label)
        return None, None, None
    if name in ("socket", "socketpair") and "family" in args:
        return _for_socket(args.get("family"), args.get("type"), pair=name == "socketpair")
    if name in ("connect", "bind") and "family" in args and _family_name(args["family"]) == "AF_UNIX":
        return UNIX, _grant(UNIX), None
    if name in ("connect", "bind") and isinstance(args.get("port"), int):
        typ = _number(_socket_type(args), SOCK_TYPES)
        return for_port("udp" if typ is not None and typ & SOCK_TYPE_MASK == SOCK_DGRAM else "tcp",
                        args["port"], name)
    if name in ("clone", "clone2") and ("flags" in args or args.get("namespaces")):
        flags = _number(args.get("flags", 0), CLONE_FLAGS)
        if args.get("namespaces"):  # decode.py lists CLONE_NEW* flags by name
            return None, None, groups.NEVER["unshare"]
        if flags is not None:
            if flags & CLONE_NEW_MASK:
                return None, None, groups.NEVER["unshare"]
            cap = THREADS if flags & CLONE_THREAD else SPAWN
            return cap, _grant(cap), None
    if name in ("sendto", "sendmsg", "sendmmsg") and "flags" in args:
        flags = _number(args["flags"], {"MSG_FASTOPEN": MSG_FASTOPEN})
        if flags is not None and flags & MSG_FASTOPEN:
            return None, None, FASTOPEN
    if name == "clone3" or name in RUNTIME:
        return None, None, None
    cap, reason = capability_for(name)
    if cap is None:
        return None, None, reason or "no capability grants this system call"
    if cap == PREOPENS:
        return _for_file_call(name, args)
    return cap, _grant(cap), None


def _for_socket(family, typ, pair: bool) -> tuple[str | None, str | None, str | None]:
    fam = _family_name(family)
    if fam == "AF_UNIX":
        return UNIX, _grant(UNIX), None
    if pair:
        return None, None, "socketpair() is granted for AF_UNIX only"
    if fam in ("AF_INET", "AF_INET6"):
        t = _number(typ, SOCK_TYPES)
        t = None if t is None else t & SOCK_TYPE_MASK
        if t in (None, SOCK_STREAM):
            return TCP, _grant(TCP), None
        if t == SOCK_DGRAM:
            return UDP, _grant(UDP), None
        return None, None, RAW_IP
    if fam is None:
        return TCP, _grant(TCP), None  # undecoded: seccomp's own answer for socket()
    return None, None, WHY_FAMILY.get(fam, f"{fam} sockets are never granted (only AF_UNIX, AF_INET, AF_INET6)")


def _for_file_call(name: str, args: dict) -> tuple[str | None, str | None, str | None]:
    """A file call seccomp denied: no preopen at all (or none with write access for @file-write)."""
    path = _path_arg(args)
    if name in CHANGES_PARENT:
        paths = [args[k] for k in ENTRY_KEYS.get(name, PATH_KEYS) if isinstance(args.get(k), str)]
        if not paths or not all(p.startswith("/") for p in paths):
            return PREOPENS, None, None  # no path, or a relative one: no exact rule
        parents = sorted({"/" + posixpath.dirname(posixpath.normpath(p)).lstrip("/") for p in paths})
        return PREOPENS, _preopens([(d, {"write"}) for d in parents]), None
    if name in WRITE_CALLS:
        access = ["write"]
    elif name in ("open", "openat", "openat2") and "flags" in args:
        flags = _number(args["flags"], OPEN_FLAGS) or 0
        access = ["make_reg"] if flags & OPEN_FLAGS["O_CREAT"] else ["write"] if flags & 0o3 else ["read"]
    else:
        access = ["read"]
    if path is None:
        return PREOPENS, None, None
    return for_path(path, access)


PROC_PID = ("a process's own /proc/PID files cannot be granted by path: the pid differs on every run, and a "
            "rule on /proc/self would name the launcher")


def for_path(path: str | None, access, *, directory: bool = False) -> tuple[str | None, str | None, str | None]:
    """(capability, suggest, never) for a denied file access.

    `access` holds Landlock rights (read_file, make_reg…) or manifest modes (read, write, exec).
    The suggestion is the narrowest rule: the file itself for reading, writing or executing it;
    the directory whose entries change for creating, removing or renaming. `path` names the object
    the call named (the new file, for make_reg); pass `directory=True` when it is already that
    directory (as in kernel Landlock records). Abstract unix sockets (the Landlock scope) come with
    access ['abstract_unix_socket'] and signals to outside processes with ['signal'].
    """
    access = list(access or ())
    for right in access:
        if right in NEVER_ACCESS:
            return None, None, NEVER_ACCESS[right]
    if "abstract_unix_socket" in access:
        return UNIX, _grant(UNIX), None
    if not isinstance(path, str) or not path.startswith("/"):
        return PREOPENS, None, None  # a relative or missing path names no rule
    path = posixpath.normpath(path)
    path = "/" + path.lstrip("/")
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit():
        return None, None, PROC_PID
    entries: dict[str, set[str]] = {}
    for right in access:
        if right in ACCESS_ON_SELF:
            entries.setdefault(path, set()).add(ACCESS_ON_SELF[right])
        elif right in ACCESS_ON_PARENT:
            entries.setdefault(path if directory else posixpath.dirname(path), set()).add("write")
    if not entries:
        return PREOPENS, None, None
    return PREOPENS, _preopens(sorted(entries.items())), None


def for_port(proto: str, port: int, op: str) -> tuple[str | None, str | None, str | None]:
    """(capability, suggest, never) for a denied connect or bind: proto 'tcp'|'udp', op 'connect'|'bind'."""
    op = {"connect_tcp": "connect", "bind_tcp": "bind"}.get(op, op)
    if op not in ("connect", "bind"):
        raise ValueError(f"op must be connect or bind, not {op!r}")
    if proto == "udp":
        return UDP, _grant(UDP), None  # Landlock cannot filter UDP ports: the capability is all-or-nothing
    if proto != "tcp":
        raise ValueError(f"proto must be tcp or udp, not {proto!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, not {port!r}")
    if port == 0:
        return None, None, ("binding port 0 (any free port) is never granted: manifests list ports 1-65535; "
                            "bind a fixed port" if op == "bind" else "TCP port 0 is not a destination")
    return TCP, f"imports: {{{TCP}: {{{op}: [{port}]}}}}", None


def for_import(name: str) -> tuple[str | None, str | None, str | None]:
    """(capability, suggest, never) for a WASI component importing an interface it was not granted."""
    if name in CAPABILITIES:
        if name == PREOPENS:
            return PREOPENS, None, None
        return name, _grant(name), None
    return None, None, f"no capability provides {name}"


def violation(mechanism: str, source: str, action: str, *, pid: int | None = None, exe: str | None = None,
              syscall: str | None = None, nr: int | None = None, args: dict | None = None,
              path: str | None = None, access=None, port: int | None = None, proto: str | None = None,
              would_deny: bool = False, wasi_import: str | None = None, directory: bool = False) -> dict:
    """The fields of a `violation` record, with capability, suggest and never filled in.

    `sink.emit("violation", **violation(...))`. Precedence: a WASI import, then a port, then a path
    with access rights, then the system call and its arguments.
    """
    args = dict(args or {})
    if wasi_import is not None:
        cap, sug, never = for_import(wasi_import)
    elif port is not None:
        op = ("bind" if "bind_tcp" in (access or ()) or syscall == "bind" else "connect")
        if proto is None:
            typ = _number(_socket_type(args), SOCK_TYPES)
            proto = "udp" if typ is not None and typ & SOCK_TYPE_MASK == SOCK_DGRAM else "tcp"
        cap, sug, never = for_port(proto, port, op)
    elif access:
        cap, sug, never = for_path(path, access, directory=directory)
    elif syscall is not None:
        cap, sug, never = for_syscall(syscall, {**args, "path": path} if path is not None else args)
    else:
        cap, sug, never = None, None, None
    out = {
        "mechanism": mechanism, "source": source, "pid": pid, "exe": exe,
        "syscall": None if syscall is None else {"name": syscall, "nr": _nr(syscall) if nr is None else nr,
                                                 "args": args},
        "path": path, "access": None if access is None else list(access), "port": port,
        "action": action, "would_deny": would_deny,
        "capability": cap, "suggest": sug, "never": never,
    }
    if wasi_import is not None:
        out["import"] = wasi_import
    if cap is None and never is None and syscall is not None:
        out["note"] = CLONE3_NOTE if syscall == "clone3" else RUNTIME_NOTE.format(name=syscall)
    elif cap is not None and sug is None:
        out["note"] = "the record names no absolute path: grant the file (or for new files its directory)"
    return out


def _nr(name: str) -> int:
    """The syscall's number on this host (-1 when the host's table lacks it)."""
    import os

    from ..mechanisms.seccomp.tables import ARCHES, table

    arch = os.uname().machine
    return table(arch).SYSCALLS.get(name, -1) if arch in ARCHES else -1


# --- one patch for many records ---------------------------------------------------------------
def parse_suggestion(text: str) -> dict | None:
    """The `imports` mapping of one suggestion, or None when it is not a fragment this reader knows."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("imports"), dict):
        return None
    return doc["imports"]


class Patch:
    """Suggestions merged: preopens by path (access unioned, covered entries dropped), ports unioned."""

    def __init__(self) -> None:
        self.preopens: dict[str, set[str]] = {}
        self.grants: dict[str, dict] = {}
        self.counts: dict[tuple, int] = {}  # (capability, path or None) -> violations behind it

    def add(self, imports: dict) -> bool:
        """Merge one suggestion's imports; False when its shape is not a manifest's."""
        for cap, value in imports.items():
            if cap == PREOPENS:
                if not isinstance(value, list):
                    return False
                for entry in value:
                    if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                            and isinstance(entry.get("access"), str)):
                        return False
                    modes = set(entry["access"].split("+"))
                    self.preopens.setdefault(entry["path"], set()).update(modes)
                    self.counts[(cap, entry["path"])] = self.counts.get((cap, entry["path"]), 0) + 1
                continue
            if not isinstance(cap, str) or not isinstance(value, (dict, type(None))):
                return False
            params = self.grants.setdefault(cap, {})
            for key, v in (value or {}).items():
                if isinstance(v, list):
                    params[key] = sorted(set(params.get(key, [])) | set(v), key=lambda x: (str(type(x)), x))
                else:
                    params[key] = v
            self.counts[(cap, None)] = self.counts.get((cap, None), 0) + 1
        return True

    def entries(self) -> list[tuple[str, set[str]]]:
        """Preopens sorted by path, without those a directory entry above already covers."""
        out = []
        for path, modes in sorted(self.preopens.items()):
            covered = any(p != path and (p == "/" or path.startswith(p + "/")) and modes <= m
                          for p, m in self.preopens.items())
            if not covered:
                out.append((path, modes))
        return out

    def empty(self) -> bool:
        return not self.preopens and not self.grants

    def flow_lines(self) -> list[str]:
        """One suggestion line per capability (per preopen entry for files), for summaries."""
        lines = [_preopens([e]) for e in self.entries()]
        for cap, params in sorted(self.grants.items()):
            lines.append(f"imports: {{{cap}: {_flow(params)}}}")
        return sorted(lines)


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_scalar(str(k))}: {_flow(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return yaml_scalar(str(value))


def merge_suggestions(violations) -> str:
    """One manifest patch (YAML with comments) allowing every violation observed, deduplicated and sorted.

    `violations` are violation records (other record types are skipped). The patch is an
    `imports:` mapping: merge it into the manifest, or put `sandboxer: 1` and
    `extends: [MANIFEST]` above it to use it as a manifest of its own.
    """
    patch = Patch()
    never: dict[str, dict[str, int]] = {}
    unresolved: dict[str, dict[str, int]] = {}
    n = 0
    complain = False
    for rec in violations:
        if not isinstance(rec, dict) or rec.get("type", "violation") != "violation":
            continue
        n += 1
        complain = complain or rec.get("would_deny") is True
        what = describe(rec)
        if rec.get("never"):
            bucket = never.setdefault(str(rec["never"]), {})
            bucket[what] = bucket.get(what, 0) + 1
            continue
        sug = rec.get("suggest")
        imports = parse_suggestion(sug) if isinstance(sug, str) else None
        if imports is None or not patch.add(imports):
            if rec.get("capability") or sug:
                why = (f"{rec.get('capability') or '?'}: no exact line"
                       + (f" (unreadable suggestion {sug!r})" if sug else " (the record names no absolute path)"))
                bucket = unresolved.setdefault(why, {})
                bucket[what] = bucket.get(what, 0) + 1
    out = [f"# Manifest patch from `sandboxer audit --suggest`: allows what {n} recorded violation"
           f"{'s' if n != 1 else ''} needed.",
           "# Merge it into the manifest's imports, or save it below `sandboxer: 1` and",
           "# `extends: [path/to/manifest.yaml]` to use it as a manifest that extends the original."]
    if complain:
        out.append("# Recorded in complain mode (on-violation: log): set on-violation back to deny once it runs clean.")
    if patch.empty():
        out.append("imports: {}  # nothing to grant")
    else:
        out.append("imports:")
        caps = sorted({*patch.grants, *([PREOPENS] if patch.preopens else [])})
        for cap in caps:
            if cap == PREOPENS:
                out.append(f"  {PREOPENS}:")
                for path, modes in patch.entries():
                    k = patch.counts.get((PREOPENS, path), 0)
                    out.append(f"    - {{path: {yaml_scalar(path)}, access: {access_text(modes)}}}"
                               f"  # {k} violation{'s' if k != 1 else ''}")
            else:
                k = patch.counts.get((cap, None), 0)
                out.append(f"  {cap}: {_flow(patch.grants[cap])}  # {k} violation{'s' if k != 1 else ''}")
    for title, buckets in (("No capability grants these (no manifest change allows them):", never),
                           ("Not in the patch: the records lack what a rule would name:", unresolved)):
        if buckets:
            out.append(f"# {title}")
            for why, whats in sorted(buckets.items()):
                listed = ", ".join(f"{w} ({c}x)" if c > 1 else w for w, c in sorted(whats.items())[:5])
                more = f", … {len(whats) - 5} more" if len(whats) > 5 else ""
                out.append(f"#   {why}: {listed}{more}")
    return "\n".join(out) + "\n"


def describe(rec: dict) -> str:
    """A violation in a few words: `ptrace(request=PTRACE_ATTACH)`, `/etc/shadow [read_file]`, `connect tcp/5432`."""
    sc = rec.get("syscall") if isinstance(rec.get("syscall"), dict) else None
    access = rec.get("access") if isinstance(rec.get("access"), list) else None
    if rec.get("import"):
        return f"import {rec['import']}"
    if isinstance(rec.get("port"), int) and not isinstance(rec.get("port"), bool):
        op = "bind" if (access and "bind_tcp" in access) or (sc and sc.get("name") == "bind") else "connect"
        return f"{op} port {rec['port']}"
    if rec.get("path") and access:
        return f"{rec['path']} [{', '.join(str(a) for a in access)}]"
    if sc:
        args = sc.get("args") if isinstance(sc.get("args"), dict) else {}
        shown = ", ".join(f"{k}={_arg(k, v)}" for k, v in args.items())
        text = f"{sc.get('name', '?')}({shown})"
        if rec.get("path") and rec["path"] not in args.values():
            text += f" {rec['path']}"
        return text
    return str(rec.get("path") or "?")


def _arg(key: str, v) -> str:
    if isinstance(v, list):
        return "|".join(str(x) for x in v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_arg(k, x)}" for k, x in v.items()) + "}"
    if isinstance(v, int) and not isinstance(v, bool) and key in ("flags", "request", "cmd", "mode") and v > 9:
        return hex(v)
    return str(v)
