"""Apply a compiled cgroups section: create one leaf below the launcher's own cgroups, place, kill, measure, remove.

Where the leaves go. A directory `sandboxer-<name>` is made directly below the launcher's own cgroup
in each hierarchy that is needed: cgroup2 whenever it is writable (placement via clone3
CLONE_INTO_CGROUP, cgroup.kill, cpu.stat accounting work there even without controllers), and the v1
hierarchies of the limits placed on v1. Without a v2 leaf, v1 `cpuacct` (CPU time) and `freezer`
(race-free kill) leaves are added when those hierarchies are mounted. The launcher's own cgroups are
never given limits and no process is ever moved out of them.

Enabling v2 controllers. Like crun's cgroupfs manager and `systemd-run --scope`, a controller that
the parent offers (cgroup.controllers) but has not enabled for its children is enabled by writing
`+<controller>` to the parent's cgroup.subtree_control — only when the parent may do so: it is the
hierarchy root or has no processes of its own (cgroup2 "no internal processes" rule; otherwise the
kernel answers EBUSY). We never move the launcher to a child cgroup to make room (nsjail and
systemd's delegation guide do that; our rules forbid it), so we fail with an explanation instead.
An enabled controller is left enabled on remove(), as crun and systemd do: disabling it would strip
the limits of sibling leaves that may still be running, and it is not a limit of the parent.

All limits are written before any workload process is placed.
"""

from __future__ import annotations

import errno
import os
import _signal as signal  # the C module: `import signal` would load enum (~5 ms a launch)
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .probe import CgroupHost, Placement

PREFIX = "sandboxer-"
# Files written only where they exist: swap accounting can be off (no memsw, no memory.swap.max).
OPTIONAL_FILES = frozenset({"memory.memsw.limit_in_bytes", "memory.swap.max"})
# memsw must stay >= limit_in_bytes, and the period is set before the quota that refers to it.
WRITE_LAST = frozenset({"memory.memsw.limit_in_bytes", "cpu.cfs_quota_us"})
TIMEOUT_S = 5.0
V2_CONTROLLER_OF = {"memory": "memory", "pids": "pids", "cpu": "cpu"}  # file prefix -> limit


def ordered_writes(files: dict[str, str]) -> list[tuple[str, str]]:
    """(file, value) in the order they are written: sorted, with WRITE_LAST files after the rest (pure)."""
    return [(k, str(files[k])) for k in sorted(files, key=lambda k: (k in WRITE_LAST, k))]


