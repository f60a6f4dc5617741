"""`sandboxer run --audit`: real workloads make denied calls; the records name the capability that would allow them."""

from __future__ import annotations

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


def test_ten_thousand_denials_are_all_accounted_for(tmp_path):
    """A loop of 10,000 refused socket() calls: every one is answered EPERM; 1000 are written, one record counts the rest."""
    audit = tmp_path / "audit.jsonl"
    script = ("import socket\nn = 0\nfor _ in range(10000):\n    try:\n        socket.socket()\n"
              "    except PermissionError:\n        n += 1\nprint(n)\n")
    r = run(manifest(tmp_path), audit, script)
    assert r.returncode == 0 and r.stdout == "10000\n", r.stderr
    records = validate_records(audit)  # every one of them, against the schema
    socks = [x for x in violations(records) if x["syscall"]["name"] == "socket" and x["action"] == "errno:EPERM"
             and x["syscall"]["args"].get("family") == "AF_INET"]
    # 1000 written one by one, then one record that counts the rest: every denial accounted for
    assert len(socks) == 1001 and socks[-1]["folded"] == 9000
    assert sum(x.get("folded", 1) for x in socks) == 10000
    assert records[-1]["records"]["folded"] == 9000
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


def _children(pid: int) -> list[int]:
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _descendants(pid: int) -> list[int]:
    out, todo = [], _children(pid)
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += _children(p)
    return out


def _wait_for_descendants(parent: int, count: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _descendants(parent)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} processes under {parent}, found {_descendants(parent)}")


