"""Seccomp user notification with the real kernel: hand-over, answers, memory reads, decoding, supervisor death.

Every filter is installed in a forked child; the test process is the supervisor. Needs Linux >= 5.9
(pidfd_getfd) and permission to ptrace our own children (root on the development machines).
"""

from __future__ import annotations

import errno
import os
import pickle
import select
import signal
import socket
import struct
import time

import pytest

from sandboxer.audit import notify
from sandboxer.audit.decode import decode
from sandboxer.launch import kernel
from sandboxer.mechanisms.seccomp import bpf
from sandboxer.mechanisms.seccomp.apply import prepare_filter
from sandboxer.mechanisms.seccomp.tables import x86_64

CLONE_NEWPID = 0x20000000

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="hand-written BPF uses x86_64 numbers")

NR = x86_64.SYSCALLS


def notify_on(*names: str, flags_extra: int = 0):
    """A small filter: arch guard, RET_USER_NOTIF for `names`, allow the rest."""
    ins = [(bpf.LD_W_ABS, 0, 0, bpf.OFF_ARCH), (bpf.JEQ_K, 1, 0, x86_64.AUDIT_ARCH),
           (bpf.RET_K, 0, 0, bpf.RET_KILL_PROCESS), (bpf.LD_W_ABS, 0, 0, bpf.OFF_NR)]
    for name in names:
        ins += [(bpf.JEQ_K, 0, 1, NR[name]), (bpf.RET_K, 0, 0, bpf.RET_USER_NOTIF)]
    ins.append((bpf.RET_K, 0, 0, bpf.RET_ALLOW))
    prog = b"".join(struct.pack("<HBBI", *i) for i in ins)
    return prepare_filter(prog, notify.SECCOMP_FILTER_FLAG_NEW_LISTENER | flags_extra)


