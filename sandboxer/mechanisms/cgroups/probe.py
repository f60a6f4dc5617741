"""Read-only cgroup probe: where this process sits in each mounted hierarchy, and (pure) which backend can enforce each limit."""

from __future__ import annotations

import os

LIMITS = ("memory", "pids", "cpu")
# v1 hierarchies a leaf may use: the three limits, plus cpuacct (CPU time where there is no v2 leaf)
# and freezer (a race-free kill where there is no v2 cgroup.kill).
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")

FIX_HINT = (
    "delegate the controller: run under `systemd-run --user --scope -p Delegate=yes …`, "
    "or set compat.cgroups: best-effort"
)


class CgroupHost:
    """The launcher's own cgroups as found on this host; leaves are only ever created below them.

    A plain class with __slots__ (no dataclasses: this module is imported on every launch with limits).
    """

    __slots__ = ("layout", "v2_mount", "v2_dir", "v2_available", "v2_enabled", "v2_writable", "v2_can_enable",
                 "v2_procs", "v1_dirs", "v1_writable", "memsw")

    def __init__(
        self,
        layout: str,  # "v2" | "v1" | "hybrid" | "none"
        v2_mount: str | None = None,
        v2_dir: str | None = None,  # the launcher's own cgroup2 directory
        v2_available: frozenset[str] = frozenset(),  # cgroup.controllers of v2_dir
        v2_enabled: frozenset[str] = frozenset(),  # cgroup.subtree_control of v2_dir
        v2_writable: bool = False,
        # cgroup2 forbids enabling a domain controller for children of a non-root cgroup that has
        # processes of its own ("no internal processes", Documentation/admin-guide/cgroup-v2.rst).
        v2_can_enable: bool = False,
        v1_dirs: dict[str, str] | None = None,
        v1_writable: dict[str, bool] | None = None,
        memsw: bool = False,  # memory.memsw.* exist (v1 swap accounting is on)
        v2_procs: int = 0,  # processes in v2_dir (the launcher is one of them), for the explanation
    ) -> None:
        self.layout = layout
        self.v2_mount = v2_mount
        self.v2_dir = v2_dir
        self.v2_available = frozenset(v2_available)
        self.v2_enabled = frozenset(v2_enabled)
        self.v2_writable = v2_writable
        self.v2_can_enable = v2_can_enable
        self.v2_procs = v2_procs
        self.v1_dirs: dict[str, str] = dict(v1_dirs or {})
        self.v1_writable: dict[str, bool] = dict(v1_writable or {})
        self.memsw = memsw

    def replace(self, **changes: object) -> CgroupHost:
        """A copy with `changes` applied (tests simulate other hosts with it)."""
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return CgroupHost(**fields)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CgroupHost) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "CgroupHost(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


class LimitPlacement:
    """Which backend enforces one limit; for backend "none", why not and how to fix it."""

    __slots__ = ("limit", "backend", "reason", "hint")

    def __init__(self, limit: str, backend: str, reason: str | None = None, hint: str | None = None) -> None:
        self.limit = limit
        self.backend = backend  # "v2" | "v1" | "none"
        self.reason = reason
        self.hint = hint

    def _key(self) -> tuple:
        return (self.limit, self.backend, self.reason, self.hint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LimitPlacement) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"LimitPlacement{self._key()!r}"


class Placement:
    """The backend of every limit a cgroups section sets."""

    __slots__ = ("limits",)

    def __init__(self, limits: tuple[LimitPlacement, ...] = ()) -> None:
        self.limits = tuple(limits)

    def backend(self, limit: str) -> str | None:
        """The backend enforcing `limit`, or None when the section does not set it."""
        return next((p.backend for p in self.limits if p.limit == limit), None)

    def on(self, backend: str) -> tuple[str, ...]:
        """The limits enforced by `backend`."""
        return tuple(p.limit for p in self.limits if p.backend == backend)

    @property
    def unenforced(self) -> tuple[LimitPlacement, ...]:
        return tuple(p for p in self.limits if p.backend == "none")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placement) and self.limits == other.limits

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Placement({self.limits!r})"


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal (fs/proc_namespace.c).
    parts = field_.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def _parse_mountinfo(text: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, root, mount point, super options) of every cgroup/cgroup2 mount."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((rf[0], _unescape(lf[3]), _unescape(lf[4]), set(rf[2].split(","))))
    return mounts


