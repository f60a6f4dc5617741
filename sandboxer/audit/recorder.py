"""Audit, supervisor side: answer each seccomp notification as the plan would, and record it.

For every notification: decode the call (paths and sockaddrs read from the workload's memory),
check the notification id is still valid (so what was read belongs to the blocked thread), answer,
then write the record. The answer is what the plan's own program returns for the call (emulated on
the syscall number, arch and raw arguments, exactly as the kernel would have run it):

    ERRNO n        answer -n                      record: action errno:NAME
    KILL_*         SIGKILL the process            record: action kill (the run then exits 159)
    LOG            continue (complain mode)       record: would_deny, action allow
    ALLOW          continue (an observed call in complain mode): record each access Landlock
                   would have refused (path + rights, or port), as mechanism "landlock"
"""

from __future__ import annotations

import errno as _errno
import os
import _signal as signal

from sandboxer.audit import notify

# Imported at the first notification, not at launch: decoding, the capability mapping and the
# emulator cost ~25 ms of imports, which a run that refuses nothing should not pay before exec.
decode = run_filter = violation = would_deny = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

_ACTION = 0xFFFF0000
_ERRNO, _LOG, _ALLOW = 0x00050000, 0x7FFC0000, 0x7FFF0000
_KILLS = (0x80000000, 0x00000000)  # KILL_PROCESS, KILL_THREAD
_PATH_KEYS = ("path", "pathname", "filename", "oldpath")
FOLD_AFTER = 1000  # identical violations written one by one before the rest are counted
RECORDS_MAX = 100_000  # violation records per run before everything is counted


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


_VOLATILE_ARGS = frozenset(("fd", "dirfd", "olddirfd", "newdirfd", "addrlen", "len", "size", "count", "buf"))


def _digest(*parts: object) -> int:
    """A fixed-size fold key from what makes violations alike: the decoded arguments that name something
    (paths, families, types, addresses, ports, flags, requests, signals), not pointers, lengths or fd numbers."""
    return hash(parts)


