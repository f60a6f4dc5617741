"""Launch stage, child side: the workload's steps between fork and execve, in order, in one flat function.

Everything run_child() touches was prepared by the parent (paths opened, rules added, the BPF
program copied into C memory, argv and envp built as C arrays): the child imports nothing, opens
nothing but /proc/self files, and reports a failure as "step errno call" on a close-on-exec pipe
before _exit(125). EOF on that pipe tells the parent the execve happened.

A supervised run (audit, complain mode: the seccomp filter has a listener the parent serves) splits
the child in two at INIT_FORK, so that the whole sandbox dies with its supervisor:
- C, started by clone3(CLONE_NEWPID) (launch.fork.clone), is PID 1 of the sandbox's PID namespace. It
  runs every step up to and including Landlock, forks the workload W, and stays as a minimal init
  (_serve_as_init): it reaps every process (orphans are reparented to it), and when W exits it
  writes W's raw wait status (4 bytes, little-endian; then the peak RSS in KiB of what it reaped,
  8 bytes) on the status pipe and exits. PR_SET_PDEATHSIG kills C when the supervisor dies, and when
  a namespace's init dies the kernel SIGKILLs every other process in it: the workload and everything
  it started, whatever process group or session.
- W (pid 2 in the namespace: the workload sees getpid() == 2 and getppid() == 1) installs seccomp,
  hands the listener over, execs.
C keeps the default disposition for every signal and installs no handler: as a namespace's init it
then receives no signal at all except SIGKILL/SIGSTOP from the supervisor's namespace, so a
forwarded SIGTERM to the process group reaches W (and its group) and not C, and nothing inside the
sandbox can signal C. C is not under the seccomp filter, so it makes itself non-dumpable: without
CAP_SYS_PTRACE (dropped at CAPS) nothing in the sandbox can ptrace it or open its /proc/PID/mem.
/proc is the host's: the workload's /proc/self is right, but /proc/<getpid()> names another process.
"""

# ruff: noqa: E702 - run_child() keeps each step on one line so the order reads top to bottom
from __future__ import annotations

from sandboxer.launch import libc
import os
import resource
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)

from sandboxer.launch import kernel
from sandboxer.mechanisms.landlock.apply import restrict_self
from sandboxer.mechanisms.netns.apply import enter_netns, map_own_ids
from sandboxer.mechanisms.seccomp.apply import PreparedFilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, NoReturn

# Step numbers (sent over the pipe) and the call each one is named after in error messages.
SETSID, PDEATHSIG, SIGNALS, ENVIRONMENT, STDIO, CLOSE_FDS, CGROUP, PIDNS, NETNS, RLIMITS, CAPS, NO_NEW_PRIVS, \
    LANDLOCK, INIT_FORK, SECCOMP, HANDOFF, EXECVE = range(17)
STEP_CALLS = (
    "setsid()",
    "prctl(PR_SET_PDEATHSIG)",
    "resetting signal dispositions and mask",
    "building the environment",
    "dup2(/dev/null) over ungranted stdio",
    "close_range()",
    "joining the cgroup leaf (write cgroup.procs)",
    "mapping the uid and gid in the PID namespace's user namespace (uid_map, gid_map)",
    "entering the network namespace",
    "setrlimit()",
    "dropping capabilities",
    "prctl(PR_SET_NO_NEW_PRIVS)",
    "landlock_restrict_self()",
    "fork() of the workload by the PID namespace's init",
    "seccomp(SECCOMP_SET_MODE_FILTER)",
    "handing the seccomp listener to the supervisor",
    "execve()",
)


