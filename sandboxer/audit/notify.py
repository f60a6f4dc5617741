"""Seccomp user notification (seccomp_unotify(2)) for the supervisor: receive, answer, hand the listener over.

The supervisor is the parent process (a thread of the workload cannot supervise its own process: the
GIL, and the workload could answer for itself). The hand-over, in launch order:

    child:  ... → Landlock → seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER) → child_handoff() → execve
    parent: fork → parent_handoff() → serve the Listener until it reports POLLHUP (every target gone)

- Before fork the parent makes two close-on-exec pipes, `report` and `ack` (os.pipe2(os.O_CLOEXEC)),
  and keeps `report_w` and `ack_r` out of the child's close_range. After fork it closes its copies of
  `report_w` and `ack_r`, so a child that dies early shows up as EOF instead of a hang.
- child_handoff(listener_fd, report_w, ack_r) writes the listener's fd number (4 bytes), waits for one
  ack byte, closes its copy of the listener and returns; the step after it is execve. It uses only
  write(2), read(2) and close(2), which every sandboxer filter allows (the runtime base): a notified
  syscall before the parent holds the listener would wait forever.
- parent_handoff(pid, report_r, ack_w) reads the number, copies the fd out of the child with
  pidfd_getfd(2) (root, or the same uid with ptrace access: the parent of its own child has it),
  writes the ack and returns a Listener. On any failure it raises HandoffError and the caller kills
  the child: a workload never runs with a listener nobody serves.

The child must not keep the listener: whoever holds it can answer the notifications, including the
workload answering "continue" for itself. The fd is close-on-exec anyway (the kernel creates it so);
child_handoff closes it before exec explicitly.

Reading the target's memory (path strings, sockaddrs): read_memory()/read_string() pread
/proc/PID/mem through an fd opened once per pid. Between recv() and the read, the target can die and
its pid be reused, so bytes read "from pid P" may belong to another process. Only after
`listener.id_valid(notif.id)` returns True *after* the read is it known that the notifying thread was
still blocked in that syscall while we read, i.e. the bytes came from its address space. What
id_valid cannot rule out: another thread of the target rewriting the string between our read and the
kernel's own copy (TOCTOU). So decoded arguments are evidence for the record, never the basis of a
security decision: sandboxer answers by the syscall number and the plan, not by what it read.

When the supervisor dies (measured on Linux 6.18, tests/integration/test_audit_notify.py):
- the kernel does NOT kill the targets. When the last listener fd closes (seccomp_notify_release),
  a pending notification is answered -ENOSYS, and every later RET_USER_NOTIF syscall returns
  ENOSYS at once; allowed syscalls go on. An unsupervised workload keeps running.
- PR_SET_PDEATHSIG=SIGKILL (run_child's second step) kills the direct child when the supervisor
  dies, however it dies. But it is not inherited across fork: processes the workload started live
  on, orphaned, with ENOSYS for their notified calls (a test shows it).
- What takes the whole tree down, and what the launcher does: a PID namespace whose init dies. A
  supervised run's child is init of its own PID namespace (launch/sequence.py, INIT_FORK) with
  PDEATHSIG; the workload is its child. When the supervisor dies, init dies, and the kernel
  SIGKILLs every process of the namespace (tests/integration/test_audit_run.py).
- Closing the listener without dying (a bug, or an exception in the serve loop) is the same as
  dying for the workload: the launcher must kill the process group / cgroup before close().
- SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19) is unrelated to supervisor death but worth
  setting: until the supervisor has received a notification only a fatal signal interrupts the
  wait, so a signal to the workload does not withdraw and restart the syscall (one record, not two).

No typing, dataclasses, enum or re at import: this module is on the launch path. It uses the
launch path's slice of ctypes (sandboxer.launch.libc, the same C types without `import ctypes`'s
~2.4 ms) and os only.
"""

import os

from sandboxer.launch import libc

# include/uapi/linux/seccomp.h
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5  # Linux 5.19

