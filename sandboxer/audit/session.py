"""Audit, one supervised run: where records go, the notification recorder, and the launch/limit/exit records.

The launcher (launch/run.py) creates a session when a run is supervised — `--audit SPEC` was given,
or the plan is in complain mode (on-violation: log) — and calls it at fixed points: program() before
fork, launch() once the child is started, recorder.serve() for each notification, finish() after
the workload is reaped. Without --audit, a complain-mode run writes each would-be violation as one
line on stderr instead of records.
"""

from __future__ import annotations

import _signal as signal
import os
import sys

from sandboxer.audit.recorder import Recorder
from sandboxer.audit.sink import AuditSink

# Signal numbers → names from the C module (`import signal` would load enum); SIGIOT etc. are aliases.
_SIGNAMES = {getattr(signal, n): n for n in sorted(dir(signal), reverse=True)
             if n.startswith("SIG") and not n.startswith("SIG_") and n not in ("SIGIOT", "SIGPOLL", "SIGCLD")}


def landlock_observability() -> tuple[bool, str]:
    """Can Landlock denials be seen for this run? (Only through the kernel audit feed, never enabled by us.)"""
    from sandboxer.audit.kernel_feed import audit_status

    status = audit_status()
    if status is None:
        return False, ("the kernel audit status cannot be read here (needs root): Landlock denials are "
                       "refused by the kernel but not recorded")
    if not status.get("enabled"):
        return False, ("kernel audit is disabled (auditctl -s: enabled 0): Landlock denials are refused by "
                       "the kernel but not recorded; sandboxer never enables audit")
    return False, ("kernel audit is enabled, but this version of sandboxer does not read Landlock records "
                   "from it yet: Landlock denials are refused but not recorded")


class AuditSession:
    """The records of one supervised run."""

    def __init__(self, spec: str | None, plan: dict, bpf: bytes) -> None:
        self.sink = AuditSink.open(spec) if spec else None
        self.complain = (plan.get("seccomp") or {}).get("violation") == "log"
        self.recorder = Recorder(plan, bpf, self.emit, complain=self.complain)
        self.lines = 0  # would-be violations written to stderr (complain mode without --audit)
        self.limit_values: dict = {}  # limit name → the plan's value, for limit records
        self._launch: dict | None = None

    def emit(self, type_: str, **fields: object) -> None:
        if self.sink is not None:
            self.sink.emit(type_, **fields)
        elif type_ == "violation":
            from sandboxer.audit.summary import describe

            rec = dict(fields, type=type_)
            how = "would deny" if fields.get("would_deny") else str(fields.get("action"))
            line = f"sandboxer: {how}: {fields.get('mechanism')} {describe(rec)}"
            if fields.get("suggest"):
                line += f"\n           allow it with: {fields['suggest']}"
            elif fields.get("never"):
                line += f"\n           never granted: {fields['never']}"
            os.write(2, (line + "\n").encode(errors="replace"))
            self.lines += 1

    def program(self, plan: dict, bpf: bytes) -> bytes:
        """The BPF program the workload gets: refusals (and complain-mode observations) notify us.

        It is a function of the plan's program, so it is cached next to the plan cache, keyed by the
        hash of that program: a repeated supervised launch neither imports nor runs the assembler.
        """
        from _sha256 import sha256

        from sandboxer import __version__
        from sandboxer.cache import cache_root, read_trusted, write_atomic

        key = sha256(b"%s\0%d\0" % (__version__.encode(), self.complain) + bpf).hexdigest()[:32]
        path = os.path.join(cache_root(), f"notify-{key}.bpf")
        program = read_trusted(path)
        if program is None:
            from sandboxer.audit.filter import notify_program

            program = notify_program(plan["seccomp"], complain=self.complain)
            write_atomic(path, program)
        return program

    def launch(self, *, manifest: str | None, sha256: str | None, argv: list[str], enforce: dict,
               warnings: list[str]) -> None:
        """The launch record's fields, known before fork; emit_launch() writes it once the child runs."""
        u = os.uname()
        self._launch = {"manifest": {"path": manifest and os.path.abspath(manifest), "sha256": sha256},
                        "command": list(argv), "supervisor_pid": os.getpid(),
                        "host": {"kernel": u.release, "arch": u.machine},
                        "mode": "complain" if self.complain else "enforce", "enforce": enforce,
                        "warnings": list(warnings)}

    def emit_launch(self) -> None:
        """Write the launch record (first of the run), with whether Landlock denials can be observed."""
        fields, self._launch = self._launch, None
        if self.sink is None or fields is None:
            return
        landlock = fields["enforce"].get("landlock") or {}
        if landlock.get("enforced"):
            landlock["observable"], landlock["observable_note"] = landlock_observability()
        self.sink.emit("launch", **fields)

    def finish(self, *, status: int, exit_code: int, duration: float, rusage: object, cgroup: dict | None,
               limits: dict, timed_out: float | None) -> None:
        """limit records (what the kernel stopped) and the exit record."""
        if self.sink is not None:
            self._limits(cgroup, limits, timed_out)
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            mem = (cgroup or {}).get("memory", {}).get("peak_bytes")
            self.sink.emit(
                "exit", code=code, signal=None if sig is None else _SIGNAMES.get(sig, f"SIG{sig}"),
                exit_code=exit_code, duration_s=round(duration, 6),
                cpu={"user_s": round(rusage.ru_utime, 6), "sys_s": round(rusage.ru_stime, 6)},  # type: ignore[attr-defined]
                memory_peak_bytes=mem if mem is not None else rusage.ru_maxrss * 1024,  # type: ignore[attr-defined]
                tasks=(cgroup or {}).get("pids", {}).get("peak"),
                records={"violations": self.sink.counts.get("violation", 0)},
            )
        elif self.complain and self.lines:
            sys.stderr.write(f"sandboxer: complain mode: {self.lines} would-be violation(s) above; "
                             "`--audit FILE` records them, `sandboxer audit FILE --suggest` turns them into a manifest patch\n")

    def _limits(self, cgroup: dict | None, limits: dict, timed_out: float | None) -> None:
        assert self.sink is not None
        if timed_out is not None:
            self.sink.emit("limit", kind="wall_time", limit=timed_out, count=None,
                           detail=f"the sandbox was killed after {timed_out:g} s")
        if not cgroup:
            return
        mem, pids, cpu = cgroup.get("memory", {}), cgroup.get("pids", {}), cgroup.get("cpu", {})
        if mem.get("oom_kills"):
            self.sink.emit("limit", kind="oom_kill", limit=limits.get("memory"), count=mem["oom_kills"],
                           detail=f"the kernel OOM-killed {mem['oom_kills']} process(es) at the memory limit")
        elif mem.get("max_hits"):
            self.sink.emit("limit", kind="memory_max", limit=limits.get("memory"), count=mem["max_hits"],
                           detail="allocations hit the memory limit (reclaimed, no OOM kill)")
        if pids.get("max_events"):
            self.sink.emit("limit", kind="pids_max", limit=limits.get("pids"), count=pids["max_events"],
                           detail=f"{pids['max_events']} fork/clone call(s) failed with EAGAIN at the pids limit")
        if cpu.get("nr_throttled"):
            self.sink.emit("limit", kind="cpu_throttled", limit=limits.get("cpu"), count=cpu["nr_throttled"],
                           detail=f"throttled in {cpu['nr_throttled']} of {cpu.get('nr_periods')} periods")

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
