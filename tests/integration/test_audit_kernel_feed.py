"""The kernel audit multicast feed: real seccomp and Landlock records, and the record parser.

Never changes audit state: the feed only listens, the status is read with AUDIT_GET.
"""

from __future__ import annotations

import errno
import os
import struct
import time

import pytest

from sandboxer.audit import kernel_feed as K
from sandboxer.launch import kernel
from sandboxer.mechanisms.seccomp import bpf
from sandboxer.mechanisms.seccomp.apply import load_filter
from tests.forkrun import in_child

GETPPID = {"x86_64": 110, "aarch64": 173}.get(os.uname().machine)


# --- parsing (no kernel) ----------------------------------------------------------------------

def test_parse_seccomp_record():
    text = (b'audit(1795830323.419:1136): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined '
            b'pid=28806 comm="python" exe="/usr/bin/python3.11" sig=31 arch=c000003e syscall=39 compat=0 '
            b'ip=0x7f78ae4f34e7 code=0x80000000')
    r = K.parse_record(1326, text)
    assert r["type"] == "SECCOMP" and r["serial"] == 1136 and r["time"] == pytest.approx(1795830323.419)
    assert (r["pid"], r["syscall"], r["sig"], r["action"]) == (28806, 39, 31, "kill_process")
    assert r["exe"] == "/usr/bin/python3.11" and r["comm"] == "python"
    r = K.parse_record(1326, text.replace(b"code=0x80000000", b"code=0x50000"))
    assert r["action"] == "errno"


def test_parse_landlock_records_and_hex_strings():
    access = (b'audit(1729738800.268:30): domain=195ba459b blockers=fs.read_file,fs.truncate '
              b'path="/etc/hostname" dev="vda1" ino=1234')
    r = K.parse_record(1423, access)
    assert r == {"type": "LANDLOCK_ACCESS", "type_id": 1423, "time": 1729738800.268, "serial": 30,
                 "domain": "195ba459b", "blockers": ["fs.read_file", "fs.truncate"], "path": "/etc/hostname",
                 "dev": "vda1", "ino": 1234}
    net = b"audit(1.5:31): domain=195ba459b blockers=net.connect_tcp daddr=127.0.0.1 dest=8080"
    r = K.parse_record(1423, net)
    assert r["blockers"] == ["net.connect_tcp"] and r["daddr"] == "127.0.0.1" and r["dest"] == 8080
    # a path with a space is hex-encoded, unquoted
    spaced = b"audit(1.5:32): domain=1a blockers=fs.write_file path=2F746D702F6120622E747874 dev=\"vda1\" ino=5"
    assert K.parse_record(1423, spaced)["path"] == "/tmp/a b.txt"
    dom = (b'audit(1.5:30): domain=195ba459b status=allocated mode=enforcing pid=286 uid=0 '
           b'exe="/root/sandboxer" comm="sandboxer"')
    r = K.parse_record(1424, dom)
    assert (r["domain"], r["status"], r["pid"], r["exe"], r["mode"]) == (
        "195ba459b", "allocated", 286, "/root/sandboxer", "enforcing")
    r = K.parse_record(1424, b"audit(1.5:40): domain=195ba459b status=deallocated denials=3")
    assert r["status"] == "deallocated" and r["denials"] == 3
    assert K.parse_record(1424, b"garbage") is None


def test_domain_of_a_kept_pid_keeps_its_access_records():
    feed = K.KernelFeed(sock=None, pids={286})
    dom = K.parse_record(1424, b"audit(1.5:30): domain=abc status=allocated mode=enforcing pid=286 uid=0")
    acc = K.parse_record(1423, b"audit(1.5:30): domain=abc blockers=fs.read_file path=\"/x\"")
    other = K.parse_record(1423, b"audit(1.5:31): domain=def blockers=fs.read_file path=\"/y\"")
    assert feed._wanted(dom) and feed._wanted(acc) and not feed._wanted(other)
    feed = K.KernelFeed(sock=None, pids=lambda pid: pid > 1000)
    assert feed._wanted(K.parse_record(1326, b"audit(1.5:1): pid=2000 syscall=1 code=0x7ffc0000"))


# --- the live feed ----------------------------------------------------------------------------

@pytest.fixture
def feed():
    f, why = K.KernelFeed.probe()
    if f is None:
        pytest.skip(f"kernel audit feed not readable here: {why}")
    yield f
    f.close()


