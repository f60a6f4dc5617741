"""Launch stage: fork the workload's process directly into its cgroup2 leaf with clone3(CLONE_INTO_CGROUP).

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
The call goes through ctypes.PyDLL, which keeps the GIL held across the syscall, so the child
returns into Python already holding it, as after os.fork().
"""

from __future__ import annotations

import ctypes
import errno
import os
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)
import sys

CLONE_INTO_CGROUP = 0x200000000
_NR_CLONE3 = {"x86_64": 435, "aarch64": 435}  # asm-generic number, the same on both


class _CloneArgs(ctypes.Structure):
    # struct clone_args, CLONE_ARGS_SIZE_VER2 = 88 bytes (include/uapi/linux/sched.h)
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
            "stack_size", "tls", "set_tid", "set_tid_size", "cgroup",
        )
    ]


_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL is not released around the call
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t]
_api = ctypes.pythonapi
for _fn in (_api.PyOS_BeforeFork, _api.PyOS_AfterFork_Child, _api.PyOS_AfterFork_Parent):
    _fn.restype, _fn.argtypes = None, []


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
    nr = _NR_CLONE3.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"clone3: syscall number unknown on {os.uname().machine}")
    threads = _thread_count()
    if threads != 1:
        raise RuntimeError(f"fork_into_cgroup needs a single-threaded parent; this process has {threads} threads")
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=int(signal.SIGCHLD), cgroup=cgroup_fd)
    sys.audit("os.fork")
    _api.PyOS_BeforeFork()
    pid = _syscall(nr, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3(CLONE_INTO_CGROUP) failed: {errno.errorcode.get(err, err)}: {os.strerror(err)}")
    return pid
