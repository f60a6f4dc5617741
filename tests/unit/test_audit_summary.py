"""`sandboxer audit FILE`: the summary (text and JSON), --suggest, --follow, and files that are not what they should be."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sandboxer.audit import cli as audit_cli
from sandboxer.audit.suggest import violation
from sandboxer.audit.summary import read_records, render_record, render_text, summarize
from sandboxer.cli import app
from tests.audit_schema import validate_records

DATA = Path(__file__).resolve().parent / "data" / "audit"
FIXTURE = DATA / "two-runs.jsonl"
SKIPPED = f"sandboxer: {FIXTURE}: skipped 2 unreadable lines (first: line 6)\n"


def _expect(name: str, actual: str, update: bool) -> None:
    path = DATA / name
    if update:
        path.write_text(actual)
    assert actual == path.read_text()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """Call the command body; returns (exit status, stdout, stderr)."""
    def go(*args, **kw):
        code = audit_cli.main(*args, **kw)
        out = capsys.readouterr()
        return code, out.out, out.err
    return go


def test_fixture_lines_match_the_schema() -> None:
    """Every readable line of the hand-written fixture is a valid record (the two broken ones are the test's)."""
    lines = FIXTURE.read_text().splitlines()
    good = [line for line in lines if line.startswith("{") and line.endswith("}")]
    assert len(lines) - len(good) == 2
    validate_records(good)


def test_fixture_suggestions_agree_with_the_mapping() -> None:
    """What the fixture's records say (capability, suggest, never) is what suggest.violation() computes."""
    records, _ = read_records(FIXTURE.read_text().splitlines())
    for rec in (r for r in records if r["type"] == "violation"):
        sc = rec["syscall"] or {}
        args = sc.get("args") or {}
        fields = violation(rec["mechanism"], rec["source"], rec["action"], pid=rec["pid"], exe=rec["exe"],
                           syscall=sc.get("name"), nr=sc.get("nr"), args=args, path=rec["path"],
                           access=rec["access"], port=rec["port"], would_deny=rec["would_deny"])
        assert (fields["capability"], fields["suggest"], fields["never"]) == \
            (rec["capability"], rec["suggest"], rec["never"]), rec


def test_summary_text(run, update_golden: bool) -> None:
    """Per sandbox: the launch, violations grouped by capability with examples and suggestions, limits, exits."""
    code, out, err = run(str(FIXTURE))
    assert (code, err) == (0, SKIPPED)
    _expect("two-runs.txt", out, update_golden)


def test_summary_json(run, update_golden: bool) -> None:
    """--json is the same summary as data."""
    code, out, err = run(str(FIXTURE), as_json=True)
    assert (code, err) == (0, SKIPPED)
    _expect("two-runs.json", out, update_golden)
    summary = json.loads(out)
    assert [b["id"] for b in summary["sandboxes"]] == ["4f3a9c0e12d7b865", "a07be5d1c93f2e48"]
    assert summary["skipped_lines"] == 2
    tcp = next(g for g in summary["sandboxes"][0]["violations"]["groups"] if g["capability"] == "wasi:sockets/tcp")
    assert tcp["suggest"] == ["imports: {wasi:sockets/tcp: {connect: [443, 5432]}}"]


def test_suggest_prints_the_patch(run, update_golden: bool) -> None:
    """--suggest prints one manifest patch for everything recorded."""
    code, out, err = run(str(FIXTURE), suggest=True)
    assert (code, err) == (0, SKIPPED)
    _expect("two-runs.patch.yaml", out, update_golden)


def test_through_the_typer_app() -> None:
    """`sandboxer audit` is registered and passes its flags through."""
    runner = CliRunner()
    result = runner.invoke(app, ["audit", str(FIXTURE), "--suggest"])
    assert result.exit_code == 0
    assert result.stdout == (DATA / "two-runs.patch.yaml").read_text()
    assert result.stderr == SKIPPED
    result = runner.invoke(app, ["audit", str(DATA / "absent.jsonl")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["audit", "-", "--suggest"], input=FIXTURE.read_text())
    assert result.exit_code == 0 and result.stdout == (DATA / "two-runs.patch.yaml").read_text()
    assert result.stderr == "sandboxer: -: skipped 2 unreadable lines (first: line 6)\n"


def test_missing_file_exits_2(run, tmp_path: Path) -> None:
    """A file that cannot be read: exit 2 and one line saying why, no traceback."""
    assert run(str(tmp_path / "nope.jsonl")) == (
        2, "", f"sandboxer: cannot read audit file {tmp_path}/nope.jsonl: No such file or directory\n")
    assert run(str(tmp_path)) == (2, "", f"sandboxer: cannot read audit file {tmp_path}: Is a directory\n")


def test_conflicting_flags_exit_2(run) -> None:
    """--suggest does not combine with --json or --follow."""
    assert run(str(FIXTURE), suggest=True, as_json=True) == (
        2, "", "sandboxer: --suggest prints a manifest patch: use it without --json and --follow\n")


def test_empty_and_garbage_files(run, tmp_path: Path) -> None:
    """No records at all reads as such; binary garbage is counted, never a traceback."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run(str(empty)) == (0, "no audit records\n", "")
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\xff\xfe\x00garbage\n[1, 2]\n{\"type\": 3}\n\n")
    assert run(str(junk)) == (0, "no audit records\n", f"sandboxer: {junk}: skipped 3 unreadable lines (first: line 1)\n")


def test_unknown_record_types_are_ignored() -> None:
    """A newer writer's record types do not disturb the summary."""
    summary = summarize([{"v": 1, "type": "rate_limit", "id": "0" * 16, "folded": 10}])
    assert summary["sandboxes"][0]["other_records"] == 1
    assert "violations: none" in render_text(summary)


def test_wrong_field_types_are_read_as_far_as_they_go(run, tmp_path: Path) -> None:
    """A known record type with fields of the wrong shape is summarised with what it has, not fatal."""
    f = tmp_path / "odd.jsonl"
    f.write_text(json.dumps({"v": 1, "type": "violation", "id": "1" * 16, "time": 5, "syscall": "x",
                             "access": "read", "would_deny": "yes", "capability": ["a"]}) + "\n")
    assert run(str(f)) == (0, """\
sandbox 1111111111111111: (no launch record)
  violations: 1 (1 needing no capability)
    unmapped (the records name no capability and no reason): 1x, ?, ? → ?
      e.g. ?
  exit: not recorded (still running, or the launcher was killed)
""", "")


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                       max_leaves=8)
FIELDS = ("manifest", "command", "host", "mode", "enforce", "warnings", "mechanism", "source", "pid", "exe", "syscall",
          "path", "access", "port", "action", "would_deny", "capability", "suggest", "never", "kind", "limit",
          "count", "detail", "code", "signal", "exit_code", "duration_s", "cpu", "memory_peak_bytes", "tasks",
          "records", "time")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["launch", "violation", "limit", "exit", "other"]), "id": st.sampled_from(["a" * 16, "b"])},
    optional={k: JSONISH for k in FIELDS}), max_size=6))
