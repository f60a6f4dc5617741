"""Read-only reader of the kernel audit multicast feed: seccomp (1326) and Landlock (1423, 1424) records.

    feed = KernelFeed.open(pids={workload_pid})   # None when unavailable; KernelFeed.why_unavailable says why
    for rec in feed.poll_records(timeout=0.1): ...
    feed.close()

How it reads: a NETLINK_AUDIT socket bound to multicast group AUDIT_NLGRP_READLOG (1), which needs
CAP_AUDIT_READ in the initial user namespace. Nothing here changes audit state: no AUDIT_SET, no rules,
no auditd registration. The one request sent is AUDIT_GET (status, read-only; needs CAP_AUDIT_CONTROL,
answered EPERM otherwise, which only makes the status unknown).

What arrives (Linux 6.18, measured on the development machines):
- SECCOMP (1326) records for RET_KILL_* and RET_LOG, and for every action of a filter installed with
  SECCOMP_FILTER_FLAG_LOG (within /proc/sys/kernel/seccomp/actions_logged), even while kernel audit
  is disabled (`enabled 0`).
- LANDLOCK_ACCESS (1423) and LANDLOCK_DOMAIN (1424) records only while kernel audit is enabled
  (`auditctl -s`: enabled 1), and, per Landlock ABI 7, only for denials the domain's logging flags
  allow: by default a domain logs denials of the program that called landlock_restrict_self() but
  not after an execve() — a launcher that restricts and then execs the workload must pass
  LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON to see the workload's denials
  (Documentation/userspace-api/landlock.rst, "Logging").
- SYSCALL (1300) records close an event (same serial) when the task has an audit context; they carry
  the pid that LANDLOCK_ACCESS records lack.

Filtering: records are kept when their pid is in `pids` (a set, or a callable pid -> bool, e.g.
"is in the sandbox's cgroup"), or their Landlock domain is in `domains`. A LANDLOCK_DOMAIN
"allocated" record of a kept pid adds its domain to `domains`, so later LANDLOCK_ACCESS records of
that domain (from any descendant of the workload) are kept too.
"""

from __future__ import annotations

import os
import struct

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_GET = 1000
AUDIT_SYSCALL = 1300
AUDIT_SECCOMP = 1326
AUDIT_PROCTITLE = 1327
AUDIT_LANDLOCK_ACCESS = 1423
AUDIT_LANDLOCK_DOMAIN = 1424
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLHDR = struct.Struct("=IHHII")
_ENOBUFS = 105

TYPES = {AUDIT_SYSCALL: "SYSCALL", AUDIT_SECCOMP: "SECCOMP", AUDIT_PROCTITLE: "PROCTITLE",
         AUDIT_LANDLOCK_ACCESS: "LANDLOCK_ACCESS", AUDIT_LANDLOCK_DOMAIN: "LANDLOCK_DOMAIN"}
WANTED = frozenset({AUDIT_SECCOMP, AUDIT_LANDLOCK_ACCESS, AUDIT_LANDLOCK_DOMAIN, AUDIT_SYSCALL})

# SECCOMP_RET_* action values (the record's code=, masked with SECCOMP_RET_ACTION_FULL).
SECCOMP_ACTIONS = {0x80000000: "kill_process", 0x00000000: "kill_thread", 0x00030000: "trap",
                   0x00050000: "errno", 0x7FC00000: "user_notif", 0x7FF00000: "trace",
                   0x7FFC0000: "log", 0x7FFF0000: "allow"}

# Fields whose value is a string the kernel hex-encodes when it has special characters.
_STRING_FIELDS = frozenset({"exe", "comm", "path", "name", "cwd", "proctitle", "ocomm", "subj", "dev"})