class Child:
    """A forked child that installs `filt`, hands its listener over, then runs `body()`; the result
    (or the exception text) comes back pickled over a pipe the parent reads after serving."""

    def __init__(self, filt, body, *, pdeathsig: bool = False) -> None:
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
        self.res_r, res_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(report_r), os.close(ack_w), os.close(self.res_r)
                if pdeathsig == "in-pidns":
                    # kernel.set_pdeathsig() compares getppid() with the parent's pid, but as init of
                    # a new PID namespace getppid() is 0: it would _exit(125). Set it directly.
                    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
                elif pdeathsig:
                    kernel.set_pdeathsig(signal.SIGKILL, parent)
                kernel.set_no_new_privs()
                fd = filt.install()
                notify.child_handoff(fd, report_w, ack_r)
                payload = pickle.dumps(("value", body()))
            except BaseException as e:  # noqa: BLE001
                payload = pickle.dumps(("error", repr(e)))
            os.write(res_w, payload)
            os._exit(0)
        os.close(report_w), os.close(ack_r), os.close(res_w)
        try:
            self.listener = notify.parent_handoff(self.pid, report_r, ack_w)
        finally:
            os.close(report_r), os.close(ack_w)

    def serve(self, answer, timeout: float = 10.0) -> list:
        """Answer every notification with answer(notif) -> respond() kwargs until the child is done."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.listener.wait(0.2)
            if state == -1:
                break
            if state == 1 and (n := self.listener.recv()) is not None:
                seen.append(n)
                self.listener.respond(n.id, **answer(n))
        return seen

    def result(self):
        data = b""
        while chunk := os.read(self.res_r, 65536):
            data += chunk
        os.close(self.res_r)
        _, status = os.waitpid(self.pid, 0)
        self.listener.close()
        notify.forget(self.pid)
        kind, value = pickle.loads(data)
        assert kind == "value", value
        return value, status


def _errno_of(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


def test_notif_sizes_match_our_structs():
    sizes = notify.notif_sizes()
    assert sizes.seccomp_data == 64
    assert sizes.seccomp_notif >= 80 and sizes.seccomp_notif_resp >= 24


def test_eperm_continue_and_path_strings(tmp_path):
    a, b = tmp_path / "denied", tmp_path / "continued"

    def body():
        return [_errno_of(lambda: os.mkdir(a)), _errno_of(lambda: os.mkdir(b))]

    child = Child(notify_on("mkdir", "mkdirat"), body)
    paths = []

    def answer(n):
        raw = notify.read_string(n.pid, n.args[0] if n.nr == NR["mkdir"] else n.args[1])
        assert child.listener.id_valid(n.id)  # still blocked in this syscall: the read is from its memory
        paths.append(raw)
        return {"error": errno.EPERM} if raw == os.fsencode(a) else {"continue_": True}

    seen = child.serve(answer)
    value, status = child.result()
    assert value == ["EPERM", "ok"]
    assert paths == [os.fsencode(a), os.fsencode(b)]
    assert not a.exists() and b.is_dir()  # CONTINUE: the kernel really ran the second mkdir
    assert all(n.pid == child.pid and n.arch == x86_64.AUDIT_ARCH for n in seen)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_answer_with_a_value_and_id_invalid_after_answer(tmp_path):
    def body():
        return os.getppid()

    child = Child(notify_on("getppid"), body)
    ids = []

    def answer(n):
        ids.append(n.id)
        return {"val": 4242}

    child.serve(answer)
    value, _ = child.result()
    assert value == 4242
    assert len(ids) == 1


def test_decode_through_a_real_listener(tmp_path):
    target = tmp_path / "f.txt"
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    os.chdir(tmp_path)

    def body():
        fd = os.open("f.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        os.close(fd)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        r = _errno_of(lambda: s.connect(("127.0.0.1", port)))
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        r2 = _errno_of(lambda: u.connect("\0sandboxer-test-abstract"))
        return r, r2

    child = Child(notify_on("openat", "connect", "socket"), body)
    decoded = []

    def answer(n):
        d = decode(n, sock_info=notify.socket_info)
        if child.listener.id_valid(n.id):
            decoded.append(d)
        if d["name"] == "connect":
            return {"error": errno.ECONNREFUSED}
        return {"continue_": True}

    try:
        child.serve(answer)
        value, _ = child.result()
    finally:
        os.chdir("/")
        srv.close()
    assert value == ("ECONNREFUSED", "ECONNREFUSED")
    opens = [d for d in decoded if d["name"] == "openat" and d["args"].get("path") == str(target)]
    assert opens, decoded
    assert opens[0]["args"]["dirfd"] == "AT_FDCWD"
    assert opens[0]["args"]["path_raw"] == "f.txt"
    assert opens[0]["args"]["flags"] == "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
    assert opens[0]["args"]["mode"] == "0o640"
    sockets = [d["args"] for d in decoded if d["name"] == "socket"]
    assert {"family": "AF_INET", "type": "SOCK_STREAM|SOCK_CLOEXEC", "protocol": "IPPROTO_IP"} in sockets
    connects = [d["args"] for d in decoded if d["name"] == "connect"]
    assert connects[0]["family"] == "AF_INET" and connects[0]["address"] == "127.0.0.1"
    assert connects[0]["port"] == port
    assert connects[0]["socket"] == {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP"}
    assert connects[1]["family"] == "AF_UNIX" and connects[1]["abstract"] == "@sandboxer-test-abstract"


def test_execve_path_and_argv_are_read(tmp_path):
    def body():
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("/bin/true", ["true", "--sandboxer-arg"])
            finally:
                os._exit(127)
        return os.waitpid(pid, 0)[1]

    child = Child(notify_on("execve"), body)
    decoded = []

    def answer(n):
        decoded.append(decode(n))
        return {"error": errno.EACCES}

    child.serve(answer)
    value, _ = child.result()
    assert os.WEXITSTATUS(value) == 127
    assert decoded[0]["name"] == "execve"
    assert decoded[0]["args"]["path"] == "/bin/true"
    assert decoded[0]["args"]["argv"] == ["true", "--sandboxer-arg"]


def test_handoff_fails_cleanly_when_the_child_dies_first():
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os._exit(125)  # e.g. seccomp() failed: the error pipe says why, the report pipe just closes
    os.close(report_w), os.close(ack_r)
    with pytest.raises(notify.HandoffError):
        notify.parent_handoff(pid, report_r, ack_w)
    os.close(report_r), os.close(ack_w)
    os.waitpid(pid, 0)


def test_child_refuses_to_exec_without_an_ack():
    """The parent closes the ack pipe instead of acking: child_handoff raises, the child must not exec."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(report_r), os.close(ack_w)
        kernel.set_no_new_privs()
        fd = notify_on("mkdir").install()
        try:
            notify.child_handoff(fd, report_w, ack_r)
        except OSError:
            os._exit(125)
        os._exit(0)
    os.close(report_w), os.close(ack_r)
    assert len(os.read(report_r, 4)) == 4
    os.close(ack_w)  # no ack
    _, status = os.waitpid(pid, 0)
    os.close(report_r)
    assert os.WEXITSTATUS(status) == 125