def v2_writes(section: dict, on_v2: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """What the cgroup2 backend writes into a leaf for the limits placed on v2, in order (pure)."""
    files = section.get("v2") or {}
    return ordered_writes({k: v for k, v in files.items() if k.split(".")[0] in on_v2})


def v1_writes(section: dict, controller: str) -> list[tuple[str, str]]:
    """What the v1 backend writes into the `controller` hierarchy's leaf, in order (pure)."""
    return ordered_writes((section.get("v1") or {}).get(controller) or {})


class CgroupError(Exception):
    """A cgroup file operation failed; the message names the file and the errno."""

    exit_code = 125

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  {hint}")

    @classmethod
    def from_os(cls, op: str, path: str, exc: OSError, hint: str | None = None) -> "CgroupError":
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return cls(f"cgroups: {op} {path} failed: {name}: {os.strerror(exc.errno or 0)}", hint)


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise CgroupError.from_os(f"write {value!r} to", path, e) from None


def _read(path: str) -> str | None:
    """The file's text, or None when it does not exist (controller not enabled, dir removed)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CgroupError.from_os("read", path, e) from None


def _keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ("key value" lines: memory.events, cpu.stat, …) as a dict; {} when it is absent."""
    out = {}
    for line in (_read(path) or "").splitlines():
        kv = line.split()
        if len(kv) == 2 and kv[1].lstrip("-").isdigit():
            out[kv[0]] = int(kv[1])
    return out


def _pids(cgroup_dir: str) -> list[int]:
    return [int(p) for p in (_read(os.path.join(cgroup_dir, "cgroup.procs")) or "").split()]


def _write_limits(cgroup_dir: str, writes: list[tuple[str, str]]) -> None:
    for key, value in writes:
        path = os.path.join(cgroup_dir, key)
        if key in OPTIONAL_FILES and not os.path.exists(path):
            continue
        _write(path, value)


def _no_internal_hint(host: CgroupHost) -> str:
    from .probe import no_internal_processes_hint

    return no_internal_processes_hint(host)


def _enable_v2(host: CgroupHost, controllers: tuple[str, ...]) -> None:
    """Enable `controllers` in the parent's cgroup.subtree_control where the kernel allows it."""
    assert host.v2_dir is not None
    if not controllers:
        return
    control = os.path.join(host.v2_dir, "cgroup.subtree_control")
    missing = [c for c in controllers if c not in (_read(control) or "").split()]
    if not missing:
        return
    is_root = not os.path.exists(os.path.join(host.v2_dir, "cgroup.type"))
    if not is_root and _pids(host.v2_dir):
        raise CgroupError(
            f"cgroups: cannot enable {' '.join(missing)} in {control}: {host.v2_dir} has processes of its "
            "own, and cgroup2 lets a non-root cgroup give controllers to its children only while it has "
            "none ('no internal processes' rule; the kernel would answer EBUSY)",
            _no_internal_hint(host),
        )
    _write(control, " ".join(f"+{c}" for c in missing))


class Leaf:
    """One sandbox's cgroups, one directory per hierarchy; remove() undoes everything create_leaf() did."""

    __slots__ = ("name", "v2_dir", "v2_dir_fd", "v1_dirs", "created", "removed", "memory_max", "pids_max", "at")

    def __init__(self, name: str, v2_dir: str | None = None) -> None:
        self.name = name
        self.v2_dir = v2_dir
        self.v2_dir_fd: int | None = None
        self.v1_dirs: dict[str, str] = {}  # controller -> leaf dir (co-mounted share one)
        self.created: list[str] = []  # in creation order
        self.removed = False
        # The limits as set (for the outcome report) and where the manifest set them.
        self.memory_max: int | None = None
        self.pids_max: int | None = None
        self.at: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Leaf({self.name!r}, v2_dir={self.v2_dir!r}, v1_dirs={self.v1_dirs!r}, created={self.created!r})"

    def _v1_unique(self) -> list[str]:
        return list(dict.fromkeys(self.v1_dirs.values()))

    def _all_dirs(self) -> list[str]:
        return ([self.v2_dir] if self.v2_dir else []) + self._v1_unique()

    def place(self, pid: int, *, already_in_v2: bool = False) -> None:
        """Move `pid` into every hierarchy's leaf (skip v2 when clone3 CLONE_INTO_CGROUP put it there)."""
        dirs = self._v1_unique() if already_in_v2 or not self.v2_dir else self._all_dirs()
        for d in dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def kill(self) -> None:
        """SIGKILL every process in the leaf: cgroup.kill (v2), else freezer + SIGKILL, else SIGKILL until empty."""
        if self.v2_dir and os.path.exists(os.path.join(self.v2_dir, "cgroup.kill")):  # Linux 5.14
            _write(os.path.join(self.v2_dir, "cgroup.kill"), "1")
            return
        if not self.v1_dirs:
            return
        freezer = self.v1_dirs.get("freezer")
        if freezer and os.path.isdir(freezer):
            # Frozen tasks cannot fork, so one pass over cgroup.procs gets them all; SIGKILL is
            # delivered once the cgroup is thawed.
            state = os.path.join(freezer, "freezer.state")
            _write(state, "FROZEN")
            deadline = time.monotonic() + TIMEOUT_S
            while (_read(state) or "FROZEN").strip() != "FROZEN" and time.monotonic() < deadline:
                time.sleep(0.001)
            self._sigkill_all(freezer)
            _write(state, "THAWED")
            return
        # No freezer: a task forked between reading cgroup.procs and the kill is caught next round.
        some = self._v1_unique()[0]
        deadline = time.monotonic() + TIMEOUT_S
        while self._sigkill_all(some) and time.monotonic() < deadline:
            time.sleep(0.001)

    @staticmethod
    def _sigkill_all(cgroup_dir: str) -> int:
        pids = _pids(cgroup_dir)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def _watch_dir(self) -> list[str]:
        # Every process of the sandbox is in each hierarchy's leaf (children inherit all of them and
        # the workload cannot leave: no capabilities), so one hierarchy tells when all are empty.
        return [self.v2_dir] if self.v2_dir else self._v1_unique()[:1]

    def wait_empty(self, timeout: float = TIMEOUT_S) -> None:
        """Wait until no process is left in the leaf (killed tasks leave asynchronously)."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            busy = [d for d in self._watch_dir() if _pids(d)]
            if not busy:
                return
            if time.monotonic() >= deadline:
                raise CgroupError(f"cgroups: {busy[0]}/cgroup.procs still lists processes after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def events(self) -> tuple[int, int]:
        """(OOM kills, failed forks at pids.max) so far: the two files the outcome report reads on every run."""
        oom = hits = 0
        if self.memory_max is not None:
            mem = self.v1_dirs.get("memory")
            if self.v2_dir and "memory" not in self.v1_dirs:
                oom = _keyed(os.path.join(self.v2_dir, "memory.events")).get("oom_kill", 0)
            elif mem:
                oom = _keyed(os.path.join(mem, "memory.oom_control")).get("oom_kill", 0)  # Linux 4.13
        if self.pids_max is not None:
            d = self.v1_dirs.get("pids") or self.v2_dir
            if d:
                hits = _keyed(os.path.join(d, "pids.events")).get("max", 0)
        return oom, hits

    def stats(self) -> dict:
        """Peak memory, OOM kills, pids limit hits, CPU time and throttling, from whichever hierarchy has them."""
        v2 = self.v2_dir
        mem = self.v1_dirs.get("memory")
        pids = self.v1_dirs.get("pids")

        def first(*candidates: tuple[str | None, str]) -> str | None:
            for d, name in candidates:
                if d and os.path.exists(os.path.join(d, name)):
                    return os.path.join(d, name)
            return None

        out: dict = {"memory": {}, "pids": {}, "cpu": {}}
        peak = first((v2, "memory.peak"), (mem, "memory.max_usage_in_bytes"))  # memory.peak: Linux 5.19
        out["memory"]["peak_bytes"] = int((_read(peak) or "0").strip() or 0) if peak else None
        if first((v2, "memory.events")):
            ev = _keyed(os.path.join(v2, "memory.events"))  # type: ignore[arg-type]
            oom_kills, max_hits = ev.get("oom_kill", 0), ev.get("max", 0)
        elif mem and os.path.exists(os.path.join(mem, "memory.oom_control")):
            oom_kills = _keyed(os.path.join(mem, "memory.oom_control")).get("oom_kill", 0)  # Linux 4.13
            # With swap accounting the memsw counter is charged first, so equal limits fail there.
            max_hits = sum(
                int((_read(os.path.join(mem, f)) or "0").strip() or 0)
                for f in ("memory.failcnt", "memory.memsw.failcnt")
            )
        else:
            oom_kills = max_hits = None
        out["memory"].update(oom_kills=oom_kills, oom=bool(oom_kills), max_hits=max_hits)

        events = first((v2, "pids.events"), (pids, "pids.events"))
        out["pids"]["max_events"] = _keyed(events).get("max", 0) if events else None
        ppeak = first((v2, "pids.peak"), (pids, "pids.peak"))
        out["pids"]["peak"] = int((_read(ppeak) or "0").strip() or 0) if ppeak else None

        v2cpu = _keyed(os.path.join(v2, "cpu.stat")) if v2 else {}  # usage_usec even without the controller
        acct = first((self.v1_dirs.get("cpuacct"), "cpuacct.usage"))
        if "usage_usec" in v2cpu:
            out["cpu"]["usage_usec"] = v2cpu["usage_usec"]
        else:
            out["cpu"]["usage_usec"] = int((_read(acct) or "0").strip() or 0) // 1000 if acct else None
        v1cpu = _keyed(os.path.join(self.v1_dirs["cpu"], "cpu.stat")) if "cpu" in self.v1_dirs else {}
        if "nr_throttled" in v2cpu:
            out["cpu"].update(nr_periods=v2cpu.get("nr_periods"), nr_throttled=v2cpu["nr_throttled"],
                              throttled_usec=v2cpu.get("throttled_usec"))
        elif "nr_throttled" in v1cpu:
            out["cpu"].update(nr_periods=v1cpu.get("nr_periods"), nr_throttled=v1cpu["nr_throttled"],
                              throttled_usec=v1cpu["throttled_time"] // 1000)
        else:
            out["cpu"].update(nr_periods=None, nr_throttled=None, throttled_usec=None)
        return out

    def remove(self) -> None:
        """Kill what is left, wait until empty, rmdir every created dir; idempotent."""
        if self.removed:
            return
        first_error: CgroupError | None = None
        try:
            self.kill()
            self.wait_empty()
        except CgroupError as e:
            first_error = e
        for path in reversed(self.created):
            try:
                _rmdir(path)
            except CgroupError as e:
                first_error = first_error or e
        if self.v2_dir_fd is not None:
            os.close(self.v2_dir_fd)
            self.v2_dir_fd = None
        self.removed = True
        if first_error:
            raise first_error

    def __enter__(self) -> "Leaf":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def format_size(n: int) -> str:
    """Bytes in the manifest's spelling where exact: 67108864 -> "64Mi", 1536 -> "1536" (pure)."""
    for unit, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def stats_line(st: dict) -> str:
    """The --stats line for Leaf.stats(); "n/a" where this host's cgroups do not account a value (pure)."""

    def v(x: object, unit: str = "") -> str:
        return "n/a" if x is None else f"{x}{unit}"

    mem, pids, cpu = st["memory"], st["pids"], st["cpu"]
    throttled = "n/a" if cpu["nr_throttled"] is None else (
        f"{cpu['nr_throttled']} of {v(cpu.get('nr_periods'))} periods ({v(cpu['throttled_usec'])} us)"
    )
    return (
        f"sandboxer: stats: cgroup: peak memory {v(mem['peak_bytes'], ' B')}, cpu time {v(cpu['usage_usec'], ' us')}, "
        f"tasks (peak) {v(pids['peak'])}, oom kills {v(mem['oom_kills'])}, pids limit hits {v(pids['max_events'])}, "
        f"cpu throttled {throttled}"
    )


def _rmdir(path: str) -> None:
    # A just-killed task can keep the cgroup busy for a moment (EBUSY) until it has fully exited.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise CgroupError.from_os("rmdir", path, e) from None
            time.sleep(0.002)


def _mkdir(leaf: Leaf, path: str) -> str:
    try:
        os.mkdir(path, 0o755)
    except FileExistsError as e:
        raise CgroupError.from_os(
            "mkdir", path, e, "a leftover of an earlier run, or a leaf of that name in use: rmdir it or pick another name"
        ) from None
    except OSError as e:
        raise CgroupError.from_os("mkdir", path, e) from None
    leaf.created.append(path)
    return path


def create_leaf(section: dict, host: CgroupHost, placement: Placement, name: str) -> Leaf:
    """Create `sandboxer-<name>` in every needed hierarchy and write the section's limits into it."""
    if not name or "/" in name or "\0" in name:
        raise CgroupError(f"cgroups: invalid leaf name {name!r}: it must be one path component")
    leaf = Leaf(name)
    dirname = PREFIX + name
    on_v2, on_v1 = placement.on("v2"), list(placement.on("v1"))
    if "memory" in on_v2 or "memory" in on_v1:
        leaf.memory_max = section.get("memory_max")
    if "pids" in on_v2 or "pids" in on_v1:
        leaf.pids_max = section.get("pids_max")
    leaf.at = dict(section.get("at") or {})
    try:
        if host.v2_dir is not None and host.v2_writable:
            _enable_v2(host, on_v2)
            leaf.v2_dir = _mkdir(leaf, os.path.join(host.v2_dir, dirname))
            _write_limits(leaf.v2_dir, v2_writes(section, on_v2))
            leaf.v2_dir_fd = os.open(leaf.v2_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        helpers = []
        if on_v1 and leaf.v2_dir is None:
            helpers = (["cpuacct"] if "cpu" in on_v1 else []) + ["freezer"]
            helpers = [c for c in helpers if c in host.v1_dirs and host.v1_writable.get(c)]
        for controller in on_v1 + helpers:
            path = os.path.join(host.v1_dirs[controller], dirname)
            if path not in leaf.created:  # co-mounted controllers (cpu,cpuacct) share one directory
                _mkdir(leaf, path)
            leaf.v1_dirs[controller] = path
            _write_limits(path, v1_writes(section, controller))
    except BaseException:
        try:
            leaf.remove()
        except CgroupError:
            pass  # the original error is the one to report
        raise
    return leaf
