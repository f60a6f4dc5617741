"""seccomp against the real kernel: compiled plans deny each class with the intended errno or kill.

Each test writes a small manifest, compiles it for x86_64, assembles the BPF in the test process and
loads it only inside a forked child (tests/forkrun.py) right before the probed system calls. The
calls are raw `syscall(2)`s through ctypes with every argument passed as a full 64-bit long, so the
exact errno the filter returns is observed (no libc or Python wrapper in between).

Denials are run twice: with the plan's own violation (EPERM) and with the violation replaced by a
marker errno. Every EPERM of the first run must turn into the marker in the second, which proves it
came from the filter and not from the kernel (a rootless kernel answers EPERM to mount, AF_PACKET…).
The probed arguments are harmless even if a filter let the call through (bad magic, bad flags,
invalid descriptors), since CI runs these tests as root. No test here needs root.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable

import pytest

from sandboxer.manifest.load import load_policy
from sandboxer.mechanisms.seccomp import groups
from sandboxer.mechanisms.seccomp.apply import load_filter
from sandboxer.mechanisms.seccomp.bpf import assemble
from sandboxer.model.registry import CAPABILITIES
from sandboxer.plan import Target, compile_plan
from tests.forkrun import ChildResult, in_child

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="raw x86_64 syscall numbers; the host is not x86_64"
)

REPO = Path(__file__).resolve().parents[2]
MARK = "ENOTRECOVERABLE"  # no probed call returns it by itself

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl)
NR = {
    "read": 0, "write": 1, "ioctl": 16, "getpid": 39, "socket": 41, "connect": 42, "sendto": 44,
    "sendmsg": 46, "close": 3, "socketpair": 53, "clone": 56, "fork": 57, "rename": 82, "mkdir": 83, "rmdir": 84,
    "unlink": 87, "ptrace": 101, "acct": 163, "mount": 165, "reboot": 169, "sethostname": 170,
    "sched_setaffinity": 203, "sync": 162, "sched_getaffinity": 204, "clock_gettime": 228, "kexec_load": 246,
    "keyctl": 250, "mkdirat": 258, "unlinkat": 263, "unshare": 272, "perf_event_open": 298,
    "open_by_handle_at": 304, "sendmmsg": 307, "setns": 308, "process_vm_readv": 310, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "clone3": 435,
}
X32_SYSCALL_BIT = 0x40000000
AT_FDCWD = -100
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_CLOEXEC = 1, 2, 3, 0x80000
MSG_DONTWAIT, MSG_FASTOPEN = 0x40, 0x20000000
SIGCHLD = 17
CLONE_THREAD = 0x00010000
CLONE_NEW = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
             "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
             "CLONE_NEWNET": 0x40000000}
TCGETS, TIOCSTI, TIOCLINUX = 0x5401, 0x5412, 0x541C
HIGH = 1 << 32  # bits the kernel drops from an `int` / `unsigned int` argument
CLOCK_MONOTONIC = 1
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38

LIBC = ctypes.CDLL(None, use_errno=True)
_SYSCALL = LIBC.syscall
_SYSCALL.restype = ctypes.c_long
_PRCTL = LIBC.prctl

Probe = Callable[[Callable[[], None]], Any]  # gets `load` (installs the filter), returns verdicts


# ---------------------------------------------------------------------------------------------
# helpers


def raw(nr: int, *args: int) -> int:
    """syscall(nr, *args) with every argument as a 64-bit long: the result, or -errno."""
    ret = _SYSCALL(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return -ctypes.get_errno() if ret == -1 else ret


def verdict(ret: int) -> str:
    """'OK' for a non-negative result, else the errno name."""
    return "OK" if ret >= 0 else errno.errorcode[-ret]


def call(name: str, *args: int) -> str:
    """Verdict of the raw syscall `name`."""
    return verdict(raw(NR[name], *args))


def addr(buf: ctypes.Array | ctypes._SimpleCData) -> int:
    """The address of a ctypes buffer (keep the buffer referenced while the call uses it)."""
    return ctypes.addressof(buf)


_counter = itertools.count()


def seccomp_section(tmp_path: Path, *imports: str, on_violation: str = "deny") -> dict:
    """Write a manifest granting `imports` (YAML lines under `imports:`), compile it for x86_64."""
    text = "sandboxer: 1\nname: seccomp-test\ndescription: seccomp behaviour test\n"
    text += f"on-violation: {on_violation}\n"
    if imports:
        text += "imports:\n" + "".join(f"  {line}\n" for line in imports)
    path = tmp_path / f"manifest-{next(_counter)}.yaml"
    path.write_text(text, encoding="utf-8")
    plan = compile_plan(load_policy(path), Target("x86_64", 7))
    assert plan["on_violation"] == on_violation
    return plan["seccomp"]


def all_capabilities(tmp_path: Path) -> tuple[str, ...]:
    """Imports lines granting every capability of the registry (checked by the caller)."""
    lines = {
        "wasi:cli/environment": "{vars: [PATH]}",
        "wasi:filesystem/preopens": f"[{{path: '{tmp_path}', access: read+write+exec}}]",
        "wasi:sockets/tcp": "{connect: [80], bind: [8080]}",
    }
    return tuple(f"{name}: {lines.get(name, '{}')}" for name in CAPABILITIES)


def filtered(prog: bytes, probe: Probe) -> ChildResult:
    """Run probe(load) in a forked child; `load` sets no_new_privs and installs `prog` there."""

    def child() -> Any:
        _PRCTL(PR_SET_DUMPABLE, 0, 0, 0, 0)  # a SIGSYS kill leaves no core dump

        def load() -> None:
            if _PRCTL(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            load_filter(prog)

        return probe(load)

    return in_child(child)


def verdicts(section: dict, probe: Probe) -> dict[str, str]:
    """The probe's verdicts under `section`; each EPERM is shown to come from the filter."""
    plain = filtered(assemble(section), probe)
    assert plain.ok, plain.error or plain
    marked = filtered(assemble(section, violation=f"errno:{MARK}"), probe)
    assert marked.ok, marked.error or marked
    expected = {k: MARK if v == "EPERM" else v for k, v in plain.value.items()}
    assert marked.value == expected, "an EPERM did not come from the filter (the kernel said it)"
    return plain.value


