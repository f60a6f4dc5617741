"""Landlock against the real kernel: each grant allows its operation and denies the neighbouring one.

Rulesets are prepared in the test process; no_new_privs and restrict_self happen only in forked
children (tests/forkrun.py). Everything a child calls after restrict_self is imported up here.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from sandboxer.mechanisms.landlock.apply import (
    LandlockPathError,
    prepare_ruleset,
    restrict_self,
    set_no_new_privs,
)
from sandboxer.mechanisms.landlock.probe import probe_landlock
from sandboxer.mechanisms.landlock.rights import KERNEL_FOR_ABI, RESTRICT_FLAGS
from tests.forkrun import in_child

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs the integration tests as root)"),
]

HOST = probe_landlock()
READ = ["read_dir", "read_file"]


def require_abi(abi: int) -> None:
    """Skip (or fail, when SANDBOXER_KERNEL_SKIPS_FAIL=1 as in CI) if the kernel is older than `abi`."""
    if HOST.abi >= abi:
        return
    why = f"needs Landlock ABI {abi} (Linux {KERNEL_FOR_ABI[abi]}); this kernel has ABI {HOST.abi}"
    why += f" ({HOST.reason})" if HOST.reason else ""
    if os.environ.get("SANDBOXER_KERNEL_SKIPS_FAIL") == "1":
        pytest.fail(why)
    pytest.skip(why)


def section(abi: int, **parts: Any) -> dict[str, Any]:
    """A plan `landlock` section with empty defaults."""
    base = {"abi": abi, "handled_fs": [], "handled_net": [], "scoped": [], "paths": [], "ports": []}
    return base | {"restrict_flags": []} | parts


def rule(path: Path | str, *access: str) -> dict[str, Any]:
    return {"path": str(path), "access": sorted(access), "because": ["test"]}


def attempt(op: Callable[[], object]) -> str:
    """'OK', or the errno name the operation failed with."""
    try:
        op()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "OK"


def confined(sec: dict[str, Any], fn: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Prepare `sec` here, then run fn() in a forked child under it; fn's result comes back."""
    with prepare_ruleset(sec, kernel_abi=HOST.abi) as ruleset:

        def child() -> dict[str, str]:
            set_no_new_privs()
            restrict_self(ruleset.fd, ruleset.restrict_flags)
            os.close(ruleset.fd)
            return fn()

        result = in_child(child)
    assert result.ok, result.error or result
    return result.value


def read(path: Path) -> Callable[[], bytes]:
    return lambda: path.read_bytes()


def write(path: Path) -> Callable[[], int]:
    """Create or replace `path` (O_CREAT|O_TRUNC: needs `truncate` too where it is handled)."""
    return lambda: path.write_bytes(b"x")


