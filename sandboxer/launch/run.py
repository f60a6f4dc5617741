"""Launch stage entry point: prepare everything in the parent, fork, run the child's steps, supervise, clean up.

launch() is the run path: it must stay cheap to import (no typer, yaml, pyseccomp or rich before
exec; `python -X importtime -c "import sandboxer.launch.run"` shows what it pulls in). All
user-facing errors are raised as LaunchError before fork; a failure between fork and execve comes
back over the error pipe as "step errno call" and is turned into a message here.
"""

from __future__ import annotations

import errno as errno_mod
import gc
import itertools
import os
import resource
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)
import sys
import time

from sandboxer.errors import EXIT_LAUNCH, EXIT_NOEXEC, EXIT_NOTFOUND, EXIT_USAGE
from sandboxer.launch import kernel, sequence
from sandboxer.launch.command import ResolvedCommand, resolve_command
from sandboxer.launch.errors import LaunchError
from sandboxer.launch.supervise import Outcome, SignalForwarder, signal_group, supervise
from sandboxer.mechanisms.landlock.apply import (
    LandlockError,
    LandlockPathError,
    PreparedRuleset,
    downgrade,
    prepare_ruleset,
)
from sandboxer.mechanisms.landlock.probe import probe_landlock
from sandboxer.mechanisms.netns.apply import MODES as NETNS_MODES
from sandboxer.mechanisms.netns.probe import probe_netns
from sandboxer.mechanisms.seccomp.apply import SeccompProgramError, prepare_filter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, NoReturn

    from sandboxer.audit.session import AuditSession
    from sandboxer.mechanisms.cgroups.apply import Leaf
    from sandboxer.mechanisms.cgroups.probe import Placement

# The cgroup modules (and clone3) are imported only when a plan sets limits: a run without them
# does not pay for them (see `python -X importtime -c "import sandboxer.launch.run"`).

_leaf_counter = itertools.count(1)
_NOTIFY_FLAGS = kernel.SECCOMP_FILTER_FLAG_NEW_LISTENER | kernel.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV


class LaunchOptions:
    """What the command line adds to a plan for one run."""

    def __init__(
        self,
        env_overrides: list[str] | None = None,  # "K=V" sets K; "K" passes K from our environment
        keep_fds: list[int] | None = None,  # fds > 2 the workload inherits on purpose
        timeout: float | None = None,  # seconds; the shorter of this and the plan's wall_time_s applies
        best_effort: bool = False,  # every compat mechanism becomes best-effort (warn instead of refusing)
        stats: bool = False,  # print duration, CPU time and peak memory after the run
        audit: str | None = None,  # --audit: where records go (a path, "-" for stderr, "fd:N")
        dry_run: bool = False,  # print what would be enforced on this host, start nothing
        manifest: str | None = None,  # for the audit launch record: the manifest path...
        manifest_sha256: str | None = None,  # ...and the sha256 of its content
        manifest_inputs: list[tuple[str, str, str]] | None = None,  # every file compiled (Policy.inputs)
        front: str | None = None,  # the directory of the native front that handed this run over: leave it an image
        session: Any = None,  # an AuditSession made by the caller (the wasm path), instead of one made here
        grace_s: float = 0.0,  # the wall-time kill comes this much after the wall time (the wasm host stops itself first)
    ) -> None:
        self.env_overrides: list[str] = [] if env_overrides is None else env_overrides
        self.keep_fds: list[int] = [] if keep_fds is None else keep_fds
        self.timeout = timeout
        self.best_effort = best_effort
        self.stats = stats
        self.audit = audit
        self.dry_run = dry_run
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.manifest_inputs = manifest_inputs
        self.front = front
        self.session = session
        self.grace_s = grace_s


class Preparation:
    """What the parent built before fork: the child's Prepared plus the resources to release afterwards."""

    def __init__(
        self,
        child: sequence.Prepared,
        command: ResolvedCommand,
        env: dict[str, str],
        err_r: int = -1,
        ruleset: PreparedRuleset | None = None,
        landlock_abi: int = 0,
        landlock_note: str = "",
        leaf: Leaf | None = None,
        placement: Placement | None = None,
        v2_procs_fd: int = -1,
        deadline_s: float | None = None,  # when the kill comes: the wall time, plus LaunchOptions.grace_s
        warnings: list[str] | None = None,
        fds: list[int] | None = None,  # every fd opened here, closed by close()
        session: AuditSession | None = None,  # a supervised run (audit records, complain mode)
    ) -> None:
        self.child = child
        self.command = command
        self.env = env
        self.err_r = err_r
        self.ruleset = ruleset
        self.landlock_abi = landlock_abi
        self.landlock_note = landlock_note
        self.leaf = leaf
        self.placement = placement
        self.v2_procs_fd = v2_procs_fd
        self.deadline_s = deadline_s
        self.wall_s: float | None = None  # the wall time itself (--timeout or the plan's), for messages and records
        self.warnings: list[str] = [] if warnings is None else warnings
        self.fds: list[int] = [] if fds is None else fds
        self.session = session
        self.handoff_r = self.handoff_w = -1  # the parent's ends of the listener hand-over pipes
        self.status_r = -1  # supervised run: read end of the pipe the namespace's init writes W's status on
        self.landlock_degradations: list[str] = []

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()
        if self.ruleset is not None:
            self.ruleset.close()


