"""Launch stage, kernel layer: every libc binding the child calls between fork and execve, bound at import.

Nothing here is lazy: the child of a fork runs these after it has closed its file descriptors and
possibly lost access to the file system, so it must not import, open a library or look up a symbol.
Each wrapper raises OSError(errno, strerror, call) so the child can report which call failed.
"""

from __future__ import annotations

from sandboxer.launch import libc
import os
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)

ARCH = os.uname().machine

# Syscall numbers without a glibc wrapper (arch/x86/entry/syscalls/syscall_64.tbl,
# include/uapi/asm-generic/unistd.h for aarch64). close_range is 436 on both (the unified table).
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277}
NR_SECCOMP = _NR_SECCOMP.get(ARCH, -1)
NR_CLOSE_RANGE = 436

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# capset(2): linux/capability.h
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# seccomp(2)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5  # Linux 5.19: a received notification is not withdrawn by signals

# unshare(2)
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

# Loopback: socket(2) and netdevice(7) ioctls
AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_SIG_SETMASK = 2


class CapHeader(libc.Structure):
    """struct __user_cap_header_struct"""

    _fields_ = [("version", libc.c_uint32), ("pid", libc.c_int)]


class CapData(libc.Structure):
    """struct __user_cap_data_struct; version 3 takes two of them (capabilities 0-31, 32-63)."""

    _fields_ = [
        ("effective", libc.c_uint32),
        ("permitted", libc.c_uint32),
        ("inheritable", libc.c_uint32),
    ]


class SockFilter(libc.Structure):
    """struct sock_filter: one classic BPF instruction (8 bytes)."""

    _fields_ = [
        ("code", libc.c_uint16),
        ("jt", libc.c_uint8),
        ("jf", libc.c_uint8),
        ("k", libc.c_uint32),
    ]


class SockFprog(libc.Structure):
    """struct sock_fprog: instruction count and a pointer to the program."""

    _fields_ = [("len", libc.c_ushort), ("filter", libc.c_void_p)]


class RLimit(libc.Structure):
    """struct rlimit (LP64: two rlim_t of 64 bits); RLIM_INFINITY is all ones."""

    _fields_ = [("cur", libc.c_uint64), ("max", libc.c_uint64)]


class IfReq(libc.Structure):
    """struct ifreq reduced to what SIOC[GS]IFFLAGS use: the name and ifr_flags (40 bytes on LP64)."""

    _fields_ = [
        ("name", libc.c_char * 16),
        ("flags", libc.c_short),
        ("_pad", libc.c_char * 22),
    ]


# One function object per signature, all bound now (sandboxer.launch.libc: ctypes without its import cost).
_fn = libc.function
_c_int, _c_long, _c_ulong, _c_void_p = libc.c_int, libc.c_long, libc.c_ulong, libc.c_void_p
_prctl = _fn("prctl", _c_int, _c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong)
_capset = _fn("capset", _c_int, _c_void_p, _c_void_p)
_unshare = _fn("unshare", _c_int, _c_int)
_sigprocmask = _fn("sigprocmask", _c_int, _c_int, _c_void_p, _c_void_p)
_signal = _fn("signal", _c_void_p, _c_int, _c_void_p)
_socket = _fn("socket", _c_int, _c_int, _c_int, _c_int)
_ioctl = _fn("ioctl", _c_int, _c_int, _c_ulong, _c_void_p)
_close = _fn("close", _c_int, _c_int)
_execve = _fn("execve", _c_int, libc.c_char_p, _c_void_p, _c_void_p)
_seccomp = _fn("syscall", _c_long, _c_long, libc.c_uint, libc.c_uint, _c_void_p)
_close_range = _fn("syscall", _c_long, _c_long, libc.c_uint, libc.c_uint, libc.c_uint)
_setrlimit = _fn("setrlimit", _c_int, _c_int, _c_void_p)

# Buffers the child fills or passes, allocated now.
_cap_header = CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
_cap_zero = (CapData * 2)()
_empty_sigset = libc.buffer(128)  # glibc sigset_t: 1024 bits
_ifreq = IfReq(b"lo")
_rlimit = RLimit()
_SIGNALS = tuple(range(1, signal.NSIG))
_UNBLOCKABLE = (signal.SIGKILL, signal.SIGSTOP)


def _fail(call: str) -> OSError:
    err = libc.get_errno()
    return OSError(err, os.strerror(err), call)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0, *, call: str = "prctl()") -> int:
    """prctl(2); raises OSError on -1."""
    ret = _prctl(option, arg2, arg3, arg4, arg5)
    if ret == -1:
        raise _fail(call)
    return ret


