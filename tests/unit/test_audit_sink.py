"""The audit sink: one JSON line per record, one write each, schema-valid, safe under concurrent appends and kills."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxer.audit.sink import AuditSink
from sandboxer.audit.suggest import violation
from sandboxer.errors import UsageError
from tests.audit_schema import validate_records

ROOT = Path(__file__).resolve().parents[2]
TIME_LEN = len("2025-03-14T09:26:53.100000Z")


def _launch_fields() -> dict:
    return {
        "manifest": {"path": "examples/hello.yaml", "sha256": "0" * 64},
        "command": ["echo", "hi"], "supervisor_pid": os.getpid(),
        "host": {"kernel": os.uname().release, "arch": os.uname().machine}, "mode": "enforce",
        "enforce": {
            "seccomp": {"instructions": 293, "arch_guard": "x86_64", "violation_action": "errno:EPERM", "notify": True},
            "landlock": {"abi": 6, "plan_abi": 7, "enforced": True, "degradations": ["ABI 7 audit flags dropped"],
                         "observable": False, "observable_note": "kernel audit is disabled"},
            "cgroups": {"version": "v2", "limits": {"memory.max": 67108864, "pids.max": 4, "cpu.max": "100000 100000"}},
            "netns": "none", "rlimits": {"NOFILE": [256, 256], "STACK": [8388608, None]},
        },
        "warnings": ["no cgroup delegated: limits not enforced"],
    }


def _every_kind_of_record(sink: AuditSink) -> None:
    sink.emit("launch", **_launch_fields())
    sink.emit("violation", **violation("seccomp", "seccomp-notify", "errno:EPERM", pid=12, exe="/usr/bin/gdb",
                                       syscall="ptrace", nr=101, args={"request": "PTRACE_ATTACH"}))
    sink.emit("violation", **violation("seccomp", "sigsys", "kill", pid=12, exe=None, syscall="read"))
    sink.emit("violation", **violation("landlock", "kernel-audit", "errno:EACCES", pid=12, path="/etc/shadow",
                                       access=["read_file"]))
    sink.emit("violation", **violation("landlock", "observe", "allow", pid=12, syscall="connect",
                                       args={"family": "AF_INET", "port": 5432}, port=5432,
                                       access=["connect_tcp"], would_deny=True))
    sink.emit("violation", **violation("wasi", "import-check", "kill", wasi_import="wasi:sockets/udp"))
    for kind, limit, count in (("oom_kill", "64Mi", 1), ("pids_max", 4, 2), ("cpu_throttled", 0.5, 17),
                               ("wall_time", "10s", None), ("memory_max", "64Mi", 3), ("fuel", None, None)):
        sink.emit("limit", kind=kind, limit=limit, count=count, detail=f"{kind} reached")
    sink.emit("exit", code=None, signal="SIGKILL", exit_code=137, duration_s=1.25,
              cpu={"user_s": 0.5, "sys_s": 0.125}, memory_peak_bytes=1 << 20, tasks=3,
              records={"violations": sink.counts.get("violation", 0)})


def test_record_layout(tmp_path: Path) -> None:
    """v, type, id and time come first; compact separators; one line ending in a newline."""
    path = tmp_path / "audit.jsonl"
    with AuditSink.open(str(path), "0123456789abcdef") as sink:
        rec = sink.emit("limit", kind="pids_max", limit=8, count=1, detail="pids.max reached")
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert text.startswith('{"v":1,"type":"limit","id":"0123456789abcdef","time":"')
    assert text[len('{"v":1,"type":"limit","id":"0123456789abcdef","time":"') + TIME_LEN:] == \
        '","kind":"pids_max","limit":8,"count":1,"detail":"pids.max reached"}\n'
    assert json.loads(text) == rec and list(rec)[:4] == ["v", "type", "id", "time"]
    assert rec["time"][4] == "-" and rec["time"][10] == "T" and rec["time"][19] == "." and rec["time"].endswith("Z")


def test_every_record_type_matches_the_schema(tmp_path: Path) -> None:
    """launch, violation (each source), limit (each kind) and exit records all validate."""
    path = tmp_path / "audit.jsonl"
    with AuditSink.open(str(path)) as sink:
        _every_kind_of_record(sink)
    records = validate_records(path)
    assert [r["type"] for r in records] == ["launch"] + ["violation"] * 5 + ["limit"] * 6 + ["exit"]
    assert len({r["id"] for r in records}) == 1
    assert sink.counts == {"launch": 1, "violation": 5, "limit": 6, "exit": 1}


@pytest.mark.parametrize(("change", "error"), [
    (lambda r: r.pop("time"), "'time' is a required property"),
    (lambda r: r.update(id="XYZ"), "'XYZ' does not match"),
    (lambda r: r.update(mechanism="apparmor"), "'apparmor' is not one of"),
    (lambda r: r.update(port="5432"), "'5432' is not of type 'integer', 'null'"),
    (lambda r: r.pop("capability"), "'capability' is a required property"),
    (lambda r: r.update(v=2), "1 was expected"),
])
def test_schema_rejects_broken_records(tmp_path: Path, change, error: str) -> None:
    """The schema is not vacuous: a missing or mistyped field fails with the line number."""
    path = tmp_path / "audit.jsonl"
    with AuditSink.open(str(path)) as sink:
        rec = sink.emit("violation", **violation("landlock", "observe", "allow", syscall="connect", port=5432,
                                                 access=["connect_tcp"], would_deny=True))
    change(rec)
    with pytest.raises(AssertionError, match="line 1 \\(violation\\)") as e:
        validate_records([json.dumps(rec)])
    assert error in str(e.value)


def test_file_is_created_private_and_appended(tmp_path: Path) -> None:
    """A new file is 0600 (records hold command lines and paths); a second run appends with its own id."""
    path = tmp_path / "audit.jsonl"
    old = os.umask(0)
    try:
        with AuditSink.open(str(path)) as first:
            first.emit("limit", kind="fuel", limit=None, count=None, detail="a")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with AuditSink.open(str(path)) as second:
        second.emit("limit", kind="fuel", limit=None, count=None, detail="b")
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert ids == [first.id, second.id] and first.id != second.id
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_stderr_and_fd_specs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`-` writes to stderr and `fd:N` to descriptor N, each through a close-on-exec duplicate."""
    with AuditSink.open("-") as sink:
        assert not os.get_inheritable(sink.fd)
        sink.emit("limit", kind="fuel", limit=None, count=None, detail="to stderr")
    assert json.loads(capfd.readouterr().err)["detail"] == "to stderr"
    r, w = os.pipe()
    try:
        with AuditSink.open(f"fd:{w}") as sink:
            assert sink.fd != w and not os.get_inheritable(sink.fd)
            sink.emit("limit", kind="fuel", limit=None, count=None, detail="to a pipe")
        os.close(w)
        w = -1
        assert json.loads(os.read(r, 65536))["detail"] == "to a pipe"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def _closed_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