# _IOC(dir, '!', nr, size) on x86_64 and arm64: dir << 30 | size << 16 | '!' << 8 | nr; WRITE=1, READ=2.
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | 0x21 << 8 | nr


_ENOENT, _EINTR, _EINPROGRESS = 2, 4, 115

# Syscall numbers shared by x86_64 and aarch64 (the unified table from 424 on).
_NR_PIDFD_OPEN = 434
_NR_PIDFD_GETFD = 438
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine, -1)


class SeccompData(libc.Structure):
    """struct seccomp_data (64 bytes)."""

    _fields_ = [
        ("nr", libc.c_int32),
        ("arch", libc.c_uint32),
        ("instruction_pointer", libc.c_uint64),
        ("args", libc.c_uint64 * 6),
    ]


class SeccompNotif(libc.Structure):
    """struct seccomp_notif (80 bytes on Linux 6.18; the kernel says its size via GET_NOTIF_SIZES)."""

    _fields_ = [("id", libc.c_uint64), ("pid", libc.c_uint32), ("flags", libc.c_uint32), ("data", SeccompData)]


class SeccompNotifResp(libc.Structure):
    """struct seccomp_notif_resp (24 bytes); `error` is a negative errno, or 0 to return `val`."""

    _fields_ = [("id", libc.c_uint64), ("val", libc.c_long), ("error", libc.c_int32), ("flags", libc.c_uint32)]


class SeccompNotifSizes(libc.Structure):
    _fields_ = [("seccomp_notif", libc.c_uint16), ("seccomp_notif_resp", libc.c_uint16),
                ("seccomp_data", libc.c_uint16)]


SECCOMP_IOCTL_NOTIF_RECV = _ioc(_IOC_READ | _IOC_WRITE, 0, libc.sizeof(SeccompNotif))  # 0xc0502100
SECCOMP_IOCTL_NOTIF_SEND = _ioc(_IOC_READ | _IOC_WRITE, 1, libc.sizeof(SeccompNotifResp))  # 0xc0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = _ioc(_IOC_WRITE, 2, 8)  # 0x40082102
SECCOMP_IOCTL_NOTIF_SET_FLAGS = _ioc(_IOC_WRITE, 4, 8)  # 0x40082104, Linux 6.6
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1

_ioctl = libc.function("ioctl", libc.c_int, libc.c_int, libc.c_ulong, libc.c_void_p)
_syscall3 = libc.function("syscall", libc.c_long, libc.c_long, libc.c_long, libc.c_long, libc.c_long)
_syscall4 = libc.function("syscall", libc.c_long, libc.c_long, libc.c_long, libc.c_long, libc.c_long, libc.c_long)
_getsockopt = libc.function("getsockopt", libc.c_int, libc.c_int, libc.c_int, libc.c_int, libc.c_void_p,
                            libc.c_void_p)
_memset = libc.function("memset", libc.c_void_p, libc.c_void_p, libc.c_int, libc.c_size_t)

_sizes = None  # SeccompNotifSizes, asked once


def _oserror(call: str) -> OSError:
    err = libc.get_errno()
    return OSError(err, os.strerror(err), call)


def notif_sizes() -> SeccompNotifSizes:
    """seccomp(SECCOMP_GET_NOTIF_SIZES): the kernel's sizes of seccomp_notif, _resp and seccomp_data."""
    global _sizes
    if _sizes is None:
        sizes = SeccompNotifSizes()
        if _syscall3(_NR_SECCOMP, SECCOMP_GET_NOTIF_SIZES, 0, libc.addressof(sizes)) != 0:
            raise _oserror("seccomp(SECCOMP_GET_NOTIF_SIZES)")
        _sizes = sizes
    return _sizes