def test_any_json_records_summarise_without_a_traceback(records: list[dict]) -> None:
    """Whatever the fields hold, summarize, render_text and render_record return text."""
    summary = summarize(records)
    assert isinstance(render_text(summary), str)
    json.dumps(summary)
    for rec in records:
        assert isinstance(render_record(rec), str)


def _lines(name: str = "two-runs.jsonl") -> list[str]:
    return (DATA / name).read_text().splitlines(keepends=True)


def test_follow_prints_appended_records_then_the_summary(run, tmp_path: Path) -> None:
    """--follow prints existing and appended records one line each, waits for half-written lines, ends cleanly."""
    lines = _lines()
    path = tmp_path / "live.jsonl"
    path.write_text("".join(lines[:3]))

    def append(text: str):
        def step() -> None:
            with path.open("a") as f:
                f.write(text)
        return step

    steps = iter([
        append("".join(lines[3:5])),
        append(lines[6][:40]),  # half a record: not printed until its newline
        append(lines[6][40:]),
    ])

    def stop() -> bool:
        step = next(steps, None)
        if step is None:
            return True
        step()
        return False

    code, out, err = run(str(path), follow=True, stop=stop, poll_s=0)
    assert (code, err) == (0, "")
    shown, _, summary = out.partition("\n\n")
    assert shown.splitlines() == [
        "09:26:53.100 4f3a9c0e launch python3 fetch.py --db db.internal (mode enforce; seccomp: 293 insns, "
        "arch guard x86_64, violations errno:EPERM, supervised; landlock: ABI 4 (plan ABI 7), 1 degradation: "
        "abstract unix socket scope needs ABI 6 (Linux 6.12); cgroups: v2 (memory.max 268435456, pids.max 8); "
        "netns: host; rlimits: NOFILE 256, CORE 0)",
        "09:26:53.250 4f3a9c0e violation seccomp socket(family=AF_NETLINK, type=SOCK_RAW|SOCK_CLOEXEC, protocol=0) "
        "by /usr/bin/python3.11[4101] → errno:EPERM; never: netlink talks to the kernel's routing, audit and other "
        "subsystems: never granted",
        "09:26:53.301 4f3a9c0e violation landlock /etc/ssl/certs/ca-certificates.crt [read_file] by "
        "/usr/bin/python3.11[4101] → errno:EACCES; suggest imports: {wasi:filesystem/preopens: "
        "[{path: /etc/ssl/certs/ca-certificates.crt, access: read}]}",
        "09:26:53.302 4f3a9c0e violation landlock /etc/ssl/certs/ca-certificates.crt [read_file] by "
        "/usr/bin/python3.11[4101] → errno:EACCES; suggest imports: {wasi:filesystem/preopens: "
        "[{path: /etc/ssl/certs/ca-certificates.crt, access: read}]}",
        "09:26:53.410 4f3a9c0e violation landlock connect port 5432 by /usr/bin/python3.11[4101] → errno:EACCES; "
        "suggest imports: {wasi:sockets/tcp: {connect: [5432]}}",
        "09:26:54.020 4f3a9c0e violation seccomp ptrace(request=PTRACE_ATTACH, pid=4101) by /usr/bin/gdb[4102] → "
        "errno:EPERM; never: debugging or reading other processes is never granted",
    ]
    assert summary.startswith("sandbox 4f3a9c0e12d7b865: python3 fetch.py --db db.internal\n")
    assert "  violations: 5 (3 a manifest change would allow, 2 never granted)\n" in summary