@pytest.mark.parametrize(("spec", "message"), [
    ("", "--audit needs a file path, '-' for stderr, or fd:N"),
    ("fd:", "--audit fd:: expected fd:N with N a file descriptor number, e.g. fd:3"),
    ("fd:three", "--audit fd:three: expected fd:N with N a file descriptor number, e.g. fd:3"),
    ("fd:-1", "--audit fd:-1: expected fd:N with N a file descriptor number, e.g. fd:3"),
    ("fd:CLOSED", "--audit fd:CLOSED: file descriptor CLOSED is not open for writing (Bad file descriptor)"),
    ("DIR", "--audit DIR: cannot open for appending: Is a directory"),
    ("DIR/missing/audit.jsonl", "--audit DIR/missing/audit.jsonl: cannot open for appending: No such file or directory"),
])
def test_bad_specs_are_usage_errors(tmp_path: Path, spec: str, message: str) -> None:
    """Each bad --audit value is a UsageError (exit 2) that says what was expected."""
    closed = str(_closed_fd())
    spec, message = (s.replace("CLOSED", closed).replace("DIR", str(tmp_path)) for s in (spec, message))
    with pytest.raises(UsageError) as e:
        AuditSink.open(spec)
    assert str(e.value) == message and e.value.exit_code == 2


def test_read_only_descriptor_is_refused(tmp_path: Path) -> None:
    """fd:N open read-only cannot take records."""
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(UsageError, match=f"file descriptor {fd} is not open for writing"):
            AuditSink.open(f"fd:{fd}")
    finally:
        os.close(fd)