def overwrite(path: Path) -> Callable[[], None]:
    """Write into an existing file without truncating it."""

    def op() -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)

    return op


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """Directories ro/, rw/, wo_trunc/ and other/, each holding a file f with some bytes."""
    out = {}
    for name in ("ro", "rw", "wo_trunc", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(b"data")
        out[name] = tmp_path / name
    return out


def test_read_granted_dir_ok_outside_eacces(dirs: dict[str, Path]) -> None:
    """read_file under a granted dir works; outside it, open and listing fail with EACCES."""
    require_abi(1)
    sec = section(1, handled_fs=READ, paths=[rule(dirs["ro"], *READ)])
    assert confined(
        sec,
        lambda: {
            "read in": attempt(read(dirs["ro"] / "f")),
            "list in": attempt(lambda: os.listdir(dirs["ro"])),
            "read out": attempt(read(dirs["other"] / "f")),
            "list out": attempt(lambda: os.listdir(dirs["other"])),
        },
    ) == {"read in": "OK", "list in": "OK", "read out": "EACCES", "list out": "EACCES"}


def test_rule_on_a_file_drops_directory_rights(dirs: dict[str, Path]) -> None:
    """A file rule asking for read_dir is accepted (read_dir dropped) and grants that file only."""
    require_abi(1)
    (dirs["other"] / "g").write_bytes(b"data")
    sec = section(1, handled_fs=READ, paths=[rule(dirs["other"] / "f", *READ)])
    assert confined(
        sec, lambda: {"f": attempt(read(dirs["other"] / "f")), "g": attempt(read(dirs["other"] / "g"))}
    ) == {"f": "OK", "g": "EACCES"}


def test_missing_path_is_reported_before_fork(tmp_path: Path) -> None:
    """A rule on a missing path raises LandlockPathError with the path, `at` and ENOENT."""
    require_abi(1)
    missing = dict(rule(tmp_path / "nope", *READ), at="m.yaml:3:5")
    with pytest.raises(LandlockPathError) as exc:
        prepare_ruleset(section(1, handled_fs=READ, paths=[missing]), kernel_abi=HOST.abi)
    err = exc.value
    assert (err.path, err.at, err.errno) == (missing["path"], "m.yaml:3:5", errno.ENOENT)


def test_write_read_only_dir_eacces_read_write_dir_ok(dirs: dict[str, Path]) -> None:
    """Creating or writing a file fails in a read-only dir and works in a read-write one."""
    require_abi(1)
    rw = [*READ, "make_reg", "remove_file", "write_file"]
    sec = section(1, handled_fs=rw, paths=[rule(dirs["ro"], *READ), rule(dirs["rw"], *rw)])
    assert confined(
        sec,
        lambda: {
            "create ro": attempt(write(dirs["ro"] / "new")),
            "write ro": attempt(write(dirs["ro"] / "f")),
            "read ro": attempt(read(dirs["ro"] / "f")),
            "create rw": attempt(write(dirs["rw"] / "new")),
            "write rw": attempt(write(dirs["rw"] / "f")),
        },
    ) == {
        "create ro": "EACCES",
        "write ro": "EACCES",
        "read ro": "OK",
        "create rw": "OK",
        "write rw": "OK",
    }
    assert (dirs["rw"] / "new").read_bytes() == b"x"
    assert not (dirs["ro"] / "new").exists()


def test_truncate_needs_the_truncate_right(dirs: dict[str, Path]) -> None:
    """truncate(2) fails on a read-only file and on a writable one without `truncate` (ABI 3)."""
    require_abi(3)
    sec = section(
        3,
        handled_fs=[*READ, "truncate", "write_file"],
        paths=[
            rule(dirs["ro"], *READ),
            rule(dirs["rw"], *READ, "truncate", "write_file"),
            rule(dirs["wo_trunc"], *READ, "write_file"),
        ],
    )
    assert confined(
        sec,
        lambda: {
            "truncate ro": attempt(lambda: os.truncate(dirs["ro"] / "f", 0)),
            "truncate rw": attempt(lambda: os.truncate(dirs["rw"] / "f", 0)),
            "truncate no-right": attempt(lambda: os.truncate(dirs["wo_trunc"] / "f", 0)),
            "write no-right": attempt(overwrite(dirs["wo_trunc"] / "f")),
        },
    ) == {
        "truncate ro": "EACCES",
        "truncate rw": "OK",
        "truncate no-right": "EACCES",
        "write no-right": "OK",
    }
    assert (dirs["rw"] / "f").read_bytes() == b""


def spawn_true() -> str:
    """posix_spawn /bin/true and wait: 'exit 0', or the errno name execve failed with."""
    try:
        pid = os.posix_spawn("/bin/true", ["true"], {})
    except OSError as e:
        return errno.errorcode[e.errno]
    return f"exit {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}"


def test_execute_right_allows_exec_and_its_absence_gives_eacces() -> None:
    """/bin/true runs with `execute` on /usr; with only read rights execve fails with EACCES."""
    require_abi(1)
    handled = ["execute", *READ]
    ld_cache = rule("/etc/ld.so.cache", "read_file")
    with_exec = section(1, handled_fs=handled, paths=[ld_cache, rule("/usr", *handled)])
    without = section(1, handled_fs=handled, paths=[ld_cache, rule("/usr", *READ)])
    def probe() -> dict[str, str]:
        return {"exec": spawn_true(), "read": attempt(read(Path("/bin/true")))}

    assert confined(with_exec, probe) == {"exec": "exit 0", "read": "OK"}
    assert confined(without, probe) == {"exec": "EACCES", "read": "OK"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bind(port: int) -> Callable[[], None]:
    def op() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))

    return op


def connect(port: int) -> Callable[[], None]:
    def op() -> None:
        with socket.socket() as s:
            s.connect(("127.0.0.1", port))

    return op


def test_tcp_bind_granted_port_ok_other_port_eacces() -> None:
    """bind() to the granted port works; bind() to another free port fails with EACCES (ABI 4)."""
    require_abi(4)
    granted, other = free_port(), free_port()
    sec = section(4, handled_net=["bind_tcp"], ports=[{"port": granted, "access": ["bind_tcp"]}])
    assert confined(sec, lambda: {"granted": attempt(bind(granted)), "other": attempt(bind(other))}) == {
        "granted": "OK",
        "other": "EACCES",
    }