def _filter(nr: int, action: int, arch: int) -> bytes:
    ins = [(bpf.LD_W_ABS, 0, 0, bpf.OFF_ARCH), (bpf.JEQ_K, 1, 0, arch), (bpf.RET_K, 0, 0, bpf.RET_KILL_PROCESS),
           (bpf.LD_W_ABS, 0, 0, bpf.OFF_NR), (bpf.JEQ_K, 0, 1, nr), (bpf.RET_K, 0, 0, action),
           (bpf.RET_K, 0, 0, bpf.RET_ALLOW)]
    return b"".join(struct.pack("<HBBI", *i) for i in ins)


def _records_for(feed, pid, want, timeout=3.0):
    feed.pids = {pid}
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want(got):
        got += feed.poll_records(0.2)
    return got


def _arch():
    from sandboxer.mechanisms.seccomp.tables import table

    return table(os.uname().machine).AUDIT_ARCH


def test_status_is_read_only_and_reported(feed):
    st = K.audit_status()
    assert st is not None and st["enabled"] in (0, 1, 2)
    assert feed.landlock_observable == (st["enabled"] in (1, 2))
    assert K.audit_status() == st or K.audit_status()["enabled"] == st["enabled"]  # reading changed nothing


@pytest.mark.parametrize("action, name, sig, flag", [
    (bpf.RET_LOG, "log", 0, 0),
    (bpf.RET_KILL_PROCESS, "kill_process", 31, 0),
    (bpf.RET_ERRNO | errno.EPERM, "errno", 0, kernel.SECCOMP_FILTER_FLAG_LOG),  # logged only with FLAG_LOG
])
def test_real_seccomp_record(feed, action, name, sig, flag):
    if GETPPID is None:
        pytest.skip("no syscall table for this arch")

    def child():
        kernel.set_no_new_privs()
        load_filter(_filter(GETPPID, action, _arch()), flag)
        os.getppid()
        return "done"

    res = in_child(child)
    assert (res.signal == 31) if name == "kill_process" else res.ok
    got = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not got:
        got = [r for r in feed.poll_records(0.2, unfiltered=True)
               if r["type"] == "SECCOMP" and r["syscall"] == GETPPID and r["action"] == name]
    assert got, f"no SECCOMP record for action {name}"
    r = got[0]
    assert r["sig"] == sig and r["pid"] not in (None, os.getpid())
    assert r["arch"] == f"{_arch():x}"
    assert r["code"] == hex(action & 0xFFFF0000)  # the errno value itself is not logged


def test_real_landlock_record(feed):
    """A child restricts itself (read_file handled, no rule) and opens a file: EACCES. Landlock
    logs that denial (same executable, default ABI 7 flags) only while kernel audit is enabled."""
    from sandboxer.mechanisms.landlock.apply import prepare_ruleset, restrict_self, set_no_new_privs
    from sandboxer.mechanisms.landlock.probe import probe_abi

    def child():
        section = {"abi": 6, "handled_fs": ["read_file"], "handled_net": [], "scoped": [], "paths": [],
                   "ports": [], "restrict_flags": []}
        rs = prepare_ruleset(section, kernel_abi=7)
        set_no_new_privs()
        restrict_self(rs.fd, 0)
        try:
            os.open("/etc/hostname", os.O_RDONLY)
            return (os.getpid(), "opened")
        except OSError as e:
            return (os.getpid(), errno.errorcode[e.errno])

    abi = probe_abi()
    if abi < 7:
        pytest.skip(f"Landlock ABI {abi}: audit records need ABI 7 (Linux 6.15)")
    res = in_child(child)
    assert res.ok, res.error
    pid, outcome = res.value
    assert outcome == "EACCES"
    got = _records_for(feed, pid, lambda g: any(r["type"] == "LANDLOCK_ACCESS" for r in g), timeout=1.5)
    if not feed.landlock_observable:
        assert not [r for r in got if r["type"].startswith("LANDLOCK")]
        pytest.skip("kernel audit is disabled here (AUDIT_GET: enabled 0): Landlock emits no 1423/1424 records, "
                    "and sandboxer never enables audit; the launch record must say Landlock denials are unobserved")
    domains = [r for r in got if r["type"] == "LANDLOCK_DOMAIN" and r["status"] == "allocated"]
    accesses = [r for r in got if r["type"] == "LANDLOCK_ACCESS"]
    assert domains and domains[0]["pid"] == pid
    assert accesses and accesses[0]["domain"] == domains[0]["domain"]
    assert "fs.read_file" in accesses[0]["blockers"] and accesses[0]["path"] == "/etc/hostname"