def _args_key(args: dict) -> tuple:
    return tuple(sorted((k, v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
                        for k, v in args.items()
                        if k not in _VOLATILE_ARGS and not (isinstance(v, str) and v.startswith("0x"))))


def _kill(listener: notify.Listener, n: notify.Notification) -> None:
    """SIGKILL the notifying thread's process without a pid-reuse race: a pidfd taken while the id is still
    valid (the thread is blocked in the call, so the tid is still its own) cannot hit another process."""
    try:
        pidfd = notify.pidfd_open(n.pid, notify.PIDFD_THREAD)
    except OSError as e:
        if e.errno != _errno.EINVAL:
            return  # gone already
        # Before Linux 6.9 a pidfd names a process only: take the thread's process (Tgid, read while
        # the thread is still blocked in the call); id_valid below still ties it to the notification.
        try:
            with open(f"/proc/{n.pid}/status", "rb") as f:
                tgid = next(int(line.split()[1]) for line in f if line.startswith(b"Tgid:"))
            pidfd = notify.pidfd_open(tgid)
        except (OSError, StopIteration, ValueError):
            return
    try:
        if listener.id_valid(n.id):
            notify.pidfd_send_signal(pidfd, signal.SIGKILL)  # a fatal signal takes the whole thread group
    except OSError:
        pass
    finally:
        os.close(pidfd)


def _path(args: dict) -> str | None:
    for key in _PATH_KEYS:
        value = args.get(key)
        if isinstance(value, str):
            return value
    return None


class Recorder:
    """Serves one sandbox's seccomp listener: decides, answers, records."""

    def __init__(self, plan: dict, program: bytes, emit: Callable[..., object], *, complain: bool) -> None:
        self.program = program  # the plan's own filter: what the kernel would have done
        self.emit = emit  # emit("violation", **fields)
        self.complain = complain
        self._landlock = plan.get("landlock") or {}
        self.files = self.ports = None  # complain mode: the grants, built with the first notification
        self._loaded = False
        # The program's answer depends on the arguments only for the calls with argument rules; for the
        # others it is a function of the number, remembered after the first emulation.
        self._checked = frozenset(e["nr"] for e in (plan.get("seccomp") or {}).get("syscalls", ()) if e.get("rules"))
        self._answers: dict[int, int] = {}
        self.recorded = 0
        self.folded = 0  # violations counted into a folded record instead of written one by one
        self.budget_spent: Callable[[], bool] = lambda: False  # the session's byte budget for records
        self._seen: dict[tuple, list] = {}  # fold key → [records written, folded since, last fields]
        self.killed = False  # a call the plan kills for was made: the run reports 159, as a seccomp kill

    def _load(self) -> None:
        global decode, run_filter, violation, would_deny
        from sandboxer.audit.decode import decode
        from sandboxer.audit.grants import FileGrants, PortGrants, would_deny
        from sandboxer.audit.suggest import violation
        from sandboxer.mechanisms.seccomp.emulator import run as run_filter

        section = self._landlock
        if self.complain and section.get("handled_fs"):
            self.files = FileGrants(section)
        if self.complain and section.get("handled_net"):
            self.ports = PortGrants(section)
        self._loaded = True

    def serve(self, listener: notify.Listener) -> None:
        """Receive one notification (the listener is readable), answer it, record what it was."""
        if not self._loaded:
            self._load()
        n = listener.recv()
        if n is None:
            return  # the thread was killed meanwhile: nothing to answer
        try:
            value = self._answers.get(n.nr) if n.nr not in self._checked else None
            if value is None:
                value = run_filter(self.program, n.nr, n.arch, n.args, n.instruction_pointer)[0]
                if n.nr not in self._checked:
                    self._answers[n.nr] = value
        except Exception:  # noqa: BLE001 - a bug here must not let the call through: refuse it
            value = _ERRNO | _errno.EPERM
        action = value & _ACTION
        try:
            call = decode(n, sock_info=notify.socket_info)
        except Exception as e:  # noqa: BLE001 - evidence only: answer anyway, say what went wrong
            call = {"name": f"syscall_{n.nr}", "nr": n.nr, "args": {"decode_error": f"{type(e).__name__}: {e}"}}
        call["exe"] = _exe(n.pid)  # now, while it is blocked: once answered it may exec, or exit
        trusted = listener.id_valid(n.id)  # after the reads: they came from the blocked thread
        if action == _ERRNO:
            err = value & 0xFFFF
            listener.respond(n.id, error=err)
            self._record(n, call, trusted, f"errno:{_errno.errorcode.get(err, err)}", would_deny=False)
        elif action in _KILLS:
            self.killed = True
            self._record(n, call, trusted, "kill", would_deny=False)
            _kill(listener, n)
            listener.respond(n.id, error=_errno.EPERM)  # ENOENT once the kill landed: returns False
        elif action == _LOG:
            listener.respond(n.id, continue_=True)
            self._record(n, call, trusted, "allow", would_deny=True)
        elif action == _ALLOW:
            try:
                misses = would_deny(call, self.files, self.ports) if trusted else ()  # before the call runs
            except Exception as e:  # noqa: BLE001 - complain mode lets it run; the record says it was not judged
                misses = ()
                self._fallback(n, call, "allow", True, e)
            listener.respond(n.id, continue_=True)
            for miss in misses:
                self._record_access(n, call, miss)
        else:  # TRAP, TRACE, USER_NOTIF: the compiler never emits them; refuse rather than guess
            listener.respond(n.id, error=_errno.EPERM)
            self._record(n, call, trusted, "errno:EPERM", would_deny=False)

    def _admit(self, key: tuple, build: Callable[[], dict]) -> None:
        """Write a violation record, or fold it: after FOLD_AFTER identical ones (same call, action,
        object and program) the rest are only counted — without building them — and flush_folded()
        writes one record saying how many. A workload looping on a refused call cannot fill the disk
        or slow the supervisor down; nothing is lost silently."""
        over = self.recorded >= RECORDS_MAX or self.budget_spent()
        seen = self._seen.get(key)
        if seen is None and over:
            key = key[:3]  # past the cap, new kinds fold by mechanism, call and action: bounded memory
            seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = [0, 0, None]
            if over:  # the first of each coarse kind is still written: nothing new goes unseen
                over = False
        if seen[0] < FOLD_AFTER and not over:
            seen[0] += 1
            self.recorded += 1
            self.emit("violation", **build())
        else:
            seen[1] += 1
            seen[2] = build
            self.folded += 1

    def _write(self, fields: dict) -> None:
        sc = fields.get("syscall") or {}
        self._admit((fields.get("mechanism"), sc.get("name"), fields.get("action"), fields.get("note")),
                    lambda: fields)

    def flush_folded(self) -> None:
        """One record per folded kind: the last one seen, with `folded` = how many it stands for (none written)."""
        for seen in self._seen.values():
            if seen[1]:
                fields = seen[2]()
                note = f"stands for {seen[1]} violations like this one, counted and not written one by one"
                fields = dict(fields, folded=seen[1], note=f"{fields['note']}; {note}" if fields.get("note") else note)
                seen[1] = 0
                self.recorded += 1
                self.emit("violation", **fields)

    def _fallback(self, n: notify.Notification, call: dict, action: str, would_deny: bool, error: Exception) -> None:
        """A record with what is certain (pid, call, action) when building the full one failed: none is lost."""
        self._write(dict(mechanism="seccomp", source="seccomp-notify", pid=n.pid, exe=call.get("exe"),
                  syscall={"name": call.get("name") or f"syscall_{n.nr}", "nr": n.nr, "args": {}}, path=None,
                  access=None, port=None, action=action, would_deny=would_deny, capability=None, suggest=None,
                  never=None, note=f"record incomplete: {type(error).__name__}: {error}"))

    def _record(self, n: notify.Notification, call: dict, trusted: bool, action: str, *, would_deny: bool) -> None:
        try:
            self._full_record(n, call, trusted, action, would_deny=would_deny)
        except Exception as e:  # noqa: BLE001 - the answer is given; the record must still be written
            self._fallback(n, call, action, would_deny, e)

    def _full_record(self, n: notify.Notification, call: dict, trusted: bool, action: str, *, would_deny: bool) -> None:
        args = call["args"] if trusted else {"unverified": True}
        exe, path = call.get("exe"), _path(args) if trusted else None
        self._admit(("seccomp", call["name"], action, _digest(exe, path, _args_key(args))),
                    lambda: violation("seccomp", "seccomp-notify", action, pid=n.pid, exe=exe, syscall=call["name"],
                                      nr=call["nr"], args=args, path=path, would_deny=would_deny))

    def _record_access(self, n: notify.Notification, call: dict, miss: dict) -> None:
        try:
            self._full_record_access(n, call, miss)
        except Exception as e:  # noqa: BLE001 - the answer is given; the record must still be written
            self._fallback(n, call, "allow", True, e)

    def _full_record_access(self, n: notify.Notification, call: dict, miss: dict) -> None:
        args = dict(call["args"], syscall=call["name"])
        exe = call.get("exe")
        key = ("landlock", call["name"], "allow", _digest(exe, miss.get("path"), miss.get("port"), tuple(miss["rights"])))
        if "port" in miss:
            self._admit(key, lambda: violation("landlock", "observe", "allow", pid=n.pid, exe=exe, args=args,
                                               port=miss["port"], access=miss["rights"], would_deny=True))
        else:
            self._admit(key, lambda: violation(
                "landlock", "observe", "allow", pid=n.pid, exe=exe, args=args, path=miss["path"],
                access=miss["rights"], would_deny=True,
                directory=any(r.startswith(("make_", "remove_")) for r in miss["rights"])))