def killed(section: dict, probe: Probe) -> ChildResult:
    """Run probe under `section` as compiled and return what happened to the child."""
    return filtered(assemble(section), probe)


# ---------------------------------------------------------------------------------------------
# architecture guard


HELPER_C = r"""
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* argv[1] (optional): a seccomp BPF file to install. Then getpid natively, then through int 0x80. */
int main(int argc, char **argv) {
    static unsigned char prog_buf[8 * 4096];
    char line[64];
    if (argc > 1) {
        FILE *f = fopen(argv[1], "rb");
        if (!f) return 2;
        size_t n = fread(prog_buf, 1, sizeof prog_buf, f);
        fclose(f);
        struct sock_fprog prog = {(unsigned short)(n / 8), (struct sock_filter *)prog_buf};
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 3;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) return 4;
    }
    snprintf(line, sizeof line, "native %ld\n", (long)syscall(SYS_getpid));
    write(1, line, strlen(line));
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
    snprintf(line, sizeof line, "i386 %ld\n", ret);
    write(1, line, strlen(line));
    return 0;
}
"""


@pytest.fixture(scope="module")
def int80_helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small C program doing getpid through the i386 `int 0x80` entry (skips without gcc or ia32)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the int 0x80 helper")
    work = tmp_path_factory.mktemp("int80")
    (work / "int80.c").write_text(HELPER_C, encoding="utf-8")
    exe = work / "int80"
    subprocess.run([gcc, "-O2", "-o", str(exe), str(work / "int80.c")], check=True, capture_output=True)
    control = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    native, _, i386 = control.stdout.partition("\n")
    if control.returncode != 0 or i386.split() != ["i386", native.split()[1]]:
        pytest.skip(f"this kernel has no i386 syscall emulation (int 0x80 gave {control!r})")
    return exe


@pytest.mark.parametrize("on_violation", ["deny", "kill", "log"])
def test_i386_int80_is_killed(tmp_path: Path, int80_helper: Path, on_violation: str) -> None:
    """An i386 `int 0x80` getpid from an x86_64 process dies of SIGSYS while the native getpid works."""
    section = seccomp_section(tmp_path, *all_capabilities(tmp_path), on_violation=on_violation)
    bpf = tmp_path / "seccomp.bpf"
    bpf.write_bytes(assemble(section))
    run = subprocess.run([str(int80_helper), str(bpf)], capture_output=True, text=True, timeout=30)
    assert run.returncode == -signal.SIGSYS, run
    assert run.stdout.startswith("native ") and "i386" not in run.stdout, run


