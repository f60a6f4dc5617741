"""A seccomp notification → a readable syscall: name, number and named, decoded arguments.

    decode(notification, read_string, read_memory, fd_path, sock_info) -> {"name", "nr", "args"}

Table-driven: SPECS maps a syscall name to one spec per argument position, (key, kind); each kind
is a small function. Syscall names come from the x86_64/aarch64 tables by the notification's
AUDIT_ARCH, so one spec serves both architectures (aarch64 simply has no `open`, `mkdir`, ...).
Unknown syscalls (or an unknown arch) give raw hex arguments arg0..arg5.

Paths: every path argument is read from the target's memory, then made absolute: relative to its
dirfd (readlink /proc/PID/fd/N) or to its cwd (AT_FDCWD: readlink /proc/PID/cwd), and
/proc/self, /proc/thread-self rewritten to the target's pid. Only "." and empty components are
dropped; ".." is kept, because collapsing it lexically would be wrong after a symlink (the kernel
resolves ".." after following links; grants.py resolves the result as the kernel would).

The readers are parameters so unit tests need no kernel; the defaults read the live target.
Memory read here is not trusted until the supervisor's id_valid() check (notify.py explains why).
"""

from __future__ import annotations

import os

from sandboxer.audit import notify

# --- constant tables --------------------------------------------------------------------------

AT_FDCWD = -100

# Open flags: asm-generic/fcntl.h; arm64 moves four of them (arch/arm64/include/uapi/asm/fcntl.h).
_OPEN_COMMON = {
    0o100: "O_CREAT", 0o200: "O_EXCL", 0o400: "O_NOCTTY", 0o1000: "O_TRUNC", 0o2000: "O_APPEND",
    0o4000: "O_NONBLOCK", 0o10000: "O_DSYNC", 0o20000: "O_ASYNC", 0o1000000: "O_NOATIME",
    0o2000000: "O_CLOEXEC", 0o10000000: "O_PATH",
}
OPEN_FLAGS = {
    "x86_64": {**_OPEN_COMMON, 0o40000: "O_DIRECT", 0o100000: "O_LARGEFILE", 0o200000: "O_DIRECTORY",
               0o400000: "O_NOFOLLOW"},
    "aarch64": {**_OPEN_COMMON, 0o40000: "O_DIRECTORY", 0o100000: "O_NOFOLLOW", 0o200000: "O_DIRECT",
                0o400000: "O_LARGEFILE"},
}
_O_SYNC_BIT, _O_TMPFILE_BIT = 0o4000000, 0o20000000  # __O_SYNC, __O_TMPFILE
_ACCMODE = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")

AT_FLAGS = {0x100: "AT_SYMLINK_NOFOLLOW", 0x400: "AT_SYMLINK_FOLLOW", 0x800: "AT_NO_AUTOMOUNT",
            0x1000: "AT_EMPTY_PATH", 0x8000: "AT_RECURSIVE", 0x2000: "AT_STATX_FORCE_SYNC",
            0x4000: "AT_STATX_DONT_SYNC"}
UNLINK_FLAGS = {0x200: "AT_REMOVEDIR"}
ACCESS_AT_FLAGS = {**AT_FLAGS, 0x200: "AT_EACCESS"}
RENAME_FLAGS = {1: "RENAME_NOREPLACE", 2: "RENAME_EXCHANGE", 4: "RENAME_WHITEOUT"}
RESOLVE_FLAGS = {1: "RESOLVE_NO_XDEV", 2: "RESOLVE_NO_MAGICLINKS", 4: "RESOLVE_NO_SYMLINKS",
                 8: "RESOLVE_BENEATH", 0x10: "RESOLVE_IN_ROOT", 0x20: "RESOLVE_CACHED"}

CLONE_FLAGS = {
    0x100: "CLONE_VM", 0x200: "CLONE_FS", 0x400: "CLONE_FILES", 0x800: "CLONE_SIGHAND",
    0x1000: "CLONE_PIDFD", 0x2000: "CLONE_PTRACE", 0x4000: "CLONE_VFORK", 0x8000: "CLONE_PARENT",
    0x10000: "CLONE_THREAD", 0x20000: "CLONE_NEWNS", 0x40000: "CLONE_SYSVSEM", 0x80000: "CLONE_SETTLS",
    0x100000: "CLONE_PARENT_SETTID", 0x200000: "CLONE_CHILD_CLEARTID", 0x400000: "CLONE_DETACHED",
    0x800000: "CLONE_UNTRACED", 0x1000000: "CLONE_CHILD_SETTID", 0x2000000: "CLONE_NEWCGROUP",
    0x4000000: "CLONE_NEWUTS", 0x8000000: "CLONE_NEWIPC", 0x10000000: "CLONE_NEWUSER",
    0x20000000: "CLONE_NEWPID", 0x40000000: "CLONE_NEWNET", 0x80000000: "CLONE_IO",
}
CLONE3_FLAGS = {**CLONE_FLAGS, 0x80: "CLONE_NEWTIME", 0x100000000: "CLONE_CLEAR_SIGHAND",
                0x200000000: "CLONE_INTO_CGROUP"}
