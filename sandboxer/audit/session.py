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


LANDLOCK_LOG_NEW_EXEC_ON = 1 << 1  # LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON (ABI 7): log the exec'd workload's denials
FEED_NOTE = ("Landlock denials are read from the kernel audit feed (read-only: sandboxer never changes "
             "audit settings; they also reach the system's audit log)")


def landlock_observability(status: dict | None = None, *, probed: bool = False) -> tuple[bool, str]:
    """Can Landlock denials be seen for this run? (Only through the kernel audit feed, never enabled by us.)"""
    from sandboxer.audit.kernel_feed import audit_status

    if not probed:
        status = audit_status()
    if status is None:
        return False, ("the kernel audit status cannot be read here (needs root): Landlock denials are "
                       "refused by the kernel but not recorded")
    if not status.get("enabled"):
        return False, ("kernel audit is disabled (auditctl -s: enabled 0): Landlock denials are refused by "
                       "the kernel but not recorded; sandboxer never enables audit")
    return False, ("kernel audit is enabled, but its multicast feed cannot be read by this process "
                   "(needs CAP_AUDIT_READ): Landlock denials are refused but not recorded")


def landlock_violation(rec: dict) -> dict | None:
    """A kernel LANDLOCK_ACCESS record (kernel_feed.parse_record) → the fields of a violation record."""
    from sandboxer.audit.suggest import violation

    blockers = rec.get("blockers") or []
    rights = [b.partition(".")[2] or b for b in blockers]
    if not rights:
        return None
    pid = rec.get("pid")
    port = rec.get("dest") if rec.get("dest") is not None else rec.get("src")  # lsm_audit: connect dest=, bind src=
    if any(b.startswith("net.") for b in blockers) and port is not None:
        return violation("landlock", "kernel-audit", "deny", pid=pid, port=port, access=rights)
    path = rec.get("path")
    if any(b.startswith("scope.") for b in blockers):
        return violation("landlock", "kernel-audit", "deny", pid=pid, path=path, access=rights)
    # The kernel names the directory whose entries would change for make_*/remove_*/refer.
    directory = any(r.startswith(("make_", "remove_", "refer")) for r in rights)
    return violation("landlock", "kernel-audit", "deny", pid=pid, path=path, access=rights, directory=directory)





def writable_by_workload(path: str, landlock_section: dict) -> str | None:
    """The plan rule (path) under which the workload could change or replace `path`, or None."""
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    for rule in landlock_section.get("paths", ()):
        root = os.path.realpath(rule["path"])
        rights = set(rule.get("access", ()))
        on_file = real == root or real.startswith(root.rstrip("/") + "/")
        on_dir = parent == root or parent.startswith(root.rstrip("/") + "/")
        if on_file and rights & {"write_file", "truncate"} or on_dir and rights & {"remove_file", "make_reg", "refer"}:
            return rule["path"]
    return None


RECORD_BYTES_MAX = 64 << 20


