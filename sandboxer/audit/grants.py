"""Complain mode for Landlock: would this file or port access be allowed by the plan's `landlock` section?

Landlock has no log-only mode, so under `on-violation: log` it is not applied; the supervisor sees
open/exec/unlink/rename/mkdir/connect/bind… through seccomp notifications it answers with CONTINUE,
and uses this module to tell which of them Landlock would have denied.

    files = FileGrants(plan["landlock"]); ports = PortGrants(plan["landlock"])
    for path, rights in accesses_for(decoded):  files.allows(path, rights)  /  files.missing(path, rights)
    would_deny(decoded, files, ports) -> [{"path": …, "rights": [...]}, {"port": …, "rights": [...]}]

Semantics copied from security/landlock (Linux 6.18):
- path-beneath: a rule on directory D grants its rights to D and everything beneath it; rights of
  all rules on the ancestors of a file are OR-ed (one layer: sandboxer makes one ruleset). A rule on a
  regular file grants only the file rights (execute, write_file, read_file, truncate, ioctl_dev);
  sandboxer's apply drops the others, as the kernel would refuse them.
- rights the section does not handle are not restricted (always allowed).
- a rule path is resolved the way landlock_add_rule sees it: open(O_PATH) follows symlinks, so the
  rule's realpath() counts; a rule path that does not exist grants nothing (apply cannot add it).
- which object is checked: the opened/executed/truncated file itself (read_file, write_file,
  execute, truncate; read_dir for a directory opened for reading), but for creating and removing
  entries (make_*, remove_*) and for refer, the *parent directory* of the entry.
- symlinks: the accessed file is resolved with realpath() — the kernel follows symlinks in every
  component and, unless O_NOFOLLOW / AT_SYMLINK_NOFOLLOW or the call never follows the last
  component (unlink, rmdir, rename, link, mkdir, mknod, symlink, O_CREAT|O_EXCL), in the last one too.
  When the last component is not followed, only its directory is resolved. ".." is resolved after
  the symlink before it, as the kernel does. The supervisor resolves in its own mount namespace
  and root: correct while the workload shares them (sandboxer adds no mount namespace); a path that
  does not exist yet keeps its missing tail lexically.
- timing: the check runs when the notification arrives, before the syscall, which is the moment
  the kernel would check; a racing workload can change the file system in between (the record is
  evidence, not a decision).
- not modelled: Landlock's refer rule that a moved file must not gain rights at its destination
  (only "refer on both parents" is checked), ld.so and #! interpreters opened by execve inside the
  kernel, ftruncate/ioctl rights fixed at open time (approximated from the fd's current path).
"""

from __future__ import annotations

import os
import stat as _stat

from sandboxer.mechanisms.landlock.rights import FILE_ONLY_RIGHTS

_FILE_ONLY = frozenset(FILE_ONLY_RIGHTS)

# Landlock's get_mode_access(): the make_* right for an inode type, and remove_* for removing it.
_MAKE_FOR_TYPE = {
    _stat.S_IFREG: "make_reg", _stat.S_IFDIR: "make_dir", _stat.S_IFLNK: "make_sym", _stat.S_IFCHR: "make_char",
    _stat.S_IFBLK: "make_block", _stat.S_IFIFO: "make_fifo", _stat.S_IFSOCK: "make_sock",
}
_MAKE_FOR_NAME = {"S_IFREG": "make_reg", "S_IFCHR": "make_char", "S_IFBLK": "make_block",
                  "S_IFIFO": "make_fifo", "S_IFSOCK": "make_sock", "S_IFDIR": "make_dir"}

# ioctl commands Landlock always allows on devices (security/landlock/fs.c, is_masked_device_ioctl).
_MASKED_IOCTLS = frozenset({"FIOCLEX", "FIONCLEX", "FIONBIO", "FIOASYNC", "FIOQSIZE", "FICLONE",
                            "FICLONERANGE"})