# unshare(2) and setns(2) take CLONE_NEWTIME (0x80) in what clone(2) uses as the exit signal.
UNSHARE_FLAGS = {**CLONE_FLAGS, 0x80: "CLONE_NEWTIME"}
NAMESPACE_FLAGS = {bit: name for bit, name in sorted(UNSHARE_FLAGS.items()) if name.startswith("CLONE_NEW")}

SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM",
    15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP",
    21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM",
    27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}

AF = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK",
    7: "AF_BRIDGE", 9: "AF_X25", 10: "AF_INET6", 15: "AF_KEY", 16: "AF_NETLINK", 17: "AF_PACKET",
    29: "AF_CAN", 30: "AF_TIPC", 31: "AF_BLUETOOTH", 38: "AF_ALG", 40: "AF_VSOCK", 41: "AF_KCM",
    42: "AF_QIPCRTR", 43: "AF_SMC", 44: "AF_XDP", 45: "AF_MCTP",
}
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM", 5: "SOCK_SEQPACKET",
              6: "SOCK_DCCP", 10: "SOCK_PACKET"}
SOCK_TYPE_FLAGS = {0o4000: "SOCK_NONBLOCK", 0o2000000: "SOCK_CLOEXEC"}
IPPROTO = {0: "IPPROTO_IP", 1: "IPPROTO_ICMP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP", 41: "IPPROTO_IPV6",
           58: "IPPROTO_ICMPV6", 132: "IPPROTO_SCTP", 136: "IPPROTO_UDPLITE", 255: "IPPROTO_RAW",
           262: "IPPROTO_MPTCP"}
NETLINK_PROTO = {0: "NETLINK_ROUTE", 4: "NETLINK_SOCK_DIAG", 6: "NETLINK_XFRM", 9: "NETLINK_AUDIT",
                 12: "NETLINK_NETFILTER", 15: "NETLINK_KOBJECT_UEVENT", 16: "NETLINK_GENERIC"}
MSG_FLAGS = {1: "MSG_OOB", 2: "MSG_PEEK", 4: "MSG_DONTROUTE", 0x40: "MSG_DONTWAIT", 0x80: "MSG_EOR",
             0x800: "MSG_CONFIRM", 0x4000: "MSG_NOSIGNAL", 0x8000: "MSG_MORE", 0x4000000: "MSG_ZEROCOPY",
             0x20000000: "MSG_FASTOPEN"}

# ioctl request numbers (asm-generic/ioctls.h, linux/fs.h, linux/sockios.h, ...), same on both arches.
IOCTLS = {
    0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x5409: "TCSBRK",
    0x540B: "TCFLSH", 0x540E: "TIOCSCTTY", 0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP", 0x5411: "TIOCOUTQ",
    0x5412: "TIOCSTI", 0x5413: "TIOCGWINSZ", 0x5414: "TIOCSWINSZ", 0x5415: "TIOCMGET", 0x5418: "TIOCMSET",
    0x541B: "FIONREAD", 0x541C: "TIOCLINUX", 0x541D: "TIOCCONS", 0x5421: "FIONBIO", 0x5422: "TIOCNOTTY",
    0x5423: "TIOCSETD", 0x5424: "TIOCGETD", 0x5429: "TIOCGSID", 0x80045430: "TIOCGPTN",
    0x40045431: "TIOCSPTLCK", 0x5441: "TIOCGPTPEER", 0x5450: "FIONCLEX", 0x5451: "FIOCLEX",
    0x5452: "FIOASYNC", 0x5460: "FIOQSIZE", 0x80086601: "FS_IOC_GETFLAGS", 0x40086602: "FS_IOC_SETFLAGS",
    0x40049409: "FICLONE", 0x4020940D: "FICLONERANGE", 0x80081272: "BLKGETSIZE64", 0x1260: "BLKGETSIZE",
    0x8912: "SIOCGIFCONF", 0x8913: "SIOCGIFFLAGS", 0x8914: "SIOCSIFFLAGS", 0x8915: "SIOCGIFADDR",
    0x8916: "SIOCSIFADDR", 0x8927: "SIOCGIFHWADDR", 0x8933: "SIOCGIFINDEX", 0x400454CA: "TUNSETIFF",
    0xC0502100: "SECCOMP_IOCTL_NOTIF_RECV", 0xC0182101: "SECCOMP_IOCTL_NOTIF_SEND",
    0x40082102: "SECCOMP_IOCTL_NOTIF_ID_VALID", 0x40182103: "SECCOMP_IOCTL_NOTIF_ADDFD",
}

PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSER",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 7: "PTRACE_CONT", 8: "PTRACE_KILL",
    9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS", 14: "PTRACE_GETFPREGS",
    15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH", 24: "PTRACE_SYSCALL",
    0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO",
    0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET",
    0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN",
    0x4209: "PTRACE_PEEKSIGINFO", 0x420A: "PTRACE_GETSIGMASK", 0x420B: "PTRACE_SETSIGMASK",
    0x420C: "PTRACE_SECCOMP_GET_FILTER", 0x420D: "PTRACE_SECCOMP_GET_METADATA",
    0x420E: "PTRACE_GET_SYSCALL_INFO",
}

PRCTL_OPTIONS = {
    1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE", 4: "PR_SET_DUMPABLE",
    7: "PR_GET_KEEPCAPS", 8: "PR_SET_KEEPCAPS", 15: "PR_SET_NAME", 16: "PR_GET_NAME", 21: "PR_GET_SECCOMP",
    22: "PR_SET_SECCOMP", 23: "PR_CAPBSET_READ", 24: "PR_CAPBSET_DROP", 27: "PR_GET_SECUREBITS",
    28: "PR_SET_SECUREBITS", 29: "PR_SET_TIMERSLACK", 30: "PR_GET_TIMERSLACK", 35: "PR_SET_MM",
    36: "PR_SET_CHILD_SUBREAPER", 37: "PR_GET_CHILD_SUBREAPER", 38: "PR_SET_NO_NEW_PRIVS",
    39: "PR_GET_NO_NEW_PRIVS", 40: "PR_GET_TID_ADDRESS", 41: "PR_SET_THP_DISABLE", 42: "PR_GET_THP_DISABLE",
    47: "PR_CAP_AMBIENT", 52: "PR_GET_SPECULATION_CTRL", 53: "PR_SET_SPECULATION_CTRL",
    59: "PR_SET_SYSCALL_USER_DISPATCH", 0x53564D41: "PR_SET_VMA", 0x59616D61: "PR_SET_PTRACER",
}

MOUNT_FLAGS = {
    1: "MS_RDONLY", 2: "MS_NOSUID", 4: "MS_NODEV", 8: "MS_NOEXEC", 16: "MS_SYNCHRONOUS", 32: "MS_REMOUNT",
    64: "MS_MANDLOCK", 128: "MS_DIRSYNC", 256: "MS_NOSYMFOLLOW", 1024: "MS_NOATIME", 2048: "MS_NODIRATIME",
    4096: "MS_BIND", 8192: "MS_MOVE", 16384: "MS_REC", 32768: "MS_SILENT", 1 << 16: "MS_POSIXACL",
    1 << 17: "MS_UNBINDABLE", 1 << 18: "MS_PRIVATE", 1 << 19: "MS_SLAVE", 1 << 20: "MS_SHARED",
    1 << 21: "MS_RELATIME", 1 << 24: "MS_STRICTATIME", 1 << 25: "MS_LAZYTIME",
}
UMOUNT_FLAGS = {1: "MNT_FORCE", 2: "MNT_DETACH", 4: "MNT_EXPIRE", 8: "UMOUNT_NOFOLLOW"}
S_IFMT = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG", 0o60000: "S_IFBLK",
          0o40000: "S_IFDIR", 0o20000: "S_IFCHR", 0o10000: "S_IFIFO"}
BPF_CMDS = {0: "BPF_MAP_CREATE", 1: "BPF_MAP_LOOKUP_ELEM", 2: "BPF_MAP_UPDATE_ELEM", 3: "BPF_MAP_DELETE_ELEM",
            4: "BPF_MAP_GET_NEXT_KEY", 5: "BPF_PROG_LOAD", 6: "BPF_OBJ_PIN", 7: "BPF_OBJ_GET",
            8: "BPF_PROG_ATTACH", 9: "BPF_PROG_DETACH", 10: "BPF_PROG_TEST_RUN"}

ARGV_MAX = 32  # execve argv entries recorded
STRING_MAX = 4096

# --- small helpers ----------------------------------------------------------------------------


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def flag_names(value: int, table: dict, *, zero: str = "0") -> str:
    """'A|B|0x40' for the bits of `value` named in `table` (multi-bit entries match exactly)."""
    if value == 0:
        return zero
    names = []
    rest = value
    for bit, name in sorted(table.items()):
        if bit and value & bit == bit and rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def open_flags(value: int, arch: str = "x86_64") -> str:
    """O_WRONLY|O_CREAT|O_TRUNC …: the access mode first, then the bits the arch defines."""
    table = OPEN_FLAGS.get(arch, OPEN_FLAGS["x86_64"])
    value &= 0xFFFFFFFF
    names = [_ACCMODE[value & 3]]
    rest = value & ~3
    if rest & _O_TMPFILE_BIT:
        names.append("O_TMPFILE")  # __O_TMPFILE | O_DIRECTORY
        dir_bit = next(b for b, n in table.items() if n == "O_DIRECTORY")
        rest &= ~(_O_TMPFILE_BIT | dir_bit)
    if rest & _O_SYNC_BIT:
        names.append("O_SYNC")  # __O_SYNC | O_DSYNC
        rest &= ~(_O_SYNC_BIT | 0o10000)
    for bit, name in table.items():
        if rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def signal_name(sig: int) -> str:
    sig = _s32(sig)
    if sig == 0:
        return "0"
    if sig in SIGNALS:
        return SIGNALS[sig]
    if 34 <= sig <= 64:
        return f"SIGRTMIN+{sig - 34}" if sig > 34 else "SIGRTMIN"
    return str(sig)


