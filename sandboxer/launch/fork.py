"""Launch stage: fork the sandbox's first process with clone3: into its cgroup2 leaf (CLONE_INTO_CGROUP), and
for a supervised run as init of a new PID namespace (CLONE_NEWPID, with CLONE_NEWUSER when rootless).

Writing a pid to cgroup.procs takes the cgroup_threadgroup_rwsem for writing, which waits for an RCU
grace period (≈10 ms on a quiet machine); clone3 with CLONE_INTO_CGROUP (Linux 5.7) creates the child
in the target cgroup with no migration at all. v1 hierarchies have no equivalent: the parent still
writes the child's pid there (Leaf.place(pid, already_in_v2=True)).

The raw syscall bypasses glibc's fork(), so the child must stay on a narrow path. Constraints:
- The parent must be single-threaded (checked): glibc's fork() takes its malloc, stdio and loader
  locks around the fork and resets them in the child; a raw clone3 cannot, so a lock held by another
  thread at that instant would stay locked forever in the child.
- pthread_atfork() handlers of C libraries do not run (Python's os.register_at_fork hooks do: we call
  PyOS_BeforeFork / PyOS_AfterFork_Child / PyOS_AfterFork_Parent exactly as os.fork() does).
- In the child, glibc's cached thread id (struct pthread.tid) is still the parent's: do not use
  pthread_kill / signal.pthread_kill or other pthread calls that act on the thread id; os.kill and
  os.getpid are fine (getpid is a real syscall since glibc 2.25).
- No imports in the child: everything the child runs before execve must already be imported (an
  import may dlopen and take loader locks; it is also slow). Exec soon.
The call goes through a libc function pointer flagged like ctypes.PyDLL's (FUNCFLAG_PYTHONAPI), which
keeps the GIL held across the syscall, so the child returns into Python already holding it, as after
os.fork(). os.fork() from the child works (glibc's fork() writes its new child's thread id with
CLONE_CHILD_SETTID and does not use the stale one): the init of a supervised run forks the workload so.

CLONE_NEWPID (supervised runs, sandboxer.launch.sequence): the child is PID 1 of a new namespace, so
getpid() is 1 there and getppid() 0; when it dies the kernel SIGKILLs every process of the namespace.
Rootless, CLONE_NEWUSER comes in the same call (a PID namespace needs CAP_SYS_ADMIN in the user
namespace that owns it): the child starts with no uid/gid mapping and writes its own maps.

It is built on sandboxer.launch.libc (the C half of ctypes): `import ctypes` would add ~3 ms to every
launch with limits, more than the whole clone3 placement costs.
"""

from __future__ import annotations

import _ctypes
import errno
import os
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)
import sys

from sandboxer.launch.libc import Structure, byref, c_long, c_size_t, c_uint64, c_void_p, get_errno, sizeof

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_INTO_CGROUP = 0x200000000
_NR_CLONE3 = {"x86_64": 435, "aarch64": 435}  # asm-generic number, the same on both


class _CloneArgs(Structure):
    # struct clone_args, CLONE_ARGS_SIZE_VER2 = 88 bytes (include/uapi/linux/sched.h)
    _fields_ = [
        (name, c_uint64)
        for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
            "stack_size", "tls", "set_tid", "set_tid_size", "cgroup",
        )
    ]


class _PyFunction(_ctypes.CFuncPtr):
    """A function called with the GIL held (ctypes.PyDLL's flags), saving errno for get_errno()."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_long


class _Program:
    """dlopen(NULL): the interpreter (its C API) and libc."""

    _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)


def _bind(name: str, restype: object, *argtypes: object) -> _PyFunction:
    f = _PyFunction((name, _Program()))
    f.restype = restype
    f.argtypes = argtypes
    return f


_syscall = _bind("syscall", c_long, c_long, c_void_p, c_size_t)
_before_fork = _bind("PyOS_BeforeFork", None)
_after_fork_child = _bind("PyOS_AfterFork_Child", None)
_after_fork_parent = _bind("PyOS_AfterFork_Parent", None)


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def fork_into_cgroup(cgroup_fd: int | None) -> int:
    """Like os.fork(), but the child starts inside the cgroup2 directory open as `cgroup_fd`.

    Returns 0 in the child and the child's pid in the parent. With cgroup_fd None this is
    os.fork(). If clone3 fails (ENOSYS before Linux 5.3, EINVAL before 5.7 or for a bad fd, EBUSY
    for a cgroup that has controllers enabled for children, …) OSError is raised in the parent and
    no child exists: fall back to os.fork() + Leaf.place(pid).
    """
    if cgroup_fd is None:
        return os.fork()
    return clone(0, cgroup_fd)


def clone(flags: int, cgroup_fd: int | None = None) -> int:
    """clone3 with `flags` (CLONE_NEWPID, CLONE_NEWUSER; CLONE_INTO_CGROUP is added for a `cgroup_fd`).

    Returns 0 in the child and the child's pid in the parent, like os.fork(). When the kernel refuses
    (EPERM: no right to create the namespace; ENOSPC: a namespace limit; EINVAL, ENOSYS: too old)
    OSError is raised in the parent and no child exists.
    """
    nr = _NR_CLONE3.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"clone3: syscall number unknown on {os.uname().machine}")
    threads = _thread_count()
    if threads != 1:
        raise RuntimeError(f"clone3 from Python needs a single-threaded parent; this process has {threads} threads")
    if cgroup_fd is not None:
        flags |= CLONE_INTO_CGROUP
    args = _CloneArgs(flags=flags, exit_signal=int(signal.SIGCHLD), cgroup=0 if cgroup_fd is None else cgroup_fd)
    sys.audit("os.fork")
    _before_fork()
    pid = _syscall(nr, byref(args), sizeof(args))
    if pid == 0:
        _after_fork_child()
        return 0
    err = get_errno()
    _after_fork_parent()
    if pid < 0:
        raise OSError(err, f"clone3({flag_names(flags)}) failed: {errno.errorcode.get(err, err)}: {os.strerror(err)}")
    return pid


def flag_names(flags: int) -> str:
    """"CLONE_NEWPID|CLONE_INTO_CGROUP" for error messages."""
    names = [n for n, f in (("CLONE_NEWUSER", CLONE_NEWUSER), ("CLONE_NEWPID", CLONE_NEWPID),
                            ("CLONE_INTO_CGROUP", CLONE_INTO_CGROUP)) if flags & f]
    return "|".join(names) or "0"
