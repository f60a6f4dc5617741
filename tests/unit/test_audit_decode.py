"""decode(): every decoder on crafted notifications, with a fake target memory (no kernel needed)."""

from __future__ import annotations

import struct

import pytest

from sandboxer.audit import decode as D
from sandboxer.audit.notify import Notification
from sandboxer.mechanisms.seccomp.tables import aarch64, x86_64

X86 = x86_64.AUDIT_ARCH
ARM = aarch64.AUDIT_ARCH
AT_FDCWD = (1 << 64) - 100  # -100 as the kernel passes it in a 64-bit register


class FakeTarget:
    """A sparse address space: blobs placed at addresses, plus the target's fds and cwd."""

    def __init__(self, pid: int = 4242, cwd: str = "/home/u", fds: dict | None = None) -> None:
        self.pid = pid
        self.blobs: dict[int, bytes] = {}
        self.next = 0x10000
        self.cwd = cwd
        self.fds = fds or {}
        self.sockets: dict[int, tuple] = {}

    def put(self, data: bytes) -> int:
        addr = self.next
        self.blobs[addr] = data
        self.next += (len(data) + 0x1000) & ~0xFFF
        return addr

    def s(self, text: str) -> int:
        return self.put(text.encode() + b"\0")

    def read_memory(self, pid, addr, size):
        assert pid == self.pid
        for base, blob in self.blobs.items():
            if base <= addr < base + len(blob):
                return blob[addr - base:addr - base + size]
        return None

    def read_string(self, pid, addr, max=4096):  # noqa: A002
        data = self.read_memory(pid, addr, max)
        return None if data is None else data.split(b"\0", 1)[0]

    def fd_path(self, pid, fd):
        return self.cwd if fd == D.AT_FDCWD else self.fds.get(fd)

    def sock_info(self, pid, fd):
        return self.sockets.get(fd)

    def decode(self, name: str, *args: int, arch: int = X86) -> dict:
        table = x86_64 if arch == X86 else aarch64
        full = tuple(args) + (0,) * (6 - len(args))
        n = Notification(1, self.pid, 0, table.SYSCALLS[name], arch, 0, full)
        out = D.decode(n, self.read_string, self.read_memory, self.fd_path, self.sock_info)
        assert out["name"] == name and out["nr"] == table.SYSCALLS[name]
        return out["args"]


@pytest.fixture
def t():
    return FakeTarget(fds={3: "/srv/data", 5: "socket:[123]", 7: "/dev/tty", 9: "net:[4026531840]"})


def test_every_spec_names_a_known_syscall():
    known = set(x86_64.SYSCALLS) | set(aarch64.SYSCALLS)
    assert set(D.SPECS) <= known, set(D.SPECS) - known
    assert all(len(spec) <= 6 for spec in D.SPECS.values())


# --- files ------------------------------------------------------------------------------------

def test_open_absolute(t):
    a = t.decode("open", t.s("/etc/passwd"), 0, 0)
    assert a == {"path": "/etc/passwd", "flags": "O_RDONLY", "mode": "0o0"}


def test_openat_relative_to_cwd_with_flags(t):
    a = t.decode("openat", AT_FDCWD, t.s("out/report.txt"), 0o1101 | 0o2000000, 0o644)
    assert a["dirfd"] == "AT_FDCWD"
    assert a["path"] == "/home/u/out/report.txt" and a["path_raw"] == "out/report.txt"
    assert a["flags"] == "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
    assert a["mode"] == "0o644"


def test_openat_relative_to_a_dirfd_keeps_dotdot(t):
    a = t.decode("openat", 3, t.s("./sub/../x"), 2)
    assert a["dirfd"] == 3
    assert a["path"] == "/srv/data/sub/../x"  # '..' is resolved by grants.py, after symlinks
    assert a["flags"] == "O_RDWR"