def ioctl_name(request: int) -> str:
    """The name of an ioctl request; the kernel compares the low 32 bits, so do we (and say so)."""
    low = request & 0xFFFFFFFF
    name = IOCTLS.get(low, hex(low))
    if request != low:
        return f"{name} ({request:#x}: the kernel ignores the high 32 bits)"
    return name


def ipv4(b: bytes) -> str:
    return ".".join(str(x) for x in b[:4])


def ipv6(b: bytes) -> str:
    """RFC 5952 text form (longest zero run as '::', IPv4-mapped as ::ffff:a.b.c.d)."""
    groups = [int.from_bytes(b[i:i + 2], "big") for i in range(0, 16, 2)]
    if groups[:6] == [0, 0, 0, 0, 0, 0xFFFF]:
        return "::ffff:" + ipv4(b[12:16])
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [f"{g:x}" for g in groups]
    if best < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best]) + "::" + ":".join(hexes[best + best_len:])


def sockaddr(data: bytes | None, length: int) -> dict:
    """struct sockaddr_* → {"family", "address", "port"} / {"family", "path"} / {"family", "abstract"}."""
    if data is None or len(data) < 2:
        return {"family": None}
    data = data[:length]
    fam = int.from_bytes(data[:2], "little")
    out: dict = {"family": AF.get(fam, str(fam))}
    if fam == 2 and len(data) >= 8:
        out["address"] = ipv4(data[4:8])
        out["port"] = int.from_bytes(data[2:4], "big")
    elif fam == 10 and len(data) >= 24:
        out["address"] = ipv6(data[8:24])
        out["port"] = int.from_bytes(data[2:4], "big")
        if len(data) >= 28 and (scope := int.from_bytes(data[24:28], "little")):
            out["scope_id"] = scope
    elif fam == 1:
        path = data[2:]
        if not path:
            out["path"] = ""  # unnamed (autobind on bind)
        elif path[:1] == b"\0":
            out["abstract"] = "@" + os.fsdecode(path[1:])  # the name is all addrlen bytes, NULs included
        else:
            out["path"] = os.fsdecode(path.split(b"\0", 1)[0])
    elif fam == 16 and len(data) >= 12:
        out["nl_pid"] = int.from_bytes(data[4:8], "little")
        out["nl_groups"] = int.from_bytes(data[8:12], "little")
    else:
        out["raw"] = data[2:].hex()
    return out


# --- reading the target -----------------------------------------------------------------------


def proc_fd_path(pid: int, fd: int) -> str | None:
    """What fd `fd` of `pid` is (readlink /proc/PID/fd/N); the cwd for AT_FDCWD."""
    try:
        if fd == AT_FDCWD:
            return os.readlink(f"/proc/{pid}/cwd")
        if fd < 0:
            return None
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


class _Ctx:
    __slots__ = ("pid", "args", "arch", "read_string", "read_memory", "fd_path", "sock_info", "out")

    def __init__(self, pid, args, arch, read_string, read_memory, fd_path, sock_info):
        self.pid, self.args, self.arch = pid, args, arch
        self.read_string, self.read_memory, self.fd_path, self.sock_info = read_string, read_memory, fd_path, sock_info
        self.out: dict = {}

    def string(self, addr: int) -> str | None:
        if addr == 0:
            return None
        b = self.read_string(self.pid, addr, STRING_MAX)
        return None if b is None else os.fsdecode(b)

    def memory(self, addr: int, size: int) -> bytes | None:
        if addr == 0 or self.read_memory is None:
            return None
        return self.read_memory(self.pid, addr, size)


def absolute(ctx: _Ctx, dirfd: int, path: str | None) -> str | None:
    """`path` made absolute against `dirfd` (AT_FDCWD: the cwd); only '.' and '' components dropped."""
    if path is None:
        return None
    if not path.startswith("/"):
        base = ctx.fd_path(ctx.pid, dirfd)
        if base is None or not base.startswith("/"):
            return None
        path = base + "/" + path if path else base
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if len(parts) >= 2 and parts[0] == "proc" and parts[1] in ("self", "thread-self"):
        parts[1:2] = [str(ctx.pid)] if parts[1] == "self" else [str(ctx.pid), "task", str(ctx.pid)]
    return "/" + "/".join(parts)


# --- argument kinds: each reads args[i] (and sometimes its neighbours) and fills ctx.out ------


def _int(ctx, key, i):
    ctx.out[key] = _s32(ctx.args[i])