@pytest.mark.parametrize("on_violation", ["deny", "kill", "log"])
def test_x32_numbers_are_killed(tmp_path: Path, on_violation: str) -> None:
    """An x32 syscall number (0x40000000 | getpid) dies of SIGSYS whatever the violation action."""
    section = seccomp_section(tmp_path, *all_capabilities(tmp_path), on_violation=on_violation)

    def probe(load: Callable[[], None]) -> str:
        load()
        assert raw(NR["getpid"]) == os.getpid()  # the native number works
        return f"x32 getpid survived: {verdict(raw(X32_SYSCALL_BIT | NR['getpid']))}"

    result = killed(section, probe)
    assert result.signal == signal.SIGSYS, result
    assert result.value is None


# ---------------------------------------------------------------------------------------------
# clone3, unknown numbers, known but not granted


def test_clone3_and_unknown_numbers_get_enosys(tmp_path: Path) -> None:
    """clone3 and numbers beyond the table get ENOSYS, a known ungranted call EPERM, getpid works."""
    section = seccomp_section(tmp_path, "sandboxer:process/spawn: {}", "sandboxer:process/threads: {}")

    def probe(load: Callable[[], None]) -> dict[str, str]:
        load()
        out = {"clone3": call("clone3", 0, 0)}  # the kernel itself would say EINVAL
        for nr in (337, 423, 470, 500, 1000, X32_SYSCALL_BIT - 1):
            out[f"nr {nr}"] = verdict(raw(nr))
        out["sethostname"] = call("sethostname", 0, 65)  # the kernel itself: EINVAL (root) / EPERM
        out["acct"] = call("acct", 1)  # bad pointer: EFAULT for root
        out["getpid"] = "OK" if raw(NR["getpid"]) == os.getpid() else "WRONG"
        return out

    got = verdicts(section, probe)
    assert got == {"clone3": "ENOSYS", "nr 337": "ENOSYS", "nr 423": "ENOSYS", "nr 470": "ENOSYS",
                   "nr 500": "ENOSYS", "nr 1000": "ENOSYS", f"nr {X32_SYSCALL_BIT - 1}": "ENOSYS",
                   "sethostname": "EPERM", "acct": "EPERM", "getpid": "OK"}


# ---------------------------------------------------------------------------------------------
# clone / fork / threads


def raw_clone(flags: int) -> str:
    """clone(flags, NULL stack): a child that exits at once; the verdict seen by the parent."""
    ret = raw(NR["clone"], flags, 0, 0, 0, 0)
    if ret == 0:
        os._exit(0)
    if ret > 0:
        with suppress(OSError):
            os.waitpid(ret, 0)
    return verdict(ret)


def raw_fork() -> str:
    """fork(): a child that exits at once; the verdict seen by the parent."""
    ret = raw(NR["fork"])
    if ret == 0:
        os._exit(0)
    if ret > 0:
        with suppress(OSError):
            os.waitpid(ret, 0)
    return verdict(ret)


def start_thread() -> str:
    """'OK' if a Python thread starts and runs, else why not."""
    box: list[int] = []
    try:
        t = threading.Thread(target=box.append, args=(1,))
        t.start()
        t.join()
    except RuntimeError as e:
        return f"RuntimeError: {e}"
    return "OK" if box else "did not run"


def clone_probe(load: Callable[[], None]) -> dict[str, str]:
    load()
    out = {"clone(SIGCHLD)": raw_clone(SIGCHLD), "fork": raw_fork(),
           # the kernel itself would say EINVAL: CLONE_THREAD needs CLONE_SIGHAND
           "clone(CLONE_THREAD)": raw_clone(CLONE_THREAD | SIGCHLD),
           # high bits are dropped by the kernel (lower_32_bits) and by the filter alike
           "clone(SIGCHLD | 1<<32)": raw_clone(HIGH | SIGCHLD)}
    for name, flag in CLONE_NEW.items():
        out[f"clone({name})"] = raw_clone(flag | SIGCHLD)
    out["thread"] = start_thread()
    return out


NEW_DENIED = {f"clone({name})": "EPERM" for name in CLONE_NEW}