def parse_fields(text: str) -> dict:
    """`key=value key="quoted value" …` → dict; unquoted hex for string fields is decoded
    (audit_log_untrustedstring writes strings with spaces, quotes or control bytes as hex)."""
    out: dict = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq]
        j = eq + 1
        if j < n and text[j] == '"':
            end = text.find('"', j + 1)
            end = n if end < 0 else end
            out[key] = text[j + 1:end]
            i = end + 1
        else:
            end = text.find(" ", j)
            end = n if end < 0 else end
            value = text[j:end]
            if key in _STRING_FIELDS and value not in ("(null)", "?") and _is_hex(value):
                try:
                    value = bytes.fromhex(value).decode("utf-8", "backslashreplace")
                except ValueError:
                    pass
            out[key] = value
            i = end
    return out


def _is_hex(s: str) -> bool:
    return len(s) % 2 == 0 and len(s) > 0 and all(c in "0123456789ABCDEF" for c in s)


def _int(v: str | None, base: int = 10) -> int | None:
    if v is None:
        return None
    try:
        return int(v, 0 if v.startswith("0x") else base)
    except ValueError:
        return None


def parse_record(msg_type: int, payload: bytes) -> dict | None:
    """One netlink audit message → a dict ({"type", "time", "serial", … fields}), or None if unparsable."""
    text = payload.split(b"\0", 1)[0].decode("utf-8", "backslashreplace").strip()
    if not text.startswith("audit(") or "): " not in text:
        return None
    stamp, _, body = text.partition("): ")
    when, _, serial = stamp[len("audit("):].partition(":")
    fields = parse_fields(body)
    rec: dict = {"type": TYPES.get(msg_type, str(msg_type)), "type_id": msg_type,
                 "time": float(when) if when.replace(".", "", 1).isdigit() else None, "serial": _int(serial)}
    if msg_type == AUDIT_SECCOMP:
        code = _int(fields.get("code"), 16) or 0
        action = code & 0xFFFF0000
        rec.update(pid=_int(fields.get("pid")), exe=fields.get("exe"), comm=fields.get("comm"),
                   syscall=_int(fields.get("syscall")), arch=fields.get("arch"), sig=_int(fields.get("sig")),
                   code=hex(code), action=SECCOMP_ACTIONS.get(action, hex(action)), ip=fields.get("ip"))
        # The kernel logs the action only (SECCOMP_RET_ACTION_FULL): an errno's value is not in `code`.
    elif msg_type == AUDIT_LANDLOCK_ACCESS:
        blockers = fields.get("blockers", "")
        rec.update(domain=fields.get("domain"), blockers=blockers.split(",") if blockers else [])
        for k in ("path", "dev", "name", "daddr", "saddr", "opid", "ocomm"):
            if k in fields:
                rec[k] = fields[k]
        for k in ("ino", "dest", "src", "lport", "dport"):
            if k in fields:
                rec[k] = _int(fields[k])
        if "opid" in rec:
            rec["opid"] = _int(rec["opid"])
    elif msg_type == AUDIT_LANDLOCK_DOMAIN:
        rec.update(domain=fields.get("domain"), status=fields.get("status"))
        for k in ("mode", "exe", "comm"):
            if k in fields:
                rec[k] = fields[k]
        for k in ("pid", "uid", "denials"):
            if k in fields:
                rec[k] = _int(fields[k])
    elif msg_type == AUDIT_SYSCALL:
        rec.update(pid=_int(fields.get("pid")), ppid=_int(fields.get("ppid")), syscall=_int(fields.get("syscall")),
                   success=fields.get("success"), exit=_int(fields.get("exit")), exe=fields.get("exe"),
                   comm=fields.get("comm"), arch=fields.get("arch"))
    else:
        rec["fields"] = fields
    return rec