class Notification:
    """One received notification: the syscall a target thread is blocked in, waiting for our answer."""

    __slots__ = ("id", "pid", "flags", "nr", "arch", "instruction_pointer", "args")

    def __init__(self, id: int, pid: int, flags: int, nr: int, arch: int, instruction_pointer: int,  # noqa: A002
                 args: tuple) -> None:
        self.id = id
        self.pid = pid  # the thread id (tid) in the supervisor's pid namespace
        self.flags = flags
        self.nr = nr
        self.arch = arch  # AUDIT_ARCH_*
        self.instruction_pointer = instruction_pointer
        self.args = args  # six unsigned 64-bit ints

    def __repr__(self) -> str:
        args = ", ".join(hex(a) for a in self.args)
        return f"Notification(id={self.id:#x}, pid={self.pid}, nr={self.nr}, arch={self.arch:#x}, args=({args}))"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Notification) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


class Listener:
    """A seccomp listener fd held by the supervisor. Not thread-safe (one buffer per listener)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        sizes = notif_sizes()
        # The kernel may know a longer struct than ours: receive into its size, read our prefix.
        self._recv_size = max(sizes.seccomp_notif, libc.sizeof(SeccompNotif))
        self._recv_buf = libc.buffer(self._recv_size)
        self._notif = SeccompNotif.from_buffer(self._recv_buf)
        self._resp_buf = libc.buffer(max(sizes.seccomp_notif_resp, libc.sizeof(SeccompNotifResp)))
        self._resp = SeccompNotifResp.from_buffer(self._resp_buf)
        self._id = libc.c_uint64()

    def fileno(self) -> int:
        return self.fd

    def recv(self) -> "Notification | None":
        """Block until a notification arrives (poll fileno() for POLLIN first to avoid blocking).

        None when the notifying thread was killed between the wake-up and the read (ENOENT): there
        is nothing to answer. EINTR is retried. Other errors raise OSError.
        """
        _memset(self._recv_buf, 0, self._recv_size)  # the kernel insists on a zeroed buffer
        while _ioctl(self.fd, SECCOMP_IOCTL_NOTIF_RECV, self._recv_buf) != 0:
            err = libc.get_errno()
            if err == _EINTR:
                _memset(self._recv_buf, 0, self._recv_size)
                continue
            if err == _ENOENT:
                return None
            raise OSError(err, os.strerror(err), "ioctl(SECCOMP_IOCTL_NOTIF_RECV)")
        n = self._notif
        d = n.data
        return Notification(n.id, n.pid, n.flags, d.nr, d.arch, d.instruction_pointer, tuple(d.args))

    def respond(self, notif_id: int, *, error: int = 0, val: int = 0, continue_: bool = False) -> bool:
        """Answer: `error` (a positive errno: the syscall fails with it), else return `val`, or with
        `continue_` let the kernel run the syscall as if unfiltered (SECCOMP_USER_NOTIF_FLAG_CONTINUE).

        False when the target is gone or was interrupted by a signal meanwhile (ENOENT): not an error.
        """
        if continue_ and (error or val):
            raise ValueError("continue_ takes neither error nor val")
        r = self._resp
        r.id = notif_id
        r.val = val
        r.error = -abs(error)
        r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE if continue_ else 0
        while _ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SEND, self._resp_buf) != 0:
            err = libc.get_errno()
            if err == _EINTR:
                continue
            if err == _ENOENT:
                return False
            raise OSError(err, os.strerror(err), "ioctl(SECCOMP_IOCTL_NOTIF_SEND)")
        return True

    def id_valid(self, notif_id: int) -> bool:
        """Is the target still blocked in the syscall of `notif_id`? Call it after reading its memory."""
        self._id.value = notif_id
        while _ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, libc.byref(self._id)) != 0:
            err = libc.get_errno()
            if err == _EINTR:
                continue
            if err == _ENOENT:
                return False
            raise OSError(err, os.strerror(err), "ioctl(SECCOMP_IOCTL_NOTIF_ID_VALID)")
        return True

    def set_sync_wakeup(self) -> bool:
        """SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): the notifying thread and the supervisor wake
        each other on the same CPU, as one synchronous hand-off. It halves the round trip of a notified
        call on these machines; False (and nothing changed) on an older kernel."""
        # The flags go by value in the ioctl's argument (kernel/seccomp.c: seccomp_notify_set_flags(filter, arg)).
        return _ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0

    def wait(self, timeout: "float | None" = None) -> int:
        """poll() the listener: 1 a notification is pending, -1 POLLHUP (no task uses the filter any
        more), 0 timeout. The launcher's own loop can poll fileno() itself instead."""
        import select  # already loaded by the launcher's supervise loop

        p = select.poll()
        p.register(self.fd, select.POLLIN)
        events = p.poll(None if timeout is None else int(timeout * 1000))
        if not events:
            return 0
        ev = events[0][1]
        if ev & select.POLLIN:
            return 1
        return -1

    def close(self) -> None:
        """Close the listener. Pending notifications fail with ENOSYS; so does every later notified
        syscall of the targets (the filter stays installed): see test_audit_notify.py."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the hand-over -----------------------------------------------------------------------------

class HandoffError(OSError):
    """The listener could not be brought into the supervisor: kill the child, do not let it exec."""


PIDFD_THREAD = 0o200  # O_EXCL (Linux 6.9): a pidfd for a thread that is not the group leader


def pidfd_open(pid: int, flags: int = 0) -> int:
    fd = _syscall3(_NR_PIDFD_OPEN, pid, flags, 0)
    if fd < 0:
        raise _oserror("pidfd_open()")
    return fd


_NR_PIDFD_SEND_SIGNAL = 424


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """Signal the task the pidfd refers to (no pid reuse race)."""
    if _syscall4(_NR_PIDFD_SEND_SIGNAL, pidfd, sig, 0, 0) < 0:
        raise _oserror("pidfd_send_signal()")


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """A close-on-exec copy of the target's fd `targetfd` (needs ptrace access to the target)."""
    fd = _syscall3(_NR_PIDFD_GETFD, pidfd, targetfd, 0)
    if fd < 0:
        raise _oserror("pidfd_getfd()")
    return fd