def test_clone_without_spawn_or_threads_is_denied(tmp_path: Path) -> None:
    """Without process/spawn or process/threads every clone and fork fails with EPERM."""
    got = verdicts(seccomp_section(tmp_path), clone_probe)
    thread = got.pop("thread")
    assert got == {"clone(SIGCHLD)": "EPERM", "fork": "EPERM", "clone(CLONE_THREAD)": "EPERM",
                   "clone(SIGCHLD | 1<<32)": "EPERM", **NEW_DENIED}
    assert thread.startswith("RuntimeError"), thread


def test_spawn_allows_fork_but_not_namespaces_or_threads(tmp_path: Path) -> None:
    """With process/spawn a plain clone and fork work; CLONE_NEW* and CLONE_THREAD get EPERM."""
    got = verdicts(seccomp_section(tmp_path, "sandboxer:process/spawn: {}"), clone_probe)
    thread = got.pop("thread")
    assert got == {"clone(SIGCHLD)": "OK", "fork": "OK", "clone(CLONE_THREAD)": "EPERM",
                   "clone(SIGCHLD | 1<<32)": "OK", **NEW_DENIED}
    assert thread.startswith("RuntimeError"), thread


def test_threads_allow_threads_but_not_fork(tmp_path: Path) -> None:
    """With process/threads a Python thread starts (clone3 ENOSYS, then clone); fork gets EPERM."""
    got = verdicts(seccomp_section(tmp_path, "sandboxer:process/threads: {}"), clone_probe)
    assert got == {"clone(SIGCHLD)": "EPERM", "fork": "EPERM",
                   "clone(CLONE_THREAD)": "EINVAL",  # let through: the kernel refuses it itself
                   "clone(SIGCHLD | 1<<32)": "EPERM", **NEW_DENIED, "thread": "OK"}


def test_spawn_and_threads_allow_both_but_not_namespaces(tmp_path: Path) -> None:
    """With spawn and threads, fork and threads work while every CLONE_NEW* flag gets EPERM."""
    section = seccomp_section(tmp_path, "sandboxer:process/spawn: {}", "sandboxer:process/threads: {}")
    got = verdicts(section, clone_probe)
    assert got == {"clone(SIGCHLD)": "OK", "fork": "OK", "clone(CLONE_THREAD)": "EINVAL",
                   "clone(SIGCHLD | 1<<32)": "OK", **NEW_DENIED, "thread": "OK"}


# ---------------------------------------------------------------------------------------------
# sockets


def sock(family: int, type_: int, proto: int = 0) -> str:
    """Verdict of socket(family, type, proto); a created socket is closed again."""
    fd = raw(NR["socket"], family, type_, proto)
    if fd >= 0:
        os.close(fd)
    return verdict(fd)


def pair(family: int, type_: int) -> str:
    """Verdict of socketpair(family, type, 0); created sockets are closed again."""
    sv = (ctypes.c_int * 2)(-1, -1)
    ret = raw(NR["socketpair"], family, type_, 0, addr(sv))
    for fd in sv:
        if ret == 0 and fd >= 0:
            os.close(fd)
    return verdict(ret)


def socket_probe(load: Callable[[], None]) -> dict[str, str]:
    load()
    return {
        "inet stream": sock(AF_INET, SOCK_STREAM | SOCK_CLOEXEC),
        "inet dgram": sock(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC),
        "inet6 stream": sock(AF_INET6, SOCK_STREAM),
        "inet6 dgram": sock(AF_INET6, SOCK_DGRAM),
        "inet raw": sock(AF_INET, SOCK_RAW, 1),  # ICMP
        "packet raw": sock(AF_PACKET, SOCK_RAW, 0),
        "netlink": sock(AF_NETLINK, SOCK_RAW, 0),
        "unix stream": sock(AF_UNIX, SOCK_STREAM),
        "unix dgram": sock(AF_UNIX, SOCK_DGRAM),
        # the kernel keeps the low 32 bits of `int family` / `int type`: so must the filter
        "inet|1<<32 stream": sock(HIGH | AF_INET, SOCK_STREAM),
        "inet stream|1<<32": sock(AF_INET, HIGH | SOCK_STREAM),
        "inet|1<<32 dgram": sock(HIGH | AF_INET, SOCK_DGRAM),
        "unix|1<<32 stream": sock(HIGH | AF_UNIX, SOCK_STREAM),
        "socketpair unix": pair(AF_UNIX, SOCK_STREAM),
        "socketpair unix|1<<32": pair(HIGH | AF_UNIX, SOCK_STREAM),
        "socketpair inet": pair(AF_INET, SOCK_STREAM),  # the kernel itself: EOPNOTSUPP
    }