def _workload_pid(parent: int, timeout: float = 20.0) -> int:
    """The workload of a supervised run: the child of the PID namespace's init, the sandboxer's child."""
    return _wait_for_descendants(parent, 2, timeout)[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# The workload forks a grandchild that leaves the session (so neither PR_SET_PDEATHSIG nor a kill of the
# process group would reach it), then both sleep; "ready" once both run.
FORKS_AND_SLEEPS = r"""
import os, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    os.write(w, b"x")
    while True: time.sleep(0.05)
os.read(r, 1)
print("ready", flush=True)
while True: time.sleep(0.05)
"""
SPAWN = "  sandboxer:process/spawn: {}\n"


def _kill_supervisor_and_check(p: subprocess.Popen, before_kill=lambda: True) -> None:
    """SIGKILL the supervising sandboxer once its workload and the grandchild run: every one of them must die."""
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        procs = _descendants(p.pid)  # the namespace's init, the workload, the grandchild
        *_, workload, grandchild = procs
        assert all(_alive(x) for x in procs) and before_kill()
        p.kill()
        p.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(x) for x in procs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(workload), "the workload outlived its supervisor"
        assert not _alive(grandchild), "the workload's child outlived the supervisor"
        assert not any(_alive(x) for x in procs)
    finally:
        p.kill()
        p.wait()


def test_killing_the_supervisor_kills_the_workload(tmp_path):
    """SIGKILL to a supervising sandboxer: its workload, and a child the workload started in a session of its
    own, do not run on unsupervised (the workload's PID namespace dies with its init, which dies with us)."""
    audit = tmp_path / "audit.jsonl"
    p = subprocess.Popen([*SANDBOXER, "run", str(manifest(tmp_path, extra=SPAWN)), "--audit", str(audit), "--",
                          PY, "-c", FORKS_AND_SLEEPS], cwd=REPO, stdout=subprocess.PIPE, text=True)
    _kill_supervisor_and_check(p)


NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def nobody_dir():
    """A directory nobody can write (tmp_path is root's, 0700), for the manifest, the cache and the records."""
    import shutil
    import tempfile

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    d = Path(tempfile.mkdtemp(prefix="sandboxer-nobody-"))
    os.chown(d, NOBODY, NOBODY)
    probe = subprocess.run(SETPRIV + [sys.executable, "-c", "import sandboxer.launch.run"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        shutil.rmtree(d)
        pytest.skip(f"nobody cannot run {sys.executable} with the repository: {probe.stderr.strip()}")
    yield d
    shutil.rmtree(d)


def _as_nobody(d: Path, m: Path, script: str, *opts: str, **popen: object) -> list[str]:
    os.chown(m, NOBODY, NOBODY)
    os.chown(m.parent / "work", NOBODY, NOBODY)
    return SETPRIV + [sys.executable, "-m", "sandboxer", "run", str(m), *opts, "--", PY, "-c", script]


def test_rootless_killing_the_supervisor_kills_the_workload(nobody_dir):
    """As nobody (the PID namespace then comes with its own user namespace): the same, workload and grandchild die."""
    audit = nobody_dir / "audit.jsonl"
    argv = _as_nobody(nobody_dir, manifest(nobody_dir, extra=SPAWN), FORKS_AND_SLEEPS, "--audit", str(audit))
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True,
                         env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(nobody_dir / "cache")})
    # The init is not under the seccomp filter, so it is not dumpable: its /proc files turn root's and
    # nothing in the sandbox can ptrace it or open its memory; the workload's stay nobody's.
    owners = lambda: [Path(f"/proc/{x}/status").stat().st_uid for x in _wait_for_descendants(p.pid, 3)]  # noqa: E731
    _kill_supervisor_and_check(p, before_kill=lambda: owners() == [0, NOBODY, NOBODY])
    assert validate_records(audit)[0]["enforce"]["netns"] == "none"


def test_rootless_supervised_runs_pass_exit_codes_and_keep_the_host_network(nobody_dir):
    """As nobody: exit codes pass through; complain mode (netns host: a user namespace without a network
    namespace) still reaches the host's loopback."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(nobody_dir / "cache")}
    script = (f"import os, socket, sys\nsocket.create_connection(('127.0.0.1', {port})).close()\n"
              "print(os.getpid(), os.getuid())\nsys.exit(3)")
    try:
        r = subprocess.run(_as_nobody(nobody_dir, manifest(nobody_dir, on_violation="log"), script, "--audit",
                                      str(nobody_dir / "audit.jsonl")),
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    finally:
        srv.close()
    assert r.returncode == 3, r.stderr
    assert r.stdout == f"2 {NOBODY}\n"
    records = validate_records(nobody_dir / "audit.jsonl")
    assert records[0]["enforce"]["netns"] == "host" and records[-1]["code"] == 3


def test_supervised_exit_codes_and_signals_pass_through(tmp_path):
    """Under --audit the status is the workload's (not its init's): exit 3 is 3, death by SIGABRT is 134."""
    audit = tmp_path / "audit.jsonl"
    m = manifest(tmp_path)
    assert run(m, audit, "import sys; sys.exit(3)").returncode == 3
    r = run(m, audit, "import os, signal; os.kill(os.getpid(), signal.SIGABRT)")
    assert r.returncode == 134, r.stderr
    exits = [x for x in validate_records(audit) if x["type"] == "exit"]
    assert [(x["code"], x["signal"], x["exit_code"]) for x in exits] == [(3, None, 3), (None, "SIGABRT", 134)]


def test_supervised_workload_is_pid_2_of_its_own_namespace(tmp_path):
    """A supervised workload runs in its own PID namespace: getpid() is 2, its parent (the sandbox's init) is 1;
    /proc/self still names it (the host's /proc, where it has its outer pid)."""
    r = run(manifest(tmp_path), tmp_path / "audit.jsonl",
            "import os; print(os.getpid(), os.getppid(), os.readlink('/proc/self') != '2')")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "2 1 True\n"


def test_supervised_workload_runs_under_an_init_in_the_sandbox(tmp_path):
    """The sandboxer's child is the namespace's init (the sandbox's session leader, no capabilities,
    no_new_privs, no seccomp filter); the workload is its only child."""
    p = subprocess.Popen([*SANDBOXER, "run", str(manifest(tmp_path, extra=SPAWN)), "--audit",
                          str(tmp_path / "audit.jsonl"), "--", PY, "-c", FORKS_AND_SLEEPS],
                         cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        init, workload, grandchild = _descendants(p.pid)
        assert _children(p.pid) == [init] and _children(init) == [workload] and _children(workload) == [grandchild]
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{init}/status").read_text().splitlines())
        assert status["NSpid"].split() == [str(init), "1"] and status["NoNewPrivs"] == "1"
        assert int(status["CapEff"], 16) == 0 and status["Seccomp"] == "0"
        assert os.getpgid(workload) == init == os.getsid(workload)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 143


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


def test_supervised_pids_limit_counts_the_workloads_tasks(tmp_path):
    """limits.pids: 3 under --audit still lets the workload have 3 tasks (the namespace's init is not counted
    against it), refuses the 4th, and the exit record's task peak is the workload's."""
    audit = tmp_path / "audit.jsonl"
    script = ("import os, time\nn = 0\nfor _ in range(3):\n    try:\n        pid = os.fork()\n"
              "    except BlockingIOError:\n        break\n    if pid == 0:\n        time.sleep(0.2)\n"
              "        os._exit(0)\n    n += 1\nprint(n)\nwhile n:\n    os.wait()\n    n -= 1\n")
    r = run(manifest(tmp_path, extra=SPAWN + "limits: {pids: 3}\n"), audit, script)
    assert r.returncode == 0 and r.stdout == "2\n", r.stderr
    records = validate_records(audit)
    assert [(x["kind"], x["limit"]) for x in records if x["type"] == "limit"] == [("pids_max", 3)]
    assert records[-1]["tasks"] == 3


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


def test_complain_then_suggest_gives_a_manifest_that_runs_clean(tmp_path):
    """The learning loop: complain mode + `audit --suggest` → a manifest under which sqlite3 runs with no violation."""
    work = tmp_path / "db"
    work.mkdir()
    base = tmp_path / "base.yaml"
    base.write_text("sandboxer: 1\nname: learn\non-violation: log\nextends: [builtin:dynamic-linking]\n"
                    "imports:\n  wasi:cli/stdout: {}\n  wasi:cli/stderr: {}\n")
    sql = ["/usr/bin/sqlite3", str(work / "t.db"), "create table t(x); insert into t values (42); select * from t;"]
    learn = tmp_path / "learn.jsonl"
    r = subprocess.run([*SANDBOXER, "run", str(base), "--audit", str(learn), "--", *sql],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout == "42\n", r.stderr
    patch = subprocess.run([*SANDBOXER, "audit", str(learn), "--suggest"], capture_output=True, text=True,
                           cwd=REPO, timeout=60, check=True).stdout
    learned = tmp_path / "learned.yaml"
    learned.write_text(f"sandboxer: 1\nname: learned\non-violation: deny\nextends: [{base}]\n"
                       + "".join(line + "\n" for line in patch.splitlines() if not line.startswith("#")))
    (work / "t.db").unlink()
    audit = tmp_path / "enforce.jsonl"
    r = subprocess.run([*SANDBOXER, "run", str(learned), "--audit", str(audit), "--", *sql],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout == "42\n", r.stderr
    records = validate_records(audit)
    assert records[0]["mode"] == "enforce" and violations(records) == []


def test_an_audit_file_the_workload_could_rewrite_is_warned_about(tmp_path):
    """--audit inside a writable preopen: the run goes on, with a warning that the records could be tampered with."""
    audit = tmp_path / "work" / "audit.jsonl"
    r = run(manifest(tmp_path), audit, "print('ok')")
    assert r.returncode == 0 and r.stdout == "ok\n"
    assert (f"sandboxer: warning: the audit file {audit} is inside {tmp_path / 'work'}, which the workload may "
            "write: it could alter or remove its own records; keep it outside the grants") in r.stderr
    r = run(manifest(tmp_path), tmp_path / "audit.jsonl", "print('ok')")
    assert "warning" not in r.stderr


NAMESPACES = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
if pid == 0:
    os._exit(0)
print("clone(CLONE_NEWUSER)", "ok" if pid > 0 else errno.errorcode[ctypes.get_errno()])
pid = os.fork()
if pid == 0:
    os._exit(0)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_complain_mode_still_refuses_new_namespaces(tmp_path):
    """on-violation: log lets an ungranted fork run (recorded) but clone with CLONE_NEWUSER stays EPERM (recorded, never)."""
    audit = tmp_path / "audit.jsonl"
    r = run(manifest(tmp_path, on_violation="log"), audit, NAMESPACES)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["clone(CLONE_NEWUSER) EPERM", "fork 0"]
    clones = [v for v in violations(validate_records(audit)) if (v["syscall"] or {}).get("name") == "clone"]
    assert [(v["action"], v["would_deny"]) for v in clones] == [("errno:EPERM", False), ("allow", True)]
    assert clones[0]["never"] and clones[1]["capability"] == "sandboxer:process/spawn"