def _uint(ctx, key, i):
    ctx.out[key] = ctx.args[i]


def _hex(ctx, key, i):
    ctx.out[key] = hex(ctx.args[i])


def _octal(ctx, key, i):
    ctx.out[key] = oct(ctx.args[i] & 0o7777)


def _fd(ctx, key, i):
    fd = _s32(ctx.args[i])
    ctx.out[key] = fd
    if fd >= 0 and (p := ctx.fd_path(ctx.pid, fd)) is not None:
        ctx.out[key + "_path"] = p


def _dirfd(ctx, key, i):
    fd = _s32(ctx.args[i])
    ctx.out[key] = "AT_FDCWD" if fd == AT_FDCWD else fd


def _path_kind(dirfd_index, key_out):
    """A path string at args[i], made absolute against args[dirfd_index] (None: the cwd)."""
    def kind(ctx, key, i):
        raw = ctx.string(ctx.args[i])
        dirfd = AT_FDCWD if dirfd_index is None else _s32(ctx.args[dirfd_index])
        if raw is None:
            ctx.out[key_out or key] = None
            if ctx.args[i]:
                ctx.out[(key_out or key) + "_unreadable"] = hex(ctx.args[i])
            return
        if raw and not raw.startswith("/"):
            ctx.out[(key_out or key) + "_raw"] = raw
        ctx.out[key_out or key] = absolute(ctx, dirfd, raw)
    return kind


def _string(ctx, key, i):
    ctx.out[key] = ctx.string(ctx.args[i])


def _flags(table):
    def kind(ctx, key, i):
        ctx.out[key] = flag_names(ctx.args[i], table)
    return kind


def _enum(table):
    def kind(ctx, key, i):
        v = ctx.args[i] & 0xFFFFFFFF
        ctx.out[key] = table.get(v, hex(v) if v > 0xFFFF else str(_s32(v)))
    return kind


def _open_flags(ctx, key, i):
    ctx.out[key] = open_flags(ctx.args[i], ctx.arch)


def _creat_flags(ctx, key, i):  # creat(path, mode) = open(path, O_CREAT|O_WRONLY|O_TRUNC, mode)
    ctx.out["flags"] = "O_WRONLY|O_CREAT|O_TRUNC"
    _octal(ctx, key, i)


def _mknod_mode(ctx, key, i):
    mode = ctx.args[i] & 0xFFFFFFFF
    ctx.out["type"] = S_IFMT.get(mode & 0o170000, "S_IFREG")  # 0 means a regular file
    ctx.out[key] = oct(mode & 0o7777)


def _open_how(ctx, key, i):
    """openat2(dirfd, path, struct open_how *how, size): u64 flags, u64 mode, u64 resolve."""
    data = ctx.memory(ctx.args[i], 24)
    if data is None or len(data) < 24:
        ctx.out["how_unreadable"] = hex(ctx.args[i])
        return
    ctx.out["flags"] = open_flags(int.from_bytes(data[0:8], "little"), ctx.arch)
    ctx.out["mode"] = oct(int.from_bytes(data[8:16], "little") & 0o7777)
    ctx.out["resolve"] = flag_names(int.from_bytes(data[16:24], "little"), RESOLVE_FLAGS)


def _argv(ctx, key, i):
    """A NULL-terminated char *[] (execve argv), at most ARGV_MAX entries."""
    addr = ctx.args[i]
    if addr == 0:
        ctx.out[key] = []
        return
    data = ctx.memory(addr, 8 * (ARGV_MAX + 1))
    if data is None:
        ctx.out[key] = None
        return
    out = []
    for j in range(0, len(data) - 7, 8):
        p = int.from_bytes(data[j:j + 8], "little")
        if p == 0:
            break
        if len(out) == ARGV_MAX:
            out.append("…")
            break
        out.append(ctx.string(p))
    ctx.out[key] = out


def _clone_flags(ctx, key, i):
    v = ctx.args[i]
    ctx.out[key] = flag_names(v & ~0xFF, CLONE_FLAGS)
    ctx.out["exit_signal"] = signal_name(v & 0xFF)
    ctx.out["namespaces"] = [n for b, n in NAMESPACE_FLAGS.items() if v & b and b != 0x80]


def _clone_args(ctx, key, i):
    """clone3(struct clone_args *args, size): flags at 0, exit_signal at 32."""
    data = ctx.memory(ctx.args[i], 40)
    if data is None or len(data) < 8:
        ctx.out["args_unreadable"] = hex(ctx.args[i])
        return
    flags = int.from_bytes(data[0:8], "little")
    ctx.out["flags"] = flag_names(flags, CLONE3_FLAGS)
    ctx.out["namespaces"] = [n for b, n in NAMESPACE_FLAGS.items() if flags & b]
    if len(data) >= 40:
        ctx.out["exit_signal"] = signal_name(int.from_bytes(data[32:40], "little"))