def ipv6(got: dict[str, str]) -> dict[str, str]:
    """Fold the AF_INET6 verdicts: EAFNOSUPPORT on a host without IPv6 counts as allowed."""
    return {k: "OK" if k.startswith("inet6") and v == "EAFNOSUPPORT" else v for k, v in got.items()}


SOCKET_KEYS = ("inet stream", "inet dgram", "inet6 stream", "inet6 dgram", "inet raw", "packet raw",
               "netlink", "unix stream", "unix dgram", "inet|1<<32 stream", "inet stream|1<<32",
               "inet|1<<32 dgram", "unix|1<<32 stream", "socketpair unix", "socketpair unix|1<<32",
               "socketpair inet")


def test_no_socket_grant_denies_every_socket(tmp_path: Path) -> None:
    """Without a socket grant socket() and socketpair() of every family get EPERM."""
    assert verdicts(seccomp_section(tmp_path), socket_probe) == {k: "EPERM" for k in SOCKET_KEYS}


def test_tcp_grant_allows_only_tcp_sockets(tmp_path: Path) -> None:
    """wasi:sockets/tcp allows AF_INET/AF_INET6 SOCK_STREAM only; UDP, raw, packet, netlink, unix get EPERM."""
    got = ipv6(verdicts(seccomp_section(tmp_path, "wasi:sockets/tcp: {connect: [80]}"), socket_probe))
    ok = {"inet stream", "inet6 stream", "inet|1<<32 stream", "inet stream|1<<32"}
    assert got == {k: "OK" if k in ok else "EPERM" for k in SOCKET_KEYS}


def test_udp_grant_allows_only_udp_sockets(tmp_path: Path) -> None:
    """wasi:sockets/udp allows AF_INET/AF_INET6 SOCK_DGRAM only; TCP, raw and unix sockets get EPERM."""
    got = ipv6(verdicts(seccomp_section(tmp_path, "wasi:sockets/udp: {}"), socket_probe))
    ok = {"inet dgram", "inet6 dgram", "inet|1<<32 dgram"}
    assert got == {k: "OK" if k in ok else "EPERM" for k in SOCKET_KEYS}


def test_unix_sockets_grant_allows_only_unix_sockets(tmp_path: Path) -> None:
    """sandboxer:ipc/unix-sockets allows AF_UNIX sockets and pairs; socketpair(AF_INET) and IP sockets get EPERM."""
    got = verdicts(seccomp_section(tmp_path, "sandboxer:ipc/unix-sockets: {}"), socket_probe)
    ok = {"unix stream", "unix dgram", "unix|1<<32 stream", "socketpair unix", "socketpair unix|1<<32"}
    assert got == {k: "OK" if k in ok else "EPERM" for k in SOCKET_KEYS}


# ---------------------------------------------------------------------------------------------
# send family: TCP Fast Open