def acquire_listener(pid: int, fd_in_child: int) -> int:
    """pidfd_open(pid) + pidfd_getfd(fd_in_child): the child's listener fd, now also ours."""
    pidfd = pidfd_open(pid)
    try:
        return pidfd_getfd(pidfd, fd_in_child)
    finally:
        os.close(pidfd)


def child_handoff(listener_fd: int, report_fd: int, ack_fd: int) -> None:
    """Child side, right after installing the filter and right before execve.

    write(report_fd, fd number) → read(ack_fd, 1) → close(listener_fd). Raises OSError when the
    parent answers EOF instead of the ack byte (it failed to take the listener): the caller must then
    not exec (sequence.run_child reports the step and _exits 125).
    """
    os.write(report_fd, listener_fd.to_bytes(4, "little"))
    ack = os.read(ack_fd, 1)  # PEP 475: EINTR is retried by os.read
    if ack != b"\x01":
        raise OSError(32, "the supervisor did not take the seccomp listener", "seccomp listener hand-over")
    os.close(listener_fd)


def parent_handoff(pid: int, report_r: int, ack_w: int) -> Listener:
    """Parent side, after fork (with its copies of report_w and ack_r closed).

    Blocks until the child reports its listener fd number (EOF: the child failed before that point,
    its error pipe says why → HandoffError), copies the fd with pidfd_getfd and acks. The caller
    closes report_r and ack_w afterwards; on HandoffError it must kill the child.
    """
    data = b""
    while len(data) < 4:
        chunk = os.read(report_r, 4 - len(data))
        if not chunk:
            raise HandoffError(32, "the child exited before handing over its seccomp listener",
                               "seccomp listener hand-over")
        data += chunk
    try:
        fd = acquire_listener(pid, int.from_bytes(data, "little"))
    except OSError as e:
        raise HandoffError(e.errno, e.strerror, e.filename) from None
    try:
        listener = Listener(fd)
        listener.set_sync_wakeup()
        os.write(ack_w, b"\x01")
    except BaseException:
        os.close(fd)
        raise
    return listener