class Prepared:
    """Everything the child needs, computed by the parent before fork. Fields are plain ints, bytes and C arrays."""

    __slots__ = (
        "parent_pid", "err_fd", "exe", "argv", "envp", "close_ranges", "keep_fds", "devnull_fd", "null_stdio",
        "cgroup_procs_fds", "netns_mode", "rootless", "uid", "gid", "rlimits", "cap_last_cap",
        "drop_bounding", "landlock_fd", "landlock_flags", "seccomp", "body",
        "handoff", "handoff_fds", "pidns", "own_userns", "status_fd", "in_place",
    )

    def __init__(
        self,
        parent_pid: int,
        err_fd: int,  # write end of the close-on-exec error pipe
        exe: bytes,  # absolute path to execve
        argv: libc.Array,  # char *[] (kernel.cstring_array)
        envp: libc.Array,  # char *[]: exactly the granted environment
        close_ranges: tuple[tuple[int, int], ...] = (),  # fds > 2 to close, around the fds kept below
        keep_fds: tuple[int, ...] = (),  # --keep-fd: made inheritable and left open
        devnull_fd: int = -1,  # /dev/null, opened by the parent, for ungranted stdio
        null_stdio: tuple[int, ...] = (),  # 0, 1, 2 when wasi:cli/stdin, stdout, stderr are not granted
        cgroup_procs_fds: tuple[int, ...] = (),  # cgroup.procs files the child writes "0" to (joins itself)
        netns_mode: str = "host",
        rootless: bool = False,
        uid: int = 0,
        gid: int = 0,
        rlimits: tuple[tuple[int, int, int], ...] = (),  # (resource.RLIMIT_*, soft, hard)
        cap_last_cap: int = 40,
        drop_bounding: bool = True,
        landlock_fd: int = -1,
        landlock_flags: int = 0,
        seccomp: PreparedFilter | None = None,
        body: Callable[[], int] | None = None,  # run in place of execve (the wasm host); returns the exit code
    ) -> None:
        self.parent_pid = parent_pid
        self.err_fd = err_fd
        self.exe = exe
        self.argv = argv
        self.envp = envp
        self.close_ranges = close_ranges
        self.keep_fds = keep_fds
        self.devnull_fd = devnull_fd
        self.null_stdio = null_stdio
        self.cgroup_procs_fds = cgroup_procs_fds
        self.netns_mode = netns_mode
        self.rootless = rootless
        self.uid = uid
        self.gid = gid
        self.rlimits = rlimits
        self.cap_last_cap = cap_last_cap
        self.drop_bounding = drop_bounding
        self.landlock_fd = landlock_fd
        self.landlock_flags = landlock_flags
        self.seccomp = seccomp
        self.body = body
        # A supervised run (audit, complain mode): the filter has a user-notification listener, which
        # handoff(listener, *handoff_fds) gives to the parent before exec (audit.notify.child_handoff).
        self.handoff: Callable[[int, int, int], None] | None = None
        self.handoff_fds: tuple[int, int] = (-1, -1)  # (report write end, ack read end)
        # A supervised run: this process is init of a new PID namespace (clone3 CLONE_NEWPID) and forks
        # the workload at INIT_FORK; rootless, clone3 also made its user namespace (own_userns), whose
        # maps PIDNS writes. status_fd: write end of the pipe for the workload's wait status.
        self.pidns = False
        self.own_userns = False
        self.status_fd = -1
        # The wasm host run in place (launch.run decides): the launcher itself takes the steps and runs the
        # body, with no fork and no parent left to supervise. SETSID and PDEATHSIG are skipped (it keeps
        # the caller's process group and terminal, so Ctrl-C still reaches it; TIOCSTI stays refused by
        # every plan's filter), and a failure is reported by calling in_place(report) instead of the pipe.
        self.in_place: Callable[[bytes], None] | None = None


def fd_ranges_to_close(keep: tuple[int, ...] | list[int] | set[int], first: int = 3) -> tuple[tuple[int, int], ...]:
    """The ranges [lo, hi] of fds >= `first` that are not in `keep` (the last range ends at ~0U)."""
    ranges = []
    lo = first
    for fd in sorted(k for k in set(keep) if k >= first):
        if fd > lo:
            ranges.append((lo, fd - 1))
        lo = fd + 1
    ranges.append((lo, 0xFFFFFFFF))
    return tuple(ranges)


def _close_fds(p: Prepared) -> None:
    for lo, hi in p.close_ranges:
        kernel.close_range(lo, hi)
    for fd in p.keep_fds:
        os.set_inheritable(fd, True)


def _join_cgroup(p: Prepared) -> None:
    # "0" is the writing process itself (cgroup-v1.rst, cgroup-v2.rst); the fds were opened by the parent.
    for fd in p.cgroup_procs_fds:
        os.write(fd, b"0")


def _set_rlimits(p: Prepared) -> None:
    for res, soft, hard in p.rlimits:
        kernel.setrlimit(res, soft, hard)


def _report(p: Prepared, step: int, err: int, call: object) -> None:
    detail = call.encode() if isinstance(call, str) else b""
    try:
        if p.in_place is not None:
            p.in_place(b"%d %d %s" % (step, err, detail))
        else:
            os.write(p.err_fd, b"%d %d %s" % (step, err, detail))
    except Exception:  # noqa: BLE001 - the parent is gone (or stderr is); nothing left to tell
        pass