def audit_status() -> dict | None:
    """AUDIT_GET: {"enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog"}; None
    when the kernel refuses (no CAP_AUDIT_CONTROL, not the initial namespaces) or has no audit."""
    import socket

    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_AUDIT)
    except OSError:
        return None
    try:
        s.settimeout(1.0)
        s.bind((0, 0))
        s.send(_NLHDR.pack(16, AUDIT_GET, _NLM_F_REQUEST | _NLM_F_ACK, 1, 0))
        for _ in range(4):
            data = s.recv(8192)
            off = 0
            while off + 16 <= len(data):
                length, typ, _, _, _ = _NLHDR.unpack_from(data, off)
                if typ == _NLMSG_ERROR and struct.unpack_from("=i", data, off + 16)[0] < 0:
                    return None
                if typ == AUDIT_GET and length >= 16 + 28:
                    vals = struct.unpack_from("=7I", data, off + 16)
                    keys = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost")
                    st = dict(zip(keys, vals))
                    if length >= 16 + 32:
                        st["backlog"] = struct.unpack_from("=I", data, off + 16 + 28)[0]
                    st.pop("mask")
                    return st
                off += max((length + 3) & ~3, 16)
    except OSError:
        return None
    finally:
        s.close()
    return None


class KernelFeed:
    """A bound NETLINK_AUDIT multicast socket; records for the sandbox's pids and Landlock domains."""

    why_unavailable: str | None = None  # set by open() when it returns None

    def __init__(self, sock, pids=None, domains=None, status: dict | None = None) -> None:
        self.sock = sock
        self.pids = pids if pids is not None else set()
        self.domains: set = set(domains or ())
        self.status = status
        self.overruns = 0  # ENOBUFS: the socket buffer overflowed and the kernel dropped records

    @property
    def landlock_observable(self) -> bool | None:
        """Will Landlock denials show up? Only while kernel audit is enabled (None: status unknown)."""
        if self.status is None:
            return None
        return self.status.get("enabled") in (1, 2)

    @classmethod
    def probe(cls, pids=None, domains=None) -> tuple[KernelFeed | None, str | None]:
        """(feed, None), or (None, the reason it cannot be read here)."""
        try:
            with open("/proc/cmdline") as f:
                if "audit=0" in f.read().split():
                    return None, "kernel audit is disabled on the kernel command line (audit=0)"
        except OSError:
            pass
        import socket

        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_AUDIT)
        except OSError as e:
            return None, f"no NETLINK_AUDIT socket: {e.strerror} (kernel built without audit?)"
        try:
            sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
        except OSError as e:
            sock.close()
            if e.errno in (1, 13):
                return None, ("reading the kernel audit feed needs CAP_AUDIT_READ (root in the initial user "
                              f"namespace); this process has uid {os.geteuid()}")
            return None, f"cannot join the audit multicast group: {e.strerror}"
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        return cls(sock, pids, domains, audit_status()), None

    @classmethod
    def open(cls, pids=None, domains=None) -> KernelFeed | None:
        feed, why = cls.probe(pids, domains)
        cls.why_unavailable = why
        return feed

    def fileno(self) -> int:
        return self.sock.fileno()

    def _wanted(self, rec: dict) -> bool:
        pid = rec.get("pid")
        if rec["type_id"] == AUDIT_LANDLOCK_DOMAIN:
            if rec.get("status") == "allocated" and pid is not None and self._pid_ok(pid):
                self.domains.add(rec["domain"])
                return True
            return rec.get("domain") in self.domains
        if rec["type_id"] == AUDIT_LANDLOCK_ACCESS:
            return rec.get("domain") in self.domains
        return pid is not None and self._pid_ok(pid)

    def _pid_ok(self, pid: int) -> bool:
        return self.pids(pid) if callable(self.pids) else pid in self.pids

    def poll_records(self, timeout: float | None = 0.0, *, unfiltered: bool = False) -> list[dict]:
        """Parsed records that arrived within `timeout` seconds (0: only what is queued now)."""
        import select

        out: list[dict] = []
        wait = timeout
        while True:
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return out
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == _ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            off = 0
            while off + 16 <= len(data):
                length, typ, _, _, _ = _NLHDR.unpack_from(data, off)
                if length < 16:
                    break
                if typ in WANTED:
                    rec = parse_record(typ, data[off + 16:off + length])
                    if rec is not None and (unfiltered or self._wanted(rec)):
                        out.append(rec)
                off += (length + 3) & ~3
            wait = 0.0  # drain what is queued, then return

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> KernelFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