def _ns_flags(ctx, key, i):
    v = ctx.args[i] & 0xFFFFFFFF
    ctx.out[key] = flag_names(v, UNSHARE_FLAGS)
    ctx.out["namespaces"] = [n for b, n in NAMESPACE_FLAGS.items() if v & b]


def _socket_type(ctx, key, i):
    v = ctx.args[i] & 0xFFFFFFFF
    base = SOCK_TYPES.get(v & 0xF, str(v & 0xF))
    rest = flag_names(v & ~0xF, SOCK_TYPE_FLAGS, zero="")
    ctx.out[key] = base + ("|" + rest if rest else "")


def _protocol(ctx, key, i):
    fam = ctx.args[0] & 0xFFFFFFFF
    v = ctx.args[i] & 0xFFFFFFFF
    if fam in (2, 10):
        ctx.out[key] = IPPROTO.get(v, str(v))
    elif fam == 16:
        ctx.out[key] = NETLINK_PROTO.get(v, str(v))
    elif fam == 17:
        ctx.out[key] = f"{((v & 0xFF) << 8) | ((v >> 8) & 0xFF):#06x}"  # htons(ETH_P_*)
    else:
        ctx.out[key] = str(v)


def _sockaddr_kind(len_index):
    def kind(ctx, key, i):
        addr, length = ctx.args[i], ctx.args[len_index] & 0xFFFFFFFF
        if addr == 0:
            return
        ctx.out.update(sockaddr(ctx.memory(addr, min(length, 128)), min(length, 128)))
    return kind


def _msghdr(ctx, key, i):
    """sendmsg(fd, struct msghdr *msg, flags): msg_name (ptr at 0) and msg_namelen (u32 at 8)."""
    data = ctx.memory(ctx.args[i], 16)
    if data is None or len(data) < 12:
        return
    name, namelen = int.from_bytes(data[0:8], "little"), int.from_bytes(data[8:12], "little")
    if name:
        ctx.out.update(sockaddr(ctx.memory(name, min(namelen, 128)), min(namelen, 128)))


def _sock_fd(ctx, key, i):
    """A socket fd: its type and protocol, if the caller can look (pidfd_getfd + getsockopt)."""
    _fd(ctx, key, i)
    fd = _s32(ctx.args[i])
    if ctx.sock_info is not None and fd >= 0 and (info := ctx.sock_info(ctx.pid, fd)) is not None:
        dom, typ, proto = info
        ctx.out["socket"] = {"family": AF.get(dom, str(dom)), "type": SOCK_TYPES.get(typ, str(typ)),
                             "protocol": IPPROTO.get(proto, str(proto)) if dom in (2, 10) else str(proto)}


def _kill_target(ctx, key, i):
    pid = _s32(ctx.args[i])
    ctx.out[key] = pid
    ctx.out["target"] = ("the caller's process group" if pid == 0 else "every process it may signal" if pid == -1
                         else f"process group {-pid}" if pid < 0 else f"process {pid}")


def _signal(ctx, key, i):
    ctx.out[key] = signal_name(ctx.args[i])


def _ioctl_req(ctx, key, i):
    ctx.out[key] = ioctl_name(ctx.args[i])


def _prctl_option(ctx, key, i):
    v = ctx.args[i] & 0xFFFFFFFF
    ctx.out[key] = PRCTL_OPTIONS.get(v, str(v))
    if v == 15:  # PR_SET_NAME
        ctx.out["name"] = ctx.string(ctx.args[1])
    elif v in (1, 24, 23):  # PDEATHSIG signal, CAPBSET_* capability number
        ctx.out["arg2"] = signal_name(ctx.args[1]) if v == 1 else ctx.args[1]
    else:
        ctx.out["arg2"] = hex(ctx.args[1])


P = _path_kind  # P(dirfd_index, output key)
FD, DIRFD, INT, UINT, HEX, MODE, STR = _fd, _dirfd, _int, _uint, _hex, _octal, _string