def sockaddr_in(host: str, port: int) -> ctypes.Array:
    """A struct sockaddr_in in C memory."""
    raw_addr = struct.pack("=H", AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    return ctypes.create_string_buffer(raw_addr, len(raw_addr))


def fastopen_probe(load: Callable[[], None]) -> dict[str, str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    sa = sockaddr_in(*listener.getsockname())
    data = ctypes.create_string_buffer(b"x", 1)
    load()
    fd = raw(NR["socket"], AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)
    assert fd >= 0, verdict(fd)
    out = {
        "sendto FASTOPEN": call("sendto", fd, addr(data), 1, MSG_FASTOPEN, addr(sa), len(sa)),
        "sendto FASTOPEN|DONTWAIT": call("sendto", fd, addr(data), 1, MSG_FASTOPEN | MSG_DONTWAIT,
                                         addr(sa), len(sa)),
        "sendmsg FASTOPEN": call("sendmsg", fd, 0, MSG_FASTOPEN),  # NULL msghdr: the kernel says EFAULT
        "sendmmsg FASTOPEN": call("sendmmsg", fd, 0, 1, MSG_FASTOPEN),
        "connect": call("connect", fd, addr(sa), len(sa)),
    }
    sent = raw(NR["sendto"], fd, addr(data), 1, 0, 0, 0)
    out["sendto"] = "OK" if sent == 1 else verdict(sent)
    return out


def test_tcp_fast_open_is_denied(tmp_path: Path) -> None:
    """With wasi:sockets/tcp, MSG_FASTOPEN in sendto/sendmsg/sendmmsg gets EPERM; connect and sendto work."""
    got = verdicts(seccomp_section(tmp_path, "wasi:sockets/tcp: {connect: [80]}"), fastopen_probe)
    assert got == {"sendto FASTOPEN": "EPERM", "sendto FASTOPEN|DONTWAIT": "EPERM",
                   "sendmsg FASTOPEN": "EPERM", "sendmmsg FASTOPEN": "EPERM",
                   "connect": "OK", "sendto": "OK"}


def test_udp_sendto_works(tmp_path: Path) -> None:
    """With wasi:sockets/udp a UDP socket sends a datagram to a local receiver with sendto."""

    def probe(load: Callable[[], None]) -> dict[str, str]:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        sa = sockaddr_in(*receiver.getsockname())
        data = ctypes.create_string_buffer(b"ping", 4)
        load()
        fd = raw(NR["socket"], AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
        assert fd >= 0, verdict(fd)
        sent = raw(NR["sendto"], fd, addr(data), 4, 0, addr(sa), len(sa))
        got = receiver.recv(16)  # recvfrom
        return {"sendto": "OK" if sent == 4 else verdict(sent), "recv": got.decode()}

    assert verdicts(seccomp_section(tmp_path, "wasi:sockets/udp: {}"), probe) == {"sendto": "OK", "recv": "ping"}


# ---------------------------------------------------------------------------------------------
# ioctl


def test_tiocsti_and_tioclinux_are_denied(tmp_path: Path) -> None:
    """TIOCSTI and TIOCLINUX (also with high bits set) get EPERM on a pty while TCGETS works."""

    def probe(load: Callable[[], None]) -> dict[str, str]:
        master, slave = os.openpty()
        ch = ctypes.create_string_buffer(b"x", 1)
        sub = ctypes.create_string_buffer(b"\x0c", 1)  # TIOCLINUX subcode: a harmless query
        termios = ctypes.create_string_buffer(64)
        load()
        return {
            "TCGETS": call("ioctl", slave, TCGETS, addr(termios)),
            "TCGETS|1<<32": call("ioctl", slave, HIGH | TCGETS, addr(termios)),
            "TIOCSTI": call("ioctl", slave, TIOCSTI, addr(ch)),
            "TIOCSTI|1<<32": call("ioctl", slave, HIGH | TIOCSTI, addr(ch)),
            "TIOCSTI bad fd": call("ioctl", -1, TIOCSTI, addr(ch)),  # the kernel itself: EBADF
            "TIOCLINUX": call("ioctl", slave, TIOCLINUX, addr(sub)),
            "TIOCLINUX|1<<32": call("ioctl", slave, HIGH | TIOCLINUX, addr(sub)),
            "close": call("close", master),
        }

    got = verdicts(seccomp_section(tmp_path), probe)
    assert got == {"TCGETS": "OK", "TCGETS|1<<32": "OK", "TIOCSTI": "EPERM", "TIOCSTI|1<<32": "EPERM",
                   "TIOCSTI bad fd": "EPERM", "TIOCLINUX": "EPERM", "TIOCLINUX|1<<32": "EPERM",
                   "close": "OK"}


# ---------------------------------------------------------------------------------------------
# never granted


# name → harmless arguments (what the kernel itself would answer root, were the call let through)
NEVER_PROBES: dict[str, tuple[int, ...]] = {
    "io_uring_setup": (0, 0),  # EINVAL: zero entries
    "io_uring_enter": (-1, 0, 0, 0, 0, 0),  # EBADF
    "io_uring_register": (-1, 0, 0, 0),  # EBADF
    "ptrace": (3, 1, 0, 0),  # PTRACE_PEEKUSER on init, not traced by us: ESRCH
    "bpf": (0x7FFFFFFF, 0, 0),  # unknown command: EINVAL
    "perf_event_open": (0, 0, -1, -1, 0),  # NULL attr: EFAULT
    "userfaultfd": (0x7FFF0000,),  # unknown flags: EINVAL
    "keyctl": (0x7FFF, 0, 0, 0, 0),  # unknown operation: EOPNOTSUPP
    "mount": (0, 0, 0, 0, 0),  # NULL target: EFAULT
    "unshare": (0,),  # no flags: succeeds and changes nothing
    "setns": (-1, 0),  # EBADF
    "kexec_load": (0, 1000, 0, 0xFFFF8000),  # bad flags, too many segments: EINVAL
    "reboot": (0, 0, 0, 0),  # bad magic: EINVAL
    "open_by_handle_at": (-1, 0, 0),  # EBADF / EFAULT
    "process_vm_readv": (0, 0, 0, 0, 0, 1),  # flags must be 0: EINVAL
}


def test_never_granted_calls_are_denied_with_every_capability(tmp_path: Path) -> None:
    """io_uring, ptrace, bpf, perf, userfaultfd, keyctl, mount, namespaces, kexec, reboot… get EPERM with every grant."""
    imports = all_capabilities(tmp_path)
    assert {line.partition(": ")[0] for line in imports} == set(CAPABILITIES)
    section = seccomp_section(tmp_path, *imports)
    listed = {e["name"]: e for e in section["syscalls"]}
    assert not set(listed) & set(groups.NEVER), "a never-granted syscall is listed in the plan"

    def probe(load: Callable[[], None]) -> dict[str, str]:
        load()
        out = {name: call(name, *args) for name, args in NEVER_PROBES.items()}
        out["getpid"] = "OK" if raw(NR["getpid"]) == os.getpid() else "WRONG"
        return out

    got = verdicts(section, probe)
    assert got == {**{name: "EPERM" for name in NEVER_PROBES}, "getpid": "OK"}


# ---------------------------------------------------------------------------------------------
# on-violation: kill and log


def test_kill_mode_kills_on_a_denied_call(tmp_path: Path) -> None:
    """With on-violation: kill a denied call kills the child with SIGSYS; clone3 and new numbers still get ENOSYS."""
    section = seccomp_section(tmp_path, on_violation="kill")
    assert section["violation"] == "kill"

    def survives(load: Callable[[], None]) -> dict[str, str]:
        load()
        return {"getpid": "OK" if raw(NR["getpid"]) == os.getpid() else "WRONG",
                "clone3": call("clone3", 0, 0), "nr 470": verdict(raw(470))}

    alive = killed(section, survives)
    assert alive.ok, alive.error or alive
    assert alive.value == {"getpid": "OK", "clone3": "ENOSYS", "nr 470": "ENOSYS"}

    def dies(load: Callable[[], None]) -> str:
        load()
        return call("sethostname", 0, 65)

    dead = killed(section, dies)
    assert dead.signal == signal.SIGSYS, dead
    assert dead.value is None


def test_log_mode_lets_a_denied_call_run(tmp_path: Path) -> None:
    """With on-violation: log an ungranted sync() runs while ptrace (never grantable) stays EPERM; with deny both get EPERM."""

    def probe(load: Callable[[], None]) -> dict[str, str]:
        load()
        return {"sync": call("sync"), "ptrace": call("ptrace", 0, 0, 0, 0), "clone3": call("clone3", 0, 0)}

    logged = killed(seccomp_section(tmp_path, on_violation="log"), probe)
    assert logged.ok, logged.error or logged
    assert logged.value == {"sync": "OK", "ptrace": "EPERM", "clone3": "ENOSYS"}
    assert verdicts(seccomp_section(tmp_path), probe) == {"sync": "EPERM", "ptrace": "EPERM", "clone3": "ENOSYS"}


# ---------------------------------------------------------------------------------------------
# file-write group


def file_write_probe(base: Path) -> Probe:
    def probe(load: Callable[[], None]) -> dict[str, str]:
        work = base / f"run-{os.getpid()}"
        work.mkdir()
        (work / "file").write_bytes(b"")
        (work / "gone").mkdir()
        p = {n: ctypes.create_string_buffer(str(work / n).encode()) for n in
             ("new", "newat", "file", "file2", "gone", "renamed")}
        load()
        out = {"mkdir": call("mkdir", addr(p["new"]), 0o700),
               "mkdirat": call("mkdirat", AT_FDCWD, addr(p["newat"]), 0o700),
               "rename": call("rename", addr(p["file"]), addr(p["renamed"])),
               "rmdir": call("rmdir", addr(p["gone"]))}
        src = p["renamed"] if out["rename"] == "OK" else p["file"]
        out["unlink"] = call("unlink", addr(src))
        out["unlinkat dir"] = call("unlinkat", AT_FDCWD, addr(p["new"]) if out["mkdir"] == "OK"
                                   else addr(p["newat"]), 0x200)  # AT_REMOVEDIR
        return out

    return probe


def test_read_only_preopens_deny_file_writes(tmp_path: Path) -> None:
    """With only read preopens mkdir, rename, rmdir and unlink get EPERM from seccomp."""
    section = seccomp_section(tmp_path, f"wasi:filesystem/preopens: [{{path: '{tmp_path}', access: read}}]")
    got = verdicts(section, file_write_probe(tmp_path))
    assert got == {"mkdir": "EPERM", "mkdirat": "EPERM", "rename": "EPERM", "rmdir": "EPERM",
                   "unlink": "EPERM", "unlinkat dir": "EPERM"}


def test_write_preopen_allows_file_writes(tmp_path: Path) -> None:
    """With a write preopen mkdir, rename, rmdir and unlink pass seccomp (Landlock, not applied here, decides where)."""
    section = seccomp_section(tmp_path, f"wasi:filesystem/preopens: [{{path: '{tmp_path}', access: read+write}}]")
    got = verdicts(section, file_write_probe(tmp_path))
    assert got == {"mkdir": "OK", "mkdirat": "OK", "rename": "OK", "rmdir": "OK",
                   "unlink": "OK", "unlinkat dir": "OK"}


# ---------------------------------------------------------------------------------------------
# the runtime base works under every filter


BASES = {
    "nothing": (),
    "clocks": ("wasi:clocks/monotonic-clock: {}", "wasi:clocks/wall-clock: {}"),
    "tcp": ("wasi:sockets/tcp: {connect: [80]}",),
}


@pytest.mark.parametrize("on_violation", ["deny", "kill", "log"])
@pytest.mark.parametrize("base", [*BASES, "everything"])
def test_runtime_base_works_in_every_filter(tmp_path: Path, base: str, on_violation: str) -> None:
    """read, write, getpid (and clock_gettime with a clock grant) work under every filter."""
    imports = all_capabilities(tmp_path) if base == "everything" else BASES[base]
    clocks = base in ("clocks", "everything")
    section = seccomp_section(tmp_path, *imports, on_violation=on_violation)

    def probe(load: Callable[[], None]) -> dict[str, str]:
        r, w = os.pipe()
        data, buf = ctypes.create_string_buffer(b"abc", 3), ctypes.create_string_buffer(8)
        ts = ctypes.create_string_buffer(16)
        pid = os.getpid()
        load()
        out = {"write": "OK" if raw(NR["write"], w, addr(data), 3) == 3 else "short",
               "read": "OK" if raw(NR["read"], r, addr(buf), 8) == 3 and buf.raw[:3] == b"abc" else "bad",
               "getpid": "OK" if raw(NR["getpid"]) == pid else "WRONG"}
        if clocks:
            out["clock_gettime"] = call("clock_gettime", CLOCK_MONOTONIC, addr(ts))
        return out

    result = killed(section, probe)  # returning at all proves write() and exit_group() work
    assert result.ok, result.error or result
    assert set(result.value.values()) == {"OK"}, result.value


def test_clock_gettime_syscall_needs_a_clock_grant(tmp_path: Path) -> None:
    """Without a clock grant the clock_gettime system call gets EPERM (only the vDSO path remains)."""

    def probe(load: Callable[[], None]) -> dict[str, str]:
        ts = ctypes.create_string_buffer(16)
        load()
        return {"clock_gettime": call("clock_gettime", CLOCK_MONOTONIC, addr(ts))}

    assert verdicts(seccomp_section(tmp_path), probe) == {"clock_gettime": "EPERM"}
    granted = seccomp_section(tmp_path, "wasi:clocks/monotonic-clock: {}")
    assert verdicts(granted, probe) == {"clock_gettime": "OK"}


# ---------------------------------------------------------------------------------------------
# shipped manifests


SHIPPED = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("profiles/*.yaml")])


def test_shipped_manifests_exist() -> None:
    """There are examples and profiles to check (the glob below is not silently empty)."""
    assert any(p.parent.name == "examples" for p in SHIPPED)
    assert any(p.parent.name == "profiles" for p in SHIPPED)


@pytest.mark.parametrize("manifest", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kernel_accepts_shipped_filters(manifest: Path) -> None:
    """The kernel loads the x86_64 BPF of every example and profile, and the child then returns normally."""
    plan = compile_plan(load_policy(manifest), Target("x86_64", 7))
    prog = assemble(plan["seccomp"])

    def probe(load: Callable[[], None]) -> int:
        load()
        return 0

    result = filtered(prog, probe)
    assert result.ok and result.value == 0, result.error or result