def _warn(message: str) -> None:
    sys.stderr.write(f"sandboxer: warning: {message}\n")
    sys.stderr.flush()


def _compat(plan: Mapping[str, Any], mechanism: str, opts: LaunchOptions) -> str:
    if opts.best_effort:
        return "best-effort"
    return (plan.get("compat") or {}).get(mechanism, "strict")


def compute_environment(
    section: Mapping[str, Any], overrides: list[str], launcher_env: Mapping[str, str]
) -> dict[str, str]:
    """Exactly the plan's passed variables (when set here) and fixed values, then --env overrides."""
    env = {name: launcher_env[name] for name in section.get("pass", ()) if name in launcher_env}
    env.update(section.get("set") or {})
    for item in overrides:
        name, eq, value = item.partition("=")
        if not name or "\0" in item:
            raise LaunchError(f"--env {item!r}: expected NAME=VALUE or NAME", EXIT_USAGE)
        if eq:
            env[name] = value
        elif name in launcher_env:
            env[name] = launcher_env[name]
    return env


def _rlimits(plan: Mapping[str, Any], rootless: bool, warnings: list[str]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for name, pair in sorted((plan.get("rlimits") or {}).items()):
        res = getattr(resource, f"RLIMIT_{name}", None)
        if res is None:
            raise LaunchError(f"rlimits: unknown resource {name!r} (expected a resource.RLIMIT_* name)")
        soft, hard = (resource.RLIM_INFINITY if v is None or v < 0 else int(v) for v in pair)
        cur_soft, cur_hard = resource.getrlimit(res)
        if rootless and cur_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > cur_hard):
            # Raising a hard limit needs CAP_SYS_RESOURCE: run with the stricter limit we have.
            warnings.append(f"rlimit {name}: hard limit {hard} lowered to this user's {cur_hard}")
            hard = cur_hard
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            soft = hard
        out.append((res, soft, hard))
    return tuple(out)


def _netns_mode(plan: Mapping[str, Any], opts: LaunchOptions, rootless: bool, warnings: list[str]) -> str:
    mode = (plan.get("netns") or {}).get("mode", "none")
    if mode not in NETNS_MODES:
        raise LaunchError(f"netns: unknown mode {mode!r} (expected one of {', '.join(NETNS_MODES)})")
    if mode == "host":
        return mode
    host = probe_netns()
    if host.available:
        return mode
    what = f"the plan asks for a private network namespace (netns: {mode}), but {host.reason}"
    if _compat(plan, "netns", opts) == "strict":
        raise LaunchError(
            f"{what}.\n           Set compat.netns: best-effort to run on the host network"
            " (seccomp still filters sockets), or allow user namespaces on this host."
        )
    warnings.append(f"{what}: running on the host network (compat.netns: best-effort)")
    return "host"


def _landlock(plan: Mapping[str, Any], opts: LaunchOptions, prep: Preparation) -> None:
    section = plan.get("landlock") or {}
    if not (section.get("handled_fs") or section.get("handled_net") or section.get("scoped")):
        return
    compat = _compat(plan, "landlock", opts)
    host = probe_landlock()
    prep.landlock_abi = host.abi
    if host.abi < 1:
        if compat == "strict":
            raise LaunchError(
                f"the plan needs Landlock, which this kernel does not offer: {host.reason}.\n"
                "           Set compat.landlock: best-effort to run without it, or use Linux 5.13+."
            )
        prep.warnings.append(f"Landlock is not enforced: {host.reason}")
        prep.landlock_note = f"not enforced ({host.reason})"
        return
    if host.abi < section["abi"] and compat != "strict":
        section, dropped = downgrade(section, host.abi)
        if dropped:
            prep.warnings.append(f"Landlock ABI {host.abi} cannot enforce: {', '.join(dropped)}")
            prep.landlock_degradations = list(dropped)
    paths = list(section.get("paths", ()))
    while True:
        try:
            prep.ruleset = prepare_ruleset(dict(section, paths=paths), kernel_abi=host.abi)
            break
        except LandlockPathError as e:
            if compat == "strict":
                raise LaunchError(f"{e}.\n           Create it, remove the grant, or run with --best-effort.") from None
            # Best effort: a missing path grants nothing, so leaving its rule out is stricter, not looser.
            remaining = [r for r in paths if r["path"] != e.path]
            if len(remaining) == len(paths):
                raise LaunchError(str(e)) from None
            prep.warnings.append(f"{e}: rule skipped")
            paths = remaining
        except LandlockError as e:
            raise LaunchError(str(e)) from None
    prep.landlock_note = f"ABI {host.abi} (plan: ABI {plan['landlock']['abi']}), {len(paths)} path rules"