# name → one (key, kind) per argument position (None: not recorded).
SPECS: dict = {
    # files
    "open": (("path", P(None, "path")), ("flags", _open_flags), ("mode", MODE)),
    "creat": (("path", P(None, "path")), ("mode", _creat_flags)),
    "openat": (("dirfd", DIRFD), ("path", P(0, "path")), ("flags", _open_flags), ("mode", MODE)),
    "openat2": (("dirfd", DIRFD), ("path", P(0, "path")), ("how", _open_how), ("size", UINT)),
    "execve": (("path", P(None, "path")), ("argv", _argv), None),
    "execveat": (("dirfd", DIRFD), ("path", P(0, "path")), ("argv", _argv), None, ("flags", _flags(AT_FLAGS))),
    "unlink": (("path", P(None, "path")),),
    "unlinkat": (("dirfd", DIRFD), ("path", P(0, "path")), ("flags", _flags(UNLINK_FLAGS))),
    "rmdir": (("path", P(None, "path")),),
    "mkdir": (("path", P(None, "path")), ("mode", MODE)),
    "mkdirat": (("dirfd", DIRFD), ("path", P(0, "path")), ("mode", MODE)),
    "mknod": (("path", P(None, "path")), ("mode", _mknod_mode), ("dev", HEX)),
    "mknodat": (("dirfd", DIRFD), ("path", P(0, "path")), ("mode", _mknod_mode), ("dev", HEX)),
    "rename": (("oldpath", P(None, "oldpath")), ("newpath", P(None, "newpath"))),
    "renameat": (("olddirfd", DIRFD), ("oldpath", P(0, "oldpath")), ("newdirfd", DIRFD),
                 ("newpath", P(2, "newpath"))),
    "renameat2": (("olddirfd", DIRFD), ("oldpath", P(0, "oldpath")), ("newdirfd", DIRFD),
                  ("newpath", P(2, "newpath")), ("flags", _flags(RENAME_FLAGS))),
    "link": (("oldpath", P(None, "oldpath")), ("newpath", P(None, "newpath"))),
    "linkat": (("olddirfd", DIRFD), ("oldpath", P(0, "oldpath")), ("newdirfd", DIRFD),
               ("newpath", P(2, "newpath")), ("flags", _flags(AT_FLAGS))),
    "symlink": (("target", STR), ("linkpath", P(None, "linkpath"))),
    "symlinkat": (("target", STR), ("newdirfd", DIRFD), ("linkpath", P(1, "linkpath"))),
    "truncate": (("path", P(None, "path")), ("length", UINT)),
    "ftruncate": (("fd", FD), ("length", UINT)),
    # calls on an open file: the fd's path (from /proc/PID/fd) names what a grant would cover
    "fsync": (("fd", FD),),
    "fdatasync": (("fd", FD),),
    "syncfs": (("fd", FD),),
    "sync_file_range": (("fd", FD), ("offset", UINT), ("nbytes", UINT), ("flags", HEX)),
    "fallocate": (("fd", FD), ("mode", HEX), ("offset", UINT), ("len", UINT)),
    "fchown": (("fd", FD), ("uid", INT), ("gid", INT)),
    "fsetxattr": (("fd", FD), ("name", STR)),
    "fremovexattr": (("fd", FD), ("name", STR)),
    "fchdir": (("fd", FD),),
    "chmod": (("path", P(None, "path")), ("mode", MODE)),
    "fchmod": (("fd", FD), ("mode", MODE)),
    "fchmodat": (("dirfd", DIRFD), ("path", P(0, "path")), ("mode", MODE)),
    "fchmodat2": (("dirfd", DIRFD), ("path", P(0, "path")), ("mode", MODE), ("flags", _flags(AT_FLAGS))),
    "chown": (("path", P(None, "path")), ("uid", INT), ("gid", INT)),
    "lchown": (("path", P(None, "path")), ("uid", INT), ("gid", INT)),
    "fchownat": (("dirfd", DIRFD), ("path", P(0, "path")), ("uid", INT), ("gid", INT),
                 ("flags", _flags(AT_FLAGS))),
    "access": (("path", P(None, "path")), ("mode", UINT)),
    "faccessat": (("dirfd", DIRFD), ("path", P(0, "path")), ("mode", UINT)),
    "faccessat2": (("dirfd", DIRFD), ("path", P(0, "path")), ("mode", UINT), ("flags", _flags(ACCESS_AT_FLAGS))),
    "stat": (("path", P(None, "path")), None),
    "lstat": (("path", P(None, "path")), None),
    "newfstatat": (("dirfd", DIRFD), ("path", P(0, "path")), None, ("flags", _flags(AT_FLAGS))),
    "statx": (("dirfd", DIRFD), ("path", P(0, "path")), ("flags", _flags(AT_FLAGS)), ("mask", HEX)),
    "readlink": (("path", P(None, "path")),),
    "readlinkat": (("dirfd", DIRFD), ("path", P(0, "path"))),
    "chdir": (("path", P(None, "path")),),
    "chroot": (("path", P(None, "path")),),
    "utimensat": (("dirfd", DIRFD), ("path", P(0, "path")), None, ("flags", _flags(AT_FLAGS))),
    "open_by_handle_at": (("mount_fd", FD), None, ("flags", _open_flags)),
    # sockets
    "socket": (("family", _enum(AF)), ("type", _socket_type), ("protocol", _protocol)),
    "socketpair": (("family", _enum(AF)), ("type", _socket_type), ("protocol", _protocol)),
    "connect": (("fd", _sock_fd), ("addr", _sockaddr_kind(2)), ("addrlen", UINT)),
    "bind": (("fd", _sock_fd), ("addr", _sockaddr_kind(2)), ("addrlen", UINT)),
    "listen": (("fd", _sock_fd), ("backlog", INT)),
    "sendto": (("fd", _sock_fd), None, ("len", UINT), ("flags", _flags(MSG_FLAGS)), ("addr", _sockaddr_kind(5)),
               ("addrlen", UINT)),
    "sendmsg": (("fd", _sock_fd), ("msg", _msghdr), ("flags", _flags(MSG_FLAGS))),
    "sendmmsg": (("fd", _sock_fd), ("msgvec", _msghdr), ("vlen", UINT), ("flags", _flags(MSG_FLAGS))),
    # processes
    "clone": (("flags", _clone_flags),),
    "clone3": (("args", _clone_args), ("size", UINT)),
    "unshare": (("flags", _ns_flags),),
    "setns": (("fd", FD), ("nstype", _ns_flags)),
    "kill": (("pid", _kill_target), ("sig", _signal)),
    "setuid": (("uid", INT),),
    "setgid": (("gid", INT),),
    "setreuid": (("ruid", INT), ("euid", INT)),
    "setregid": (("rgid", INT), ("egid", INT)),
    "setresuid": (("ruid", INT), ("euid", INT), ("suid", INT)),
    "setresgid": (("rgid", INT), ("egid", INT), ("sgid", INT)),
    "tkill": (("tid", INT), ("sig", _signal)),
    "tgkill": (("tgid", INT), ("tid", INT), ("sig", _signal)),
    "rt_sigqueueinfo": (("pid", _kill_target), ("sig", _signal)),
    "rt_tgsigqueueinfo": (("tgid", INT), ("tid", INT), ("sig", _signal)),
    "pidfd_send_signal": (("pidfd", FD), ("sig", _signal), None, ("flags", HEX)),
    "pidfd_open": (("pid", INT), ("flags", HEX)),
    "pidfd_getfd": (("pidfd", FD), ("targetfd", INT), ("flags", HEX)),
    "ptrace": (("request", _enum(PTRACE_REQUESTS)), ("pid", INT), ("addr", HEX), ("data", HEX)),
    "process_vm_readv": (("pid", INT),),
    "process_vm_writev": (("pid", INT),),
    "prctl": (("option", _prctl_option),),
    "ioctl": (("fd", FD), ("request", _ioctl_req), ("arg", HEX)),
    "personality": (("persona", HEX),),
    # mounts and the rest that no capability grants
    "mount": (("source", STR), ("target", P(None, "target")), ("fstype", STR), ("flags", _flags(MOUNT_FLAGS)),
              ("data", HEX)),
    "umount2": (("target", P(None, "target")), ("flags", _flags(UMOUNT_FLAGS))),
    "pivot_root": (("new_root", P(None, "new_root")), ("put_old", P(None, "put_old"))),
    "bpf": (("cmd", _enum(BPF_CMDS)), ("attr", HEX), ("size", UINT)),
    "io_uring_setup": (("entries", UINT), ("params", HEX)),
}