# --- the target's memory -----------------------------------------------------------------------

_PAGE = 4096


class _IoVec(libc.Structure):
    _fields_ = [("base", libc.c_void_p), ("len", libc.c_size_t)]


_process_vm_readv = libc.function("process_vm_readv", libc.c_long, libc.c_int, libc.c_void_p, libc.c_ulong,
                                  libc.c_void_p, libc.c_ulong, libc.c_ulong)
_read_buf = libc.buffer(_PAGE)
_local, _remote = _IoVec(libc.addressof(_read_buf), _PAGE), _IoVec()  # the local side never changes
_local_ref, _remote_ref = libc.byref(_local), libc.byref(_remote)


def forget(pid: "int | None" = None) -> None:
    """Nothing to forget: memory is read with process_vm_readv, which names the process on every call
    (an fd of /proc/TID/mem kept across calls could, after tid reuse, read another process's memory)."""


def _pread(pid: int, addr: int, size: int) -> bytes:
    """process_vm_readv(2) of up to one page: the target is resolved by pid on each call, with the same
    ptrace-mode check as /proc/PID/mem. Raises OSError when the process is gone or the range unmapped."""
    _remote.base, _remote.len = addr, min(size, _PAGE)
    n = _process_vm_readv(pid, _local_ref, 1, _remote_ref, 1, 0)
    if n < 0:
        raise _oserror("process_vm_readv()")
    return bytes(memoryview(_read_buf)[:n])


def read_memory(pid: int, addr: int, size: int) -> "bytes | None":
    """`size` bytes at `addr` of thread `pid` (may be shorter at an unmapped page); None if unreadable.

    Not yet trustworthy: check Listener.id_valid(notification id) after reading (module docstring).
    """
    if addr == 0 or size <= 0:
        return None
    try:
        return _pread(pid, addr, size)
    except (OSError, OverflowError):
        return None


def read_string(pid: int, addr: int, max: int = 4096) -> "bytes | None":  # noqa: A002 - the brief's name
    """The NUL-terminated string at `addr` (without the NUL), at most `max` bytes; None if unreadable.

    Reads page by page so a string that ends just before an unmapped page is still read.
    """
    if addr == 0:
        return None
    out = b""
    try:
        while len(out) < max:
            chunk = min(max - len(out), _PAGE - (addr + len(out)) % _PAGE)
            data = _pread(pid, addr + len(out), chunk)
            if not data:
                break
            nul = data.find(b"\0")
            if nul >= 0:
                return out + data[:nul]
            out += data
            if len(data) < chunk:
                break
    except (OSError, OverflowError):
        if not out:
            return None
    return out


# --- socket of a target fd ---------------------------------------------------------------------

_SOL_SOCKET, _SO_TYPE, _SO_PROTOCOL, _SO_DOMAIN = 1, 3, 38, 39


def socket_info(pid: int, fd: int) -> "tuple | None":
    """(domain, type, protocol) of socket `fd` of process `pid`, through a pidfd_getfd copy; None if
    it is not a socket or cannot be reached. Needs ptrace access, like the hand-over."""
    try:
        pidfd = pidfd_open(pid)
    except OSError as e:
        if e.errno not in (2, 22):  # a thread, not a leader (notifications carry tids): 6.18 says ENOENT
            return None
        try:
            pidfd = pidfd_open(pid, PIDFD_THREAD)
        except OSError:
            return None
    try:
        try:
            copy = pidfd_getfd(pidfd, fd)
        except OSError:
            return None
        try:
            out = []
            val = libc.c_int()
            ln = libc.c_uint32()
            for opt in (_SO_DOMAIN, _SO_TYPE, _SO_PROTOCOL):
                ln.value = 4
                if _getsockopt(copy, _SOL_SOCKET, opt, libc.byref(val), libc.byref(ln)) != 0:
                    return None
                out.append(val.value)
            return tuple(out)
        finally:
            os.close(copy)
    finally:
        os.close(pidfd)