def test_closing_the_listener_makes_pending_and_later_notified_calls_enosys(tmp_path):
    """Kernel behaviour (kernel/seccomp.c, seccomp_notify_release): a pending notification is
    answered -ENOSYS when the listener's last fd closes, and every later RET_USER_NOTIF syscall of
    the target returns ENOSYS at once (the filter has no listener any more). The target keeps
    running: a closed listener alone does NOT stop the workload."""
    def body():
        out = [_errno_of(lambda: os.mkdir(tmp_path / "a"))]  # pending when the listener closes
        out += [_errno_of(lambda: os.mkdir(tmp_path / f"b{i}")) for i in range(3)]  # after
        return out

    child = Child(notify_on("mkdir"), body)
    assert child.listener.wait(5) == 1
    n = child.listener.recv()
    assert n is not None
    child.listener.close()  # the supervisor goes away without answering
    data = b""
    while chunk := os.read(child.res_r, 65536):
        data += chunk
    os.waitpid(child.pid, 0)
    assert pickle.loads(data) == ("value", ["ENOSYS"] * 4)
    assert not any(tmp_path.iterdir())


def test_respond_to_a_dead_target_is_not_an_error(tmp_path):
    def body():
        os.mkdir(tmp_path / "x")

    child = Child(notify_on("mkdir"), body)
    assert child.listener.wait(5) == 1
    n = child.listener.recv()
    os.kill(child.pid, signal.SIGKILL)
    os.waitpid(child.pid, 0)
    assert child.listener.id_valid(n.id) is False
    assert child.listener.respond(n.id, error=errno.EPERM) is False
    assert notify.read_string(n.pid, n.args[0]) is None  # the process and its memory are gone
    assert child.listener.wait(1) == -1  # POLLHUP: no task uses the filter any more
    child.listener.close()
    os.close(child.res_r)


def test_wait_killable_recv_is_accepted():
    """SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (5.19): until the supervisor has received a
    notification, only a fatal signal interrupts the target (no restart, no duplicate record)."""
    def body():
        return os.getppid()

    child = Child(notify_on("getppid", flags_extra=notify.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV), body)
    seen = child.serve(lambda n: {"val": 7})
    value, _ = child.result()
    assert value == 7 and len(seen) == 1