def _run_body(p: Prepared) -> NoReturn:
    """In place of execve: close the report pipe (the parent reads EOF, as after a close-on-exec), run p.body, _exit.

    The body returns the exit code; an exception in it is exit 125. It never unwinds into the caller.
    """
    code = 125
    try:
        if p.err_fd >= 0:
            os.close(p.err_fd)
        # No execve closes the launcher's close-on-exec fds here (Landlock ruleset, cgroup.procs, pipes):
        # close every fd but stdio and the --keep-fd ones, so a runtime bug finds none.
        for lo, hi in fd_ranges_to_close(p.keep_fds):
            kernel.close_range(lo, hi)
        code = int(p.body())
    except BaseException:  # noqa: BLE001 - the body reports its own failures; anything else is 125
        pass
    os._exit(code)


def _fork_workload(p: Prepared) -> None:
    """INIT_FORK: fork the workload W, which returns to run the remaining steps; this process (init) never returns."""
    # Init runs without the seccomp filter: it is not dumpable from before the fork, so there is no moment
    # when the workload could open its /proc/PID/mem. The workload makes itself dumpable again: the
    # supervisor copies its listener with pidfd_getfd, a ptrace-mode check (its mm was made outside any
    # user namespace the supervisor owns, so rootless it would otherwise be refused).
    kernel.set_dumpable(False)
    workload = os.fork()
    if workload == 0:
        kernel.set_dumpable(True)
        os.close(p.status_fd)  # only init reports W's status; W could forge it otherwise (the wasm body never execs)
        return
    _serve_as_init(p, workload)


def _serve_as_init(p: Prepared, workload: int) -> NoReturn:
    """PID 1 of the sandbox: reap every child until W ends, write W's wait status, exit (the kernel kills the rest).

    Every fd but the status pipe is closed first: the error and hand-over pipes must read EOF when W
    dies (init outlives it briefly), and init must not keep the workload's stdio open.
    """
    code = 125
    try:
        if p.status_fd > 0:
            kernel.close_range(0, p.status_fd - 1)
        kernel.close_range(p.status_fd + 1, 0xFFFFFFFF)
        while True:
            pid, status = os.waitpid(-1, 0)  # orphans of the namespace come here too; EINTR is retried
            if pid == workload:
                break
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # what our own status says if the pipe is lost
        # With the status, the peak RSS of what init reaped (W, its descendants, orphans): wait4(init)'s
        # own ru_maxrss would be init's, a whole copy of the launcher's interpreter.
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        os.write(p.status_fd, status.to_bytes(4, "little") + maxrss.to_bytes(8, "little"))
    except BaseException:  # noqa: BLE001 - init must end in _exit (and so end the namespace), never unwind
        pass
    os._exit(code & 0xFF)


def run_child(p: Prepared) -> NoReturn:
    """The child's side of the launch, one line per step, in the order the design fixes; never returns.

    Also run by the launcher itself for a wasm host run in place (p.in_place; see Prepared)."""
    step = SETSID
    try:
        step = SETSID;       os.setsid() if p.in_place is None else None
        step = PDEATHSIG;    kernel.set_pdeathsig(signal.SIGKILL, p.parent_pid, namespace_init=p.pidns) if p.in_place is None else None
        step = SIGNALS;      kernel.reset_signals()
        step = ENVIRONMENT;  envp = p.envp  # built by the parent: granted variables + --env
        step = STDIO;        [os.dup2(p.devnull_fd, fd) for fd in p.null_stdio]
        step = CLOSE_FDS;    _close_fds(p)
        step = CGROUP;       _join_cgroup(p)
        step = PIDNS;        map_own_ids(p.uid, p.gid) if p.own_userns else None  # root: nothing to map
        step = NETNS;        enter_netns(p.netns_mode, p.rootless, p.uid, p.gid, own_userns=p.own_userns)
        step = RLIMITS;      _set_rlimits(p)
        step = CAPS;         kernel.drop_capabilities(p.cap_last_cap, p.drop_bounding)
        step = NO_NEW_PRIVS; kernel.set_no_new_privs()
        step = LANDLOCK;     restrict_self(p.landlock_fd, p.landlock_flags) if p.landlock_fd >= 0 else None
        step = INIT_FORK;    _fork_workload(p) if p.pidns else None  # only the workload returns from it
        step = SECCOMP;      listener = p.seccomp.install() if p.seccomp is not None else 0
        step = HANDOFF;      p.handoff(listener, *p.handoff_fds) if p.handoff is not None else None
        step = EXECVE;       _run_body(p) if p.body is not None else kernel.execve(p.exe, p.argv, envp)
    except OSError as e:
        _report(p, step, e.errno or 0, e.filename)
    except BaseException:  # noqa: BLE001 - anything at all must end in _exit, never unwind into the caller
        _report(p, step, 0, None)
    os._exit(125)
