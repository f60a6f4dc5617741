"""`sandboxer run --audit`: real workloads make denied calls; the records name the capability that would allow them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audit_schema import validate_records

REPO = Path(__file__).resolve().parents[2]
SANDBOXER = [sys.executable, "-m", "sandboxer"]
PY = "/usr/bin/python3"

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="audit integration tests run as root")]


def manifest(tmp_path: Path, extra: str = "", on_violation: str = "deny") -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    m = tmp_path / "m.yaml"
    m.write_text(f"""sandboxer: 1
name: audit-test
on-violation: {on_violation}
extends: [builtin:python3]
imports:
  wasi:cli/stdout: {{}}
  wasi:cli/stderr: {{}}
  wasi:filesystem/preopens:
    - {{path: {work}, access: read+write}}
{extra}""")
    return m


def run(m: Path, audit: Path | str, script: str, *opts: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*SANDBOXER, "run", str(m), "--audit", str(audit), *opts, "--", PY, "-c", script],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def violations(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "violation"]


DENIED = r"""
import ctypes, errno, fcntl, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
attempt("fork", fork)
def ptrace():
    if libc.ptrace(16, os.getppid(), 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("ptrace", ptrace)
attempt("tiocsti", lambda: fcntl.ioctl(1, 0x5412, b"x"))
"""


def test_each_denied_class_is_recorded_with_capability_and_suggestion(tmp_path):
    """socket, fork, ptrace and TIOCSTI are refused with EPERM, and each refusal is a schema-valid record."""
    audit = tmp_path / "audit.jsonl"
    r = run(manifest(tmp_path), audit, DENIED)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["socket EPERM", "fork EPERM", "ptrace EPERM", "tiocsti EPERM"]
    records = validate_records(audit)
    assert [rec["type"] for rec in records][0] == "launch" and records[-1]["type"] == "exit"
    assert len({rec["id"] for rec in records}) == 1
    by_call = {v["syscall"]["name"]: v for v in violations(records)}
    sock = by_call["socket"]
    assert sock["action"] == "errno:EPERM" and sock["capability"] == "wasi:sockets/tcp"
    assert "wasi:sockets/tcp" in sock["suggest"] and sock["syscall"]["args"]["family"] == "AF_INET"
    assert sock["exe"] == os.path.realpath(PY) and sock["pid"] > 0
    assert by_call["clone"]["capability"] == "sandboxer:process/spawn"
    assert "sandboxer:process/spawn" in by_call["clone"]["suggest"]
    assert by_call["ptrace"]["capability"] is None and by_call["ptrace"]["never"]
    assert by_call["ioctl"]["never"] and by_call["ioctl"]["syscall"]["args"]["request"].startswith("TIOCSTI")
    launch = records[0]
    assert launch["mode"] == "enforce" and launch["enforce"]["seccomp"]["notify"] is True
    assert launch["enforce"]["landlock"]["enforced"] is True and launch["enforce"]["netns"] == "none"
    assert launch["manifest"]["sha256"] and launch["command"][0] == PY
    if not launch["enforce"]["landlock"]["observable"]:
        assert "not recorded" in launch["enforce"]["landlock"]["observable_note"]
    assert records[-1]["code"] == 0 and records[-1]["records"]["violations"] == len(violations(records))


def test_without_audit_nothing_is_supervised(tmp_path):
    """Without --audit (enforce mode) the plain filter is installed: same EPERM, no records, no notes."""
    r = subprocess.run([*SANDBOXER, "run", str(manifest(tmp_path)), "--", PY, "-c", DENIED],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout.split("\n")[:4] == ["socket EPERM", "fork EPERM", "ptrace EPERM", "tiocsti EPERM"]
    assert "sandboxer" not in r.stderr


COMPLAIN = r"""
import os, socket, sys
secret = sys.argv[1]
print(open(secret).read().strip())
os.mkdir(sys.argv[2])
s = socket.socket()
s.connect(("127.0.0.1", int(sys.argv[3])))
print(s.recv(5).decode())
pid = os.fork()
if pid == 0:
    os._exit(7)
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_complain_mode_runs_the_workload_and_records_every_would_be_denial(tmp_path):
    """Under on-violation: log the workload reads, creates, connects and forks outside its grants; each is recorded."""
    secret, newdir = tmp_path / "secret.txt", tmp_path / "made"
    secret.write_text("the secret\n")
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    import threading

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"hello")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    audit = tmp_path / "audit.jsonl"
    m = manifest(tmp_path, on_violation="log")
    r = subprocess.run([*SANDBOXER, "run", str(m), "--audit", str(audit), "--", PY, "-c", COMPLAIN,
                        str(secret), str(newdir), str(port)], capture_output=True, text=True, cwd=REPO, timeout=120)
    srv.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["the secret", "hello", "child 7"]
    assert newdir.is_dir()
    records = validate_records(audit)
    assert records[0]["mode"] == "complain" and records[0]["enforce"]["landlock"]["enforced"] is False
    v = violations(records)
    assert all(x["would_deny"] and x["action"] == "allow" for x in v)
    paths = {(x["path"], tuple(x["access"])) for x in v if x["mechanism"] == "landlock"}
    assert (str(secret), ("read_file",)) in paths
    assert (str(tmp_path), ("make_dir",)) in paths
    calls = {x["syscall"]["name"]: x for x in v if x["syscall"]}
    assert calls["socket"]["capability"] == "wasi:sockets/tcp"
    assert calls["connect"]["syscall"]["args"]["port"] == port
    assert calls["clone"]["capability"] == "sandboxer:process/spawn"
    # The patch `sandboxer audit --suggest` prints grants what was recorded.
    patch = subprocess.run([*SANDBOXER, "audit", str(audit), "--suggest"], capture_output=True, text=True,
                           cwd=REPO, timeout=60)
    assert patch.returncode == 0, patch.stderr
    assert f"{{path: {secret}, access: read}}" in patch.stdout and "sandboxer:process/spawn" in patch.stdout