def test_tcp_connect_granted_port_ok_other_port_eacces() -> None:
    """connect() reaches the granted listener; another live listener is refused with EACCES (ABI 4)."""
    require_abi(4)
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        granted, other = (s.getsockname()[1] for s in listeners)
        port_rule = {"port": granted, "access": ["connect_tcp"]}
        sec = section(4, handled_net=["connect_tcp"], ports=[port_rule])
        got = confined(
            sec, lambda: {"granted": attempt(connect(granted)), "other": attempt(connect(other))}
        )
        assert got == {"granted": "OK", "other": "EACCES"}
        assert attempt(connect(other)) == "OK"  # the refusal came from Landlock, not the listener
    finally:
        for s in listeners:
            s.close()


def test_signal_scope_blocks_outside_processes_only() -> None:
    """With the signal scope, kill() of an outside process fails with EPERM; kill(self) works (ABI 6)."""
    require_abi(6)
    outside = subprocess.Popen(["sleep", "30"])
    try:

        def probe() -> dict[str, str]:
            inner = os.fork()
            if inner == 0:
                signal.pause()
                os._exit(0)
            got = {
                "self": attempt(lambda: os.kill(os.getpid(), 0)),
                "self usr1": attempt(lambda: os.kill(os.getpid(), signal.SIGUSR1)),
                "same domain": attempt(lambda: os.kill(inner, signal.SIGKILL)),
                "outside": attempt(lambda: os.kill(outside.pid, 0)),
                "outside usr1": attempt(lambda: os.kill(outside.pid, signal.SIGUSR1)),
                "parent": attempt(lambda: os.kill(os.getppid(), 0)),
            }
            os.waitpid(inner, 0)
            return got

        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # inherited by the child: kill(self) is harmless
        try:
            got = confined(section(6, scoped=["signal"]), probe)
        finally:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert got == {
            "self": "OK",
            "self usr1": "OK",
            "same domain": "OK",
            "outside": "EPERM",
            "outside usr1": "EPERM",
            "parent": "EPERM",
        }
        assert outside.poll() is None  # still alive: no signal got through
    finally:
        outside.kill()
        outside.wait()


def test_abstract_unix_socket_scope_blocks_outside_sockets_only() -> None:
    """With the abstract-socket scope, connecting to one made outside fails with EPERM (ABI 6)."""
    require_abi(6)
    name = f"\0sandboxer-test-{os.getpid()}"
    outside = socket.socket(socket.AF_UNIX)
    outside.bind(name)
    outside.listen()
    try:

        def probe() -> dict[str, str]:
            inside = socket.socket(socket.AF_UNIX)
            inside.bind(name + "-inner")
            inside.listen()

            def dial(addr: str) -> Callable[[], None]:
                return lambda: socket.socket(socket.AF_UNIX).connect(addr)

            return {"outside": attempt(dial(name)), "inside": attempt(dial(name + "-inner"))}

        got = confined(section(6, scoped=["abstract_unix_socket"]), probe)
        assert got == {"outside": "EPERM", "inside": "OK"}
    finally:
        outside.close()


def test_abi_7_restrict_flags_are_accepted(dirs: dict[str, Path]) -> None:
    """The ABI 7 audit-log flags pass through to restrict_self() and the ruleset still applies."""
    require_abi(7)
    flags = list(RESTRICT_FLAGS)
    sec = section(7, handled_fs=READ, paths=[rule(dirs["ro"], *READ)], restrict_flags=flags)
    got = confined(
        sec, lambda: {"in": attempt(read(dirs["ro"] / "f")), "out": attempt(read(dirs["other"] / "f"))}
    )
    assert got == {"in": "OK", "out": "EACCES"}


def test_restrict_self_reports_the_errno() -> None:
    """restrict_self() on an fd that is not a ruleset raises OSError with the kernel's errno."""

    def child() -> str:
        set_no_new_privs()
        fd = os.open("/", os.O_RDONLY)
        return attempt(lambda: restrict_self(fd))

    result = in_child(child)
    assert result.ok, result.error
    assert result.value == "EBADFD"


def test_restrict_self_imports_nothing(dirs: dict[str, Path]) -> None:
    """The child-side calls load no module: after restrict_self a lazy import could not read its file."""
    require_abi(1)
    sec = section(1, handled_fs=READ, paths=[rule(dirs["ro"], *READ)])
    with prepare_ruleset(sec, kernel_abi=HOST.abi) as ruleset:

        def child() -> list[str]:
            before = set(sys.modules)
            set_no_new_privs()
            restrict_self(ruleset.fd, ruleset.restrict_flags)
            return sorted(set(sys.modules) - before)

        result = in_child(child)
    assert result.ok, result.error
    assert result.value == []