def _dir_for(path: str, root: str, mount_point: str) -> str | None:
    """The directory of cgroup `path` through a mount of hierarchy subtree `root`, if it is visible there."""
    if root == "/":
        rel = path
    elif path == root or path.startswith(root.rstrip("/") + "/"):
        rel = path[len(root.rstrip("/")) :]
    else:
        return None
    return mount_point.rstrip("/") + "/" + rel.strip("/") if rel.strip("/") else mount_point


def _read_words(path: str) -> frozenset[str]:
    try:
        with open(path) as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


def _count_procs(cgroup_dir: str) -> int:
    """Processes in the cgroup (-1 when unreadable: assume the rule applies)."""
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            return len(f.read().split())
    except OSError:
        return -1


def probe_cgroups(
    proc_self_cgroup: str = "/proc/self/cgroup", mountinfo: str = "/proc/self/mountinfo"
) -> CgroupHost:
    """Find the launcher's own cgroup in every mounted hierarchy (reads files only, changes nothing)."""
    with open(proc_self_cgroup) as f:
        own_text = f.read()
    with open(mountinfo) as f:
        mounts = _parse_mountinfo(f.read())

    v2_path: str | None = None
    v1_paths: dict[str, str] = {}
    for line in own_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier_id, controllers, path = parts
        if hier_id == "0" and controllers == "":
            v2_path = path
        else:
            for c in controllers.split(","):
                v1_paths[c] = path

    v2_mount = v2_dir = None
    v1_dirs: dict[str, str] = {}
    for fstype, root, mount_point, opts in mounts:
        if fstype == "cgroup2" and v2_dir is None and v2_path is not None:
            v2_dir = _dir_for(v2_path, root, mount_point)
            v2_mount = mount_point if v2_dir else None
        elif fstype == "cgroup":
            for c in V1_CONTROLLERS:
                if c in opts and c in v1_paths and c not in v1_dirs:
                    d = _dir_for(v1_paths[c], root, mount_point)
                    if d:
                        v1_dirs[c] = d

    has_v1 = any(t == "cgroup" for t, *_ in mounts)
    has_v2 = v2_dir is not None
    layout = {(True, True): "hybrid", (True, False): "v2", (False, True): "v1"}.get((has_v2, has_v1), "none")

    host = CgroupHost(layout, v2_mount, v2_dir, v1_dirs=v1_dirs)
    if v2_dir is not None:
        # The real root cgroup has no cgroup.type (CFTYPE_NOT_ON_ROOT) and is exempt from the rule;
        # its cgroup.procs (every process of the host) is not read.
        is_root = not os.path.exists(os.path.join(v2_dir, "cgroup.type"))
        host.v2_available = _read_words(os.path.join(v2_dir, "cgroup.controllers"))
        host.v2_enabled = _read_words(os.path.join(v2_dir, "cgroup.subtree_control"))
        host.v2_writable = os.access(v2_dir, os.W_OK)
        host.v2_procs = 0 if is_root else _count_procs(v2_dir)
        host.v2_can_enable = is_root or host.v2_procs == 0
    host.v1_writable = {c: os.access(d, os.W_OK) for c, d in v1_dirs.items()}
    mem = v1_dirs.get("memory")
    host.memsw = bool(mem) and os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))
    return host


def section_limits(section: dict) -> tuple[str, ...]:
    """The limits (memory, pids, cpu) a compiled cgroups section sets."""
    present = {
        "memory": section.get("memory_max") is not None or section.get("swap_max") is not None,
        "pids": section.get("pids_max") is not None,
        "cpu": section.get("cpu") is not None,
    }
    return tuple(lim for lim in LIMITS if present[lim])