def test_open_flags_differ_between_arches():
    # O_DIRECTORY|O_NOFOLLOW: 0o200000|0o400000 on x86_64, 0o40000|0o100000 on arm64
    assert D.open_flags(0o600000, "x86_64") == "O_RDONLY|O_DIRECTORY|O_NOFOLLOW"
    assert D.open_flags(0o140000, "aarch64") == "O_RDONLY|O_DIRECTORY|O_NOFOLLOW"
    assert D.open_flags(0o20200000 | 2, "x86_64") == "O_RDWR|O_TMPFILE"
    assert D.open_flags(0o4010000 | 1, "x86_64") == "O_WRONLY|O_SYNC"
    assert D.open_flags(0o10000000, "x86_64") == "O_RDONLY|O_PATH"
    assert D.open_flags(1 << 30, "x86_64") == "O_RDONLY|0x40000000"


def test_openat_on_aarch64_uses_its_table_and_flags():
    t = FakeTarget()
    a = t.decode("openat", AT_FDCWD, t.s("/tmp/d"), 0o40000, arch=ARM)
    assert a["flags"] == "O_RDONLY|O_DIRECTORY" and a["path"] == "/tmp/d"


def test_openat2_reads_open_how(t):
    how = t.put(struct.pack("<QQQ", 0o100 | 1, 0o600, 0x08 | 0x04))
    a = t.decode("openat2", AT_FDCWD, t.s("/x"), how, 24)
    assert a["flags"] == "O_WRONLY|O_CREAT" and a["mode"] == "0o600"
    assert a["resolve"] == "RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH"


def test_creat(t):
    assert t.decode("creat", t.s("new"), 0o600) == {
        "path": "/home/u/new", "path_raw": "new", "flags": "O_WRONLY|O_CREAT|O_TRUNC", "mode": "0o600"}


def test_proc_self_is_the_target():
    t = FakeTarget(pid=77)
    assert t.decode("open", t.s("/proc/self/environ"), 0)["path"] == "/proc/77/environ"
    assert t.decode("open", t.s("/proc/thread-self/comm"), 0)["path"] == "/proc/77/task/77/comm"


def test_unreadable_path_is_none_with_the_address(t):
    a = t.decode("open", 0xDEAD0000, 0)
    assert a["path"] is None and a["path_unreadable"] == "0xdead0000"


def test_execve_path_and_argv(t):
    strs = [t.s("ls"), t.s("-l"), t.s("/srv")]
    argv = t.put(struct.pack("<4Q", *strs, 0))
    a = t.decode("execve", t.s("/usr/bin/ls"), argv, 0)
    assert a == {"path": "/usr/bin/ls", "argv": ["ls", "-l", "/srv"]}


def test_execve_argv_is_capped(t):
    strs = [t.s(f"a{i}") for i in range(D.ARGV_MAX + 5)]
    argv = t.put(struct.pack(f"<{len(strs) + 1}Q", *strs, 0))
    out = t.decode("execve", t.s("/bin/x"), argv)["argv"]
    assert len(out) == D.ARGV_MAX + 1 and out[-1] == "…"


def test_execveat_empty_path_is_the_fd(t):
    a = t.decode("execveat", 3, t.s(""), 0, 0, 0x1000)
    assert a["path"] == "/srv/data" and a["flags"] == "AT_EMPTY_PATH"


def test_unlinkat_removedir_and_unlink(t):
    assert t.decode("unlinkat", AT_FDCWD, t.s("/tmp/d"), 0x200) == {
        "dirfd": "AT_FDCWD", "path": "/tmp/d", "flags": "AT_REMOVEDIR"}
    assert t.decode("unlink", t.s("/tmp/f")) == {"path": "/tmp/f"}
    assert t.decode("rmdir", t.s("/tmp/d")) == {"path": "/tmp/d"}