# --- the entry point --------------------------------------------------------------------------

_by_arch: dict = {}  # AUDIT_ARCH → (arch name, {nr: name})


def _names(audit_arch: int) -> tuple:
    hit = _by_arch.get(audit_arch)
    if hit is None:
        from sandboxer.mechanisms.seccomp.tables import TABLES

        hit = (None, {})
        for arch, tbl in TABLES.items():
            if tbl.AUDIT_ARCH == audit_arch:
                hit = (arch, {nr: name for name, nr in tbl.SYSCALLS.items()})
        _by_arch[audit_arch] = hit
    return hit


def syscall_name(nr: int, audit_arch: int) -> str | None:
    return _names(audit_arch)[1].get(nr)


def decode(notification, read_string=notify.read_string, read_memory=notify.read_memory,
           fd_path=proc_fd_path, sock_info=None) -> dict:
    """{"name", "nr", "args"} for a notification (anything with pid, nr, arch, args).

    read_string(pid, addr, max) -> bytes | None, read_memory(pid, addr, size) -> bytes | None,
    fd_path(pid, fd) -> str | None (fd == AT_FDCWD: the cwd), sock_info(pid, fd) -> (domain, type,
    protocol) | None (notify.socket_info; off by default: it costs a pidfd_getfd per socket call).
    Decoding never raises for bad target memory: unreadable strings are None with a *_unreadable hex.
    """
    arch, names = _names(notification.arch)
    nr = notification.nr
    name = names.get(nr)
    spec = SPECS.get(name) if name else None
    args = tuple(notification.args)
    if spec is None:
        return {"name": name or f"syscall_{nr}", "nr": nr,
                "args": {f"arg{i}": hex(a) for i, a in enumerate(args)}}
    ctx = _Ctx(notification.pid, args, arch, read_string, read_memory, fd_path, sock_info)
    for i, item in enumerate(spec):
        if item is not None:
            key, kind = item
            try:
                kind(ctx, key, i)
            except (OSError, ValueError, OverflowError, IndexError) as e:
                ctx.out[key + "_error"] = f"{type(e).__name__}: {e}"
    return {"name": name, "nr": nr, "args": ctx.out}