def test_bad_sandbox_id_and_reserved_fields(tmp_path: Path) -> None:
    """A given id must look like a generated one; emit() will not let fields overwrite the header."""
    with pytest.raises(UsageError, match="sandbox id must be 16 lowercase hex characters, not 'abc'"):
        AuditSink.open(str(tmp_path / "a"), "abc")
    with AuditSink.open(str(tmp_path / "a")) as sink:
        with pytest.raises(TypeError, match="id, time are set by the sink"):
            sink.emit("limit", id="x", time="y")


def test_one_write_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each record is exactly one write(2), even a 3 KiB one."""
    calls: list[int] = []
    real = os.write

    def counting(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real(fd, data)

    with AuditSink.open(str(tmp_path / "a")) as sink:
        monkeypatch.setattr(os, "write", counting)
        sink.emit("violation", **violation("landlock", "observe", "allow", path="/x/" + "y" * 3000,
                                           access=["read_file"], would_deny=True))
        sink.emit("exit", code=0, signal=None, exit_code=0, duration_s=0.1, cpu={"user_s": 0, "sys_s": 0},
                  memory_peak_bytes=None, tasks=None, records={"violations": 1})
        monkeypatch.undo()
    assert len(calls) == 2 and calls[0] > 3000


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    """close() twice is fine; emitting afterwards is a programming error."""
    sink = AuditSink.open(str(tmp_path / "a"))
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="audit sink is closed"):
        sink.emit("limit", kind="fuel", limit=None, count=None, detail="late")


def test_a_broken_pipe_is_counted_not_raised() -> None:
    """A reader that went away costs records (counted in `lost`), never the supervisor."""
    r, w = os.pipe()
    os.close(r)
    try:
        with AuditSink.open(f"fd:{w}") as sink:
            rec = sink.emit("limit", kind="fuel", limit=None, count=None, detail="nobody reads")
        assert rec["detail"] == "nobody reads"
        assert sink.lost == 1 and isinstance(sink.error, BrokenPipeError) and sink.counts == {}
    finally:
        os.close(w)


WRITER = """
import sys
from sandboxer.audit.sink import AuditSink
from sandboxer.audit.suggest import violation
sink = AuditSink.open(sys.argv[1])
path = "/srv/" + sys.argv[2] * 3000
for i in range(int(sys.argv[3])):
    sink.emit("violation", seq=i, **violation("landlock", "observe", "allow", path=path, access=["read_file"],
                                              would_deny=True))
print(sink.id)
"""


def test_two_processes_appending_never_interleave(tmp_path: Path) -> None:
    """Two writers, 3 KB records, one file: every line is a whole record and each writer's sequence is complete."""
    path, n = tmp_path / "audit.jsonl", 1500
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), ch, str(n)], stdout=subprocess.PIPE,
                              text=True, env=env) for ch in "ab"]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * n
    seqs: dict[str, list[int]] = {i: [] for i in ids}
    for line in lines:
        rec = json.loads(line)  # a torn or interleaved line would not parse
        seqs[rec["id"]].append(rec["seq"])
        assert rec["path"] == "/srv/" + "ab"[ids.index(rec["id"])] * 3000
    assert all(s == list(range(n)) for s in seqs.values())
    validate_records(lines[:50] + lines[-50:])


def test_record_survives_sigkill_right_after_emit(tmp_path: Path) -> None:
    """A writer SIGKILLed straight after emit() leaves its record whole (it is in the kernel, not a buffer)."""
    path = tmp_path / "audit.jsonl"
    code = ("import os, sys\nfrom sandboxer.audit.sink import AuditSink\n"
            "s = AuditSink.open(sys.argv[1])\n"
            "s.emit('limit', kind='oom_kill', limit='64Mi', count=1, detail='killed next')\n"
            "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9
    (rec,) = validate_records(path)
    assert rec["detail"] == "killed next"


def test_import_is_cheap() -> None:
    """Importing the sink (json aside) loads no typing, dataclasses or re: the launch path pays for it."""
    code = ("import json, sys\nbefore = set(sys.modules)\nimport sandboxer.audit.sink\n"
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert set(out) <= {"sandboxer", "sandboxer.audit", "sandboxer.audit.sink", "sandboxer.errors", "__future__"}, out