def test_complain_mode_without_audit_explains_on_stderr(tmp_path):
    """Complain mode with no --audit says each would-be denial and its fix on stderr, and the run succeeds."""
    secret = tmp_path / "secret.txt"
    secret.write_text("s\n")
    r = subprocess.run([*SANDBOXER, "run", str(manifest(tmp_path, on_violation="log")), "--", PY, "-c",
                        f"print(open({str(secret)!r}).read().strip())"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout == "s\n"
    assert f"sandboxer: would deny: landlock {secret} [read_file]" in r.stderr
    assert f"allow it with: imports: {{wasi:filesystem/preopens: [{{path: {secret}, access: read}}]}}" in r.stderr


def test_ten_thousand_denials_make_ten_thousand_records(tmp_path):
    """A loop of 10,000 refused socket() calls: every one is answered EPERM and recorded, none lost."""
    audit = tmp_path / "audit.jsonl"
    script = ("import socket\nn = 0\nfor _ in range(10000):\n    try:\n        socket.socket()\n"
              "    except PermissionError:\n        n += 1\nprint(n)\n")
    r = run(manifest(tmp_path), audit, script)
    assert r.returncode == 0 and r.stdout == "10000\n", r.stderr
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    socks = [x for x in violations(records) if x["syscall"]["name"] == "socket" and x["action"] == "errno:EPERM"]
    assert len(socks) >= 10000  # and any the interpreter made itself while starting
    assert records[-1]["records"]["violations"] == len(violations(records))


def test_kill_mode_records_the_call_and_exits_159(tmp_path):
    """on-violation: kill — the supervisor records the refused call, kills the workload, and sandboxer exits 159."""
    audit = tmp_path / "audit.jsonl"
    r = run(manifest(tmp_path, on_violation="kill"), audit, "import socket; print('before', flush=True); socket.socket()")
    assert r.returncode == 159 and r.stdout == "before\n"
    assert "killed for a system call the plan refuses" in r.stderr
    records = validate_records(audit)
    (v,) = violations(records)
    assert v["action"] == "kill" and v["syscall"]["name"] == "socket"
    assert records[-1]["signal"] == "SIGKILL" and records[-1]["exit_code"] == 159


def _workload_pid(parent: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise AssertionError("the workload did not start")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_killing_the_supervisor_kills_the_workload(tmp_path):
    """SIGKILL to a supervising sandboxer: its workload does not run on unsupervised."""
    audit = tmp_path / "audit.jsonl"
    p = subprocess.Popen([*SANDBOXER, "run", str(manifest(tmp_path)), "--audit", str(audit), "--", PY, "-c",
                          "import time\nwhile True: time.sleep(0.05)"], cwd=REPO)
    try:
        child = _workload_pid(p.pid)
        time.sleep(0.3)
        assert _alive(child)
        p.kill()
        p.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child)
    finally:
        p.kill()
        p.wait()


def test_sigterm_to_sandboxer_still_writes_the_exit_record(tmp_path):
    """SIGTERM reaches the workload, and the exit record (signal SIGTERM, exit 143) is written."""
    audit = tmp_path / "audit.jsonl"
    p = subprocess.Popen([*SANDBOXER, "run", str(manifest(tmp_path)), "--audit", str(audit), "--", PY, "-c",
                          "import time\nwhile True: time.sleep(0.05)"], cwd=REPO)
    _workload_pid(p.pid)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 143
    records = validate_records(audit)
    assert records[-1]["type"] == "exit" and records[-1]["signal"] == "SIGTERM"


def test_limits_are_recorded(tmp_path):
    """An OOM kill and a wall-time kill each leave a limit record before the exit record."""
    audit = tmp_path / "audit.jsonl"
    m = manifest(tmp_path, extra="limits: {memory: 32Mi}\n")
    r = run(m, audit, "b = []\nwhile True: b.append(bytearray(1 << 20))")
    assert r.returncode == 137
    r = run(manifest(tmp_path), audit, "import time; time.sleep(30)", "--timeout", "0.5")
    assert r.returncode == 137
    records = validate_records(audit)
    limits = [x for x in records if x["type"] == "limit"]
    assert [x["kind"] for x in limits] == ["oom_kill", "wall_time"]
    assert limits[0]["limit"] == 32 << 20 and limits[0]["count"] >= 1
    assert limits[1]["limit"] == 0.5
    assert len({x["id"] for x in records}) == 2