def _supervisor_and_workload(tmp_path, pdeathsig: bool, grandchild: bool, pidns: bool = False):
    """Fork a supervisor S that forks the workload W (filter on mkdir, PR_SET_PDEATHSIG=SIGKILL when
    `pdeathsig`), serves one notification, then blocks; W (or its child G) mkdirs forever.
    Returns (S pid, pid of the looping process, report read end)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    sup = os.fork()
    if sup == 0:
        try:
            os.close(r)
            filt = notify_on("mkdir")

            def body():
                looper = os.getpid()
                if grandchild and (looper := os.fork()) != 0:
                    if not pidns:  # inside the namespace the pid means nothing to the test
                        os.write(w, struct.pack("=i", looper))
                    while True:
                        time.sleep(1)
                if not grandchild:
                    os.write(w, struct.pack("=i", looper))
                i = 0
                while True:
                    err = _errno_of(lambda: os.mkdir(tmp_path / f"m{i}"))
                    os.write(w, err.encode()[:6].ljust(6))
                    i += 1
                    time.sleep(0.02)

            if pidns:
                kernel.unshare(CLONE_NEWPID)  # the next child is init of a new PID namespace
            child = Child(filt, body, pdeathsig="in-pidns" if pidns and pdeathsig else pdeathsig)
            if pidns:
                os.write(w, struct.pack("=i", child.pid))
            child.serve(lambda n: {"error": errno.EPERM}, timeout=60)
        finally:
            os._exit(0)
    os.close(w)
    looper = struct.unpack("=i", os.read(r, 4))[0]
    if pidns:  # the workload's pid as seen from here; find its child through /proc (our namespace)
        workload = looper
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{workload}/task/{workload}/children") as f:
                kids = f.read().split()
            if kids:
                return sup, int(kids[0]), r
            time.sleep(0.01)
        raise AssertionError("the workload did not fork")
    return sup, looper, r


def _alive(pid: int) -> bool:
    pidfd = notify.pidfd_open(pid)
    try:
        return not select.select([pidfd], [], [], 0.5)[0]  # a pidfd is readable once the process exited
    finally:
        os.close(pidfd)


def test_supervisor_death_kills_a_workload_with_pdeathsig(tmp_path):
    sup, workload, r = _supervisor_and_workload(tmp_path, pdeathsig=True, grandchild=False)
    try:
        assert os.read(r, 6).strip() == b"EPERM"
        os.kill(sup, signal.SIGKILL)
        os.waitpid(sup, 0)
        assert not _alive(workload)
    finally:
        os.close(r)


def test_supervisor_death_leaves_grandchildren_running_with_enosys(tmp_path):
    """PR_SET_PDEATHSIG is not inherited across fork: a process the workload started outlives the
    supervisor, unsupervised, its notified syscalls answered ENOSYS. The launcher must therefore kill
    the whole tree (PID namespace with the workload as init, or cgroup.kill from a watchdog): see
    the report in sandboxer/audit/notify.py."""
    sup, grandchild, r = _supervisor_and_workload(tmp_path, pdeathsig=True, grandchild=True)
    try:
        assert os.read(r, 6).strip() == b"EPERM"
        os.kill(sup, signal.SIGKILL)
        os.waitpid(sup, 0)
        # The workload (the grandchild's parent) died of PDEATHSIG; the grandchild goes on.
        results = set()
        deadline = time.monotonic() + 5
        while "ENOSYS" not in results and time.monotonic() < deadline:
            results.add(os.read(r, 6).strip().decode())
        assert "ENOSYS" in results
        assert _alive(grandchild)
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(r)


def test_a_pid_namespace_takes_the_whole_tree_down(tmp_path):
    """The fix for the test above: the workload as init (pid 1) of its own PID namespace, with
    PR_SET_PDEATHSIG. Supervisor dies → init gets SIGKILL → the kernel kills every process of the
    namespace (zap_pid_ns_processes), grandchildren included."""
    sup, grandchild, r = _supervisor_and_workload(tmp_path, pdeathsig=True, grandchild=True, pidns=True)
    try:
        assert os.read(r, 6).strip() == b"EPERM"  # served before the supervisor dies
        os.kill(sup, signal.SIGKILL)
        os.waitpid(sup, 0)
        assert not _alive(grandchild)
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(r)


def test_socket_info_of_a_thread():
    """Notifications carry thread ids; socket_info() reaches the fd table through a thread pidfd."""
    import threading

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out = {}

    def run():
        out["info"] = notify.socket_info(threading.get_native_id(), s.fileno())

    th = threading.Thread(target=run)
    th.start()
    th.join()
    s.close()
    assert out["info"] == (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    r, w = os.pipe()
    assert notify.socket_info(os.getpid(), r) is None  # not a socket
    os.close(r), os.close(w)