def resolve(path: str, *, follow: bool = True) -> str:
    """The path of the file the kernel would reach: every symlink followed (the last one only with
    `follow`); a missing tail is kept as written."""
    if follow:
        return os.path.realpath(path)
    head, tail = os.path.split(path.rstrip("/") or "/")
    if not tail or tail in (".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head), tail)


def _parent(path: str) -> str:
    return os.path.dirname(path.rstrip("/")) or "/"


def _beneath(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root + "/")


class FileGrants:
    """The file rules of a plan's `landlock` section, matched as Landlock would match them."""

    def __init__(self, landlock_section: dict, *, resolve_rules: bool = True) -> None:
        self.handled = frozenset(landlock_section.get("handled_fs", ()))
        self.rules: list[tuple[str, frozenset, tuple]] = []  # (resolved path, rights, because)
        self.skipped: list[str] = []  # rule paths that do not exist: the kernel never sees them
        for rule in landlock_section.get("paths", ()):
            path = rule["path"]
            real = os.path.realpath(path) if resolve_rules else os.path.normpath(path)
            rights = frozenset(rule.get("access", ())) & self.handled
            if resolve_rules:
                try:
                    st = os.stat(real)
                except OSError:
                    self.skipped.append(path)
                    continue
                if not _stat.S_ISDIR(st.st_mode):
                    rights &= _FILE_ONLY
            self.rules.append((real, rights, tuple(rule.get("because", ()))))

    def granted(self, path: str) -> frozenset:
        """Every right the rules grant on `path` (already resolved)."""
        out: frozenset = frozenset()
        for root, rights, _ in self.rules:
            if _beneath(path, root):
                out |= rights
        return out

    def missing(self, path: str, access_rights, *, follow: bool = True) -> set:
        """The rights of `access_rights` that Landlock would refuse on `path` (empty: allowed)."""
        needed = set(access_rights) & self.handled
        if not needed:
            return set()
        return needed - self.granted(resolve(path, follow=follow))

    def allows(self, path: str, access_rights, *, follow: bool = True) -> bool:
        """Would Landlock allow `access_rights` (names as in rights.py) on `path`?"""
        return not self.missing(path, access_rights, follow=follow)


class PortGrants:
    """The TCP port rules of a plan's `landlock` section (bind_tcp, connect_tcp)."""

    def __init__(self, landlock_section: dict) -> None:
        self.handled = frozenset(landlock_section.get("handled_net", ()))
        self.ports: dict[int, frozenset] = {}
        for rule in landlock_section.get("ports", ()) if self.handled else ():
            self.ports[rule["port"]] = self.ports.get(rule["port"], frozenset()) | frozenset(rule["access"])

    def allows(self, port: int, right: str) -> bool:
        """Would Landlock allow `right` ("bind_tcp" or "connect_tcp") on TCP `port`?"""
        return right not in self.handled or right in self.ports.get(port, ())


# --- decoded syscall → what Landlock checks ---------------------------------------------------


def _flags(args: dict, key: str = "flags") -> set:
    v = args.get(key)
    return set(v.split("|")) if isinstance(v, str) else set()


def _lstat_type(path: str, *, follow: bool = False) -> int | None:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return _stat.S_IFMT(st.st_mode)


def _open_access(args: dict) -> list[tuple[str, set]]:
    path = args.get("path")
    if path is None:
        return []
    flags = _flags(args)
    if "O_PATH" in flags:
        return []  # an O_PATH fd grants no access: Landlock checks nothing
    acc = {"O_RDONLY": {"read_file"}, "O_WRONLY": {"write_file"}, "O_RDWR": {"read_file", "write_file"}}
    mode = next((acc[f] for f in acc if f in flags), {"read_file"})
    if "O_TMPFILE" in flags:  # an unnamed file in directory `path`
        return [(resolve(path), set(mode))]
    nofollow = "O_NOFOLLOW" in flags or {"O_CREAT", "O_EXCL"} <= flags
    target = resolve(path, follow=not nofollow)
    kind = _lstat_type(target, follow=True)
    if kind is None:
        if "O_CREAT" not in flags:
            return [(target, set(mode))]  # ENOENT in reality; still record what was asked
        return [(_parent(target), {"make_reg"}), (target, set(mode))]
    if kind == _stat.S_IFDIR:
        return [(target, {"read_dir"} if "read_file" in mode else set(mode))]
    rights = set(mode)
    if "O_TRUNC" in flags:
        rights.add("truncate")
    return [(target, rights)]


def _entry(path: str | None) -> tuple[str, str] | None:
    """(resolved parent directory, resolved entry path) for a call that does not follow the last link."""
    if path is None:
        return None
    entry = resolve(path, follow=False)
    return _parent(entry), entry


def _remove_right(kind: int | None) -> str:
    return "remove_dir" if kind == _stat.S_IFDIR else "remove_file"


def _move(args: dict, *, link: bool) -> list[tuple[str, set]]:
    old, new = _entry(args.get("oldpath")), _entry(args.get("newpath"))
    if old is None or new is None:
        return []
    (old_dir, old_path), (new_dir, new_path) = old, new
    follow = link and "AT_SYMLINK_FOLLOW" in _flags(args)
    old_kind = _lstat_type(old_path, follow=follow)
    make_old = _MAKE_FOR_TYPE.get(old_kind, "make_reg")
    out = [(new_dir, {make_old})]
    if not link:
        out.insert(0, (old_dir, {_remove_right(old_kind)}))
        new_kind = _lstat_type(new_path)
        if new_kind is not None:
            out[-1][1].add(_remove_right(new_kind))  # replacing (or exchanging) the destination
            if "RENAME_EXCHANGE" in _flags(args):
                out[0][1].add(_MAKE_FOR_TYPE.get(new_kind, "make_reg"))
    if old_dir != new_dir:
        for _, rights in out:
            rights.add("refer")
        if link:
            out.insert(0, (old_dir, {"refer"}))
    return out


def accesses_for(decoded: dict) -> list[tuple[str, set]]:
    """Every (path, Landlock rights) Landlock would check for a decoded syscall; [] when Landlock
    checks nothing for it (stat, chmod, chown, access, readlink… are not Landlock-controlled)."""
    name, args = decoded.get("name"), decoded.get("args", {})
    if name in ("open", "openat", "openat2", "creat"):
        return _open_access(args)
    if name in ("execve", "execveat"):
        path = args.get("path")
        nofollow = "AT_SYMLINK_NOFOLLOW" in _flags(args)
        return [] if path is None else [(resolve(path, follow=not nofollow), {"execute", "read_file"})]
    if name in ("unlink", "rmdir", "unlinkat"):
        e = _entry(args.get("path"))
        if e is None:
            return []
        rmdir = name == "rmdir" or "AT_REMOVEDIR" in _flags(args)
        return [(e[0], {"remove_dir" if rmdir else "remove_file"})]
    if name in ("mkdir", "mkdirat", "mknod", "mknodat", "symlink", "symlinkat"):
        e = _entry(args.get("linkpath") if name.startswith("symlink") else args.get("path"))
        if e is None:
            return []
        right = ("make_dir" if name.startswith("mkdir") else "make_sym" if name.startswith("symlink")
                 else _MAKE_FOR_NAME.get(args.get("type", "S_IFREG"), "make_reg"))
        return [(e[0], {right})]
    if name in ("rename", "renameat", "renameat2"):
        return _move(args, link=False)
    if name in ("link", "linkat"):
        return _move(args, link=True)
    if name == "truncate":
        path = args.get("path")
        return [] if path is None else [(resolve(path), {"truncate"})]
    if name == "ftruncate":
        path = args.get("fd_path")
        return [(path, {"truncate"})] if path and path.startswith("/") else []
    if name == "ioctl":
        path, req = args.get("fd_path"), str(args.get("request", "")).split(" ")[0]
        if path and path.startswith("/") and req not in _MASKED_IOCTLS:
            kind = _lstat_type(path, follow=True)
            if kind in (_stat.S_IFCHR, _stat.S_IFBLK):
                return [(path, {"ioctl_dev"})]
        return []
    return []


def access_for(decoded: dict) -> tuple[str, set] | None:
    """The main (path, rights) Landlock checks for a decoded syscall (see accesses_for for all), or None."""
    out = accesses_for(decoded)
    return out[-1] if out else None


def net_access_for(decoded: dict) -> tuple[int, str] | None:
    """(port, "connect_tcp" | "bind_tcp") for a decoded connect/bind (or a TCP Fast Open sendto/
    sendmsg, which connects) on an AF_INET/AF_INET6 TCP socket; None otherwise. When the socket's
    type is unknown (decode without sock_info), an inet connect/bind is taken to be TCP."""
    name, args = decoded.get("name"), decoded.get("args", {})
    if args.get("family") not in ("AF_INET", "AF_INET6") or "port" not in args:
        return None
    sock = args.get("socket")
    if sock is not None and (sock.get("type") != "SOCK_STREAM" or sock.get("protocol") not in ("IPPROTO_TCP", "0")):
        return None  # UDP, raw, SCTP…: Landlock has no rule for them
    if name == "connect":
        return args["port"], "connect_tcp"
    if name == "bind":
        return args["port"], "bind_tcp"
    if name in ("sendto", "sendmsg", "sendmmsg") and "MSG_FASTOPEN" in _flags(args):
        return args["port"], "connect_tcp"
    return None


def would_deny(decoded: dict, files: FileGrants | None, ports: PortGrants | None) -> list[dict]:
    """What Landlock would have refused for this syscall: [{"path", "rights"}] / [{"port", "rights"}]."""
    out = []
    if files is not None:
        for path, rights in accesses_for(decoded):
            missing = set(rights) & files.handled
            missing -= files.granted(path)
            if missing and not any(r.startswith(("make_", "remove_", "refer")) for r in missing) \
                    and not os.path.lexists(path):
                continue  # opening what does not exist fails with ENOENT before Landlock is asked
            if missing:
                out.append({"path": path, "rights": sorted(missing)})
    if ports is not None and (net := net_access_for(decoded)) is not None:
        port, right = net
        if not ports.allows(port, right):
            out.append({"port": port, "rights": [right]})
    return out
