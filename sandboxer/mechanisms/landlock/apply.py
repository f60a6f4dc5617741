"""Apply stage: build the Landlock ruleset of a plan's `landlock` section (parent), enforce it (child).

The parent calls prepare_ruleset() before fork: every path is opened and every rule added there, so
all user-facing errors happen before fork. The child only calls set_no_new_privs() and
restrict_self() right before execve; both are plain libc calls (sandboxer.launch.libc) set up at import time.
"""

from __future__ import annotations

from sandboxer.launch import libc
import errno as _errno
import os
import stat

from sandboxer.mechanisms.landlock.rights import (
    FILE_ONLY_RIGHTS,
    FS_RIGHTS,
    KERNEL_FOR_ABI,
    NET_RIGHTS,
    RESTRICT_FLAGS,
    SCOPES,
    mask,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Syscall numbers from the asm-generic table: identical on x86_64 and aarch64.
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_PR_SET_NO_NEW_PRIVS = 38

# (key in the section, table, label used in messages and in downgrade()'s list)
_TABLES = (
    ("handled_fs", FS_RIGHTS, "fs"),
    ("handled_net", NET_RIGHTS, "net"),
    ("scoped", SCOPES, "scope"),
    ("restrict_flags", RESTRICT_FLAGS, "flag"),
)


class RulesetAttr(libc.Structure):
    """struct landlock_ruleset_attr; the kernel reads only the `size` bytes passed to it.

    Linux 6.18 silently ignores fields past `size` (handled_access_net given with size 8 is dropped,
    no error), which is why prepare_ruleset() refuses rights newer than the plan's ABI.
    """

    _fields_ = [
        ("handled_access_fs", libc.c_uint64),
        ("handled_access_net", libc.c_uint64),  # ABI 4
        ("scoped", libc.c_uint64),  # ABI 6
    ]


class PathBeneathAttr(libc.Structure):
    """struct landlock_path_beneath_attr, __attribute__((packed)): 12 bytes."""

    _pack_ = 1
    _fields_ = [("allowed_access", libc.c_uint64), ("parent_fd", libc.c_int32)]


class NetPortAttr(libc.Structure):
    """struct landlock_net_port_attr (ABI 4); `port` is in host byte order."""

    _fields_ = [("allowed_access", libc.c_uint64), ("port", libc.c_uint64)]


def ruleset_attr_size(abi: int) -> int:
    """sizeof(struct landlock_ruleset_attr) as a kernel of Landlock ABI `abi` defines it."""
    if abi < 4:
        return RulesetAttr.handled_access_net.offset
    if abi < 6:
        return RulesetAttr.scoped.offset
    return libc.sizeof(RulesetAttr)


# One function object per signature, all built now: the child must do nothing lazily.
_create_ruleset = libc.function("syscall", libc.c_long, libc.c_long, libc.c_void_p, libc.c_size_t, libc.c_uint32)
_add_rule = libc.function("syscall", libc.c_long, libc.c_long, libc.c_int, libc.c_int, libc.c_void_p, libc.c_uint32)
_restrict_self = libc.function("syscall", libc.c_long, libc.c_long, libc.c_int, libc.c_uint32)
_prctl = libc.function("prctl", libc.c_int, libc.c_int, libc.c_ulong, libc.c_ulong, libc.c_ulong, libc.c_ulong)


class LandlockError(Exception):
    """Landlock could not be set up as the plan asks; sandboxer stops before exec."""

    exit_code = 125


class LandlockPathError(LandlockError):
    """A path of a path-beneath rule could not be opened."""

    def __init__(self, path: str, at: str | None, errno: int) -> None:
        super().__init__(path, at, errno)
        self.path, self.at, self.errno = path, at, errno

    def __str__(self) -> str:
        where = f" ({self.at})" if self.at else ""
        return f"cannot open {self.path}{where} for a Landlock rule: {_describe(self.errno)}"


def _describe(err: int) -> str:
    return f"{_errno.errorcode.get(err, str(err))}: {os.strerror(err)}"


def _syscall_error(call: str) -> LandlockError:
    return LandlockError(f"{call} failed: {_describe(libc.get_errno())}")


def _lacking(section: dict[str, Any], kernel_abi: int) -> list[tuple[str, int]]:
    """("fs:truncate", 3) for each right, scope or flag in `section` that ABI `kernel_abi` lacks."""
    return [
        (f"{label}:{name}", table[name][1])
        for key, table, label in _TABLES
        for name in section.get(key, [])
        if table[name][1] > kernel_abi
    ]


def _list(items: list[tuple[str, int]]) -> str:
    return ", ".join(f"{it} (ABI {abi}, Linux {KERNEL_FOR_ABI.get(abi, '?')})" for it, abi in items)


def downgrade(section: dict[str, Any], kernel_abi: int) -> tuple[dict[str, Any], list[str]]:
    """The section without what ABI `kernel_abi` does not know, and what was dropped ("fs:truncate").

    Pure. Dropping a handled right leaves that access unrestricted, except `refer`: ABI 1 always
    denies reparenting, so there dropping it is stricter, not looser.
    """
    if kernel_abi >= section["abi"]:
        return dict(section), []
    dropped = [item for item, _ in _lacking(section, kernel_abi)]
    out = dict(section, abi=kernel_abi)
    for key, table, _ in _TABLES:
        out[key] = [n for n in section.get(key, []) if table[n][1] <= kernel_abi]
    out["paths"] = [
        dict(rule, access=[a for a in rule["access"] if FS_RIGHTS[a][1] <= kernel_abi])
        for rule in section.get("paths", [])
    ]
    out["ports"] = [] if not out["handled_net"] else [
        dict(rule, access=[a for a in rule["access"] if NET_RIGHTS[a][1] <= kernel_abi])
        for rule in section.get("ports", [])
    ]
    return out, dropped


class PreparedRuleset:
    """A ruleset fd (close-on-exec) with all rules added, and the flags for restrict_self()."""

    def __init__(self, fd: int, restrict_flags: int = 0) -> None:
        self.fd = fd
        self.restrict_flags = restrict_flags

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PreparedRuleset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unknown_names(section: dict[str, Any]) -> list[str]:
    named = [(table, n) for key, table, _ in _TABLES for n in section.get(key, [])]
    named += [(FS_RIGHTS, a) for rule in section.get("paths", []) for a in rule["access"]]
    named += [(NET_RIGHTS, a) for rule in section.get("ports", []) for a in rule["access"]]
    return sorted({name for table, name in named if name not in table})


def _add_path_rule(ruleset_fd: int, rule: dict[str, Any], handled_fs: int) -> None:
    path = rule["path"]
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise LandlockPathError(path, rule.get("at"), e.errno) from None
    try:
        access = rule["access"]
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            # The kernel answers EINVAL to directory-only rights on a file (landlock_add_rule(2)).
            access = [a for a in access if a in FILE_ONLY_RIGHTS]
        attr = PathBeneathAttr(mask(FS_RIGHTS, access) & handled_fs, fd)
        if attr.allowed_access == 0:
            return  # the kernel rejects an empty rule with ENOMSG; it would grant nothing anyway
        if _add_rule(_SYS_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, libc.byref(attr), 0) != 0:
            raise _syscall_error(f"landlock_add_rule({path})")
    finally:
        os.close(fd)


def _add_port_rule(ruleset_fd: int, rule: dict[str, Any], handled_net: int) -> None:
    attr = NetPortAttr(mask(NET_RIGHTS, rule["access"]) & handled_net, rule["port"])
    if attr.allowed_access == 0:
        return
    if _add_rule(_SYS_ADD_RULE, ruleset_fd, _RULE_NET_PORT, libc.byref(attr), 0) != 0:
        raise _syscall_error(f"landlock_add_rule(tcp port {rule['port']})")


def prepare_ruleset(section: dict[str, Any], *, kernel_abi: int) -> PreparedRuleset:
    """Create the ruleset for `section` and add every rule; runs in the parent, before fork."""
    abi = section["abi"]
    if unknown := _unknown_names(section):
        raise LandlockError(f"the plan names unknown Landlock rights, scopes or flags: {unknown}")
    if unknown_to_plan := _lacking(section, abi):
        # The attr size follows the ABI, so the kernel would never see these bits: refuse instead.
        raise LandlockError(f"the plan targets Landlock ABI {abi} but uses {_list(unknown_to_plan)}")
    if kernel_abi < 1:
        raise LandlockError("Landlock is not available on this kernel (probe_landlock() says why)")
    if kernel_abi < abi:
        lacking = _list(_lacking(section, kernel_abi)) or "no right this plan uses, only the ABI number"
        raise LandlockError(
            f"the plan needs Landlock ABI {abi} (Linux {KERNEL_FOR_ABI.get(abi, '?')});"
            f" this kernel has ABI {kernel_abi}, which lacks: {lacking}."
            " Set compat.landlock: best-effort to run without them, or use a newer kernel."
        )
    handled_fs, handled_net, scoped, flags = (mask(t, section.get(k, [])) for k, t, _ in _TABLES)
    attr = RulesetAttr(handled_fs, handled_net, scoped)
    fd = _create_ruleset(_SYS_CREATE_RULESET, libc.byref(attr), ruleset_attr_size(abi), 0)
    if fd < 0:
        raise _syscall_error("landlock_create_ruleset()")
    ruleset = PreparedRuleset(fd, flags)
    try:
        for rule in section.get("paths", []):
            _add_path_rule(fd, rule, handled_fs)
        for rule in section.get("ports", []) if handled_net else []:
            _add_port_rule(fd, rule, handled_net)
    except BaseException:
        ruleset.close()
        raise
    return ruleset


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS, 1): required by landlock_restrict_self() without CAP_SYS_ADMIN."""
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = libc.get_errno()
        raise OSError(err, os.strerror(err))


def restrict_self(fd: int, flags: int = 0) -> None:
    """landlock_restrict_self(fd, flags) in the child, right before execve; raises OSError(errno)."""
    if _restrict_self(_SYS_RESTRICT_SELF, fd, flags) != 0:
        err = libc.get_errno()
        raise OSError(err, os.strerror(err))
