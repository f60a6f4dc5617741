"""Syscall groups as data: name, one line of help, members and @group references (after systemd's table).

Members are kernel syscall names. A name missing from an architecture's table (the legacy x86_64
calls such as `open` or `fork`, which aarch64 never had) is skipped for that architecture; the
table tests check every member exists on at least one architecture and every name outside
`X86_64_ONLY` exists on both. Syscalls whose arguments are checked (clone, socket, ioctl, the send
family…) are not members of any group: `compile.py` writes their rules.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    name: str
    help: str
    members: tuple[str, ...]


def _g(name: str, help: str, members: str) -> Group:
    return Group(name, help, tuple(sorted(members.split())))


GROUPS: dict[str, Group] = {g.name: g for g in (
    _g("@basic-io", "read, write and close file descriptors the process already has",
       "close close_range dup dup2 dup3 fcntl lseek pread64 preadv preadv2 pwrite64 pwritev "
       "pwritev2 read readv write writev"),
    _g("@clock", "read clocks and sleep (never set them)",
       "clock_getres clock_gettime clock_nanosleep getitimer gettimeofday nanosleep setitimer "
       "time timer_create timer_delete timer_getoverrun timer_gettime timer_settime "
       "timerfd_create timerfd_gettime timerfd_settime"),
    _g("@default", "what every process needs to start, run and exit",
       "@basic-io @memory @poll @process-info @self-confine @signal @sync "
       "arch_prctl execve execveat exit exit_group restart_syscall"),
    _g("@file-read", "open, stat and read files and directories (Landlock decides which)",
       "access chdir faccessat faccessat2 fadvise64 fchdir fgetxattr file_getattr flistxattr flock "
       "fstat fstatfs getcwd getdents getdents64 getxattr getxattrat inotify_add_watch "
       "inotify_init inotify_init1 inotify_rm_watch lgetxattr listxattr listxattrat llistxattr "
       "lstat newfstatat open openat openat2 readahead readlink readlinkat stat statfs statx"),
    _g("@file-write", "create, change and remove files and directories (Landlock decides which)",
       "chmod chown creat fallocate fchmod fchmodat fchmodat2 fchown fchownat fdatasync "
       "file_setattr fremovexattr fsetxattr fsync ftruncate futimesat lchown link linkat "
       "lremovexattr lsetxattr mkdir mkdirat mknod mknodat removexattr removexattrat rename "
       "renameat renameat2 rmdir setxattr setxattrat symlink symlinkat sync sync_file_range "
       "syncfs truncate umask unlink unlinkat utime utimensat utimes"),
    _g("@file-transfer", "copy between file descriptors inside the kernel",
       "copy_file_range sendfile splice tee vmsplice"),
    _g("@memory", "allocate, map and protect memory",
       "brk madvise map_shadow_stack membarrier memfd_create mincore mlock mlock2 mlockall mmap mprotect "
       "mremap mseal msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect"),
    _g("@network-io", "use sockets the process may create (seccomp checks socket(); Landlock the ports)",
       "accept accept4 bind connect getpeername getsockname getsockopt listen recvfrom recvmmsg "
       "recvmsg setsockopt shutdown"),
    _g("@poll", "wait for events on file descriptors",
       "epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 "
       "pipe pipe2 poll ppoll pselect6 select"),
    _g("@process", "create child processes and wait for them",
       "fork getpgid getpgrp pidfd_open setpgid setsid vfork wait4 waitid"),
    _g("@process-info", "read the process's own identity, limits and scheduling",
       "capget getcpu getegid geteuid getgid getgroups getpgid getpgrp getpid getppid getpriority "
       "getresgid getresuid getrlimit getrusage getsid gettid getuid prctl prlimit64 "
       "sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr "
       "sched_getparam sched_getscheduler sched_rr_get_interval sysinfo times uname"),
    _g("@random", "read the kernel's random number generator",
       "getrandom"),
    _g("@self-confine", "let the workload confine itself further (seccomp, Landlock, no_new_privs)",
       "landlock_add_rule landlock_create_ruleset landlock_restrict_self seccomp"),
    _g("@signal", "handle signals; sending them outside the sandbox is scoped by Landlock",
       "alarm kill pause pidfd_send_signal rt_sigaction rt_sigpending rt_sigprocmask "
       "rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo sigaltstack "
       "signalfd signalfd4 tgkill tkill"),
    _g("@sync", "futexes, robust lists and restartable sequences (threads and locks)",
       "futex futex_requeue futex_wait futex_waitv futex_wake get_robust_list rseq sched_yield "
       "set_robust_list set_tid_address"),
)}

# Names only the x86_64 table has (legacy calls aarch64 never got, and x86-specific ones).
X86_64_ONLY = frozenset(
    "access alarm arch_prctl chmod chown creat dup2 epoll_create epoll_wait eventfd fork futimesat "
    "getdents getpgrp inotify_init lchown link lstat mkdir mknod open pause pipe poll readlink "
    "rename rmdir select signalfd stat symlink time unlink utime utimes vfork".split()
)

# Never granted by any capability, with the reason an audit record gives.
NEVER: dict[str, str] = {}
for _names, _why in (
    ("io_uring_setup io_uring_enter io_uring_register",
     "io_uring operations bypass seccomp: no capability grants io_uring"),
    ("ptrace process_vm_readv process_vm_writev pidfd_getfd kcmp",
     "debugging or reading other processes is never granted"),
    ("bpf perf_event_open userfaultfd",
     "kernel attack surface (eBPF, perf, userfaultfd) is never granted"),
    ("keyctl add_key request_key", "the kernel keyring is not namespaced: never granted"),
    ("mount umount2 pivot_root chroot fsopen fsconfig fsmount fspick move_mount open_tree "
     "open_tree_attr mount_setattr statmount listmount",
     "the mount API is never granted"),
    ("unshare setns", "creating or joining namespaces is never granted"),
    ("kexec_load kexec_file_load reboot init_module finit_module delete_module swapon swapoff "
     "acct quotactl quotactl_fd iopl ioperm syslog vhangup",
     "host administration is never granted"),
    ("open_by_handle_at name_to_handle_at",
     "file handles bypass path checks (the 'shocker' escape): never granted"),
    ("settimeofday clock_settime clock_adjtime adjtimex",
     "setting the clock is never granted"),
    ("setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capset",
     "changing credentials is never granted"),
    ("personality", "personality flags can weaken ASLR and W^X: never granted"),
    ("lookup_dcookie nfsservctl uselib ustat sysfs _sysctl",
     "obsolete calls are never granted"),
    ("fanotify_init fanotify_mark", "filesystem-wide monitoring is never granted"),
    ("migrate_pages move_pages mbind set_mempolicy get_mempolicy set_mempolicy_home_node",
     "NUMA placement of other memory is never granted"),
    ("sched_setaffinity sched_setattr sched_setparam sched_setscheduler setpriority ioprio_set",
     "changing scheduling is never granted (use limits.cpu)"),
    ("lsm_set_self_attr", "changing the process's LSM attributes is never granted"),
):
    for _n in _names.split():
        NEVER[_n] = _why


def expand(names: tuple[str, ...] | list[str], _seen: frozenset[str] = frozenset()) -> set[str]:
    """Syscall names of a list of members and @group references (cycles raise ValueError)."""
    out: set[str] = set()
    for name in names:
        if name.startswith("@"):
            if name in _seen:
                raise ValueError(f"syscall group cycle through {name}")
            out |= expand(GROUPS[name].members, _seen | {name})
        else:
            out.add(name)
    return out
