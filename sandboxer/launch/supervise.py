"""Launch stage, parent side after fork: forward signals, wait for the exec report, enforce the wall time, reap.

The workload runs in its own session (setsid), so its process group id is its pid: signals are
forwarded to that group, and the wall-time kill and the final clean-up take the whole group (and
the cgroup leaf, through the `kill` callback). The leader is reaped last: while it is a zombie its
pid cannot be reused, so killpg(pid) can never hit an unrelated group.

In a supervised run `pid` is the init of the sandbox's PID namespace (launch/sequence.py), which
forked the workload: the same group and pidfd logic applies to it (the workload is in its group, and
when init exits every process of the namespace is already dead). The workload's own wait status
comes on the status pipe init writes; wait4(init) gives the rusage (init reaped the workload and
every orphan, and the kernel reaped the rest, so it covers them all).
"""

from __future__ import annotations

import os
import resource
import select
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the workload's process group, or to the workload alone before it called setsid()."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class SignalForwarder:
    """Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT from the launcher to the workload.

    block() runs before fork: the signals stay blocked until attach() knows the pid, and the child
    inherits the mask, which it resets only after its handlers are back to SIG_DFL (so a signal
    that arrives meanwhile kills it instead of running the parent's handler in the child).
    """

    def __init__(self) -> None:
        self.pid = 0
        self.received: list[int] = []
        self._old_handlers: dict[int, object] = {}
        self._old_mask: set[int] | None = None

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if self.pid > 0:
            signal_group(self.pid, signum)

    def block(self) -> None:
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            for sig in FORWARDED:
                self._old_handlers[sig] = signal.signal(sig, self._handle)
        except ValueError:
            pass  # not the main thread: Python delivers signals to the main thread only; nothing to forward

    def attach(self, pid: int) -> None:
        """The workload's pid is known (parent, after fork): let pending and new signals through."""
        self.pid = pid
        self._unblock()

    def _unblock(self) -> None:
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None

    def restore(self) -> None:
        self._unblock()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()
        self.pid = 0


class Outcome:
    """How the child ended: its wait status and rusage, the failure it reported before exec (if any)."""

    def __init__(
        self,
        status: int,
        rusage: object,
        report: bytes = b"",  # "step errno call" from the error pipe; empty when execve happened
        timed_out: bool = False,
        duration: float = 0.0,
    ) -> None:
        self.status = status
        self.rusage = rusage
        self.report = report
        self.timed_out = timed_out
        self.duration = duration

    @property
    def exit_code(self) -> int:
        """The workload's exit code, or 128 + n when it died of signal n (as shells report it)."""
        code = os.waitstatus_to_exitcode(self.status)
        return 128 - code if code < 0 else code


def _remaining(deadline: float | None) -> int:
    """poll() timeout in ms until `deadline` (monotonic), -1 for none."""
    if deadline is None:
        return -1
    return max(0, int((deadline - time.monotonic()) * 1000) + 1)


def _wait_readable(fd: int, deadline: float | None) -> bool:
    """Wait until `fd` is readable (or hung up); False when the deadline passed first."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        timeout = _remaining(deadline)
        if poller.poll(timeout):  # a forwarded signal interrupts and PEP 475 retries with the same timeout
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def supervise(
    pid: int,
    err_fd: int,
    *,
    deadline: float | None,
    kill: Callable[[], None],
    started: float,
    listener: Any = None,
    serve: Callable[[Any], None] | None = None,
    status_fd: int = -1,
    watch: tuple[tuple[int, Callable[[], None]], ...] = (),
) -> Outcome:
    """Wait for the exec report and the workload's end (or the deadline), serving seccomp notifications
    meanwhile; reap it; return how it ended.

    One poll loop over three fds: the error pipe (a report, or EOF once execve happened), the
    workload's pidfd (readable when it has exited; it stays unreaped until wait4 below) and, for a
    supervised run, the seccomp `listener`, whose notifications `serve(listener)` answers. Serving
    starts before the exec report because in complain mode the workload's own execve is notified.
    `kill` SIGKILLs everything in the sandbox (process group and cgroup leaf). The caller has closed
    its copy of the pipe's write end.

    `watch`: more (fd, callback) pairs; the callback runs whenever its fd is readable (the kernel
    audit feed of a supervised run).
    `status_fd` (supervised run): the read end of the status pipe of the namespace's init (`pid`); the
    workload's wait status read from it replaces init's own, which stays the answer when init died
    without writing it (SIGKILLed by the wall-time kill, say), and so does the peak RSS init reports.
    """
    timed_out = False
    report: bytes | None = None
    pidfd = os.pidfd_open(pid)  # Linux 5.3
    poller = select.poll()
    poller.register(err_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    poller.register(pidfd, select.POLLIN)
    lfd = -1
    if listener is not None and serve is not None:
        lfd = listener.fileno()
        poller.register(lfd, select.POLLIN)
    callbacks = dict(watch)
    for wfd in callbacks:
        poller.register(wfd, select.POLLIN)
    try:
        exited = False
        while not exited:
            events = poller.poll(_remaining(deadline))  # PEP 475: retried after forwarded signals
            # On every pass, not only on a timeout: a workload that keeps the listener busy with refused
            # calls must not outlive its wall time.
            if deadline is not None and time.monotonic() >= deadline:
                timed_out, deadline = True, None
                kill()  # then wait for the exit it causes
            if not events:
                continue
            for fd, ev in events:  # in registration order: the report before the exit
                if fd == err_fd:
                    report = os.read(err_fd, 4096)
                    poller.unregister(err_fd)
                elif fd == lfd:
                    if ev & select.POLLIN:
                        serve(listener)  # type: ignore[misc]
                    else:  # POLLHUP: no task uses the filter any more
                        poller.unregister(lfd)
                elif fd == pidfd:
                    exited = True
                elif fd in callbacks:
                    callbacks[fd]()
    finally:
        os.close(pidfd)
    if report is None:
        report = b"" if timed_out else os.read(err_fd, 4096)  # the child is gone: data or EOF, no wait
    if not report:
        # The sandbox ends with its workload: background processes it left in its group go too.
        signal_group(pid, signal.SIGKILL)
    _, status, rusage = os.wait4(pid, 0)
    if status_fd >= 0:
        data = os.read(status_fd, 12)  # init is gone and we closed our write end: data or EOF, no wait
        if len(data) == 12:
            status = int.from_bytes(data[:4], "little")
            # init's own peak RSS (a copy of the launcher) is not the workload's: take the peak of what it reaped
            fields = list(rusage)
            fields[2] = int.from_bytes(data[4:], "little")  # ru_maxrss
            rusage = resource.struct_rusage(fields)
    return Outcome(status, rusage, report, timed_out, time.monotonic() - started)
