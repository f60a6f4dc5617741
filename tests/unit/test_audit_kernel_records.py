"""Kernel Landlock denial records (as the audit feed delivers them) become violation records with the fix."""

from __future__ import annotations

from sandboxer.audit.kernel_feed import AUDIT_LANDLOCK_ACCESS, parse_record
from sandboxer.audit.session import landlock_violation, landlock_observability
from tests.audit_schema import validate_records


def record(body: str) -> dict:
    rec = parse_record(AUDIT_LANDLOCK_ACCESS, f"audit(1764300000.123:42): {body}".encode())
    assert rec is not None
    return rec


def test_file_read_names_the_file():
    v = landlock_violation(record('domain=1a6fdc66f blockers=fs.read_file path="/etc/shadow" dev="vda2" ino=143'))
    assert v["mechanism"] == "landlock" and v["source"] == "kernel-audit" and v["action"] == "deny"
    assert v["path"] == "/etc/shadow" and v["access"] == ["read_file"]
    assert v["capability"] == "wasi:filesystem/preopens"
    assert v["suggest"] == "imports: {wasi:filesystem/preopens: [{path: /etc/shadow, access: read}]}"


def test_creating_a_file_names_the_directory():
    v = landlock_violation(record('domain=1a6fdc66f blockers=fs.make_reg path="/srv/out" dev="tmpfs" ino=7'))
    assert v["path"] == "/srv/out" and v["access"] == ["make_reg"]
    assert v["suggest"] == "imports: {wasi:filesystem/preopens: [{path: /srv/out, access: write}]}"


def test_tcp_connect_names_the_port():
    v = landlock_violation(record("domain=1a6fdc66f blockers=net.connect_tcp daddr=127.0.0.1 dest=5432"))
    assert v["port"] == 5432 and v["capability"] == "wasi:sockets/tcp"
    assert v["suggest"] == "imports: {wasi:sockets/tcp: {connect: [5432]}}"


def test_records_match_the_schema():
    from sandboxer.audit.sink import new_sandbox_id

    fields = landlock_violation(record('domain=1 blockers=fs.read_file path="/etc/hostname" dev="vda2" ino=1'))
    rec = {"v": 1, "type": "violation", "id": new_sandbox_id(), "time": "2026-11-28T02:00:00.000000Z", **fields}
    validate_records([rec])


def test_no_blockers_is_no_violation():
    assert landlock_violation(record("domain=1a6fdc66f")) is None


def test_observability_says_why_not():
    assert landlock_observability({"enabled": 0}, probed=True)[0] is False
    assert "disabled" in landlock_observability({"enabled": 0}, probed=True)[1]
    assert "needs root" in landlock_observability(None, probed=True)[1]