def test_follow_json_passes_records_through(run, tmp_path: Path) -> None:
    """--follow --json prints each readable record as one JSON line, and counts the rest on stderr."""
    path = tmp_path / "live.jsonl"
    path.write_text("".join(_lines()[:7]))
    code, out, err = run(str(path), follow=True, as_json=True, stop=lambda: True, poll_s=0)
    assert code == 0 and err == f"sandboxer: {path}: skipped 1 unreadable line (first: line 6)\n"
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["launch"] + ["violation"] * 5


def test_follow_stops_cleanly_on_sigint(run, tmp_path: Path) -> None:
    """Ctrl-C (KeyboardInterrupt) ends --follow with exit 0 and the summary, no traceback."""
    path = tmp_path / "live.jsonl"
    path.write_text("".join(_lines()[:2]))

    def interrupt() -> bool:
        raise KeyboardInterrupt

    code, out, err = run(str(path), follow=True, stop=interrupt, poll_s=0)
    assert (code, err) == (0, "")
    assert out.endswith("  exit: not recorded (still running, or the launcher was killed)\n")


def test_follow_reads_a_file_written_by_a_live_sink(run, tmp_path: Path) -> None:
    """A writer thread appends through AuditSink while --follow polls; every record arrives."""
    from sandboxer.audit.sink import AuditSink

    path = tmp_path / "live.jsonl"
    sink = AuditSink.open(str(path))
    done = threading.Event()

    def writer() -> None:
        for i in range(20):
            sink.emit("violation", **violation("seccomp", "seccomp-notify", "errno:EPERM", syscall="mount"))
        sink.emit("exit", code=0, signal=None, exit_code=0, duration_s=0.5, cpu={"user_s": 0.0, "sys_s": 0.0},
                  memory_peak_bytes=None, tasks=1, records={"violations": 20})
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    seen = {"done": False}

    def stop() -> bool:
        """Stop at the first end of file reached after the writer finished."""
        if seen["done"]:
            return True
        seen["done"] = done.is_set()
        return False

    code, out, _ = run(str(path), follow=True, stop=stop, poll_s=0.001)
    t.join()
    sink.close()
    assert code == 0
    assert out.count(" violation seccomp mount() → errno:EPERM; never: the mount API is never granted") == 20
    assert "exit: code 0, sandboxer returned 0, after 0.500 s, cpu 0.000 s user + 0.000 s sys, 1 task, " \
           "20 violations recorded" in out