def test_mkdir_and_mknod(t):
    assert t.decode("mkdir", t.s("/a/b"), 0o755) == {"path": "/a/b", "mode": "0o755"}
    assert t.decode("mkdirat", 3, t.s("c"), 0o700)["path"] == "/srv/data/c"
    a = t.decode("mknodat", AT_FDCWD, t.s("/tmp/fifo"), 0o10644, 0)
    assert a["type"] == "S_IFIFO" and a["mode"] == "0o644"


def test_rename_family_two_paths(t):
    a = t.decode("renameat2", 3, t.s("old"), AT_FDCWD, t.s("/tmp/new"), 1)
    assert a["oldpath"] == "/srv/data/old" and a["newpath"] == "/tmp/new"
    assert a["olddirfd"] == 3 and a["newdirfd"] == "AT_FDCWD" and a["flags"] == "RENAME_NOREPLACE"
    assert t.decode("rename", t.s("a"), t.s("b"))["newpath"] == "/home/u/b"


def test_link_and_symlink(t):
    a = t.decode("linkat", AT_FDCWD, t.s("/a"), AT_FDCWD, t.s("/b"), 0x400)
    assert a["oldpath"] == "/a" and a["newpath"] == "/b" and a["flags"] == "AT_SYMLINK_FOLLOW"
    a = t.decode("symlinkat", t.s("../target"), 3, t.s("lnk"))
    assert a["target"] == "../target" and a["linkpath"] == "/srv/data/lnk"


def test_chmod_chown_truncate(t):
    assert t.decode("chmod", t.s("/f"), 0o4755) == {"path": "/f", "mode": "0o4755"}
    assert t.decode("fchownat", AT_FDCWD, t.s("/f"), 0, (1 << 64) - 1, 0x100)["flags"] == "AT_SYMLINK_NOFOLLOW"
    assert t.decode("fchownat", AT_FDCWD, t.s("/f"), 0, (1 << 32) - 1, 0)["gid"] == -1
    assert t.decode("truncate", t.s("/f"), 10) == {"path": "/f", "length": 10}


# --- sockets ----------------------------------------------------------------------------------

def test_socket_family_type_protocol(t):
    assert t.decode("socket", 2, 1 | 0o2000000, 6) == {
        "family": "AF_INET", "type": "SOCK_STREAM|SOCK_CLOEXEC", "protocol": "IPPROTO_TCP"}
    assert t.decode("socket", 10, 2 | 0o4000, 0)["type"] == "SOCK_DGRAM|SOCK_NONBLOCK"
    assert t.decode("socket", 16, 3, 9)["protocol"] == "NETLINK_AUDIT"
    assert t.decode("socket", 17, 3, 0x0300) == {"family": "AF_PACKET", "type": "SOCK_RAW", "protocol": "0x0003"}
    assert t.decode("socket", 99, 1, 0)["family"] == "99"


