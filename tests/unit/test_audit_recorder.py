"""The supervisor's answer never depends on the record: a failing decoder or mapping still answers and records."""

from __future__ import annotations

from sandboxer.audit import recorder as R
from sandboxer.audit.notify import Notification
from sandboxer.mechanisms.seccomp.bpf import RET_ERRNO
from tests.audit_schema import validate_records

X86 = 0xC000003E


class FakeListener:
    def __init__(self, n: Notification) -> None:
        self.n, self.answers = n, []

    def recv(self) -> Notification:
        return self.n

    def id_valid(self, notif_id: int) -> bool:
        return True

    def respond(self, notif_id: int, **answer) -> bool:
        self.answers.append(answer)
        return True


def make(monkeypatch, **broken):
    plan = {"seccomp": {"syscalls": []}, "landlock": {}}
    records = []
    rec = R.Recorder(plan, b"", lambda type_, **f: records.append({"v": 1, "type": type_, "id": "0" * 16,
                                                                 "time": "2026-11-28T00:00:00.000000Z", **f}),
                     complain=False)
    rec._load()
    monkeypatch.setattr(R, "run_filter", lambda *a: (RET_ERRNO | 13, 1))  # the plan answers EACCES
    for name in broken:
        def boom(*a, **k):
            raise RuntimeError("broken on purpose")
        monkeypatch.setattr(R, name, boom)
    return rec, records


def test_answer_and_record(monkeypatch):
    rec, records = make(monkeypatch)
    lst = FakeListener(Notification(7, 4242, 0, 41, X86, 0, (2, 1, 0, 0, 0, 0)))  # socket(AF_INET, SOCK_STREAM)
    rec.serve(lst)
    assert lst.answers == [{"error": 13}]
    assert records[0]["action"] == "errno:EACCES" and records[0]["capability"] == "wasi:sockets/tcp"
    validate_records(records)


def test_a_broken_decoder_still_answers_and_records(monkeypatch):
    rec, records = make(monkeypatch, decode=True)
    lst = FakeListener(Notification(7, 4242, 0, 41, X86, 0, (2, 1, 0, 0, 0, 0)))
    rec.serve(lst)
    assert lst.answers == [{"error": 13}]
    assert records[0]["syscall"]["args"]["decode_error"] == "RuntimeError: broken on purpose"
    validate_records(records)


def test_a_broken_mapping_writes_a_fallback_record(monkeypatch):
    rec, records = make(monkeypatch, violation=True)
    lst = FakeListener(Notification(7, 4242, 0, 41, X86, 0, (2, 1, 0, 0, 0, 0)))
    rec.serve(lst)
    assert lst.answers == [{"error": 13}]
    assert records[0]["note"] == "record incomplete: RuntimeError: broken on purpose"
    assert records[0]["syscall"] == {"name": "socket", "nr": 41, "args": {}}
    validate_records(records)


def test_a_broken_emulator_refuses(monkeypatch):
    rec, records = make(monkeypatch)
    monkeypatch.setattr(R, "run_filter", lambda *a: 1 / 0)
    lst = FakeListener(Notification(7, 4242, 0, 41, X86, 0, (2, 1, 0, 0, 0, 0)))
    rec.serve(lst)
    assert lst.answers == [{"error": 1}]  # EPERM: fail closed


def test_folding_bounds_records_and_memory(monkeypatch):
    """Identical violations fold after FOLD_AFTER; past RECORDS_MAX new kinds fold coarsely; every one is counted."""
    monkeypatch.setattr(R, "FOLD_AFTER", 2)
    monkeypatch.setattr(R, "RECORDS_MAX", 3)
    rec, records = make(monkeypatch)
    monkeypatch.setattr(R, "_exe", lambda pid: "/bin/x")
    for i in range(5):  # the same call five times: 2 written, 3 folded
        rec.serve(FakeListener(Notification(i, 4242, 0, 41, X86, 0, (2, 1, 0, 0, 0, 0))))
    for i in range(100):  # distinct kinds (ioctl requests): 1 more written (cap), the rest fold together
        rec.serve(FakeListener(Notification(100 + i, 4242, 0, 16, X86, 0, (1, 0x1000 + i, 0, 0, 0, 0))))
    rec.flush_folded()
    assert len(records) == 3 + 2  # three written one by one, two folded records
    assert sum(r.get("folded", 1) for r in records) == 105
    assert len(rec._seen) <= 4
    validate_records(records)