def test_follow_process_exits_0_on_a_real_sigint(tmp_path: Path) -> None:
    """`sandboxer audit --follow` in its own process: SIGINT ends it with exit 0, the summary, no traceback."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "live.jsonl"
    path.write_text("".join(_lines()[:2]))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "sandboxer", "audit", "--follow", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        first = proc.stdout.readline()  # the launch line: the loop is running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first.startswith("09:26:53.100 4f3a9c0e launch ")
    assert proc.returncode == 0 and err == ""
    assert "sandbox 4f3a9c0e12d7b865: python3 fetch.py --db db.internal" in out


def test_id_selects_one_sandbox(capsys):
    """--id keeps the records of one sandbox (a prefix is enough); an unknown id is a usage error."""
    from sandboxer.audit.cli import main

    lines = FIXTURE.read_text().splitlines()
    first = next(json.loads(x)["id"] for x in lines if x.startswith("{") and x.endswith("}"))
    assert main(str(FIXTURE), as_json=True, sandbox=first[:8]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in out["sandboxes"]] == [first]
    assert main(str(FIXTURE), sandbox="ffffffff") == 2
    assert "no records of sandbox ffffffff" in capsys.readouterr().err


def test_a_folded_record_counts_for_the_violations_it_stands_for():
    """One record with folded: 9000 after 1000 single ones: the summary says 10,000, and no record is missing."""
    from sandboxer.audit.summary import summarize

    base = {"v": 1, "type": "violation", "id": "a" * 16, "time": "2026-11-28T00:00:00.000000Z",
            "mechanism": "seccomp", "source": "seccomp-notify", "pid": 2, "exe": "/x",
            "syscall": {"name": "socket", "nr": 41, "args": {"family": "AF_INET"}}, "path": None, "access": None,
            "port": None, "action": "errno:EPERM", "would_deny": False, "capability": "wasi:sockets/tcp",
            "suggest": "imports: {wasi:sockets/tcp: {}}", "never": None}
    records = [base] * 1000 + [dict(base, folded=9000)]
    records.append({"v": 1, "type": "exit", "id": "a" * 16, "time": "2026-11-28T00:00:01.000000Z", "code": 0,
                    "signal": None, "exit_code": 0, "duration_s": 1.0, "cpu": {"user_s": 0.0, "sys_s": 0.0},
                    "memory_peak_bytes": None, "tasks": None, "records": {"violations": 1001, "folded": 9000}})
    (box,) = summarize(records)["sandboxes"]
    assert box["violations"]["total"] == 10000 and box["violations"]["records"] == 1001
    assert box["violations"]["groups"][0]["count"] == 10000
    assert "missing" not in render_text(summarize(records))