class AuditSession:
    """The records of one supervised run."""

    def __init__(self, spec: str | None, plan: dict, bpf: bytes, *, sink: AuditSink | None = None) -> None:
        self.sink = sink if sink is not None else AuditSink.open(spec) if spec else None
        self.complain = (plan.get("seccomp") or {}).get("violation") == "log"
        self.recorder = Recorder(plan, bpf, self.emit, complain=self.complain)
        if self.sink is not None:  # past 64 MiB of records, new kinds of violation are folded coarsely
            self.recorder.budget_spent = lambda: self.sink.bytes > RECORD_BYTES_MAX
        self.lines = 0  # would-be violations written to stderr (complain mode without --audit)
        self.limit_values: dict = {}  # limit name → the plan's value, for limit records
        self._launch: dict | None = None
        self.feed = None  # the kernel audit feed, when Landlock denials can be read from it
        self._feed_note: tuple[bool, str] | None = None
        # exit code → limit records the runtime knows of (a wasm trap at the epoch deadline, say), written
        # before the exit record; the cgroup and wall-time ones come from finish() itself.
        self.exit_limits = None

    def emit(self, type_: str, **fields: object) -> None:
        if self.sink is not None:
            self.sink.emit(type_, **fields)
        elif type_ == "violation":
            from sandboxer.audit.summary import describe

            rec = dict(fields, type=type_)
            how = "would deny" if fields.get("would_deny") else str(fields.get("action"))
            line = f"sandboxer: {how}: {fields.get('mechanism')} {describe(rec)}"
            if fields.get("folded"):
                line += f" (and {fields['folded']} more times)"
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
        from sandboxer import __version__
        from sandboxer.cache import cache_root, read_trusted, sha256, write_atomic

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

    def observe_landlock(self, abi: int) -> bool:
        """Before fork, enforce mode with Landlock applied: open the kernel audit feed if this process
        may read it and kernel audit is on. True when the workload's Landlock domain should log its
        denials after exec (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON, ABI 7)."""
        if self.sink is None or self.complain or os.geteuid() != 0:
            return False
        from sandboxer.audit.kernel_feed import KernelFeed

        feed, why = KernelFeed.probe(pids=set())
        if feed is None:
            self._feed_note = (False, f"{why}: Landlock denials are refused by the kernel but not recorded")
            return False
        self._feed_note = landlock_observability(feed.status, probed=True)
        if not feed.landlock_observable or abi < 7:
            feed.close()
            if feed.landlock_observable:
                self._feed_note = (False, f"Landlock ABI {abi} cannot log denials after exec (ABI 7 can)")
            return False
        self.feed, self._feed_note = feed, (True, FEED_NOTE)
        return True

    def watch(self, pid: int) -> tuple:
        """After fork: (fd, callback) pairs for the supervise loop — the kernel feed, for the sandbox's pids."""
        if self.feed is None:
            return ()
        self.feed.pids = {pid}  # the process that restricted itself; its domain covers its descendants
        return ((self.feed.fileno(), self.drain_feed),)

    def drain_feed(self, timeout: float = 0.0) -> None:
        """Turn the queued Landlock denial records of this sandbox into violation records."""
        if self.feed is None or self.sink is None:
            return
        for rec in self.feed.poll_records(timeout):
            if rec.get("type") == "LANDLOCK_ACCESS":
                fields = landlock_violation(rec)
                if fields is not None:
                    self.sink.emit("violation", **fields)

    def emit_launch(self) -> None:
        """Write the launch record (first of the run), with whether Landlock denials can be observed."""
        fields, self._launch = self._launch, None
        if self.sink is None or fields is None:
            return
        landlock = fields["enforce"].get("landlock") or {}
        if landlock.get("enforced"):
            landlock["observable"], landlock["observable_note"] = self._feed_note or landlock_observability()
        self.sink.emit("launch", **fields)

    def finish(self, *, status: int, exit_code: int, duration: float, rusage: object, cgroup: dict | None,
               limits: dict, timed_out: float | None) -> None:
        """limit records (what the kernel stopped) and the exit record."""
        self.recorder.flush_folded()
        if self.sink is not None:
            self.drain_feed(0.05)  # the kernel may queue the last denials just after the exit
            self._limits(cgroup, limits, timed_out)
            for fields in self.exit_limits(exit_code) if self.exit_limits is not None else ():
                self.sink.emit("limit", **fields)
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            mem = (cgroup or {}).get("memory", {}).get("peak_bytes")
            self.sink.emit(
                "exit", code=code, signal=None if sig is None else _SIGNAMES.get(sig, f"SIG{sig}"),
                exit_code=exit_code, duration_s=round(duration, 6),
                cpu={"user_s": round(rusage.ru_utime, 6), "sys_s": round(rusage.ru_stime, 6)},  # type: ignore[attr-defined]
                memory_peak_bytes=mem if mem is not None else rusage.ru_maxrss * 1024,  # type: ignore[attr-defined]
                tasks=(cgroup or {}).get("pids", {}).get("peak"),
                records=self._record_counts(),
            )
            if self.sink.lost or (self.feed is not None and self.feed.overruns):
                sys.stderr.write(f"sandboxer: warning: audit records were lost: {self.sink.lost} could not be "
                                 f"written ({self.sink.error}), kernel feed overruns: "
                                 f"{self.feed.overruns if self.feed is not None else 0}\n")
        elif self.complain and self.lines:
            sys.stderr.write(f"sandboxer: complain mode: {self.lines} would-be violation(s) above; "
                             "`--audit FILE` records them, `sandboxer audit FILE --suggest` turns them into a manifest patch\n")

    def _record_counts(self) -> dict:
        """For the exit record: violations written, and what was lost on the way (nothing is lost silently)."""
        assert self.sink is not None
        out = {"violations": self.sink.counts.get("violation", 0)}
        if self.recorder.folded:
            out["folded"] = self.recorder.folded
        if self.sink.lost:
            out["lost"] = self.sink.lost
        if self.feed is not None and self.feed.overruns:
            out["kernel_feed_overruns"] = self.feed.overruns
        return out

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
        if self.feed is not None:
            self.feed.close()
            self.feed = None
        if self.sink is not None:
            self.sink.close()