def set_pdeathsig(sig: int, parent_pid: int, *, namespace_init: bool = False) -> None:
    """Die with `sig` when the parent dies; if it is already gone (we were reparented), exit now.

    As init of a new PID namespace (`namespace_init`) getppid() is 0 whoever the parent is: its
    parent lives in an ancestor namespace. 0 is accepted there, so the "already gone" check cannot
    see a parent that died before the prctl. That window is closed by the launch itself: a supervised
    workload execs only after the supervisor acknowledged taking its seccomp listener, and the
    hand-over fails (EPIPE or EOF) when the supervisor is gone; init then exits and the kernel kills
    what is left in the namespace.
    """
    prctl(PR_SET_PDEATHSIG, sig, call="prctl(PR_SET_PDEATHSIG)")
    ppid = os.getppid()
    if ppid != parent_pid and not (namespace_init and ppid == 0):
        os._exit(125)  # the launcher died before the prctl took effect: nobody would supervise us


def set_dumpable(on: bool) -> None:
    """prctl(PR_SET_DUMPABLE): off, processes without CAP_SYS_PTRACE cannot ptrace us or open /proc/PID/mem."""
    prctl(PR_SET_DUMPABLE, int(on), call="prctl(PR_SET_DUMPABLE)")


def reset_signals() -> None:
    """Default disposition for every signal, then an empty mask (in that order: pending signals act now).

    Python ignores SIGPIPE and SIGXFSZ and the launcher installs forwarding handlers; ignored
    dispositions survive execve(2), so they must go back to SIG_DFL here.
    """
    for sig in _SIGNALS:
        if sig not in _UNBLOCKABLE:
            _signal(sig, None)  # SIG_DFL; glibc answers EINVAL for its two internal RT signals
    if _sigprocmask(_SIG_SETMASK, _empty_sigset, None) != 0:
        raise _fail("sigprocmask(SIG_SETMASK)")


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2) (Linux 5.9)."""
    if _close_range(NR_CLOSE_RANGE, first, last, flags) != 0:
        raise _fail("close_range()")


def unshare(flags: int, *, call: str = "unshare()") -> None:
    """unshare(2)."""
    if _unshare(flags) != 0:
        raise _fail(call)


def drop_capabilities(last_cap: int, bounding: bool) -> None:
    """Ambient set cleared, bounding set emptied (when `bounding`), then capset(2) to all zero.

    The bounding set goes first: PR_CAPBSET_DROP needs CAP_SETPCAP, which capset() removes.
    `last_cap` is /proc/sys/kernel/cap_last_cap, read by the parent before fork.
    """
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, call="prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    if bounding:
        for cap in range(last_cap + 1):
            prctl(PR_CAPBSET_DROP, cap, call="prctl(PR_CAPBSET_DROP)")
    if _capset(libc.byref(_cap_header), _cap_zero) != 0:
        raise _fail("capset()")


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) with its errno (resource.setrlimit turns EPERM and EINVAL into a ValueError without one)."""
    _rlimit.cur, _rlimit.max = soft & 0xFFFFFFFFFFFFFFFF, hard & 0xFFFFFFFFFFFFFFFF  # RLIM_INFINITY is -1 in Python
    if _setrlimit(resource, libc.addressof(_rlimit)) != 0:
        raise _fail("setrlimit()")


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS, 1): execve can no longer grant privileges (setuid, file caps)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1, call="prctl(PR_SET_NO_NEW_PRIVS)")


def seccomp_set_mode_filter(flags: int, fprog: SockFprog) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog); the listener fd with FLAG_NEW_LISTENER, else 0."""
    ret = _seccomp(NR_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, libc.addressof(fprog))
    if ret < 0:
        raise _fail("seccomp(SECCOMP_SET_MODE_FILTER)")
    return ret


def loopback_up() -> None:
    """Set IFF_UP on `lo` of the current network namespace (SIOCGIFFLAGS, then SIOCSIFFLAGS)."""
    fd = _socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
    if fd < 0:
        raise _fail("socket(AF_INET, SOCK_DGRAM)")
    try:
        if _ioctl(fd, SIOCGIFFLAGS, libc.addressof(_ifreq)) != 0:
            raise _fail("ioctl(lo, SIOCGIFFLAGS)")
        _ifreq.flags |= IFF_UP
        if _ioctl(fd, SIOCSIFFLAGS, libc.addressof(_ifreq)) != 0:
            raise _fail("ioctl(lo, SIOCSIFFLAGS)")
    finally:
        _close(fd)


def cstring_array(items: list[bytes]) -> libc.Array:
    """A NULL-terminated char *[] for execve; the array keeps the bytes objects alive."""
    return (libc.c_char_p * (len(items) + 1))(*items, None)


def execve(path: bytes, argv: libc.Array, envp: libc.Array) -> None:
    """execve(2) with arrays built by the parent; returns only by raising."""
    _execve(path, argv, envp)
    raise _fail("execve()")


def read_cap_last_cap() -> int:
    """The highest capability number this kernel knows (parent side, before fork)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        # No /proc: ask the bounding set itself, as libcap does; PR_CAPBSET_READ is EINVAL past the end.
        cap = 0
        while _prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0:
            cap += 1
        return cap