def _cgroups(plan: Mapping[str, Any], opts: LaunchOptions, prep: Preparation) -> None:
    section = {k: v for k, v in (plan.get("cgroups") or {}).items() if v not in (None, {}, [])}
    if not section:
        return
    if prep.child is not None and prep.child.pidns and section.get("pids_max") is not None:
        # The namespace's init is one more task in the leaf: the files get one more, so that limits.pids
        # still counts the workload's tasks (messages and records keep the plan's number).
        files = str(section["pids_max"] + 1)
        if "pids.max" in (section.get("v2") or {}):
            section["v2"] = dict(section["v2"], **{"pids.max": files})
        if "pids" in (section.get("v1") or {}):
            section["v1"] = dict(section["v1"], pids=dict(section["v1"]["pids"], **{"pids.max": files}))
    from sandboxer.mechanisms.cgroups.apply import CgroupError, create_leaf
    from sandboxer.mechanisms.cgroups.probe import plan_placement, probe_cgroups

    host = probe_cgroups()
    prep.placement = placement = plan_placement(host, section)
    if placement.unenforced:
        at = section.get("at") or {}
        where = {p.limit: f"limits.{p.limit} ({at[p.limit]})" if p.limit in at else f"limits.{p.limit}"
                 for p in placement.unenforced}
        if _compat(plan, "cgroups", opts) == "strict":
            lines = [f"{where[p.limit]}: {p.reason}" for p in placement.unenforced]
            lines += dict.fromkeys(p.hint for p in placement.unenforced if p.hint)  # each fix once, in order
            raise LaunchError("the plan's resource limits cannot be enforced here:\n"
                              + "\n".join(f"           {line}" for line in lines))
        for p in placement.unenforced:
            prep.warnings.append(f"{p.reason}: {where[p.limit]} is not enforced (compat.cgroups: best-effort)")
    if opts.dry_run:
        return
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(plan.get("name") or "run"))[:64]
    try:
        prep.leaf = create_leaf(section, host, placement, f"{name}-{os.getpid()}-{next(_leaf_counter)}")
    except CgroupError as e:
        raise LaunchError(str(e)) from None
    # The child joins its v1 leaves itself (writing "0" to these, opened here); v2 through clone3,
    # or through v2_procs_fd when clone3 is refused.
    for d in dict.fromkeys(prep.leaf.v1_dirs.values()):
        fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        prep.fds.append(fd)
        prep.child.cgroup_procs_fds += (fd,)
    if prep.leaf.v2_dir:
        prep.v2_procs_fd = os.open(os.path.join(prep.leaf.v2_dir, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        prep.fds.append(prep.v2_procs_fd)


def prepare(plan: Mapping[str, Any], bpf: bytes | None, argv: list[str], opts: LaunchOptions,
            body: Callable[[], int] | None = None, session: AuditSession | None = None) -> Preparation:
    """Everything before fork: command, environment, Landlock ruleset, BPF, netns, rlimits, cgroup leaf, pipe."""
    if not argv:
        raise LaunchError("no command given", EXIT_USAGE)
    rootless = os.geteuid() != 0
    env = compute_environment(plan.get("environment") or {}, opts.env_overrides, os.environ)
    # With a body (run in the child in place of execve) argv[0] is not executed: nothing to resolve.
    complain = session is not None and session.complain  # Landlock is observed, not applied: nothing to refuse
    command = (resolve_command(argv[0], plan, env, check_grants=not complain) if body is None
               else ResolvedCommand(argv[0], argv[0]))
    for fd in opts.keep_fds:
        try:
            os.fstat(fd)
        except OSError:
            raise LaunchError(f"--keep-fd {fd}: not an open file descriptor") from None
    child = sequence.Prepared(
        parent_pid=os.getpid(),
        err_fd=-1,
        exe=os.fsencode(command.path),
        argv=kernel.cstring_array([os.fsencode(a) for a in argv]),
        envp=kernel.cstring_array([os.fsencode(f"{k}={v}") for k, v in env.items()]),
        keep_fds=tuple(fd for fd in opts.keep_fds if fd > 2),
        rootless=rootless,
        uid=os.geteuid(),  # user_namespaces(7): an unprivileged map may only name the effective ids
        gid=os.getegid(),
        cap_last_cap=kernel.read_cap_last_cap(),
        body=body,
    )
    prep = Preparation(child, command, env, session=session)
    # A supervised run: the workload runs under an init of its own PID namespace, so that all of it dies
    # with the supervisor (sequence.py). Rootless, clone3 creates the user namespace that owns it.
    child.pidns = session is not None
    child.own_userns = child.pidns and rootless
    try:
        child.netns_mode = _netns_mode(plan, opts, rootless, prep.warnings)
        if session is not None and session.complain and child.netns_mode != "host":
            child.netns_mode = "host"  # what the workload would connect to is what complain mode is for
            prep.warnings.append("complain mode: the workload uses the host network, and its connections are recorded")
        # Emptying the bounding set needs CAP_SETPCAP: root has it, and so does a rootless child inside
        # its own user namespace. Without it, no_new_privs already stops execve from gaining capabilities.
        child.drop_bounding = not rootless or child.netns_mode != "host" or child.own_userns
        child.rlimits = _rlimits(plan, rootless, prep.warnings)
        stdio = plan.get("stdio", {})
        child.null_stdio = tuple(fd for fd, name in enumerate(("stdin", "stdout", "stderr"))
                                 if not stdio.get(name, True))
        if child.null_stdio:
            child.devnull_fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            prep.fds.append(child.devnull_fd)
        if bpf:
            program, flags = bpf, 0
            if session is not None:  # refusals notify the supervisor, which answers as `bpf` would
                program, flags = session.program(plan, bpf), _NOTIFY_FLAGS
            try:
                child.seccomp = prepare_filter(program, flags)
            except SeccompProgramError as e:
                raise LaunchError(str(e)) from None
        if session is not None and session.complain:
            # Landlock has no log-only mode: the supervisor observes file and port accesses instead.
            prep.landlock_note = "not applied in complain mode: the supervisor observes file and port accesses"
        else:
            _landlock(plan, opts, prep)
        if prep.ruleset is not None:
            child.landlock_fd, child.landlock_flags = prep.ruleset.fd, prep.ruleset.restrict_flags
            if session is not None and session.observe_landlock(prep.landlock_abi):
                from sandboxer.audit.session import LANDLOCK_LOG_NEW_EXEC_ON

                child.landlock_flags |= LANDLOCK_LOG_NEW_EXEC_ON
        limits = [t for t in (opts.timeout, plan.get("wall_time_s")) if t is not None]
        prep.wall_s = min(limits) if limits else None
        prep.deadline_s = None if prep.wall_s is None else prep.wall_s + opts.grace_s
        _cgroups(plan, opts, prep)
        if not opts.dry_run:
            prep.err_r, child.err_fd = os.pipe2(os.O_CLOEXEC)
            prep.fds += [prep.err_r, child.err_fd]
            if session is not None:
                from sandboxer.audit.notify import child_handoff

                prep.handoff_r, report_w = os.pipe2(os.O_CLOEXEC)
                ack_r, prep.handoff_w = os.pipe2(os.O_CLOEXEC)
                prep.fds += [prep.handoff_r, report_w, ack_r, prep.handoff_w]
                child.handoff, child.handoff_fds = child_handoff, (report_w, ack_r)
            if child.pidns:
                prep.status_r, child.status_fd = os.pipe2(os.O_CLOEXEC)
                prep.fds += [prep.status_r, child.status_fd]
        internal = [child.err_fd, child.landlock_fd, *child.cgroup_procs_fds, prep.v2_procs_fd, *child.handoff_fds,
                    child.status_fd]
        child.close_ranges = sequence.fd_ranges_to_close([*child.keep_fds, *internal])
    except BaseException:
        prep.close()
        if prep.leaf is not None:
            _remove_leaf(prep.leaf)
        raise
    return prep


# (step, errno) -> why, as bubblewrap would hint it.
_HINTS = {
    (sequence.LANDLOCK, errno_mod.EPERM): "no_new_privs is not set",
    (sequence.LANDLOCK, errno_mod.E2BIG): "too many stacked Landlock domains (16 at most)",
    (sequence.SECCOMP, errno_mod.EINVAL): "the kernel rejected the BPF program (bad instruction or jump, "
    "no final return) or a flag this kernel does not know",
    (sequence.SECCOMP, errno_mod.EACCES): "no_new_privs is not set and CAP_SYS_ADMIN is missing",
    (sequence.SECCOMP, errno_mod.ENOMEM): "the stacked filters exceed 32768 instructions",
    (sequence.NETNS, errno_mod.EPERM): "creating namespaces is not allowed here (for a rootless run: "
    "unprivileged user namespaces; sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces)",
    (sequence.NETNS, errno_mod.ENOSPC): "the namespace limit is reached (sysctl user.max_user_namespaces, "
    "user.max_net_namespaces)",
    (sequence.NETNS, errno_mod.EINVAL): "the kernel lacks CONFIG_USER_NS or CONFIG_NET_NS",
    (sequence.PIDNS, errno_mod.EPERM): "the user namespace refused the uid/gid map (only one's own ids may be mapped)",
    (sequence.CAPS, errno_mod.EPERM): "the launcher lacks CAP_SETPCAP to empty the bounding set",
    (sequence.CLOSE_FDS, errno_mod.ENOSYS): "close_range() needs Linux 5.9",
    (sequence.EXECVE, errno_mod.ENOENT): "the file, its #! interpreter or its ELF loader does not exist",
    (sequence.EXECVE, errno_mod.EACCES): "the file or its interpreter is not executable, or the plan "
    "grants no exec right on it (Landlock checks the interpreter and ELF loader too)",
    (sequence.EXECVE, errno_mod.EPERM): "the seccomp filter does not allow execve",
}


def failure_from_report(report: bytes, command: ResolvedCommand) -> LaunchError:
    """The LaunchError for the child's "step errno call" report: 127/126 for execve, else 125."""
    step_s, _, rest = report.decode(errors="replace").partition(" ")
    err_s, _, call = rest.partition(" ")
    try:
        step, err = int(step_s), int(err_s)
        call = call or sequence.STEP_CALLS[step]
    except (ValueError, IndexError):
        return LaunchError(f"the child failed before exec and sent an unreadable report: {report!r}")
    code = EXIT_LAUNCH
    if step == sequence.EXECVE:
        call = f"execve({command.path})"
        code = EXIT_NOTFOUND if err == errno_mod.ENOENT else EXIT_NOEXEC
    name = errno_mod.errorcode.get(err, str(err)) if err else "error"
    what = f"{name}: {os.strerror(err)}" if err else "an unexpected exception in the child"
    hint = _HINTS.get((step, err))
    return LaunchError(f"{call} failed: {what}" + (f"\n  hint: {hint}" if hint else ""), code)


def describe(prep: Preparation, plan: Mapping[str, Any], argv: list[str]) -> str:
    """What a run would enforce on this host (the --dry-run report)."""
    c = prep.child
    netns = {
        "none": "private network namespace, no interface up",
        "loopback": "private network namespace, lo up",
        "host": "the host's network",
    }[c.netns_mode]
    if c.netns_mode != "host" and c.rootless:
        netns += " (inside an unprivileged user namespace)"
    rl = ", ".join(f"{_rlimit_name(r)}={s}/{h}" for r, s, h in c.rlimits) or "unchanged"
    if prep.placement and prep.placement.limits:
        cg = ", ".join(f"{p.limit} on {p.backend}" for p in prep.placement.limits)
    else:
        cg = "none (no limits in the plan)"
    rows = [
        ("command", f"{prep.command.path} (argv: {' '.join(argv)})"),
        ("environment", " ".join(sorted(prep.env)) or "(empty)"),
        ("fds", "0 1 2" + "".join(f" {fd}" for fd in c.keep_fds) + ", all others closed"),
        ("seccomp", f"{c.seccomp.instructions} BPF instructions" if c.seccomp else "no filter"),
        ("landlock", prep.landlock_note or "not used by the plan"),
        ("netns", f"{c.netns_mode}: {netns}"),
        ("rlimits", rl),
        ("cgroups", cg),
        ("capabilities", "all dropped" + (f", bounding set 0..{c.cap_last_cap} emptied" if c.drop_bounding else "")),
        ("no_new_privs", "set"),
        ("wall time", "unlimited" if prep.wall_s is None else f"{prep.wall_s:g} s" + (
            f" (killed {prep.deadline_s - prep.wall_s:g} s later if it has not stopped)" if prep.deadline_s != prep.wall_s else "")),
    ]
    return "\n".join(f"{k:<13}{v}" for k, v in rows)


def _remove_leaf(leaf: Leaf) -> None:
    """Say whether the kernel OOM-killed or refused forks (read before the leaf goes), then remove it."""
    from sandboxer.mechanisms.cgroups.apply import CgroupError, format_size

    try:
        oom_kills, pids_hits = leaf.events()
    except (CgroupError, OSError):
        oom_kills = pids_hits = 0
    at = leaf.at
    if oom_kills and leaf.memory_max is not None:
        where = f" (limits.memory, {at['memory']})" if "memory" in at else ""
        sys.stderr.write(f"sandboxer: out of memory: limit {format_size(leaf.memory_max)}{where}: "
                         f"the kernel OOM-killed {oom_kills} process{'es' if oom_kills > 1 else ''}\n")
    if pids_hits and leaf.pids_max is not None:
        where = f" (limits.pids, {at['pids']})" if "pids" in at else ""
        sys.stderr.write(f"sandboxer: pids limit reached: {leaf.pids_max}{where}: "
                         f"{pids_hits} fork/clone call{'s' if pids_hits > 1 else ''} failed with EAGAIN\n")
    try:
        leaf.remove()
    except CgroupError as e:
        _warn(str(e))


def _fork(prep: Preparation) -> int:
    leaf = prep.leaf
    cgroup_fd = leaf.v2_dir_fd if leaf is not None else None
    if prep.child.pidns:
        return _clone_namespace_init(prep, cgroup_fd)
    if cgroup_fd is not None:
        from sandboxer.launch.fork import fork_into_cgroup

        try:
            return fork_into_cgroup(cgroup_fd)
        except (OSError, RuntimeError):
            prep.child.cgroup_procs_fds += (prep.v2_procs_fd,)  # the child joins the v2 leaf itself
    return os.fork()


def _clone_namespace_init(prep: Preparation, cgroup_fd: int | None) -> int:
    """A supervised run's child: clone3(CLONE_NEWPID [| CLONE_NEWUSER rootless] [| CLONE_INTO_CGROUP]).

    Without CLONE_INTO_CGROUP when the cgroup refuses it (the child then joins the v2 leaf itself); a
    refused namespace is a LaunchError: a supervised workload never runs without one.
    """
    from sandboxer.launch.fork import CLONE_NEWPID, CLONE_NEWUSER, clone, flag_names

    flags = CLONE_NEWPID | (CLONE_NEWUSER if prep.child.own_userns else 0)
    if cgroup_fd is not None:
        try:
            return clone(flags, cgroup_fd)
        except (OSError, RuntimeError):
            prep.child.cgroup_procs_fds += (prep.v2_procs_fd,)
    try:
        return clone(flags)
    except (OSError, RuntimeError) as e:
        err = e.errno if isinstance(e, OSError) else None
        why = {
            errno_mod.EPERM: "creating namespaces is not allowed here (for a rootless run: unprivileged user "
                             "namespaces; sysctl kernel.unprivileged_userns_clone, kernel.apparmor_restrict_"
                             "unprivileged_userns)",
            errno_mod.ENOSPC: "the namespace limit is reached (sysctl user.max_pid_namespaces, "
                              "user.max_user_namespaces)",
            errno_mod.EUSERS: "too many nested user namespaces",
            errno_mod.EINVAL: "the kernel lacks CONFIG_PID_NS or CONFIG_USER_NS",
            errno_mod.ENOSYS: "clone3() needs Linux 5.3",
        }.get(err or 0, "")
        what = f"{errno_mod.errorcode.get(err, err)}: {os.strerror(err)}" if err else str(e)
        raise LaunchError(
            f"a supervised run (--audit, on-violation: log) starts the workload in its own PID namespace, so that "
            f"it dies with the supervisor; clone3({flag_names(flags)}) failed: {what}"
            + (f"\n  hint: {why}" if why else "")
        ) from None


def _leaf_stats(prep: Preparation) -> dict:
    """The leaf's accounting; in a supervised run the tasks peak leaves out the namespace's init (not the workload's)."""
    assert prep.leaf is not None
    stats = prep.leaf.stats()
    pids = stats.get("pids") or {}
    if prep.child.pidns and pids.get("peak"):
        pids["peak"] -= 1
    return stats


def _print_stats(outcome: Outcome, prep: Preparation) -> None:
    """--stats: one line from wait4's rusage, and with a cgroup leaf one line of its own accounting."""
    ru = outcome.rusage
    line = (
        f"sandboxer: stats: exit {outcome.exit_code}, wall {outcome.duration:.3f} s, "
        f"user {ru.ru_utime:.3f} s, sys {ru.ru_stime:.3f} s, max rss {ru.ru_maxrss} KiB\n"  # type: ignore[attr-defined]
    )
    if prep.leaf is not None:
        from sandboxer.mechanisms.cgroups.apply import CgroupError, stats_line

        try:
            line += stats_line(_leaf_stats(prep)) + "\n"
        except (CgroupError, OSError, KeyError) as e:
            line += f"sandboxer: stats: cgroup accounting unavailable: {e}\n"
    sys.stderr.write(line)


def launch(plan: dict, bpf: bytes | None, argv: list[str], opts: LaunchOptions,
           body: Callable[[], int] | None = None) -> int:
    """Run argv under `plan` and the compiled seccomp program `bpf`; the workload's exit code (128+n for signal n).

    Raises LaunchError (125 sandboxer, 126 not executable, 127 not found) when the workload
    could not be started; nothing is left running and the cgroup leaf is removed on every path.
    """
    session, own_session = opts.session, opts.session is None
    if session is None and bpf and not opts.dry_run and (
            opts.audit or (plan.get("seccomp") or {}).get("violation") == "log"):
        from sandboxer.audit.session import AuditSession  # a supervised run: --audit, or complain mode

        session = AuditSession(opts.audit, plan, bpf)
    try:
        prep = prepare(plan, bpf, argv, opts, body=body, session=session)
        try:
            if opts.audit and opts.audit != "-" and not opts.audit.startswith("fd:") and not opts.dry_run:
                if prep.ruleset is None:  # complain mode, or Landlock dropped: files are the uid's to change
                    prep.warnings.append(f"Landlock is not applied to this run, and the workload runs as this user: "
                                         f"it could alter or remove its own records in {opts.audit}")
                else:
                    from sandboxer.audit.session import writable_by_workload

                    where = writable_by_workload(opts.audit, plan.get("landlock") or {})
                    if where is not None:
                        prep.warnings.append(f"the audit file {opts.audit} is inside {where}, which the workload may "
                                             "write: it could alter or remove its own records; keep it outside the grants")
            for w in prep.warnings:
                _warn(w)
            if opts.dry_run:
                sys.stdout.write(describe(prep, plan, argv) + "\n")
                sys.stdout.flush()
                return 0
            if session is None and body is None:
                _store_image(prep, plan, bpf, opts)
            if body is not None and session is None and prep.placement is None and prep.deadline_s is None \
                    and not opts.stats and _single_threaded():
                _run_in_place(prep)  # never returns
            if session is not None:
                session.limit_values = _limit_values(plan)
                session.launch(manifest=opts.manifest, sha256=opts.manifest_sha256, argv=argv,
                               enforce=_enforced(prep, plan), warnings=prep.warnings)
            return _run(prep, opts)
        finally:
            prep.close()
            if prep.leaf is not None:
                _remove_leaf(prep.leaf)
    finally:
        if session is not None and own_session:
            session.close()


def thread_count() -> int | None:
    """This process's threads (/proc/self/task), or None without /proc."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _single_threaded() -> bool:
    """Landlock, seccomp (without TSYNC), no_new_privs, capset and unshare(CLONE_NEWUSER) act on the calling
    thread only: a process with other threads must fork its host (the child has one thread) instead."""
    return thread_count() == 1


def _run_in_place(prep: Preparation) -> NoReturn:
    """A body (the wasm host) with nothing for a parent to do: no audit, no cgroup leaf, no wall time, no --stats.

    This process takes the child's steps itself (sequence.run_child, without setsid and the parent-death
    signal) and runs the body under them, then exits with its code. The confinement is the same; what
    is saved is the fork of an interpreter with wasmtime loaded, the child's copy-on-write faults and a
    second process teardown (benchmarks/wasm.py). A signal that kills the host kills `sandboxer run`
    itself, so the caller sees 128+n as it would from a forked host.
    """
    for fd in (prep.err_r, prep.child.err_fd):  # no parent to read a report: failures are told here
        os.close(fd)
        prep.fds.remove(fd)
    prep.child.err_fd = -1

    def report(data: bytes) -> None:
        sys.stderr.write(failure_from_report(data, prep.command).render() + "\n")
        sys.stderr.flush()

    prep.child.in_place = report
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    gc.disable()  # as in a forked child: no finalizer runs once the steps have begun
    sequence.run_child(prep.child)


def _store_image(prep: Preparation, plan: Mapping[str, Any], bpf: bytes | None, opts: LaunchOptions) -> None:
    """Leave a launch image for the native front (launch/image.py) when it could run this exactly as we do:
    a manifest (not a compiled directory), nothing to warn about, no cgroup leaf, no wall time."""
    if (opts.front is None or opts.manifest is None or opts.manifest_sha256 is None or opts.manifest_inputs is None
            or prep.warnings
            or prep.placement is not None or prep.deadline_s is not None or kernel.ARCH not in ("x86_64", "aarch64")):
        return
    from sandboxer.launch import image

    data = image.encode(plan, bpf, prep.child, prep.landlock_abi if prep.ruleset is not None else 0,
                        opts.manifest_inputs)
    if data is None:
        return
    image.store(image.image_path(opts.manifest, opts.manifest_sha256, kernel.ARCH, opts.front), data)


def _enforced(prep: Preparation, plan: Mapping[str, Any]) -> dict:
    """What each mechanism enforces on this host, for the audit launch record."""
    c = prep.child
    sec = plan.get("seccomp") or {}
    placed = [p for p in prep.placement.limits if p.backend != "none"] if prep.placement else []
    backends = {p.backend for p in placed}
    values = _limit_values(plan)
    return {
        "seccomp": {"instructions": c.seccomp.instructions if c.seccomp else 0, "arch_guard": sec.get("arch", ""),
                    "violation_action": sec.get("violation", ""), "notify": prep.session is not None},
        "landlock": {"abi": prep.landlock_abi, "plan_abi": (plan.get("landlock") or {}).get("abi", 0),
                     "enforced": prep.ruleset is not None, "degradations": prep.landlock_degradations,
                     # filled in by the session after fork (it reads the kernel's audit status)
                     "observable": False, "observable_note": prep.landlock_note},
        "cgroups": {"version": "hybrid" if len(backends) > 1 else next(iter(backends), None),
                    "limits": {p.limit: values.get(p.limit) for p in placed}},
        "netns": c.netns_mode,
        "pidns": c.pidns,
        "rlimits": {_rlimit_name(r): [s, h] for r, s, h in c.rlimits},
    }


def _limit_values(plan: Mapping[str, Any]) -> dict[str, Any]:
    """limit name → its value as the plan states it (bytes, tasks, cores)."""
    cg = plan.get("cgroups") or {}
    cpu = cg.get("cpu") or {}
    return {"memory": cg.get("memory_max"), "pids": cg.get("pids_max"),
            "cpu": cpu["quota_us"] / cpu["period_us"] if cpu.get("period_us") else None}


def _rlimit_name(res: int) -> str:
    for n in sorted(dir(resource)):  # NOFILE before its alias OFILE
        if n.startswith("RLIMIT_") and getattr(resource, n) == res:
            return n[7:]
    return str(res)


def _workload_pid(init: int, report_r: int) -> int:
    """The pid (in our namespace) of the workload the namespace's init forked, once it reports its listener.

    W is then blocked waiting for our ack, and init (which does nothing but wait) has no other child:
    /proc/INIT/task/INIT/children names exactly W. When the report pipe says EOF instead (init or W
    failed first) there is no W: init's pid is returned, and parent_handoff reads the EOF.
    """
    import select

    poller = select.poll()
    poller.register(report_r, select.POLLIN | select.POLLHUP | select.POLLERR)
    poller.poll()  # PEP 475: retried after forwarded signals
    try:
        with open(f"/proc/{init}/task/{init}/children", "rb") as f:
            kids = f.read().split()
    except OSError:
        kids = []
    return int(kids[0]) if len(kids) == 1 else init


def _take_listener(prep: Preparation, pid: int) -> tuple[Any, OSError | None]:
    """The seccomp listener, copied out of the child before it execs (audit.notify.parent_handoff)."""
    from sandboxer.audit.notify import HandoffError, parent_handoff

    for fd in prep.child.handoff_fds:  # our copies of the child's ends: EOF, not a hang, if it dies
        os.close(fd)
        prep.fds.remove(fd)
    try:
        if prep.child.pidns:
            pid = _workload_pid(pid, prep.handoff_r)
        return parent_handoff(pid, prep.handoff_r, prep.handoff_w), None
    except HandoffError as e:
        return None, e  # closing the ack pipe below makes the child report and exit 125
    finally:
        for fd in (prep.handoff_r, prep.handoff_w):
            os.close(fd)
            prep.fds.remove(fd)


def _run(prep: Preparation, opts: LaunchOptions) -> int:
    leaf = prep.leaf

    def kill_all() -> None:
        signal_group(pid, signal.SIGKILL)
        if leaf is not None:
            from sandboxer.mechanisms.cgroups.apply import CgroupError

            try:
                leaf.kill()
            except CgroupError as e:
                _warn(str(e))

    for stream in (sys.stdout, sys.stderr):  # or the child's copy of a buffer could be written twice
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    # An inherited SIGCHLD of SIG_IGN would have the kernel reap the workload before wait4 reads its status.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    forwarder = SignalForwarder()
    forwarder.block()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no finalizer may run in the child between fork and exec
    pid = 0
    outcome: Outcome | None = None
    session, listener, handoff_error = prep.session, None, None
    try:
        try:
            started = time.monotonic()
            pid = _fork(prep)
            if pid == 0:
                sequence.run_child(prep.child)  # never returns
        finally:
            if gc_was_enabled or prep.session is not None:  # a supervisor may run for hours: collect its cycles
                gc.enable()
        for fd in (prep.child.err_fd, prep.child.status_fd):  # our copies of the child's write ends
            if fd >= 0:
                os.close(fd)
                prep.fds.remove(fd)
        if session is not None:
            listener, handoff_error = _take_listener(prep, pid)
            session.emit_launch()  # after fork: its imports (json, netlink) overlap the workload's start
        forwarder.attach(pid)
        deadline = None if prep.deadline_s is None else started + prep.deadline_s
        outcome = supervise(pid, prep.err_r, deadline=deadline, kill=kill_all, started=started, listener=listener,
                            serve=None if session is None else session.recorder.serve, status_fd=prep.status_r,
                            watch=() if session is None else session.watch(pid))
    finally:
        forwarder.restore()
        if pid > 0 and outcome is None:  # the parent failed while the child lived: leave nothing behind
            kill_all()
            os.waitpid(pid, 0)
        if listener is not None:  # only now: the workload is gone (closing earlier would unblock it with ENOSYS)
            listener.close()
    if outcome.report:
        if handoff_error is not None and outcome.report.startswith(b"%d " % sequence.HANDOFF):
            raise LaunchError(f"taking the seccomp listener from the child failed: {handoff_error}")
        raise failure_from_report(outcome.report, prep.command)
    exit_code = outcome.exit_code
    if session is not None and session.recorder.killed and exit_code == 128 + signal.SIGKILL:
        exit_code = 128 + signal.SIGSYS  # the plan's `kill`, carried out by the supervisor: report it as seccomp would
        sys.stderr.write("sandboxer: the workload was killed for a system call the plan refuses (on-violation: kill)\n")
    if outcome.timed_out:
        late = "" if prep.deadline_s == prep.wall_s else f"; {prep.deadline_s - prep.wall_s:g} s later it had not stopped by itself"
        sys.stderr.write(f"sandboxer: wall time of {prep.wall_s:g} s exceeded{late}: the sandbox was killed\n")
    if opts.stats:
        _print_stats(outcome, prep)
    if session is not None:
        _finish_audit(session, prep, outcome, exit_code)
    return exit_code


def _finish_audit(session: AuditSession, prep: Preparation, outcome: Outcome, exit_code: int) -> None:
    cgroup = None
    if prep.leaf is not None:
        from sandboxer.mechanisms.cgroups.apply import CgroupError

        try:
            cgroup = _leaf_stats(prep)
        except (CgroupError, OSError):
            pass
    session.finish(status=outcome.status, exit_code=exit_code, duration=outcome.duration, rusage=outcome.rusage,
                   cgroup=cgroup, limits=session.limit_values, timed_out=prep.wall_s if outcome.timed_out else None)
