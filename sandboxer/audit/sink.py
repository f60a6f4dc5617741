"""Stage ⑤, the record writer: one JSON line per event, each written by a single write(2).

A record is in the kernel as soon as `emit` returns, so it survives the launcher being SIGKILLed
right after; one write per record means two writers appending to one file (O_APPEND: the kernel
positions and copies each write whole, under the inode lock) never interleave or leave half a line.
On a pipe the same holds for records up to PIPE_BUF (4096 bytes), which violation records stay
well under. The launch path imports this module when `--audit` is given: os, time and _thread only (json
at the first record, which is written after fork) — no typing, dataclasses or re.
"""

from __future__ import annotations

import _thread
import os
import time

VERSION = 1
# 0o600: records carry the workload's command line, paths it touched and its executable names,
# which may be as private as shell history (auditd's own logs are 0600 too). The user who runs
# sandboxer reads them; sharing is a chmod away, and an existing file keeps its mode.
FILE_MODE = 0o600
_RESERVED = frozenset(("v", "type", "id", "time"))
_HEX = frozenset("0123456789abcdef")


def _fallback(obj: object) -> object:
    """Values json cannot encode: bytes (a path read from /proc/PID/mem), sets, paths."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


_encode = None  # json's encoder, made at the first record (json costs ~6 ms to import: not before exec)


def _encoder():  # noqa: ANN202
    global _encode
    import json

    _encode = json.JSONEncoder(separators=(",", ":"), default=_fallback).encode
    return _encode


def new_sandbox_id() -> str:
    """16 hex characters from the kernel's random source."""
    return os.urandom(8).hex()


class AuditSink:
    """Writes audit records to a file (appended), stderr or an inherited descriptor.

    `counts` holds how many records of each type were written; `lost` how many could not be (the
    error is in `error`): a full disk or a closed pipe must not take the supervisor down with it.
    """

    __slots__ = ("fd", "id", "spec", "counts", "lost", "error", "bytes", "_lock", "_sec", "_prefix")

    def __init__(self, fd: int, sandbox_id: str, spec: str) -> None:
        self.fd, self.id, self.spec = fd, sandbox_id, spec
        self.counts: dict[str, int] = {}
        self.lost = 0
        self.bytes = 0  # written so far (the supervisor folds violations past a budget)
        self.error: OSError | None = None
        self._lock = _thread.allocate_lock()  # the notify listener and the main thread both emit
        self._sec, self._prefix = -1, ""

    @classmethod
    def open(cls, spec: str, sandbox_id: str | None = None) -> "AuditSink":
        """A sink for `--audit SPEC`: a file path (created 0600 or appended to), `-` (stderr) or `fd:N`.

        The sink writes to its own close-on-exec descriptor, so the workload never inherits it
        (and cannot forge records). Raises UsageError for a bad spec or an unopenable file.
        """
        from ..errors import UsageError

        if sandbox_id is None:
            sandbox_id = new_sandbox_id()
        elif not (isinstance(sandbox_id, str) and len(sandbox_id) == 16 and _HEX.issuperset(sandbox_id)):
            raise UsageError(f"sandbox id must be 16 lowercase hex characters, not {sandbox_id!r}")
        if not isinstance(spec, str) or not spec:
            raise UsageError("--audit needs a file path, '-' for stderr, or fd:N")
        if spec == "-" or spec.startswith("fd:"):
            n = 2 if spec == "-" else spec[3:]
            if n != 2 and not (n.isascii() and n.isdigit()):
                raise UsageError(f"--audit {spec}: expected fd:N with N a file descriptor number, e.g. fd:3")
            n = int(n)
            try:
                os.write(n, b"")  # EBADF for a closed or read-only descriptor; writes nothing
                fd = os.dup(n)  # Python's dup is close-on-exec
            except OSError as e:
                what = "stderr" if spec == "-" else f"file descriptor {n}"
                raise UsageError(f"--audit {spec}: {what} is not open for writing ({e.strerror})") from None
            return cls(fd, sandbox_id, spec)
        try:
            fd = os.open(spec, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY, FILE_MODE)
        except OSError as e:
            raise UsageError(f"--audit {spec}: cannot open for appending: {e.strerror}") from None
        return cls(fd, sandbox_id, spec)

    def _now(self) -> str:
        """RFC 3339 UTC with microseconds and 'Z' (strftime once per second: emit is hot)."""
        ns = time.time_ns()
        sec, us = ns // 1_000_000_000, ns // 1000 % 1_000_000
        if sec != self._sec:
            self._sec, self._prefix = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{us:06d}Z"

    def emit(self, type: str, **fields: object) -> dict:
        """Write one record `{"v":1,"type":…,"id":…,"time":…, **fields}` and return it."""
        if not _RESERVED.isdisjoint(fields):
            raise TypeError(f"emit(): {', '.join(sorted(_RESERVED & fields.keys()))} are set by the sink")
        record = {"v": VERSION, "type": type, "id": self.id, "time": self._now()}
        record.update(fields)
        data = ((_encode or _encoder())(record) + "\n").encode()
        with self._lock:
            if self.fd < 0:
                raise ValueError("audit sink is closed")
            try:
                n = os.write(self.fd, data)
                while n < len(data):  # only on a pipe or socket under pressure: finish the line
                    n += os.write(self.fd, data[n:])
            except OSError as e:
                self.lost += 1
                self.error = e
                return record
            self.counts[type] = self.counts.get(type, 0) + 1
            self.bytes += len(data)
        return record

    def close(self) -> None:
        """Close the sink's descriptor (idempotent)."""
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "AuditSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