def _v2_refusal(host: CgroupHost, limit: str) -> str | None:
    """Why cgroup2 cannot enforce `limit`, or None if it can."""
    if host.v2_dir is None:
        return "no cgroup2 hierarchy is mounted"
    if not host.v2_writable:
        return f"the launcher's cgroup2 cgroup {host.v2_dir} is not writable"
    if limit not in host.v2_available:
        have = " ".join(sorted(host.v2_available)) or "none"
        return f"the {limit} controller is not delegated to {host.v2_dir} (cgroup.controllers: {have})"
    if limit not in host.v2_enabled and not host.v2_can_enable:
        n = host.v2_procs
        who = (f"{n} processes of its own, this launcher among them" if n > 1
               else "a process of its own, this launcher" if n == 1 else "processes of its own")
        return (
            f"the {limit} controller is delegated to {host.v2_dir} but not enabled in its cgroup.subtree_control, "
            f"and cannot be: that cgroup has {who} (cgroup2 'no internal processes' rule: only a cgroup without "
            "processes may enable controllers for its children)"
        )
    return None


def systemd_properties(section: dict | None) -> str:
    """The plan's limits as `systemd-run -p` properties (MemoryMax, MemorySwapMax, TasksMax, CPUQuota)."""
    section = section or {}
    props = []
    if section.get("memory_max") is not None:
        props.append(f"MemoryMax={section['memory_max']}")
    if section.get("swap_max") is not None:
        props.append(f"MemorySwapMax={section['swap_max']}")
    if section.get("pids_max") is not None:
        props.append(f"TasksMax={section['pids_max']}")
    cpu = section.get("cpu") or {}
    if cpu.get("period_us"):
        props.append(f"CPUQuota={round(100 * cpu['quota_us'] / cpu['period_us'])}%")
    return " ".join(f"-p {p}" for p in props) or "-p MemoryMax=…"


def no_internal_processes_hint(host: CgroupHost, section: dict | None = None) -> str:
    """What to change when the launcher's own cgroup2 cgroup has the controllers but may not hand them down."""
    return (
        f"sandboxer creates its leaf below {host.v2_dir} and never moves itself out of it, so delegating that "
        "cgroup (`systemd-run --user --scope -p Delegate=yes …`) does not help by itself: the launcher would "
        "still be one of its processes. cgroup2 lets only a cgroup without processes (or the hierarchy root) "
        "enable controllers for its children. Let systemd hold the same limits around the whole run "
        f"(`systemd-run --user --scope {systemd_properties(section)} -- sandboxer run --best-effort …`), "
        "run sandboxer from the cgroup2 root or on a host with cgroup v1 controllers, or set "
        "compat.cgroups: best-effort"
    )


def _v1_refusal(host: CgroupHost, limit: str) -> str | None:
    """Why cgroup v1 cannot enforce `limit`, or None if it can."""
    if limit not in host.v1_dirs:
        return f"no cgroup v1 {limit} hierarchy is mounted"
    if not host.v1_writable.get(limit, False):
        return f"the cgroup v1 {limit} cgroup {host.v1_dirs[limit]} is not writable"
    return None


def plan_placement(host: CgroupHost, section: dict) -> Placement:
    """Choose a backend per limit: cgroup2 where the controller is delegated, else writable v1, else none."""
    out = []
    for limit in section_limits(section):
        v2_why = _v2_refusal(host, limit)
        if v2_why is None:
            out.append(LimitPlacement(limit, "v2"))
            continue
        v1_why = _v1_refusal(host, limit)
        if v1_why is None:
            out.append(LimitPlacement(limit, "v1"))
            continue
        reason = f"the {limit} limit cannot be enforced: {v2_why}, and {v1_why}"
        internal = limit in host.v2_available and host.v2_writable and not host.v2_can_enable
        hint = no_internal_processes_hint(host, section) if internal else FIX_HINT
        out.append(LimitPlacement(limit, "none", reason, hint))
    return Placement(tuple(out))