def test_connect_inet_with_socket_info(t):
    t.sockets[5] = (2, 1, 6)
    sa = t.put(struct.pack("<H", 2) + struct.pack(">H", 5432) + bytes([10, 0, 0, 7]) + b"\0" * 8)
    a = t.decode("connect", 5, sa, 16)
    assert a["family"] == "AF_INET" and a["address"] == "10.0.0.7" and a["port"] == 5432
    assert a["fd"] == 5 and a["fd_path"] == "socket:[123]"
    assert a["socket"] == {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP"}


@pytest.mark.parametrize("addr, text", [
    (bytes(15) + b"\1", "::1"),
    (bytes(16), "::"),
    (bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1"),
    (bytes.fromhex("20010db8000100000000000100000001"), "2001:db8:1::1:0:1"),
    (bytes(10) + b"\xff\xff" + bytes([192, 168, 1, 2]), "::ffff:192.168.1.2"),
    (bytes.fromhex("fe800000000000000000000000000001"), "fe80::1"),
    (bytes.fromhex("00010002000300040005000600070008"), "1:2:3:4:5:6:7:8"),
])
def test_ipv6_text(addr, text):
    assert D.ipv6(addr) == text


def test_bind_inet6(t):
    sa = t.put(struct.pack("<H", 10) + struct.pack(">H", 8080) + bytes(4) + bytes(15) + b"\1" + struct.pack("<I", 0))
    a = t.decode("bind", 5, sa, 28)
    assert a["family"] == "AF_INET6" and a["address"] == "::1" and a["port"] == 8080


def test_connect_unix_path_and_abstract(t):
    sa = t.put(struct.pack("<H", 1) + b"/run/x.sock\0garbage")
    assert t.decode("connect", 5, sa, 2 + 12)["path"] == "/run/x.sock"
    sa = t.put(struct.pack("<H", 1) + b"\0name\0with-nul")
    assert t.decode("connect", 5, sa, 2 + 15)["abstract"] == "@name\0with-nul"
    sa = t.put(struct.pack("<H", 16) + b"\0\0" + struct.pack("<II", 0, 1))
    a = t.decode("bind", 5, sa, 12)
    assert a["family"] == "AF_NETLINK" and a["nl_groups"] == 1


def test_sendto_with_fastopen_and_address(t):
    sa = t.put(struct.pack("<H", 2) + struct.pack(">H", 443) + bytes([1, 2, 3, 4]) + bytes(8))
    a = t.decode("sendto", 5, 0x1234, 10, 0x20000000 | 0x4000, sa, 16)
    assert a["flags"] == "MSG_NOSIGNAL|MSG_FASTOPEN" and a["port"] == 443 and a["address"] == "1.2.3.4"
    assert "family" not in t.decode("sendto", 5, 0x1234, 10, 0, 0, 0)


def test_sendmsg_reads_msg_name(t):
    sa = t.put(struct.pack("<H", 2) + struct.pack(">H", 53) + bytes([9, 9, 9, 9]) + bytes(8))
    msg = t.put(struct.pack("<QI", sa, 16) + bytes(44))
    a = t.decode("sendmsg", 5, msg, 0x20000000)
    assert a["port"] == 53 and a["flags"] == "MSG_FASTOPEN"


# --- processes --------------------------------------------------------------------------------

def test_clone_flags_namespaces_and_exit_signal(t):
    a = t.decode("clone", 0x40000000 | 0x20000000 | 0x100 | 17)
    assert a["flags"] == "CLONE_VM|CLONE_NEWPID|CLONE_NEWNET"
    assert a["exit_signal"] == "SIGCHLD"
    assert a["namespaces"] == ["CLONE_NEWPID", "CLONE_NEWNET"]
    a = t.decode("clone", 0x10000 | 0x800 | 0x100)
    assert a["namespaces"] == [] and a["exit_signal"] == "0"


def test_clone3_reads_clone_args(t):
    args = t.put(struct.pack("<11Q", 0x10000000 | 0x80 | 0x200000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0))
    a = t.decode("clone3", args, 88)
    assert a["flags"] == "CLONE_NEWTIME|CLONE_NEWUSER|CLONE_INTO_CGROUP"
    assert a["namespaces"] == ["CLONE_NEWTIME", "CLONE_NEWUSER"]
    assert a["exit_signal"] == "SIGCHLD" and a["size"] == 88


def test_unshare_and_setns(t):
    a = t.decode("unshare", 0x40000000 | 0x80 | 0x200)
    assert a["flags"] == "CLONE_NEWTIME|CLONE_FS|CLONE_NEWNET"
    assert a["namespaces"] == ["CLONE_NEWTIME", "CLONE_NEWNET"]
    a = t.decode("setns", 9, 0x40000000)
    assert a["fd_path"] == "net:[4026531840]" and a["nstype"] == "CLONE_NEWNET"


def test_kill_family(t):
    assert t.decode("kill", 1234, 9) == {"pid": 1234, "target": "process 1234", "sig": "SIGKILL"}
    assert t.decode("kill", (1 << 64) - 1, 15)["target"] == "every process it may signal"
    assert t.decode("kill", (1 << 64) - 77, 0) == {"pid": -77, "target": "process group 77", "sig": "0"}
    assert t.decode("kill", 0, 10)["target"] == "the caller's process group"
    assert t.decode("tgkill", 10, 11, 34 + 3) == {"tgid": 10, "tid": 11, "sig": "SIGRTMIN+3"}
    assert t.decode("tkill", 10, 34)["sig"] == "SIGRTMIN"


def test_ptrace_prctl(t):
    assert t.decode("ptrace", 16, 99, 0, 0)["request"] == "PTRACE_ATTACH"
    assert t.decode("ptrace", 0x4206, 99)["request"] == "PTRACE_SEIZE"
    assert t.decode("prctl", 15, t.s("worker"))["name"] == "worker"
    a = t.decode("prctl", 1, 9)
    assert a == {"option": "PR_SET_PDEATHSIG", "arg2": "SIGKILL"}
    assert t.decode("prctl", 0x59616D61, 1)["option"] == "PR_SET_PTRACER"
    assert t.decode("prctl", 9999)["option"] == "9999"


def test_ioctl_names_low_32_bits(t):
    a = t.decode("ioctl", 7, 0x5412, 0x7FFF0000)
    assert a == {"fd": 7, "fd_path": "/dev/tty", "request": "TIOCSTI", "arg": "0x7fff0000"}
    assert t.decode("ioctl", 7, 0x541C)["request"] == "TIOCLINUX"
    assert t.decode("ioctl", 7, 0x541B)["request"] == "FIONREAD"
    assert t.decode("ioctl", 7, (1 << 32) | 0x5412)["request"].startswith("TIOCSTI (0x100005412")
    assert t.decode("ioctl", 7, 0xDEAD)["request"] == "0xdead"


def test_mount_and_umount(t):
    a = t.decode("mount", t.s("/src"), t.s("/mnt"), t.s("none"), 4096 | 16384, 0)
    assert a == {"source": "/src", "target": "/mnt", "fstype": "none", "flags": "MS_BIND|MS_REC", "data": "0x0"}
    assert t.decode("umount2", t.s("/mnt"), 2) == {"target": "/mnt", "flags": "MNT_DETACH"}


def test_unknown_syscall_gives_raw_hex(t):
    n = Notification(1, t.pid, 0, x86_64.SYSCALLS["getpid"], X86, 0, (1, 2, 3, 4, 5, 0xFFFF))
    out = D.decode(n, t.read_string, t.read_memory, t.fd_path)
    assert out == {"name": "getpid", "nr": 39, "args": {
        "arg0": "0x1", "arg1": "0x2", "arg2": "0x3", "arg3": "0x4", "arg4": "0x5", "arg5": "0xffff"}}


def test_unknown_number_and_unknown_arch(t):
    n = Notification(1, t.pid, 0, 9999, X86, 0, (0,) * 6)
    assert D.decode(n, t.read_string)["name"] == "syscall_9999"
    n = Notification(1, t.pid, 0, 5, 0x40000003, 0, (0,) * 6)  # i386
    assert D.decode(n, t.read_string)["name"] == "syscall_5"


def test_flag_names_and_signal_names():
    assert D.flag_names(0, D.MOUNT_FLAGS) == "0"
    assert D.flag_names(1 | 0x1000000000, D.MOUNT_FLAGS) == "MS_RDONLY|0x1000000000"
    assert D.signal_name(31) == "SIGSYS"
    assert D.signal_name(200) == "200"


def test_calls_on_an_open_file_name_it(t):
    t.fds[4] = "/srv/out/report.db-journal"
    assert t.decode("fdatasync", 4) == {"fd": 4, "fd_path": "/srv/out/report.db-journal"}
    assert t.decode("fchown", 4, 0, 0)["fd_path"] == "/srv/out/report.db-journal"
